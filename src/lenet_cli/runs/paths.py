"""Where runs and checkpoints live: the one place that knows the layout.

Every run gets its own folder, ``runs/<name>/version_N/`` (``<name>`` from the config's logger), with
``config.yaml``, ``metrics.csv``, ``checkpoints/best.ckpt`` (lowest ``val/loss``) and
``checkpoints/last.ckpt``; reports, figures and predictions land beside them unless a callback's
``output_dir`` says otherwise. ``--ckpt_path best|last`` names a checkpoint of that layout (lenet_cli.runs.ckpt_path).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer

# The always-present ModelCheckpoint ("--checkpoint.*"): best.ckpt and last.ckpt at stable paths.
CHECKPOINT_DEFAULTS = {
    "checkpoint.monitor": "val/loss",
    "checkpoint.mode": "min",
    "checkpoint.filename": "best",
    "checkpoint.save_last": True,
    "checkpoint.enable_version_counter": False,
}

# The logger of a run without a config: runs/lenet/version_N/.
DEFAULT_LOGGER = {
    "class_path": "lightning.pytorch.loggers.CSVLogger",
    "init_args": {"save_dir": "runs", "name": "lenet"},
}

# Config keys that name folders a run writes into (logger, checkpoints, images, reports).
OUTPUT_KEYS = ("save_dir", "dirpath", "default_root_dir", "output_dir", "explain_dir")


def config_runs_folder(config: Any) -> Path:
    """The folder holding the ``version_N`` runs of the logger that ``config`` (a subcommand's) sets up."""
    trainer = config.get("trainer") or {}
    logger = trainer.get("logger")
    if isinstance(logger, list):
        logger = logger[0] if logger else None
    init_args = getattr(logger, "init_args", None) or {}
    save_dir = init_args.get("save_dir") or trainer.get("default_root_dir") or "."
    name = init_args.get("name", "lightning_logs")
    return Path(save_dir) / name if name else Path(save_dir)


def versions_newest_first(runs_folder: Path) -> list[Path]:
    """The ``version_N`` folders of ``runs_folder``, highest N first."""
    if not runs_folder.is_dir():
        return []
    versions = [(int(m.group(1)), p) for p in runs_folder.iterdir() if (m := re.fullmatch(r"version_(\d+)", p.name))]
    return [path for _, path in sorted(versions, reverse=True)]


def run_folder_of_checkpoint(checkpoint: str | Path) -> Path:
    """``runs/x/version_N`` for ``runs/x/version_N/checkpoints/last.ckpt``."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def callback_output_folder(trainer: Trainer, output_dir: str | None) -> Path:
    """Where a callback writes its files: ``output_dir`` if given, else the run folder.

    Reading ``trainer.log_dir`` is a broadcast under DDP: every rank must call this, before any code
    that only rank 0 runs, or the other ranks wait forever.
    """
    return Path(output_dir or trainer.log_dir or ".")


def configured_output_folders(config: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """``(option, folder)`` for every :data:`OUTPUT_KEYS` value set anywhere in ``config``."""
    # A jsonargparse Namespace's items() are flattened: ("trainer.logger.init_args.save_dir", "runs").
    items = config.items() if hasattr(config, "items") else enumerate(config) if isinstance(config, list) else ()
    for name, value in items:
        option = f"{key}.{name}" if key else str(name)
        if isinstance(value, str) and value and str(name).rsplit(".", 1)[-1] in OUTPUT_KEYS:
            yield option, value
        elif not isinstance(value, (str, bytes)) and (hasattr(value, "items") or isinstance(value, list)):
            yield from configured_output_folders(value, option)
