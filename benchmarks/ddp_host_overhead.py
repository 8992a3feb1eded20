"""Lightning's own host time per training step when the step itself costs nothing, 1 process vs DDP.

    python benchmarks/ddp_host_overhead.py --devices 1
    python benchmarks/ddp_host_overhead.py --devices 2                      # gloo on the CPU
    python benchmarks/ddp_host_overhead.py --devices 2 --accelerator gpu    # NCCL

The model's step returns a ready tensor and skips backward and zero_grad, as a step replayed from a
CUDA graph does (lenet_cli.graphs), so what is timed is Lightning's loop around it, plus under DDP the
DDP forward wrapper and Lightning's DDP strategy. lenet's throttle of Lightning's per-step SIGTERM
broadcast is applied, as `lenet fit` does (lenet_cli/distributed.py). Each rank prints its µs a step
over the steps after the first 100.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lenet_cli.distributed import throttle_sigterm_broadcast


class Replayed(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)  # DDP needs a parameter

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer.bias.detach().sum()  # a ready result: no arithmetic worth the name

    def optimizer_zero_grad(self, *args: object) -> None:
        pass

    def backward(self, *args: object, **kwargs: object) -> None:
        pass

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


class Clock(Callback):
    def __init__(self, skip: int = 100) -> None:
        self.skip, self.start = skip, 0.0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int) -> None:
        if batch_idx == self.skip:
            self.start = time.perf_counter()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        steps = trainer.global_step - self.skip
        microseconds = 1e6 * (time.perf_counter() - self.start) / steps
        print(f"rank {trainer.global_rank} of {trainer.world_size}: {microseconds:.0f} µs a step", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--steps", type=int, default=3000)
    options = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    trainer = Trainer(
        accelerator=options.accelerator, devices=options.devices, strategy="ddp" if options.devices > 1 else "auto",
        max_epochs=1, logger=False, enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
        callbacks=[Clock()],
    )  # fmt: skip
    throttle_sigterm_broadcast(trainer)
    batches = [torch.zeros(1, 4)] * (options.steps * options.devices)  # each rank gets `steps` of them
    trainer.fit(Replayed(), torch.utils.data.DataLoader(batches, batch_size=None))


if __name__ == "__main__":
    main()
