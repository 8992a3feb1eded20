"""Lightning's DDP, kept free of per-step host syncs and shut down cleanly."""

from __future__ import annotations

import atexit
import re

import torch.distributed
from lightning.pytorch import Trainer

from lenet_cli._lightning import thin_sigterm_broadcast

SIGTERM_CHECK_EVERY_N_STEPS = 50


def throttle_sigterm_broadcast(trainer: Trainer, every_n_steps: int = SIGTERM_CHECK_EVERY_N_STEPS) -> None:
    """Let DDP ranks agree on a SIGTERM every ``every_n_steps`` training steps instead of every step.

    Lightning 2.6 broadcasts a "SIGTERM received" flag from rank 0 and reads it back with ``.item()``
    before every DDP training step (Lightning PR #20825): a host-device sync per step, which stops
    the CPU from queueing the next step while the GPU runs this one. For LeNet, whose steps are ~2 ms
    of kernel launches, that made 2 GPUs slower than 1 (docs/benchmarks.md).
    Lightning issue #21487 / PR #21640 propose this same throttle as a Trainer option; until a release
    has it, the loop's method is wrapped here. All ranks run the same steps (equal training shards),
    so they broadcast at the same global steps. A stop then takes up to ``every_n_steps`` steps
    (~0.1 s for LeNet), far inside any SIGTERM grace period.
    """
    if every_n_steps > 1:
        thin_sigterm_broadcast(trainer, every_n_steps)


# What gloo and NCCL say when the process at the other end of a collective died or vanished.
PEER_GONE = ("Connection reset by peer", "Connection closed by peer", "remote process exited", "Socket Timeout")


def peer_failure(error: BaseException) -> str | None:
    """One line for ``error`` when it says that another process of this distributed run failed or
    vanished (killed, out of memory, its node lost), else None: such errors are no bug of this process.

    gloo raises a plain RuntimeError ("Read error ...: Connection reset by peer") within a second or
    two of the peer's death, so the survivors stop instead of waiting in the next collective.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    if not isinstance(error, torch.distributed.DistError) and not any(marker in str(error) for marker in PEER_GONE):
        return None
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    detail = re.sub(r"^\[[^\]]*\]\s*", "", detail).split(". ")[0]  # gloo's "[.../pair.cc:545] Read error ..."
    rank, size = torch.distributed.get_rank(), torch.distributed.get_world_size()
    return (
        f"rank {rank} of {size}: another process of this distributed run failed or disappeared ({detail[:160]}); "
        "its own output says why"
    )


def destroy_process_group() -> None:
    """Destroy the default process group, if one is up; registered with ``atexit`` below, on import.

    Lightning destroys the group at exit only for NCCL. A gloo group (CPU DDP) left to interpreter
    finalization sometimes kills a rank with "terminate called without an active exception" (SIGABRT)
    after the run has finished and written everything (about 1 run in 6 of ``lenet test`` on 2 CPU
    processes). PyTorch issue #190489; its atexit fix (PR #179291) was abandoned. Registered once,
    when ``lenet`` is imported and before any group exists, it runs after every later atexit handler:
    Lightning's own NCCL teardown and ``GraphedStep.release`` come first.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


atexit.register(destroy_process_group)
