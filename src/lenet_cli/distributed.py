"""Keeping Lightning's DDP training loop free of per-step host syncs."""

from __future__ import annotations

from lightning.pytorch import Trainer

SIGTERM_CHECK_EVERY_N_STEPS = 50


def throttle_sigterm_broadcast(trainer: Trainer, every_n_steps: int = SIGTERM_CHECK_EVERY_N_STEPS) -> None:
    """Let DDP ranks agree on a SIGTERM every ``every_n_steps`` training steps instead of every step.

    Lightning 2.6 broadcasts a "SIGTERM received" flag from rank 0 and reads it back with ``.item()``
    before every DDP training step (Lightning PR #20825): a host-device sync per step, which stops
    the CPU from queueing the next step while the GPU runs this one. For LeNet, whose steps are ~2 ms
    of kernel launches, that made 2 GPUs slower than 1 (measured on 2 H100s, docs/benchmarks.md).
    Lightning issue #21487 / PR #21640 propose this same throttle as a Trainer option; until a release
    has it, the loop's method is wrapped here. All ranks run the same steps (equal training shards),
    so they broadcast at the same global steps. A stop then takes up to ``every_n_steps`` steps
    (~0.1 s for LeNet), far inside any SIGTERM grace period.
    """
    loop = trainer.fit_loop.epoch_loop
    broadcast = getattr(loop, "_broadcast_sigterm_tensor", None)
    if broadcast is None or every_n_steps <= 1:
        return  # a Lightning without the per-step broadcast, or asked for every step

    def broadcast_every_n_steps() -> None:
        if trainer.global_step % every_n_steps == 0:
            broadcast()

    loop._broadcast_sigterm_tensor = broadcast_every_n_steps
