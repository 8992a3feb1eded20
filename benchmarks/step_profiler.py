"""A callback that runs torch.profiler over a few training steps of a `lenet fit` and writes its tables.

    LENET_PROFILE_STEPS=200:230 LENET_PROFILE_OUT=prof lenet fit ... \\
        --trainer.callbacks+=benchmarks.step_profiler.StepProfiler

(from the repository root, or with it on PYTHONPATH). Every rank writes ``prof/rank{N}.txt``: the
host time per step, and the profiler's operators and Lightning/DDP regions sorted by CPU time — what
a step costs beyond the network's own kernels (used to compare one GPU with DDP, docs/benchmarks.md).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.profiler import ProfilerActivity, profile


class StepProfiler(Callback):
    def __init__(self) -> None:
        first, _, last = os.environ.get("LENET_PROFILE_STEPS", "200:230").partition(":")
        self.first, self.last = int(first), int(last)
        self.output = Path(os.environ.get("LENET_PROFILE_OUT", "profile"))
        self.profiler: profile | None = None
        self.started = 0.0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.first and self.profiler is None:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if pl_module.device.type == "cuda" else [])
            self.profiler = profile(activities=activities)
            self.profiler.__enter__()
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if self.profiler is not None and trainer.global_step == self.last:
            seconds = time.perf_counter() - self.started
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)
            self.profiler.__exit__(None, None, None)
            steps = self.last - self.first
            table = self.profiler.key_averages().table(sort_by="cpu_time_total", row_limit=60, max_name_column_width=70)
            self.output.mkdir(parents=True, exist_ok=True)
            (self.output / f"rank{trainer.global_rank}.txt").write_text(
                f"world size {trainer.world_size}, steps {self.first}..{self.last}: "
                f"{1e3 * seconds / steps:.3f} ms a step (host, profiler on)\n\n{table}\n"
            )
            self.profiler = None
