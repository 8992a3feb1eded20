"""Deprecated since 0.3 (removed in 0.4): ``lenet_cli.model`` is ``lenet_cli.training.module``."""

import warnings

from lenet_cli.training.module import LeNet

__all__ = ["LeNet"]
warnings.warn(
    "lenet_cli.model.LeNet is lenet_cli.training.module.LeNet since 0.3; the old path goes in 0.4",
    DeprecationWarning,
    stacklevel=2,
)
