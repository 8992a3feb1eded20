"""The MNIST datamodule, the IDX files it reads, the augmentation, and the bundled MNIST (``datasets/``)."""

from __future__ import annotations

import importlib
import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    # lenet-cli 0.2's class path lenet_cli.data.MNISTDataModule, kept for one release (CHANGELOG).
    if name == "MNISTDataModule":
        MNISTDataModule = importlib.import_module("lenet_cli.data.mnist").MNISTDataModule

        warnings.warn(
            "lenet_cli.data.MNISTDataModule is lenet_cli.data.mnist.MNISTDataModule since 0.3", DeprecationWarning, 2
        )
        return MNISTDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
