"""`lenet`: a LightningCLI that trains, evaluates and runs LeNet on MNIST-style digit images.

``lenet_cli.read(image)`` and ``lenet_cli.Reader`` read digits without torch; they are imported on first
use, so ``import lenet_cli`` stays cheap (no NumPy, OpenCV or ONNX Runtime until then).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.3.0"

# Lazy attributes → (module, name). By name, not by import statement: this module is the package's lowest
# level (tests/test_layout.py), and the reader sits above it.
_LAZY = {
    "read": ("lenet_cli.reading.reader", "read"),
    "Reader": ("lenet_cli.reading.reader", "Reader"),
    "Reading": ("lenet_cli.reading.result", "Reading"),
    "Digit": ("lenet_cli.reading.result", "Digit"),
}
__all__ = ["Digit", "Reader", "Reading", "__version__", "read"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'lenet_cli' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    return getattr(importlib.import_module(module), attribute)
