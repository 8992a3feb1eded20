"""Metrics that never read a value back to the host during an epoch (a GPU sync costs more than LeNet's step)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

OUTLIER_WEIGHT = 0.5  # of the outlier-exposure term against the digits' cross-entropy (Hendrycks et al. use 0.5)


def batch_sums(logits: Tensor, labels: Tensor, outlier_weight: float = OUTLIER_WEIGHT) -> tuple[Tensor, Tensor]:
    """The loss of a batch, and its (loss × batch size, correct predictions, digits in the batch).

    The loss is the digits' cross-entropy; a sample labelled ``-1`` is no digit (``data.negatives``,
    outlier exposure) and adds ``outlier_weight`` × its cross-entropy against the uniform distribution,
    which teaches low confidence there. Both are summed and divided by the batch size: no division by a
    count read back from the device, and without negatives the loss is the mean cross-entropy as before.
    """
    digit = labels >= 0
    log_probabilities = F.log_softmax(logits.float(), dim=1)
    digits_loss = -log_probabilities.gather(1, labels.clamp(min=0)[:, None])[:, 0]
    uniform_loss = -log_probabilities.mean(dim=1)
    loss = torch.where(digit, digits_loss, outlier_weight * uniform_loss).sum() / len(labels)
    correct = (logits.argmax(dim=1) == labels).sum().to(loss.dtype)
    count = digit.sum().to(loss.dtype)
    return loss, torch.stack((loss.detach() * len(labels), correct, count))


class EpochMeans(Metric):
    """An epoch's loss and accuracy from :func:`batch_sums`: one add per step, exact under DDP.

    The three sums are all-reduced once per epoch, so every sample of every rank counts once.
    (torchmetrics' MeanMetric either syncs with the host per update to check for NaN or, with
    ``nan_strategy="disable"``, drops the weights; its accuracy checks its arguments on the host.)
    """

    full_state_update = False
    sums: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("sums", torch.zeros(3), dist_reduce_fx="sum")

    def update(self, sums: Tensor) -> None:
        self.sums += sums

    def compute(self) -> dict[str, Tensor]:
        loss_sum, correct, count = self.sums
        return {"loss": loss_sum / count, "acc": correct / count}


class SamplePredictions(Metric):
    """Every test sample's dataset index, true class and predicted class, gathered over DDP ranks.

    Kept as per-step tensors and concatenated only at ``compute``: an update never reads a value back
    to the host (torchmetrics' confusion matrix update does, through ``torch.bincount`` on CUDA), and
    every sample counts exactly once, since the evaluation batches split the test set without padding.
    """

    full_state_update = False
    indices: list[Tensor]
    labels: list[Tensor]
    predictions: list[Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for state in ("indices", "labels", "predictions"):
            self.add_state(state, default=[], dist_reduce_fx="cat")

    def update(self, indices: Tensor, labels: Tensor, predictions: Tensor) -> None:
        self.indices.append(indices.long())
        self.labels.append(labels.long())
        self.predictions.append(predictions.long())

    def compute(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(indices, labels, predictions)``, each (N,) int64, in the order the samples came."""
        return dim_zero_cat(self.indices), dim_zero_cat(self.labels), dim_zero_cat(self.predictions)
