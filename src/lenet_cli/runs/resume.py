"""``fit`` stopped and continued: Ctrl-C and SIGTERM end it with a resumable ``last.ckpt`` and the
command that resumes it, and a resumed run is linked to the one it continues.

A resumed ``fit`` writes a new ``version_N`` folder rather than appending to the old one: Lightning's
CSVLogger deletes an existing ``metrics.csv`` and SaveConfigCallback refuses an existing config.yaml,
and keeping the interrupted run as it was loses nothing. The link is the new config.yaml's
``ckpt_path`` (and a comment above it), and the log line "resuming ... from ...".
"""

from __future__ import annotations

import os
import shlex
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lenet_cli._lightning import save_last_checkpoint, sigterm_flag
from lenet_cli.errors import LenetError, escaped, print_safely
from lenet_cli.runs.paths import run_folder_of_checkpoint


def resume_command(run_dir: str | Path | None, checkpoint: str | Path) -> str:
    """The command that continues from ``checkpoint`` with exactly the settings of the run in ``run_dir``."""
    config = Path(run_dir) / "config.yaml" if run_dir is not None else None
    options = f"--config {shlex.quote(str(config))}" if config is not None and config.is_file() else "<your options>"
    return f"lenet fit {options} --ckpt_path {shlex.quote(str(checkpoint))}"


def exit_status(stop: SIGTERMException) -> int:
    """The conventional status (128 + signal number) of a fit that ``StopOnSignal`` stopped."""
    return 128 + int(getattr(stop, "signal", signal.SIGTERM))


# Hyperparameters the optimizer state of a checkpoint carries: a resumed fit continues with the saved
# values whatever the command line says, so a different value there is refused rather than ignored.
OPTIMIZER_HPARAMS = ("lr", "weight_decay", "lr_schedule")


def check_resumable(checkpoint: dict[str, Any], model: LightningModule, config: Any, path: str | Path) -> None:
    """Fail in one line, before a run folder is made, when ``fit --ckpt_path`` cannot continue ``checkpoint``.

    Lightning would raise a ``KeyError`` for a weights-only file and a shape error for an optimizer
    state that does not fit, train nothing for a finished run, and silently keep the saved learning
    rate over a new ``--model.lr`` (:func:`refuse_changed_options`).
    """
    name = escaped(path)
    optimizer_states, loops = checkpoint.get("optimizer_states"), checkpoint.get("loops")
    if not optimizer_states or not isinstance(loops, dict):
        raise LenetError(
            f"checkpoint {name} holds weights only (no optimizer or loop state), so fit cannot resume it; "
            "use it with test, validate or predict, or start a new fit"
        )
    parameters = [parameter.shape for parameter in model.parameters()]
    if not (
        isinstance(optimizer_states, list)
        and len(optimizer_states) == 1
        and optimizer_fits(optimizer_states[0], parameters)
    ):
        raise LenetError(
            f"checkpoint {name}: its optimizer state does not fit this model's {len(parameters)} parameters "
            "(damaged, or saved with another --optimizer), so fit cannot resume it; start a new fit"
        )
    trainer = config.get("trainer") or {}
    progress = ((loops.get("fit_loop") or {}).get("epoch_progress") or {}).get("current") or {}
    epochs, steps = progress.get("processed"), checkpoint.get("global_step")
    max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps")
    if isinstance(epochs, int) and isinstance(max_epochs, int) and max_epochs >= 0 and epochs >= max_epochs:
        raise LenetError(
            f"checkpoint {name} has already trained {epochs} epochs, and --trainer.max_epochs is {max_epochs}: "
            "nothing is left to resume; raise --trainer.max_epochs to train on"
        )
    if isinstance(steps, int) and isinstance(max_steps, int) and max_steps >= 0 and steps >= max_steps:
        raise LenetError(
            f"checkpoint {name} has already trained {steps} steps, and --trainer.max_steps is {max_steps}: "
            "nothing is left to resume; raise --trainer.max_steps to train on"
        )


def refuse_changed_options(checkpoint: dict[str, Any], config: Any, defaults: Any, path: str | Path) -> None:
    """Fail in one line when ``fit --ckpt_path`` is given optimizer options that differ from the checkpoint's.

    LightningCLI replaces the ``--model.*`` options with the checkpoint's hyperparameters, and the
    restored optimizer and schedule keep the saved learning rate anyway: a new ``--model.lr`` would be
    dropped without a word. Options left at their defaults take the checkpoint's values, as Lightning
    means them to. ``config`` is the subcommand's, ``defaults`` its parser's defaults.
    """
    hparams = checkpoint.get("hyper_parameters")
    hparams = hparams if isinstance(hparams, dict) else {}
    model, model_defaults = config.get("model") or {}, defaults.get("model") or {}
    for key in OPTIMIZER_HPARAMS:
        ours, saved = model.get(key), hparams.get(key)
        if key in hparams and ours != model_defaults.get(key) and ours != saved:
            raise LenetError(
                f"--model.{key} {ours} differs from the {escaped(saved)} that checkpoint {escaped(path)} was trained "
                f"with: a resumed fit continues its optimizer and schedule; leave --model.{key} out, or start a new fit"
            )


def optimizer_fits(state: Any, parameters: list[torch.Size]) -> bool:
    """Whether an optimizer ``state_dict`` covers exactly ``parameters``, with per-parameter tensors of their shapes."""
    if not isinstance(state, dict) or not isinstance(state.get("param_groups"), list):
        return False
    groups, per_parameter = state["param_groups"], state.get("state", {})
    if not all(isinstance(group, dict) and isinstance(group.get("params"), list) for group in groups):
        return False
    ids = [index for group in groups for index in group["params"]]
    if not all(type(index) is int for index in ids) or sorted(ids) != list(range(len(parameters))):
        return False
    if not isinstance(per_parameter, dict):
        return False
    for index, values in per_parameter.items():
        if index not in range(len(parameters)) or not isinstance(values, dict):
            return False
        for value in values.values():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != parameters[index]:
                return False
    return True


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint (``--checkpoint.*``), but ``save_last`` writes ``last.ckpt`` at the end of
    every training epoch, as its name promises.

    Lightning rewrites ``last.ckpt`` only when it writes another checkpoint: after epochs that do not
    improve ``best.ckpt`` it lags behind, ``--ckpt_path last`` retrains them and a kill loses them.
    """

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's own key: checkpoints saved with either class resume with the other.
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)  # best.ckpt and last.ckpt when saving on epoch end
        if self.save_last:
            save_last_checkpoint(self, trainer)  # if not written at this step already


class ResumedRun(Callback):
    """When ``fit`` starts from a checkpoint: say which run it continues, and keep its best score.

    ModelCheckpoint forgets the best score when its folder changes (it warns "The dirpath has
    changed"): the new run would then save the first epoch after the resume as ``best.ckpt``, however
    bad, while EarlyStopping still compares with the old best. Pointing the saved state at the new
    folder keeps one best across the interruption. Nothing path-like in that state is trusted
    (:func:`confined_state`): the old run's files are never removed, nor any other file.
    """

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.ckpt_path is None:
            return
        log_dir = trainer.log_dir  # broadcasts: on every rank
        if trainer.is_global_zero:
            print_safely(
                f"resuming {run_folder_of_checkpoint(trainer.ckpt_path)} from {trainer.ckpt_path} "
                f"(epoch {checkpoint.get('epoch')}, global step {checkpoint.get('global_step')}) as {log_dir}"
            )
        states = checkpoint.get("callbacks")
        if not isinstance(states, dict):
            checkpoint["callbacks"] = states = {}
        checkpoint_folder = Path(trainer.ckpt_path).parent
        for callback in trainer.checkpoint_callbacks:
            key = callback.state_key
            if not isinstance(callback, ModelCheckpoint) or key not in states or callback.dirpath is None:
                continue
            states[key], refused = confined_state(states[key], callback, checkpoint_folder)
            if refused and trainer.is_global_zero:
                print_safely(
                    f"warning: {escaped(trainer.ckpt_path)}: ignoring the file names in its checkpoint state that "
                    f"are not files beside it: {', '.join(escaped(name) for name in refused[:3])}"
                )


def confined_state(state: Any, callback: ModelCheckpoint, checkpoint_folder: Path) -> tuple[dict[str, Any], list[str]]:
    """A ModelCheckpoint state from a checkpoint in ``checkpoint_folder``, safe for ``callback`` to load.

    Lightning deletes "previous" checkpoints named in this state when they lie in the callback's folder,
    judged on the path's text: ``new/checkpoints/../../../../anything`` passes, so a crafted checkpoint
    could make a resumed fit delete any file or folder. Here a saved path counts only as a file name in
    the checkpoint's own folder (the interrupted run's, which is never the new run's): kept when that
    file exists, dropped otherwise. The new run's ``last.ckpt`` starts unnamed, so nothing of the old
    run is ever a "previous" file to remove. Returns the state and the paths that were dropped.
    """
    state = state if isinstance(state, dict) else {}
    refused: list[str] = []

    def confined(path: Any) -> str | None:
        if not path:
            return None
        name = Path(str(path)).name
        candidate = checkpoint_folder / name
        if "://" in str(path) or name in ("", ".", "..") or not candidate.is_file():
            refused.append(str(path))
            return None
        real = os.path.realpath(candidate)
        relative = os.path.relpath(real)
        return real if relative.startswith("..") else relative  # no ".." left for a textual parent check

    best_k_models = {}
    saved = state.get("best_k_models")
    for path, score in saved.items() if isinstance(saved, dict) else ():
        if (kept := confined(path)) is not None and (value := score_tensor(score)) is not None:
            best_k_models[kept] = value
    clean: dict[str, Any] = {
        "monitor": state.get("monitor") if isinstance(state.get("monitor"), str) else None,
        "dirpath": callback.dirpath,
        "best_k_models": best_k_models,
        "current_score": score_tensor(state.get("current_score")),
        "last_model_path": "",
        "kth_best_model_path": "",
        "kth_value": callback.kth_value,
        "best_model_path": confined(state.get("best_model_path")) or "",
        "best_model_score": score_tensor(state.get("best_model_score")),
    }
    confined(state.get("kth_best_model_path"))  # only to report it when it points elsewhere
    confined(state.get("last_model_path"))
    if best_k_models:
        # Recomputed as Lightning does, so that its look-ups into best_k_models find their keys.
        worst, best = (max, min) if callback.mode == "min" else (min, max)
        clean["kth_best_model_path"] = worst(best_k_models, key=lambda path: float(best_k_models[path]))
        clean["kth_value"] = best_k_models[clean["kth_best_model_path"]]
        clean["best_model_path"] = best(best_k_models, key=lambda path: float(best_k_models[path]))
        clean["best_model_score"] = best_k_models[clean["best_model_path"]]
    elif not clean["best_model_path"]:
        clean["best_model_score"] = None
    return clean, list(dict.fromkeys(refused))


def score_tensor(value: Any) -> torch.Tensor | None:
    """A saved score as the 0-d float tensor Lightning compares with, or None for anything else."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        return value.detach().reshape(())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value))
    return None


class StoppedAtOnce(BaseException):
    """A second Ctrl-C during ``fit``: stop without saving; ``main()`` exits with 130 like for any Ctrl-C.

    Not a KeyboardInterrupt, which Lightning's trainer catches and turns into exit status 1.
    """


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
                raise StoppedAtOnce  # the second Ctrl-C: stop now
            self.signal = signal.SIGINT
            if trainer.is_global_zero:
                print_safely("\nCtrl-C: stopping after this batch to save a checkpoint (Ctrl-C again stops at once)")
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
        interrupted = graceful or isinstance(exception, (KeyboardInterrupt, StoppedAtOnce))
        # Other errors get the hint only once this run has a checkpoint: a bad input stays one line.
        if not trainer.is_global_zero or not (interrupted or last.is_file()):
            return
        log_dir = getattr(trainer.logger, "log_dir", None) or trainer.default_root_dir  # no broadcast here
        names = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
        reason = names[self.signal] if self.signal is not None else type(exception).__name__
        resume_from = last if last.is_file() else trainer.ckpt_path
        if resume_from is None:
            print_safely(f"{reason}: stopped before the first checkpoint; nothing to resume")
            return
        print_safely(
            f"{reason}: stopped at epoch {trainer.current_epoch}, global step {trainer.global_step}; "
            f"resume from {resume_from} with:\n  {resume_command(log_dir, resume_from)}"
        )
