"""Saving checkpoints without ever leaving half a file: atomic writes through Lightning's checkpoint IO."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Trainer

from lenet_cli import atomic
from lenet_cli.checkpoints.load import refuse_unsafe
from lenet_cli.errors import LenetError, escaped


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
        remedy = "give --checkpoint.dirpath elsewhere"
        try:
            with atomic.replace_atomically(path, remedy) as temporary:
                with temporary.open("wb") as file:
                    try:
                        torch.save(checkpoint, file)
                    except RuntimeError as error:
                        # torch's writer turns the file's OSError (ENOSPC...) into "[enforce fail at
                        # inline_container.cc] unexpected pos", which names no cause: raise the OSError.
                        if isinstance(error.__context__, OSError):
                            raise error.__context__ from error
                        raise
                refuse_unsafe(temporary, path)
        except OSError as error:
            atomic.raise_if_full(path, error, remedy)
            raise LenetError(write_failure(path, error)) from error


def write_failure(path: str | Path, error: OSError) -> str:
    """Why ``path`` could not be written (a full disk is atomic.raise_if_full's message)."""
    return f"cannot write checkpoint {escaped(path)}: {error.strerror or error}"


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
