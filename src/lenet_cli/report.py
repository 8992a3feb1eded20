"""Deprecated since 0.3 (removed in 0.4): ``lenet_cli.report`` is ``lenet_cli.outputs.report``."""

import warnings

from lenet_cli.outputs.report import EvaluationReport

__all__ = ["EvaluationReport"]
warnings.warn(
    "lenet_cli.report.EvaluationReport is lenet_cli.outputs.report.EvaluationReport since 0.3; "
    "the old path goes in 0.4",
    DeprecationWarning,
    stacklevel=2,
)
