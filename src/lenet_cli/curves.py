"""Deprecated since 0.3 (removed in 0.4): ``lenet_cli.curves`` is ``lenet_cli.outputs.curves``."""

import warnings

from lenet_cli.outputs.curves import TrainingCurves

__all__ = ["TrainingCurves"]
warnings.warn(
    "lenet_cli.curves.TrainingCurves is lenet_cli.outputs.curves.TrainingCurves since 0.3; the old path goes in 0.4",
    DeprecationWarning,
    stacklevel=2,
)
