"""A run folder over its life: config.yaml written atomically, output folders checked up front, Ctrl-C
and SIGTERM ending ``fit`` with a resumable ``last.ckpt``, and a resumed run linked to the one it continues.

A resumed ``fit`` writes a new ``version_N`` folder rather than appending to the old one: Lightning's
CSVLogger deletes an existing ``metrics.csv`` and SaveConfigCallback refuses an existing config.yaml,
and keeping the interrupted run as it was loses nothing. The link is the new config.yaml's
``ckpt_path`` (and a comment above it), and the log line "resuming ... from ...".
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lenet_cli import atomic
from lenet_cli.errors import LenetError

# Config keys that name folders a run writes into (logger, checkpoints, images, reports).
OUTPUT_KEYS = ("save_dir", "dirpath", "default_root_dir", "output_dir", "explain_dir")

# The signal that ended the last fit through StopOnSignal: main() exits with 128 + its number.
stopped_by: signal.Signals | None = None


def run_folder(checkpoint: str | Path) -> Path:
    """``runs/x/version_N`` for ``runs/x/version_N/checkpoints/last.ckpt``."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def output_folder(trainer: Trainer, output_dir: str | None) -> Path:
    """Where a callback writes its files: ``output_dir`` if given, else the run folder.

    Reading ``trainer.log_dir`` is a broadcast under DDP: every rank must call this, before any code
    that only rank 0 runs, or the other ranks wait forever.
    """
    return Path(output_dir or trainer.log_dir or ".")


def resume_command(run_dir: str | Path | None, checkpoint: str | Path) -> str:
    """The command that continues from ``checkpoint`` with exactly the settings of the run in ``run_dir``."""
    config = Path(run_dir) / "config.yaml" if run_dir is not None else None
    options = f"--config {shlex.quote(str(config))}" if config is not None and config.is_file() else "<your options>"
    return f"lenet fit {options} --ckpt_path {shlex.quote(str(checkpoint))}"


def output_folders(config: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """``(option, folder)`` for every :data:`OUTPUT_KEYS` value set anywhere in ``config``."""
    # A jsonargparse Namespace's items() are flattened: ("trainer.logger.init_args.save_dir", "runs").
    items = config.items() if hasattr(config, "items") else enumerate(config) if isinstance(config, list) else ()
    for name, value in items:
        option = f"{key}.{name}" if key else str(name)
        if isinstance(value, str) and value and str(name).rsplit(".", 1)[-1] in OUTPUT_KEYS:
            yield option, value
        elif not isinstance(value, (str, bytes)) and (hasattr(value, "items") or isinstance(value, list)):
            yield from output_folders(value, option)


def preflight(config: Any) -> None:
    """Fail in one line, before any work, on what would otherwise fail late: an output folder that
    cannot be written (found after an epoch, at the first save), a GPU the machine does not have
    (Lightning's "No supported gpu backend found!" comes after seeding and its log lines)."""
    for option, folder in output_folders(config):
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


class SaveRunConfig(SaveConfigCallback):
    """Lightning's SaveConfigCallback, but config.yaml appears complete or not at all.

    Lightning writes it in place (``open(path, "w")``): a kill mid-write leaves a truncated config,
    the one file that says how a run was made. A resumed ``fit`` also gets a comment naming the
    checkpoint it continues from.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved or not self.save_to_log_dir or "://" in str(trainer.log_dir):
            return super().setup(trainer, pl_module, stage)
        path = Path(trainer.log_dir) / self.config_filename  # trainer.log_dir broadcasts: every rank
        exists = trainer.strategy.broadcast(path.is_file() if trainer.is_global_zero else False)
        if exists and not self.overwrite:
            raise LenetError(
                f"{path} already exists: a run folder is never reused; "
                + (
                    "leave --trainer.logger's version unset"
                    if trainer.logger is not None
                    else "without a logger the run folder is --trainer.default_root_dir: give each run its own"
                )
            )
        if trainer.is_global_zero:
            with atomic.replace_atomically(path) as temporary:
                self.parser.save(self.config, temporary, skip_none=False, overwrite=True, multifile=self.multifile)
                ckpt_path = self.config.get("ckpt_path")
                if stage == TrainerFn.FITTING and ckpt_path:
                    comment = f"# resumed: continues {run_folder(ckpt_path)} from {ckpt_path}\n"
                    temporary.write_text(comment + temporary.read_text())
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


class ResumedRun(Callback):
    """When ``fit`` starts from a checkpoint: say which run it continues, and keep its best score.

    ModelCheckpoint forgets the best score when its folder changes (it warns "The dirpath has
    changed"): the new run would then save the first epoch after the resume as ``best.ckpt``, however
    bad, while EarlyStopping still compares with the old best. Pointing the saved state at the new
    folder keeps one best across the interruption; the old run's files are never removed (Lightning
    only deletes checkpoints inside the current folder).
    """

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.ckpt_path is None:
            return
        log_dir = trainer.log_dir  # broadcasts: on every rank
        if trainer.is_global_zero:
            print(
                f"resuming {run_folder(trainer.ckpt_path)} from {trainer.ckpt_path} (epoch {checkpoint.get('epoch')}, "
                f"global step {checkpoint.get('global_step')}) as {log_dir}",
                file=sys.stderr,
            )
        states = checkpoint.get("callbacks") or {}
        for callback in trainer.checkpoint_callbacks:
            state = states.get(callback.state_key)
            if isinstance(callback, ModelCheckpoint) and state is not None and callback.dirpath is not None:
                state["dirpath"] = callback.dirpath


class StopOnSignal(Callback):
    """Ctrl-C or SIGTERM during ``fit``: finish the batch, write ``last.ckpt``, print the resume command.

    Lightning already turns SIGTERM into a stop at the next batch boundary (``SIGTERMException``) but
    saves nothing; Ctrl-C raises KeyboardInterrupt wherever the program is, possibly half-way through
    an optimizer step. Here the first Ctrl-C takes SIGTERM's path (a second one stops at once, without
    saving), and both write ``last.ckpt`` at the boundary. ModelCheckpoint's own ``save_on_exception``
    is not used: it would write the interrupted state under the ``best`` file name.
    """

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._previous_handler: Any = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        global stopped_by
        stopped_by, self.signal = None, None
        connector = getattr(trainer, "_signal_connector", None)
        if threading.current_thread() is not threading.main_thread() or not hasattr(connector, "received_sigterm"):
            return  # signals only reach the main thread; a Lightning without the flag keeps its Ctrl-C

        def on_interrupt(signum: int, frame: FrameType | None) -> None:
            global stopped_by
            if self.signal is not None:
                raise KeyboardInterrupt  # the second Ctrl-C: stop now
            self.signal = stopped_by = signal.SIGINT
            if trainer.is_global_zero:
                print(
                    "\nCtrl-C: stopping after this batch to save a checkpoint (Ctrl-C again stops at once)",
                    file=sys.stderr,
                )
            connector.received_sigterm = True  # read by Lightning's loops after every batch

        self._previous_handler = signal.signal(signal.SIGINT, on_interrupt)

    def _restore_handler(self) -> None:
        if self._previous_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_handler)
        self._previous_handler = None

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._restore_handler()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        global stopped_by
        self._restore_handler()
        callback = trainer.checkpoint_callback
        if trainer.state.fn != TrainerFn.FITTING or callback is None or callback.dirpath is None:
            return  # not fitting, or stopped before the checkpoint folder was known (data setup)
        last = Path(callback.format_checkpoint_name({}, ModelCheckpoint.CHECKPOINT_NAME_LAST))
        graceful = isinstance(exception, SIGTERMException)
        if graceful:
            self.signal = stopped_by = self.signal or signal.SIGTERM
            # At a batch boundary, so the state is consistent; all ranks take part in the save.
            if not trainer.sanity_checking and trainer.global_step > 0:
                trainer.save_checkpoint(last, weights_only=False)  # the full state, not only weights
        interrupted = graceful or isinstance(exception, KeyboardInterrupt)
        # Other errors get the hint only once this run has a checkpoint: a bad input stays one line.
        if not trainer.is_global_zero or not (interrupted or last.is_file()):
            return
        log_dir = getattr(trainer.logger, "log_dir", None) or trainer.default_root_dir  # no broadcast here
        reason = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}.get(self.signal, type(exception).__name__)
        resume_from = last if last.is_file() else trainer.ckpt_path
        if resume_from is None:
            print(f"{reason}: stopped before the first checkpoint; nothing to resume", file=sys.stderr)
            return
        print(
            f"{reason}: stopped at epoch {trainer.current_epoch}, global step {trainer.global_step}; "
            f"resume from {resume_from} with:\n  {resume_command(log_dir, resume_from)}",
            file=sys.stderr,
        )


def exit_status() -> int:
    """The conventional status of a process ended by the signal that stopped the last fit."""
    return 128 + int(stopped_by or signal.SIGTERM)
