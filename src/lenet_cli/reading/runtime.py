"""Where the bundled ONNX files lie (the digit classifier, the row reader) and how ONNX Runtime opens a
model for reading: shared by ``reading.model`` and ``reading.rows`` (which ``model`` cannot be imported
by: ``model`` needs ``pipeline``, which needs ``rows``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any


def bundled_folder() -> Path:
    # A name, not an import: lenet_cli.checkpoints is a data folder here (its modules need torch).
    return Path(str(resources.files("lenet_cli") / "checkpoints" / "bundled"))


def session(path: Path, threads: int = 1) -> Any:
    """An ONNX Runtime session of ``path`` on the CPU with ``threads`` intra-op threads (one: fastest for a few
    inputs, quickest to start); raises ONNX Runtime's own exceptions for a file it cannot run."""
    import onnxruntime as ort  # noqa: PLC0415 - ~0.05 s: only once a model is opened

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
