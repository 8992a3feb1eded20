"""Reading and writing checkpoints: loading without running code from the file, checking that the
weights fit the model, and saves that a kill cannot leave half-written."""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import LightningModule, Trainer

from lenet_cli import atomic
from lenet_cli.errors import LenetError


def load(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint without running code from it (``weights_only``), or fail in one line."""
    path = Path(path)
    if not path.is_file():
        raise LenetError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: noise before our one line
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if unsafe := unsafe_globals(path, error):
            raise LenetError(
                f"checkpoint {path} refused: loading it would need arbitrary unpickling, which can run code "
                f"from the file (it calls {', '.join(unsafe)}); lenet loads only tensors and plain values"
            ) from error
        raise LenetError(
            f"{path} is not a readable checkpoint (a weights-only load rejects it: {rejection(error)})"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        detail = str(error).splitlines()[0] if str(error) else ""
        raise LenetError(f"{path} is not a readable checkpoint ({type(error).__name__}: {detail})") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise LenetError(f"{path} is not a Lightning checkpoint (no state_dict)")
    if not any(key.startswith("features.0.") for key in checkpoint["state_dict"]):
        raise LenetError(f"{path} is not a LeNet checkpoint of lenet-cli (its weights have other names)")
    return checkpoint


def unsafe_globals(path: Path, error: Exception) -> list[str]:
    """The functions and classes a full unpickling of ``path`` would call, as far as they can be read."""
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - not a torch.save zip file, or torch < 2.5: read torch's message
        unsafe = []
    return unsafe or re.findall(r"GLOBAL (\S+)", str(error))


def rejection(error: Exception) -> str:
    """The gist of torch's page-long ``weights_only`` error (which also suggests the unsafe load)."""
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    details = [line for line in lines if not line.startswith(boilerplate) and not line.endswith(":")]
    return details[0] if details else type(error).__name__


def check_fits(checkpoint: dict[str, Any], model: LightningModule, path: str | Path) -> None:
    """Fail in one line when the checkpoint's weights do not have this model's names and shapes.

    Lightning would raise a long ``load_state_dict`` traceback instead; the usual cause is a checkpoint
    trained for another number of classes or channels than ``--data`` has.
    """
    saved = checkpoint["state_dict"]
    expected = model.state_dict()
    hparams = checkpoint.get("hyper_parameters") or {}
    for name in ("num_classes", "in_channels"):
        ours = model.hparams.get(name)
        if name in hparams and ours is not None and hparams[name] != ours:
            what = "classes" if name == "num_classes" else "input channels"
            raise LenetError(
                f"checkpoint {path} was trained for {hparams[name]} {what}, but the data has {ours}; "
                "use a checkpoint trained on this kind of data"
            )
    missing, unexpected = sorted(expected.keys() - saved.keys()), sorted(saved.keys() - expected.keys())
    if missing or unexpected:
        raise LenetError(
            f"checkpoint {path} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for key, tensor in expected.items():
        if saved[key].shape != tensor.shape:
            raise LenetError(
                f"checkpoint {path} does not fit this model: {key} is {list(saved[key].shape)} there, "
                f"{list(tensor.shape)} here"
            )


def refuse_unsafe(path: Path, target: str | Path) -> None:
    """Fail before ``target`` is written if loading it would need arbitrary unpickling.

    Everything Lightning puts in a checkpoint is tensors and plain Python values, so this only trips
    when a hyperparameter or callback state holds some object: better at the first save than when the
    run is over and no ``weights_only`` load can read its checkpoints.
    """
    find_unsafe = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if find_unsafe is not None:
        unsafe = find_unsafe(path)
    else:  # torch < 2.5: try the load itself
        try:
            torch.load(path, map_location="cpu", weights_only=True)
            unsafe = []
        except pickle.UnpicklingError as error:
            unsafe = [str(error).strip().splitlines()[0]]
    if unsafe:
        raise LenetError(
            f"refusing to write checkpoint {target}: it would hold {', '.join(unsafe)}, which a safe "
            "(weights_only) load cannot read; keep hyperparameters to numbers, strings, lists and dicts"
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file beside the checkpoint, fsync, then rename it over the checkpoint.

    Lightning's own save (``_atomic_save``) writes through a temporary file in the system temp folder
    and ``shutil.move``: when that folder is another filesystem (a tmpfs ``/tmp``) the move is a copy
    into the checkpoint itself, so a kill mid-copy leaves a truncated ``last.ckpt``; nothing is fsynced
    either. Remote paths (``s3://``...) keep Lightning's save.

    It also hands over a checkpoint that ``lenet`` already read (:meth:`preload`), so that a command
    reads its checkpoint file once, not once for the checks and again for the trainer.
    """

    def __init__(self) -> None:
        super().__init__()
        self._preloaded: tuple[Path, dict[str, Any]] | None = None

    def preload(self, path: str | Path, checkpoint: dict[str, Any]) -> None:
        """Let the next :meth:`load_checkpoint` of ``path`` return ``checkpoint`` (read with :func:`load`)."""
        self._preloaded = (Path(path).absolute(), checkpoint)

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        preloaded, self._preloaded = self._preloaded, None
        # load() read it onto the CPU with weights_only=True, which is what lenet asks of Lightning too.
        if preloaded is not None and "://" not in str(path) and Path(path).absolute() == preloaded[0]:
            return preloaded[1]
        if map_location is None:
            return super().load_checkpoint(path, weights_only=weights_only)
        return super().load_checkpoint(path, map_location, weights_only)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic.replace_atomically(path) as temporary:
            torch.save(checkpoint, temporary)
            refuse_unsafe(temporary, path)


def use_atomic_saves(trainer: Trainer, preloaded: tuple[str | Path, dict[str, Any]] | None = None) -> None:
    """Make ``trainer`` save checkpoints with :class:`AtomicCheckpointIO`, and load ``preloaded``
    ``(path, checkpoint)`` from memory when it loads that path.

    Only replaces Lightning's default ``TorchCheckpointIO``: a CheckpointIO given with
    ``--trainer.plugins`` or a sharded strategy's own saving is kept (and reads the file itself).
    """
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    checkpoint_io = trainer.strategy.checkpoint_io
    if preloaded is not None and isinstance(checkpoint_io, AtomicCheckpointIO):
        checkpoint_io.preload(*preloaded)
