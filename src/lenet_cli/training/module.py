"""LeNet-5 as a LightningModule: the network (:class:`~lenet_cli.training.network.LeNet5`), its loss and
metrics per stage, and its optimiser."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from lenet_cli.training.cuda_graph import GraphedTraining
from lenet_cli.training.metrics import OUTLIER_WEIGHT, EpochMeans, batch_sums
from lenet_cli.training.network import LeNet5, upgraded


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
        compile: Compile the model in place with ``torch.compile`` when a trainer sets it up (pays a
            compile time at start-up).
        channels_last: NHWC memory format for the convolutions. ``None``: on the CPU only, where
            oneDNN runs them ~10 % faster so (on a GPU the conversions cost more than they save).
        cuda_graph: On a CUDA device, replay the training step (forward, backward, DDP's all-reduce)
            from a CUDA graph (``lenet_cli.graphs``); where it cannot, it warns and trains eagerly.
        outlier_weight: Weight of the outlier-exposure term for pictures of no digit (``--data.negatives``)
            against the digits' cross-entropy (``lenet_cli.training.metrics.batch_sums``).
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
        outlier_weight: float = OUTLIER_WEIGHT,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.network = LeNet5(in_channels, num_classes)
        self.example_input_array = torch.zeros(1, in_channels, 32, 32)
        # One metric per stage holds the epoch's sums (loss × batch size, correct, count): one add per
        # step on the device (part of the CUDA graph's outputs in training), all-reduced once an epoch.
        self.train_means, self.val_means, self.test_means = EpochMeans(), EpochMeans(), EpochMeans()

    def forward(self, images: Tensor) -> Tensor:
        """Logits (B, num_classes) for normalised images (B, in_channels, 32, 32)."""
        return self.network(images)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = upgraded(checkpoint["state_dict"])  # a 0.2 checkpoint's layer names

    def train_outputs(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The loss and :func:`~lenet_cli.metrics.batch_sums` of a training batch (captured as it is)."""
        return batch_sums(self(images), labels, self.hparams.outlier_weight)

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels, _ = batch
        loss, sums = self.training_outputs(images, labels)  # replayed from the CUDA graph when there is one
        self.train_means.update(sums)
        every = self.trainer.log_every_n_steps
        if every and (self.global_step + 1) % every == 0:
            # Only on the steps Lightning writes (its test is the same): a logged tensor becomes a
            # number, a GPU sync, when written. A clone: the next replay overwrites the graph's loss.
            self.log("train/step_loss", loss.detach().clone(), on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        images, labels, _ = batch
        self.val_means.update(batch_sums(self(images), labels, self.hparams.outlier_weight)[1])

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        images, labels, _ = batch
        logits = self(images)
        self.test_means.update(batch_sums(logits, labels, self.hparams.outlier_weight)[1])
        return {"predictions": logits.argmax(dim=1)}  # read by the evaluation report callback

    def predict_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        images, labels, indices = batch
        probabilities = self(images).float().softmax(dim=1)
        return {"probabilities": probabilities, "labels": labels, "indices": indices}

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def _log_epoch(self, stage: str) -> None:
        # Once per epoch: each self.log costs ~0.1 ms of Lightning's Python, a real share of a 2 ms step.
        # compute() all-reduces under DDP; sync_dist then averages equal numbers (and keeps Lightning quiet).
        means = getattr(self, f"{stage}_means")
        for name, value in means.compute().items():
            self.log(f"{stage}/{name}", value, prog_bar=stage == "val", sync_dist=True)
        means.reset()

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
