"""The LeNet that ships inside lenet-cli: ``--ckpt_path pretrained``, and what ``test``/``predict`` use
when no ``--ckpt_path`` is given.

A weights-only checkpoint (the weights and the model's plain hyperparameters, no optimizer or loop
state; ~250 KB) trained by configs/robust.yaml on the bundled MNIST, checked against its sha256 at
every load as the bundled data is (lenet_cli/idx.py). Made from a checkout of the repository by

    python tools/make_pretrained.py --config configs/robust.yaml --seed 1

which trains on the CPU, tests the best checkpoint, and writes ``bundled/lenet-robust.ckpt``,
``bundled/lenet-robust.json`` (the command, versions, machine, accuracies) and ``bundled/SHA256SUMS``
(the sha256 of both, as ``sha256sum`` writes them) into the package. Both files are checked against
SHA256SUMS before use. docs/model-card.md describes the model.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from lenet_cli.checkpoints import load
from lenet_cli.errors import LenetError
from lenet_cli.reading.model import BUNDLED_FILE, BUNDLED_SHA256, calibration_from
from lenet_cli.reading.pipeline import Calibration

FILE = "lenet-robust.ckpt"
RECORD = "lenet-robust.json"
SUMS = "SHA256SUMS"  # `sha256sum -c SHA256SUMS` in the folder checks it too
# The same network exported with its preprocessing (uint8 (N, 28, 28) → logits) for ONNX Runtime
# (``lenet read``, ``lenet serve``): its name and sha256 live with the torch-free reader that loads it.
ONNX_FILE, ONNX_SHA256 = BUNDLED_FILE, BUNDLED_SHA256
# Lightning's checkpoint keys kept: the weights, the model's constructor arguments, and the version
# Lightning reads to decide whether a checkpoint needs migrating.
KEPT = ("state_dict", "hyper_parameters", "pytorch-lightning_version")


def folder() -> Path:
    """The folder inside the installed package that holds the pretrained model and its record."""
    return Path(str(resources.files("lenet_cli.checkpoints") / "bundled"))


def path() -> Path:
    """The pretrained checkpoint, after checking it and its record against SHA256SUMS (a damaged or
    replaced file fails in one line)."""
    verified(RECORD)
    return verified(FILE)


def record() -> dict[str, Any]:
    """How the pretrained model was made and how well it reads: the JSON beside it, checked."""
    loaded: dict[str, Any] = json.loads(verified(RECORD).read_text())
    return loaded


def verified(name: str) -> Path:
    """``name`` in :func:`folder`, after checking that its sha256 is the one SHA256SUMS lists for it."""
    file = folder() / name
    if not file.is_file():
        raise LenetError(f"the pretrained model's {file} is missing from this installation; reinstall lenet-cli")
    if load.sha256(file) != checksums().get(name):
        raise LenetError(
            f"the pretrained model's {file} does not match its checksum in {SUMS} (corrupt or modified); "
            "reinstall lenet-cli"
        )
    return file


def checksums() -> dict[str, str]:
    """``{file name: sha256}`` from SHA256SUMS (``<hex>  <name>`` lines)."""
    try:
        lines = (folder() / SUMS).read_text().splitlines()
    except OSError as error:
        raise LenetError(f"the pretrained model's {SUMS} cannot be read ({error}); reinstall lenet-cli") from error
    return {name.lstrip("*"): digest for digest, _, name in (line.partition("  ") for line in lines if line.strip())}


def write_checksums(out: Path) -> str:
    """Write ``out``/SHA256SUMS for the checkpoint and its record (tools/make_pretrained.py); its text."""
    text = "".join(f"{load.sha256(out / name)}  {name}\n" for name in (FILE, RECORD))
    (out / SUMS).write_text(text)
    return text


def calibration_of(checkpoint: str | Path | None) -> Calibration:
    """How to turn ``checkpoint``'s logits into confidences and when to refuse: the bundled model's
    record holds its calibration (``tools/make_pretrained.py``); another checkpoint has none (a softmax
    as it is, nothing refused: a model not trained on non-digits has no confidence level that means one)."""
    try:
        bundled = checkpoint is not None and Path(checkpoint).resolve() == (folder() / FILE).resolve()
        return calibration() if bundled else Calibration()
    except OSError:
        return Calibration()


def calibration() -> Calibration:
    """The bundled model's calibration, from its record (plain JSON: no torch needed to read it)."""
    return calibration_from(record().get("calibration"))


def describe() -> str:
    """One line naming the model for the messages that say it is used."""
    try:
        accuracy = f", {100 * record()['test_accuracy']:.2f} % MNIST test accuracy"
    except (OSError, KeyError, ValueError):
        accuracy = ""
    return f"the robust LeNet bundled with lenet-cli{accuracy}, docs/model-card.md"
