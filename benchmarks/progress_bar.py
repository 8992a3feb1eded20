"""What Lightning's progress bar costs a training step, with a model that does next to no arithmetic.

    python benchmarks/progress_bar.py --steps 2000

Each setting is timed twice (host time per step of ``trainer.fit``, CPU, 1 thread); the bar's output
goes wherever stderr goes, as in a real run. lenet redraws its default bar every
``lenet_cli.cli.PROGRESS_BAR_REFRESH_RATE`` batches (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar


class Tiny(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer(batch).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def microseconds_per_step(refresh_rate: int | None, steps: int) -> float:
    bar = {"callbacks": [TQDMProgressBar(refresh_rate)]} if refresh_rate else {"enable_progress_bar": False}
    trainer = Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_model_summary=False, **bar)
    data = torch.utils.data.DataLoader(torch.zeros(steps, 4), batch_size=1)
    start = time.perf_counter()
    trainer.fit(Tiny(), data)
    return 1e6 * (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    options = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    settings = [None, 1, 10, 100]
    results = {setting: [] for setting in settings}
    for _ in range(2):
        for setting in settings:
            results[setting].append(microseconds_per_step(setting, options.steps))
    for setting, times in results.items():
        label = "no bar" if setting is None else f"redrawn every {setting} batch{'es' if setting > 1 else ''}"
        print(f"{label:28} {' '.join(f'{t:6.0f}' for t in times)} µs a step", file=sys.stdout, flush=True)


if __name__ == "__main__":
    main()
