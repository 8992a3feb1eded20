"""The network of a reader: an ONNX file (``lenet export``'s) run by ONNX Runtime, uint8 digit fields → logits.

The bundled model's file (``checkpoints/bundled/lenet-robust.onnx``, made by ``tools/make_pretrained.py``)
includes lenet's preprocessing: it takes the uint8 (N, 28, 28) fields as they are. A file exported without
``--with_preprocessing`` takes LeNet's own input; its 28→32 step is done here in NumPy/OpenCV exactly as
``lenet_cli.data.mnist.preprocess`` does it in torch (bilinear, half-pixel centres, as
``F.interpolate(..., align_corners=False)``; or zero padding), then ``(x / 255 - mean) / std``.
No torch: importing onnxruntime and opening the session take ~0.1 s on the 2-core CPU.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lenet_cli.errors import LenetError, escaped
from lenet_cli.reading.pipeline import Calibration
from lenet_cli.reading.runtime import bundled_folder, session

# The bundled model, beside its checkpoint; its sha256 is checked at every load, as the checkpoint's is
# (lenet_cli.checkpoints.pretrained: the same constants, kept there with the checkpoint's).
BUNDLED_FILE = "lenet-robust.onnx"
BUNDLED_RECORD = "lenet-robust.json"
BUNDLED_SHA256 = "c55e41a9a98912f02e4748bd3d23ed03c274c6a4a2468b76256fe9d161158af4"
FIELD = 28
INSTALL = "pip install lenet-cli (or the reader alone: pip install ./reader in a checkout)"


def bundled_path() -> Path:
    """The bundled ONNX model, after checking its sha256 (a damaged or replaced file fails in one line)."""
    path = bundled_folder() / BUNDLED_FILE
    if not path.is_file():
        raise LenetError(f"the bundled model {path} is missing from this installation; reinstall ({INSTALL})")
    if hashlib.sha256(path.read_bytes()).hexdigest() != BUNDLED_SHA256:
        raise LenetError(
            f"the bundled model {path} does not match its verified checksum (corrupt or modified); reinstall"
        )
    return path


def bundled_calibration() -> Calibration:
    """The bundled model's calibration from its record (``"calibration"``), or none (temperature 1)."""
    try:
        record = json.loads((bundled_folder() / BUNDLED_RECORD).read_text())
        return calibration_from(record.get("calibration"))
    except (OSError, ValueError):
        return Calibration()


def calibration_from(value: Any) -> Calibration:
    if not isinstance(value, dict):
        return Calibration()
    return Calibration(float(value.get("temperature", 1.0)), float(value.get("reject_below", 0.0)))


class OnnxClassifier:
    """``classify`` for :func:`lenet_cli.reading.pipeline.read_gray`: uint8 (N, 28, 28) → float32 logits (N, C).

    Args:
        path: An ONNX file written by ``lenet export`` (with or without ``--with_preprocessing``);
            ``None``: the bundled model.
        threads: ONNX Runtime's intra-op threads. One is fastest for a few fields (no thread pool to
            wake) and starts quickest; a large batch gains little from two on the 2-core CPU.
    """

    def __init__(self, path: str | Path | None = None, threads: int = 1) -> None:
        self.path = bundled_path() if path is None else Path(path)
        name = escaped(self.path)
        if path is not None and not self.path.is_file():
            what = "is a folder" if self.path.is_dir() else "does not exist"
            raise LenetError(f"--model {name}: {what}; give an ONNX file from `lenet export`")
        try:
            self.session = session(self.path, threads)
        except Exception as error:  # ONNX Runtime raises its own classes for a bad file
            detail = " ".join(str(error).split())[:200]
            raise LenetError(f"--model {name}: not an ONNX model that ONNX Runtime can run ({detail})") from error
        meta = self.session.get_modelmeta().custom_metadata_map
        self.input = self.session.get_inputs()[0]
        self.with_preprocessing = self.input.type == "tensor(uint8)"
        shape = self.input.shape
        if self.with_preprocessing and list(shape[1:]) != [FIELD, FIELD]:
            raise LenetError(f"--model {name}: takes {shape}, not uint8 (N, 28, 28) digits")
        if not self.with_preprocessing and (len(shape) != 4 or shape[1] != 1):
            raise LenetError(
                f"--model {name}: takes {self.input.type} {shape}, not LeNet's (N, 1, H, W) or (N, 28, 28) digits"
            )
        self.input_mode = meta.get("input_mode", "resize")
        self.input_size = int(meta.get("input_size", shape[-1] if isinstance(shape[-1], int) else 32))
        self.mean, self.std = float(meta.get("mean", 0.1307)), float(meta.get("std", 0.3081))
        self.calibration = bundled_calibration() if path is None else calibration_from(_json(meta.get("calibration")))
        self.classes = _json(meta.get("class_names")) or None

    def __call__(self, fields: np.ndarray) -> np.ndarray:
        if len(fields) == 0:
            return np.zeros((0, len(self.classes or range(10))), np.float32)
        inputs = fields if self.with_preprocessing else self.model_input(fields)
        logits: np.ndarray = self.session.run(None, {self.input.name: np.ascontiguousarray(inputs)})[0]
        return logits

    def model_input(self, fields: np.ndarray) -> np.ndarray:
        """uint8 (N, 28, 28) → normalised float32 (N, 1, S, S): ``lenet_cli.data.mnist.preprocess`` in NumPy."""
        x = fields.astype(np.float32) / 255
        size = self.input_size
        if self.input_mode == "pad":
            before = (size - FIELD) // 2
            x = np.pad(x, ((0, 0), (before, size - FIELD - before), (before, size - FIELD - before)))
        elif size != FIELD:
            # OpenCV's INTER_LINEAR on float32 is torch's bilinear with align_corners=False (half-pixel
            # centres, edges clamped) when enlarging: the same values to float rounding (tests/test_reader.py).
            x = np.stack([cv2.resize(field, (size, size), interpolation=cv2.INTER_LINEAR) for field in x])
        return ((x - self.mean) / self.std)[:, None].astype(np.float32)


def _json(value: str | None) -> Any:
    try:
        return json.loads(value) if value else None
    except ValueError:
        return None
