"""The LeNet that ships inside lenet-cli: ``--ckpt_path pretrained``, and what ``test``/``predict`` use
when no ``--ckpt_path`` is given.

A weights-only checkpoint (the weights and the model's plain hyperparameters, no optimizer or loop
state; ~250 KB) trained by configs/robust.yaml on the bundled MNIST, checked against its sha256 at
every load as the bundled data is (lenet_cli/idx.py). Made from a checkout of the repository by

    python tools/make_pretrained.py --config configs/robust.yaml --seed 1

which trains on the CPU, tests the best checkpoint, and writes ``bundled/lenet-robust.ckpt`` and
``bundled/lenet-robust.json`` (the command, versions, machine, accuracies) into the package; paste
the sha256 it prints into :data:`SHA256`. docs/model-card.md describes the model.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from lenet_cli.checkpoints import load
from lenet_cli.errors import LenetError
from lenet_cli.reading.pipeline import Calibration

FILE = "lenet-robust.ckpt"
RECORD = "lenet-robust.json"
SHA256 = "a785f2c976bb2a00abab2c84b131ecc2eb27954d565d228ed756462436c199bd"
# Lightning's checkpoint keys kept: the weights, the model's constructor arguments, and the version
# Lightning reads to decide whether a checkpoint needs migrating.
KEPT = ("state_dict", "hyper_parameters", "pytorch-lightning_version")


def folder() -> Path:
    """The folder inside the installed package that holds the pretrained model and its record."""
    return Path(str(resources.files("lenet_cli.checkpoints") / "bundled"))


def path() -> Path:
    """The pretrained checkpoint, after checking its sha256 (a damaged or replaced file fails in one line)."""
    checkpoint = folder() / FILE
    if not checkpoint.is_file():
        raise LenetError(f"the pretrained model {checkpoint} is missing from this installation; reinstall lenet-cli")
    if load.sha256(checkpoint) != SHA256:
        raise LenetError(
            f"the pretrained model {checkpoint} does not match its verified checksum (corrupt or modified); "
            "reinstall lenet-cli"
        )
    return checkpoint


def record() -> dict[str, Any]:
    """How the pretrained model was made and how well it reads: the JSON beside it."""
    loaded: dict[str, Any] = json.loads((folder() / RECORD).read_text())
    return loaded


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
    fitted = record().get("calibration", {})
    return Calibration(float(fitted.get("temperature", 1.0)), float(fitted.get("reject_below", 0.0)))


def describe() -> str:
    """One line naming the model for the messages that say it is used."""
    try:
        accuracy = f", {100 * record()['test_accuracy']:.2f} % MNIST test accuracy"
    except (OSError, KeyError, ValueError):
        accuracy = ""
    return f"the robust LeNet bundled with lenet-cli{accuracy}, docs/model-card.md"
