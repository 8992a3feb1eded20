"""Metrics that never read a value back to the host during an epoch (a GPU sync costs more than LeNet's step)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


class WeightedMean(Metric):
    """Mean of per-batch values weighted by batch size; exact under DDP, where the sums are all-reduced.

    (torchmetrics' MeanMetric either syncs with the host per update to check for NaN or, with
    ``nan_strategy="disable"``, drops the weights.)
    """

    full_state_update = False
    total: Tensor
    count: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, value: Tensor, count: int) -> None:
        self.total += value.detach() * count
        self.count += count

    def compute(self) -> Tensor:
        return self.total / self.count


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
