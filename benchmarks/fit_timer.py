"""A callback that times the training of a `lenet fit` run and writes the numbers as JSON (each rank).

    LENET_FIT_TIMER=out.json lenet fit ... --trainer.callbacks+=benchmarks.fit_timer.FitTimer

(run from the repository root, or with it on PYTHONPATH). Two clocks, GPUs synchronised at each read:
- fit: from the start of the first training epoch to the end of the last; excludes process start-up,
  DDP set-up and data loading, includes validation and checkpointing, as a user's fit does.
- train: the training batches of each epoch only (from the epoch's start to its validation), so
  "train images/s" is training throughput. The first epoch (cuDNN/NCCL warm-up, CUDA-graph capture) is
  left out of it when there are more.
On a GPU it also times every training step with CUDA events (no sync): "step_ms_median" is a steady
step, "epoch_start_ms" what the first steps of an epoch cost beyond that (epochs after the first).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class FitTimer(Callback):
    def __init__(self) -> None:
        self.start = 0.0
        self.epoch_start: tuple[float, int] | None = None  # (time, global step)
        self.epochs: list[tuple[float, int]] = []  # (training seconds, optimizer steps) per epoch
        self.events: list[torch.cuda.Event] = []  # at each training batch's start, this epoch
        self.step_ms: list[list[float]] = []  # per epoch, each step's milliseconds on the GPU's clock

    def _clock(self, pl_module: LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.strategy.barrier()
        self.start = self._clock(pl_module)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.epoch_start = (self._clock(pl_module), trainer.global_step)
        self.events = []

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int) -> None:
        if pl_module.device.type == "cuda" and self.epoch_start is not None:
            self.events.append(torch.cuda.Event(enable_timing=True))
            self.events[-1].record()

    def _close_epoch(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.epoch_start is not None:
            started, step = self.epoch_start
            if self.events:
                self.events.append(torch.cuda.Event(enable_timing=True))
                self.events[-1].record()
            self.epochs.append((self._clock(pl_module) - started, trainer.global_step - step))
            self.epoch_start = None
            self.step_ms.append([a.elapsed_time(b) for a, b in zip(self.events, self.events[1:])])

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._close_epoch(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close_epoch(trainer, pl_module)  # epochs without validation

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        seconds = self._clock(pl_module) - self.start
        trainer.strategy.barrier()
        batch_size = trainer.datamodule.hparams.batch_size
        images_per_step = batch_size * trainer.world_size
        steady = self.epochs[1:] or self.epochs
        train_seconds = sum(s for s, _ in steady)
        step_ms = [ms for epoch in self.step_ms[1:] or self.step_ms for ms in epoch]
        median = float(torch.tensor(step_ms).median()) if step_ms else float("nan")
        # The first 3 steps of each epoch beyond a steady step, i.e. what an epoch's start costs.
        starts = [sum(epoch[:3]) - 3 * median for epoch in self.step_ms[1:] if len(epoch) > 3]
        numbers = {
            "world_size": trainer.world_size,
            "batch_size_per_device": batch_size,
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "fit_seconds": seconds,
            "fit_images_per_second": trainer.global_step * images_per_step / seconds,
            "train_seconds_per_epoch": [s for s, _ in self.epochs],
            "train_images_per_second": sum(n for _, n in steady) * images_per_step / train_seconds,
            "train_ms_per_step": 1e3 * train_seconds / max(1, sum(n for _, n in steady)),
            "step_ms_median": median,
            "epoch_start_ms": sum(starts) / len(starts) if starts else float("nan"),
            "val_acc": float(trainer.callback_metrics.get("val/acc", float("nan"))),
            "device": torch.cuda.get_device_name() if pl_module.device.type == "cuda" else "cpu",
        }
        if os.environ.get("LENET_FIT_TIMER"):
            # Rank 0 writes the file named; under DDP the others write out.rank1.json, ... beside it, so a
            # rank whose host is slower (and paces the others through the all-reduce) shows.
            path = Path(os.environ["LENET_FIT_TIMER"])
            if trainer.global_rank:
                path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
            path.write_text(json.dumps(numbers))
