"""The callback of ``benchmarks/latency.py``: wall-clock timestamps of a fit, read by the parent process."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback

CLOCK_VARIABLE = "LENET_LATENCY_CLOCK"


class Clock(Callback):
    """Writes wall-clock timestamps of a fit (setup, train start, first step, train end) to $LENET_LATENCY_CLOCK.

    With ``LENET_LATENCY_STOP=1`` the fit stops after its first training step.
    """

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.stop_after_first_step = os.environ.get("LENET_LATENCY_STOP") == "1"

    def _mark(self, name: str, pl_module: Any) -> None:
        if name in self.marks:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.marks[name] = time.time()
        path = os.environ.get(CLOCK_VARIABLE)
        if path:
            Path(path).write_text(json.dumps(self.marks))

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._mark("setup", pl_module)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._mark("train_start", pl_module)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._mark("first_step", pl_module)
        if self.stop_after_first_step:
            trainer.should_stop = True

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._mark("train_end", pl_module)
