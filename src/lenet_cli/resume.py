"""``fit`` stopped and continued: Ctrl-C and SIGTERM end it with a resumable ``last.ckpt`` and the
command that resumes it, and a resumed run is linked to the one it continues.

A resumed ``fit`` writes a new ``version_N`` folder rather than appending to the old one: Lightning's
CSVLogger deletes an existing ``metrics.csv`` and SaveConfigCallback refuses an existing config.yaml,
and keeping the interrupted run as it was loses nothing. The link is the new config.yaml's
``ckpt_path`` (and a comment above it), and the log line "resuming ... from ...".
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lenet_cli.lightning_internals import sigterm_flag
from lenet_cli.paths import run_folder_of_checkpoint


def resume_command(run_dir: str | Path | None, checkpoint: str | Path) -> str:
    """The command that continues from ``checkpoint`` with exactly the settings of the run in ``run_dir``."""
    config = Path(run_dir) / "config.yaml" if run_dir is not None else None
    options = f"--config {shlex.quote(str(config))}" if config is not None and config.is_file() else "<your options>"
    return f"lenet fit {options} --ckpt_path {shlex.quote(str(checkpoint))}"


def exit_status(stop: SIGTERMException) -> int:
    """The conventional status (128 + signal number) of a fit that ``StopOnSignal`` stopped."""
    return 128 + int(getattr(stop, "signal", signal.SIGTERM))


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
                f"resuming {run_folder_of_checkpoint(trainer.ckpt_path)} from {trainer.ckpt_path} "
                f"(epoch {checkpoint.get('epoch')}, global step {checkpoint.get('global_step')}) as {log_dir}",
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
        self.signal = None
        if threading.current_thread() is not threading.main_thread():
            return  # signals only reach the main thread
        stop_at_next_batch = sigterm_flag(trainer)
        if stop_at_next_batch is None:
            return  # a Lightning without the flag keeps its own Ctrl-C

        def on_interrupt(signum: int, frame: FrameType | None) -> None:
            if self.signal is not None:
                raise KeyboardInterrupt  # the second Ctrl-C: stop now
            self.signal = signal.SIGINT
            if trainer.is_global_zero:
                print(
                    "\nCtrl-C: stopping after this batch to save a checkpoint (Ctrl-C again stops at once)",
                    file=sys.stderr,
                )
            stop_at_next_batch()  # read by Lightning's loops after every batch

        self._previous_handler = signal.signal(signal.SIGINT, on_interrupt)

    def _restore_handler(self) -> None:
        if self._previous_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_handler)
        self._previous_handler = None

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._restore_handler()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore_handler()
        callback = trainer.checkpoint_callback
        if trainer.state.fn != TrainerFn.FITTING or not isinstance(callback, ModelCheckpoint) or not callback.dirpath:
            return  # not fitting, or stopped before the checkpoint folder was known (data setup)
        last = Path(callback.format_checkpoint_name({}, ModelCheckpoint.CHECKPOINT_NAME_LAST))
        graceful = isinstance(exception, SIGTERMException)
        if graceful:
            self.signal = self.signal or signal.SIGTERM
            exception.signal = self.signal  # type: ignore[attr-defined]  # read by exit_status() in main()
            # At a batch boundary, so the state is consistent; all ranks take part in the save.
            if not trainer.sanity_checking and trainer.global_step > 0:
                trainer.save_checkpoint(last, weights_only=False)  # the full state, not only weights
        interrupted = graceful or isinstance(exception, KeyboardInterrupt)
        # Other errors get the hint only once this run has a checkpoint: a bad input stays one line.
        if not trainer.is_global_zero or not (interrupted or last.is_file()):
            return
        log_dir = getattr(trainer.logger, "log_dir", None) or trainer.default_root_dir  # no broadcast here
        names = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
        reason = names[self.signal] if self.signal is not None else type(exception).__name__
        resume_from = last if last.is_file() else trainer.ckpt_path
        if resume_from is None:
            print(f"{reason}: stopped before the first checkpoint; nothing to resume", file=sys.stderr)
            return
        print(
            f"{reason}: stopped at epoch {trainer.current_epoch}, global step {trainer.global_step}; "
            f"resume from {resume_from} with:\n  {resume_command(log_dir, resume_from)}",
            file=sys.stderr,
        )
