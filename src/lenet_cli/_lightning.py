"""Every use of Lightning's private API, each in one place with the reason it is needed.

A Lightning release may rename any of these. Where that would silently turn a feature off, lenet
warns once instead (``tests/test_lightning_internals.py`` fails on such a release, so it is noticed).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_warn


@functools.cache
def warn_once(feature: str, missing: str) -> None:
    rank_zero_warn(f"lenet: {feature} is off: this Lightning version has no {missing} (please report it)")


def sigterm_flag(trainer: Trainer) -> Callable[[], None] | None:
    """A function that makes Lightning's loops stop at the next batch boundary, as after a SIGTERM.

    Ctrl-C then takes SIGTERM's orderly path (``resume.StopOnSignal``): Lightning has no public way to
    ask for that stop. ``None`` (and a warning) when this Lightning lacks the flag.
    """
    connector = getattr(trainer, "_signal_connector", None)
    if connector is None or not hasattr(connector, "received_sigterm"):
        warn_once("a checkpoint on the first Ctrl-C", "trainer._signal_connector.received_sigterm")
        return None

    def stop_at_next_batch() -> None:
        connector.received_sigterm = True

    return stop_at_next_batch


def save_last_checkpoint(callback: ModelCheckpoint, trainer: Trainer) -> None:
    """Write ``callback``'s ``last.ckpt`` now, unless it saved at this step already or saves nothing now
    (sanity check, ``fast_dev_run``, not fitting).

    Lightning's ``save_last`` writes ``last.ckpt`` only together with another checkpoint (a new best)
    and has no public way to ask for it (``resume.RunCheckpoint``); its own method keeps the file name,
    version counter and ``"link"`` mode.
    """
    needed = ("_should_skip_saving_checkpoint", "_save_last_checkpoint", "_monitor_candidates")
    if not all(hasattr(callback, name) for name in needed):
        warn_once("last.ckpt after every epoch", "ModelCheckpoint." + "/".join(needed))
        return
    if not callback._should_skip_saving_checkpoint(trainer):
        callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))


def thin_sigterm_broadcast(trainer: Trainer, every_n_steps: int) -> None:
    """Run the per-step DDP SIGTERM broadcast of the training loop only every ``every_n_steps`` steps.

    Lightning 2.6 broadcasts the flag before every training step (PR #20825) through the loop's
    private ``_broadcast_sigterm_tensor``; Lightning PR #21640 proposes a public option for this.
    """
    loop = trainer.fit_loop.epoch_loop
    broadcast = getattr(loop, "_broadcast_sigterm_tensor", None)
    if broadcast is None:
        warn_once("thinning the per-step DDP SIGTERM broadcast", "fit_loop.epoch_loop._broadcast_sigterm_tensor")
        return

    def broadcast_every_n_steps() -> None:
        if trainer.global_step % every_n_steps == 0:
            broadcast()

    loop._broadcast_sigterm_tensor = broadcast_every_n_steps  # type: ignore[method-assign]


def ddp_comm_hook(trainer: Trainer) -> Any:
    """The DDP communication hook the strategy registers (a CUDA graph cannot capture a custom one)."""
    if not hasattr(trainer.strategy, "_ddp_comm_hook"):
        if trainer.world_size > 1:
            warn_once("refusing a CUDA graph with a custom ddp_comm_hook", "strategy._ddp_comm_hook")
        return None
    return trainer.strategy._ddp_comm_hook


def attached_trainer(module: LightningModule) -> Trainer | None:
    """The module's trainer, or None: ``module.trainer`` raises when there is none (a bare model)."""
    return module._trainer


def subcommand_parsers(cli: LightningCLI) -> dict[str, Any]:
    """The parser of each subcommand (``add_arguments_to_parser`` runs before their Trainer options exist)."""
    # None without subcommands (``run=False``). Nothing turns off when it is missing: parse_arguments
    # forces weights_only on the parsed config itself; only --print_config would show Lightning's default.
    return getattr(cli, "_subcommand_parsers", None) or {}


def apply_checkpoint_hyperparameters(cli: LightningCLI, checkpoint: dict[str, Any]) -> None:
    """What ``LightningCLI._parse_ckpt_path`` does, from a checkpoint already in memory.

    LightningCLI (2.6) reads ``--ckpt_path`` with its own ``torch.load`` to put the checkpoint's
    hyperparameters into the model's config; ``LenetCLI`` overrides that private method with this,
    so that the file is read once per command. Should a Lightning release rename the method, the
    override is simply unused and the file read twice (``tests/test_console.py`` counts the reads).
    """
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    hparams.pop("_instantiator", None)
    if not hparams:
        return
    if "_class_path" in hparams:
        hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
    cli.config = cli.parser.parse_object({cli.config.subcommand: {"model": hparams}}, cli.config)
