"""LeNet-5 as a LightningModule: the network, its loss/metrics per stage and its optimiser."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

STAGES = ("train", "val", "test")


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
        # validate_args=False and nan_strategy="disable": their checks read values back to the host,
        # one GPU sync per step. Loss means are metrics too, so that DDP averages them exactly.
        for stage in STAGES:
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro", validate_args=False))
            setattr(self, f"{stage}_loss", MeanMetric(nan_strategy="disable"))
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

    def _step(self, batch: tuple[Tensor, Tensor, Tensor], stage: str) -> Tensor:
        images, labels, _ = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        accuracy, mean_loss = getattr(self, f"{stage}_acc"), getattr(self, f"{stage}_loss")
        accuracy.update(logits, labels)
        mean_loss.update(loss.detach(), weight=len(labels))
        on_step = stage == "train"
        self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=not on_step)
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=not on_step)
        if on_step:
            # Converted to a number only every log_every_n_steps / progress-bar refresh.
            self.log("train/step_loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

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
