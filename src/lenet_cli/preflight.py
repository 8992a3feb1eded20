"""Checks made before any work, so that what would fail late (after an epoch) fails at once in one line."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from lenet_cli.errors import LenetError, escaped
from lenet_cli.paths import configured_output_folders


def preflight(config: Any) -> None:
    """Fail in one line, before any work, on what would otherwise fail late: an output folder that
    cannot be written (found after an epoch, at the first save), a GPU the machine does not have
    (Lightning's "No supported gpu backend found!" comes after seeding and its log lines)."""
    for option, folder in configured_output_folders(config):
        check_writable(option, folder)
    accelerator = str((config.get("trainer") or {}).get("accelerator") or "")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise LenetError(
            f"--trainer.accelerator {accelerator}: this machine has no usable CUDA GPU; "
            "use --trainer.accelerator cpu (or auto)"
        )


def check_writable(option: str, folder: str | Path) -> None:
    """Fail in one line, before any work, when ``folder`` cannot be created or written into."""
    if "://" in str(folder):
        return  # remote storage: only the upload can tell
    existing = Path(folder).expanduser().absolute()
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise LenetError(f"--{option} {folder}: cannot create this folder, {existing} is a file")
    try:
        # A real attempt: os.access says yes to root even where the filesystem refuses (/proc, quotas).
        os.rmdir(tempfile.mkdtemp(prefix=".lenet-write-check-", dir=existing))
    except OSError as error:
        raise LenetError(f"--{option} {folder}: cannot write into {existing} ({error.strerror or error})") from error


# What marks a folder as some run's: the files a run writes there first, which a new run would replace.
RUN_FILES = ("config.yaml", "metrics.csv", "hparams.yaml")


def check_fresh_run(trainer: Trainer, fitting: bool) -> None:
    """Fail in one line, before any logger or callback writes, when this run would write into another's.

    Lightning's CSVLogger deletes an existing ``metrics.csv`` when it starts, long before the config
    callback finds the old ``config.yaml``; a ModelCheckpoint overwrites the ``best.ckpt`` it finds.
    ``trainer.log_dir`` is the run folder: the logger's ``version_N`` (a fresh one unless the version
    is set), or ``--trainer.default_root_dir`` without a logger.
    """
    logger = trainer.logger
    log_dir = getattr(logger, "log_dir", None) if logger is not None else trainer.default_root_dir
    if log_dir is not None and "://" not in str(log_dir):
        found = [name for name in RUN_FILES if (Path(log_dir) / name).exists()]
        if found:
            remedy = (
                "leave --trainer.logger's version unset (each run gets the next version_N)"
                if logger is not None
                else "without a logger the run folder is --trainer.default_root_dir: give each run its own"
            )
            raise LenetError(
                f"{escaped(log_dir)} already holds a run ({', '.join(found)}): a run folder is never reused; {remedy}"
            )
    if not fitting:
        return  # only fit writes checkpoints
    for callback in trainer.checkpoint_callbacks:
        folder = callback.dirpath if isinstance(callback, ModelCheckpoint) else None
        if folder is None or "://" in str(folder) or not Path(folder).is_dir():
            continue
        existing = sorted(path.name for path in Path(folder).glob("*.ckpt"))
        if existing:
            raise LenetError(
                f"--checkpoint.dirpath {escaped(folder)} holds checkpoints of another run ({', '.join(existing[:3])}), "
                "which this fit would overwrite; leave --checkpoint.dirpath unset (each run gets its own) "
                "or name an empty folder"
            )
