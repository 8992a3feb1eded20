"""LeNet-5 as a LightningModule: the network, its loss/metrics per stage and its optimiser."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lenet_cli.graphs import GraphedTraining
from lenet_cli.lightning_internals import attached_trainer
from lenet_cli.metrics import WeightedMean


class LeNet(GraphedTraining):
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
        channels_last: NHWC memory format for the convolutions. ``None``: on the CPU only, where
            oneDNN runs them ~10 % faster so (on a GPU the conversions cost more than they save).
        cuda_graph: On a CUDA device, replay the training step (forward, backward, DDP's all-reduce)
            from a CUDA graph (``lenet_cli.graphs``); where it cannot, it warns and trains eagerly.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        lr: float = 2e-4,
        lr_schedule: Literal["constant", "onecycle"] = "constant",
        weight_decay: float = 0.0,
        compile: bool = False,
        channels_last: bool | None = None,
        cuda_graph: bool = False,
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
        # Loss means are metrics too, so that DDP averages them exactly. Training sums its loss and
        # correct predictions per step into one tensor (a single add, or part of the CUDA graph) and
        # hands them to its metrics once per epoch. validate_args=False: the argument checks read
        # values back to the host, one GPU sync per step.
        self.train_loss, self.train_acc = WeightedMean(), WeightedMean()
        self.val_loss = WeightedMean()
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.test_loss = WeightedMean()
        self.test_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self._train_sums = torch.zeros(2)  # (loss × batch size, correct) summed over the epoch
        self._train_count = 0
        self._network = self._forward
        self._channels_last = bool(channels_last)  # until a trainer's device decides (configure_model)
        if compile:
            self._network = torch.compile(self._forward)

    def _forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.features(images))

    def forward(self, images: Tensor) -> Tensor:
        """Logits (B, num_classes) for normalised images (B, in_channels, 32, 32)."""
        if self._channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self._network(images)

    def configure_model(self) -> None:
        # Called by the trainer before the model moves to its device: the device is the strategy's.
        setting = self.hparams.channels_last
        if setting is None:
            trainer = attached_trainer(self)
            setting = trainer is not None and trainer.strategy.root_device.type == "cpu"
        self._channels_last = setting
        if self._channels_last:
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
        # Once per epoch: each self.log costs ~0.1 ms of Lightning's Python, a real share of a 2 ms step.
        # compute() all-reduces under DDP; sync_dist then averages equal numbers (and keeps Lightning quiet).
        for name in ("loss", "acc"):
            metric = getattr(self, f"{stage}_{name}")
            self.log(f"{stage}/{name}", metric.compute(), prog_bar=stage == "val", sync_dist=True)
            metric.reset()

    def train_outputs(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The loss and (loss × batch size, correct predictions) of a training batch."""
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        correct = (logits.argmax(dim=1) == labels).sum()
        return loss, torch.stack((loss.detach() * len(labels), correct.to(loss.dtype)))

    def on_train_start(self) -> None:
        super().on_train_start()  # the CUDA graph, when configured
        self.on_train_epoch_start()  # a run resumed mid-epoch starts without that hook

    def on_train_epoch_start(self) -> None:
        self._train_sums = torch.zeros(2, device=self.device)
        self._train_count = 0

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels, _ = batch
        loss, sums = self.training_outputs(images, labels)  # replayed from the CUDA graph when there is one
        self._train_sums += sums
        self._train_count += len(labels)
        every = self.trainer.log_every_n_steps
        if every and (self.global_step + 1) % every == 0:
            # Only on the steps Lightning writes (its test is the same): a logged tensor becomes a
            # number, a GPU sync, when written. A clone: the next replay overwrites the graph's loss.
            self.log("train/step_loss", loss.detach().clone(), on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        _, logits = self._step(batch, "test")
        return {"predictions": logits.argmax(dim=1)}  # read by the evaluation report callback

    def on_train_epoch_end(self) -> None:
        if self._train_count:
            loss_sum, correct = self._train_sums
            self.train_loss.update(loss_sum / self._train_count, self._train_count)
            self.train_acc.update(correct / self._train_count, self._train_count)
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
        # Fused Adam updates all parameters in one kernel: on a GPU one launch instead of dozens, on
        # the CPU 0.22 ms a step instead of 0.49 (torch's default there runs one parameter at a time).
        optimizer = torch.optim.Adam(
            self.parameters(),
            lr=self.hparams.lr,
            weight_decay=self.hparams.weight_decay,
            fused=self.device.type in ("cuda", "cpu"),
        )
        if self.hparams.lr_schedule == "constant":
            return optimizer
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.hparams.lr, total_steps=int(self.trainer.estimated_stepping_batches)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
