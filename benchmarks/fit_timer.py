"""A callback that times the training of a `lenet fit` run and writes the numbers as JSON (rank 0).

    LENET_FIT_TIMER=out.json lenet fit ... --trainer.callbacks+=benchmarks.fit_timer.FitTimer

(run from the repository root, or with it on PYTHONPATH). Training time is from the start of the
first training epoch to the end of the last, GPUs synchronised, so it excludes process start-up,
DDP set-up and data loading but includes validation and checkpointing, as a user's fit does.
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

    def _synchronize(self, pl_module: LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.strategy.barrier()
        self._synchronize(pl_module)
        self.start = time.perf_counter()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._synchronize(pl_module)
        trainer.strategy.barrier()
        seconds = time.perf_counter() - self.start
        batch_size = trainer.datamodule.hparams.batch_size
        images = trainer.global_step * batch_size * trainer.world_size
        numbers = {
            "world_size": trainer.world_size,
            "batch_size_per_device": batch_size,
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "fit_seconds": seconds,
            "train_images_per_second": images / seconds,
            "val_acc": float(trainer.callback_metrics.get("val/acc", float("nan"))),
            "device": torch.cuda.get_device_name() if pl_module.device.type == "cuda" else "cpu",
        }
        if trainer.global_rank == 0 and os.environ.get("LENET_FIT_TIMER"):
            Path(os.environ["LENET_FIT_TIMER"]).write_text(json.dumps(numbers))
