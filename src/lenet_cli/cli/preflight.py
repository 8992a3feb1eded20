"""Checks made before any work, so that what would fail late (after an epoch) fails at once in one line."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonargparse
import torch
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from lenet_cli.atomic import check_writable, expand_user
from lenet_cli.errors import LenetError, escaped
from lenet_cli.runs.paths import configured_output_folders


def preflight(config: Any) -> None:
    """Fail in one line, before any work, on what would otherwise fail late: an output folder that
    cannot be written (found after an epoch, at the first save), a GPU the machine does not have
    (Lightning's "No supported gpu backend found!" comes after seeding and its log lines)."""
    check_ranges(config)
    for option in ("data.data_dir", "data.predict_path", "ckpt_path"):
        value = config.get(option)
        if isinstance(value, str):
            expand_user(option, value)
    for option, folder in configured_output_folders(config):
        check_writable(option, folder)
    accelerator = str((config.get("trainer") or {}).get("accelerator") or "")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise LenetError(
            f"--trainer.accelerator {accelerator}: this machine has no usable CUDA GPU; "
            "use --trainer.accelerator cpu (or auto)"
        )


# Options whose values have a range that Lightning, torch or lenet would only find out late (a
# ZeroDivisionError in the loop, a ValueError from the optimizer or the generator): (lowest, highest).
RANGES: dict[str, tuple[int, float]] = {
    "seed_everything": (0, 2**32 - 1),  # numpy's generator, which Lightning seeds too
    "data.split_seed": (0, 2**64 - 1),  # torch.Generator.manual_seed
    "data.batch_size": (1, math.inf),  # a larger one than the training set: MNISTDataModule says so
    "data.eval_batch_size": (1, math.inf),
    "data.num_workers": (0, math.inf),
    "model.lr": (0, math.inf),
    "model.weight_decay": (0, math.inf),
    "trainer.accumulate_grad_batches": (1, math.inf),
    "trainer.check_val_every_n_epoch": (1, math.inf),
    "trainer.max_epochs": (-1, math.inf),
    "trainer.max_steps": (-1, math.inf),
    "trainer.num_nodes": (1, math.inf),
}


def check_ranges(config: Any) -> None:
    """Fail in one line on an option value outside its range (:data:`RANGES`), naming the range."""
    for option, (lowest, highest) in RANGES.items():
        value = config.get(option)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not (math.isfinite(value) and lowest <= value <= highest):
            within = f"from {lowest} to {highest}" if highest < math.inf else f"of at least {lowest}"
            raise LenetError(f"--{option} {value}: out of range; give a value {within}")
    interval = config.get("trainer.val_check_interval")
    if isinstance(interval, (int, float)) and not isinstance(interval, bool) and not interval > 0:
        raise LenetError(
            f"--trainer.val_check_interval {interval}: out of range; give a fraction of an epoch in (0, 1] "
            "or a number of steps of at least 1"
        )


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


# Limits on a config file, checked before jsonargparse reads it: lenet's own configs are ~2 KB and
# expand to ~100 values; YAML aliases let 1 KB expand to billions ("billion laughs").
MAX_CONFIG_BYTES = 2**20
MAX_CONFIG_VALUES = 100_000
MAX_CONFIG_DEPTH = 64


def check_config_sources(words: list[str]) -> None:
    """Fail in one line on a ``--config`` file (or YAML given inline) that jsonargparse should not read.

    Not a regular file (``/dev/zero`` would be read forever), too large, not UTF-8 text, not YAML,
    empty, not a mapping of options, or expanding through aliases past :data:`MAX_CONFIG_VALUES`.
    """
    for index, word in enumerate(words):
        option, equals, value = word.partition("=")
        if option in ("--config", "-c"):
            given = value if equals else words[index + 1] if index + 1 < len(words) else None
            if given is not None and Path(given).exists():
                check_config_file(Path(given))
            elif given is not None and "&" in given and "*" in given:  # YAML given as the value itself
                check_yaml(given, f"the value of {option}")
        elif "&" in word and "*" in word:  # an anchor and an alias in an inline YAML value
            check_yaml(value if equals else word, f"the value of {option}" if equals else "a command-line value")


def check_config_file(path: Path) -> None:
    """A ``--config`` file: :func:`check_config_text`'s checks, and not empty, and a mapping of options."""
    name = f"config file {escaped(path)}"
    if path.is_dir():
        raise LenetError(f"{name} is a folder; give a YAML file")
    root = check_config_text(path, path)
    if root is None:
        raise LenetError(f"{name} is empty; `lenet fit --print_config` prints every option to start one from")
    if not isinstance(root, yaml.MappingNode):
        kind = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
        raise LenetError(f"{name} holds {kind}, not options: a config is a mapping such as `model: {{lr: 0.01}}`")


def check_config_text(path: Path, shown: str | Path) -> yaml.Node | None:
    """Fail in one line unless ``path`` is a regular file of UTF-8 YAML that is small and stays small.

    Not a regular file (``/dev/zero`` would be read forever, a FIFO waited on), more than
    :data:`MAX_CONFIG_BYTES`, not UTF-8, not YAML, or expanding through aliases (:func:`check_yaml`).
    """
    name = f"config file {escaped(shown)}"
    if not path.is_file():
        raise LenetError(f"{name} is not a regular file; give a YAML file")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise LenetError(
            f"{name} is {size / 2**20:.1f} MiB, more than a config can be ({MAX_CONFIG_BYTES // 2**20} MiB)"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise LenetError(f"{name} is not UTF-8 text (byte {error.start}); a config is a YAML file") from error
    except OSError as error:
        raise LenetError(f"cannot read {name}: {error.strerror or error}") from error
    return check_yaml(text, name)


@contextlib.contextmanager
def every_config_file_checked() -> Iterator[None]:
    """While jsonargparse parses, every file it reads as a config gets :func:`check_config_text` first.

    That is ``--config``, a file given to ``--model``, ``--data``, ``--trainer`` or any class option, and
    a file a config names (``model: other.yaml``, relative to that config's folder): jsonargparse reads
    them all through ``jsonargparse.Path.read_text``, wrapped here for the parse. Standard input and URLs
    are left as they are (lenet's parser enables neither).
    """
    read_text = jsonargparse.Path.read_text

    def checked(path: jsonargparse.Path) -> str:
        if not path.is_url and path.relative != "-":
            check_config_text(Path(path.absolute), path.relative)
        return read_text(path)

    jsonargparse.Path.read_text = checked  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        jsonargparse.Path.read_text = read_text  # type: ignore[method-assign]


def check_yaml(text: str, name: str) -> yaml.Node | None:
    """The YAML node tree of ``text``, checked to expand to at most :data:`MAX_CONFIG_VALUES` values.

    Composing is cheap even for an alias bomb: an alias is a reference to its anchor's node, shared.
    The values are counted with each shared node counted once per use, without expanding anything.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise LenetError(f"{name} is not valid YAML: {escaped(problem)}{where}") from error
    except RecursionError as error:
        raise LenetError(f"{name} is nested too deeply to be a config") from error
    if root is None:
        return None
    sizes: dict[int, int] = {}

    def expanded(node: yaml.Node, depth: int, path: tuple[int, ...]) -> int:
        if id(node) in path:
            raise LenetError(f"{name} refused: a YAML alias in it refers to itself (an endless value)")
        if depth > MAX_CONFIG_DEPTH:
            raise LenetError(f"{name} is nested more than {MAX_CONFIG_DEPTH} levels deep; no config is")
        if id(node) not in sizes:
            children: list[yaml.Node] = []
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            sizes[id(node)] = 1 + sum(expanded(child, depth + 1, (*path, id(node))) for child in children)
        if sizes[id(node)] > MAX_CONFIG_VALUES:
            raise LenetError(
                f"{name} refused: its YAML aliases expand it to more than {MAX_CONFIG_VALUES} values "
                "(an alias bomb, or far more than any config holds)"
            )
        return sizes[id(node)]

    expanded(root, 0, ())
    return root
