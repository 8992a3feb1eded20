"""LeNet-5 as a LightningModule: the network, its loss/metrics per stage and its optimiser."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

STAGES = ("train", "val", "test")


class WeightedMean(Metric):
    """Mean of per-batch values weighted by batch size; exact under DDP, where the sums are all-reduced.

    (torchmetrics' MeanMetric either syncs with the host per update to check for NaN or, with
    ``nan_strategy="disable"``, drops the weights.)
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, value: Tensor, count: int) -> None:
        self.total += value.detach() * count
        self.count += count

    def compute(self) -> Tensor:
        return self.total / self.count


class LeNet(LightningModule):
    """LeNet for 32×32 inputs: conv 6@5×5 → pool → conv 16@5×5 → pool → FC 120 → 84 → classes.

    Args:
        in_channels: Image channels (1 for MNIST); linked from the datamodule.
        num_classes: Output classes; linked from the datamodule.
        lr: Adam learning rate (the peak rate when ``lr_schedule="onecycle"``).
        lr_schedule: ``"constant"`` or ``"onecycle"`` (per-step one-cycle over the whole fit, which
            lets large batches reach 99 % in a few epochs). Ignored when ``--optimizer`` or
            ``--lr_scheduler`` is given on the command line.
        weight_decay: Adam weight decay.
        compile: Wrap the network in ``torch.compile`` (pays a compile time at start-up).
        channels_last: Keep conv activations in NHWC memory format.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        lr: float = 2e-4,
        lr_schedule: Literal["constant", "onecycle"] = "constant",
        weight_decay: float = 0.0,
        compile: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),  # (B, 6, 28, 28)
            nn.MaxPool2d(2),  # (B, 6, 14, 14)
            nn.ReLU(),
            nn.Conv2d(6, 16, kernel_size=5),  # (B, 16, 10, 10)
            nn.MaxPool2d(2),  # (B, 16, 5, 5)
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (B, 400)
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )
        self.example_input_array = torch.zeros(1, in_channels, 32, 32)
        # validate_args=False: the argument checks read values back to the host, one GPU sync per step.
        # Loss means are metrics too, so that DDP averages them exactly.
        for stage in STAGES:
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro", validate_args=False))
            setattr(self, f"{stage}_loss", WeightedMean())
        self._network = self._forward
        if compile:
            self._network = torch.compile(self._forward)

    def _forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.features(images))

    def forward(self, images: Tensor) -> Tensor:
        """Logits (B, num_classes) for normalised images (B, in_channels, 32, 32)."""
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self._network(images)

    def configure_model(self) -> None:
        if self.hparams.channels_last:
            self.features.to(memory_format=torch.channels_last)

    def _step(self, batch: tuple[Tensor, Tensor, Tensor], stage: str) -> tuple[Tensor, Tensor]:
        """Loss and logits of one batch; accumulates the stage's metrics on the device (no host sync)."""
        images, labels, _ = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        getattr(self, f"{stage}_acc").update(logits, labels)
        getattr(self, f"{stage}_loss").update(loss, len(labels))
        return loss, logits

    def _log_epoch(self, stage: str) -> None:
        # Logged once per epoch, not per step: each self.log call costs ~0.1 ms of Python in Lightning's
        # result collection, a real share of a 2 ms step. compute() all-reduces the sums under DDP, so
        # every rank holds the exact value; sync_dist then averages equal numbers (and keeps Lightning
        # from warning).
        for name in ("loss", "acc"):
            metric = getattr(self, f"{stage}_{name}")
            self.log(f"{stage}/{name}", metric.compute(), prog_bar=stage == "val", sync_dist=True)
            metric.reset()

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, _ = self._step(batch, "train")
        every = self.trainer.log_every_n_steps
        if every and (self.global_step + 1) % every == 0:
            # Only on the steps Lightning writes (its test is the same): a logged tensor becomes a
            # number, a GPU sync, when written.
            self.log("train/step_loss", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        _, logits = self._step(batch, "test")
        return {"predictions": logits.argmax(dim=1)}  # read by the evaluation report callback

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        images, labels, indices = batch
        probabilities = self(images).float().softmax(dim=1)
        return {"probabilities": probabilities, "labels": labels, "indices": indices}

    def configure_optimizers(self) -> Any:
        # Fused Adam does the update of all parameters in one kernel: fewer launches per step on GPU.
        optimizer = torch.optim.Adam(
            self.parameters(),
            lr=self.hparams.lr,
            weight_decay=self.hparams.weight_decay,
            fused=self.device.type == "cuda",
        )
        if self.hparams.lr_schedule == "constant":
            return optimizer
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.hparams.lr, total_steps=self.trainer.estimated_stepping_batches
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
