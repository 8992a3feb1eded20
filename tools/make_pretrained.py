"""Build the LeNet bundled with lenet-cli (``lenet_cli/checkpoints/bundled/``), reproducibly.

    python tools/make_pretrained.py --config configs/robust.yaml --seed 1

trains on the CPU, tests the best checkpoint, and writes ``lenet-robust.ckpt``, ``lenet-robust.json``
(the command, versions, machine, accuracies), ``SHA256SUMS`` (of both, checked at every use) and
``lenet-robust.onnx`` (the same network with its preprocessing, for ``lenet read``) into the package;
paste the ONNX sha256 it prints into ``lenet_cli.reading.model.BUNDLED_SHA256``.

    python tools/make_pretrained.py --onnx-only

writes only ``lenet-robust.onnx`` again, from the bundled checkpoint (after a retrain, or a new exporter).
Both bit-identical twice on the 2-core AMD EPYC; another machine may round differently.

    python tools/make_pretrained.py --calibrate-only

fits the bundled checkpoint's calibration again (after a change to how the reading pipeline reads a
field, ``lenet_cli.reading.pipeline.views``) and rewrites its record and ``SHA256SUMS``; the ONNX file
holds the calibration in its metadata, so ``--onnx-only`` follows. Not part of the package: it drives
``lenet fit``, ``lenet test`` and ``lenet export``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shlex
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import torch

from lenet_cli.checkpoints import load
from lenet_cli.checkpoints.pretrained import FILE, KEPT, ONNX_FILE, RECORD, folder, write_checksums
from lenet_cli.cli.main import main as lenet


def weights_only(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A Lightning checkpoint without its training state: the keys of :data:`KEPT` and nothing else."""
    stripped = {key: checkpoint[key] for key in KEPT if key in checkpoint}
    stripped["hyper_parameters"] = {
        key: value for key, value in stripped["hyper_parameters"].items() if not key.startswith("_")
    }
    return stripped


def build(config: Path, seed: int, out: Path, extra: list[str]) -> dict[str, Any]:
    """Train ``config`` with ``seed`` on the CPU, test its best checkpoint, write FILE and RECORD to ``out``."""
    fit = ["fit", "--config", str(config), "--trainer.accelerator=cpu", "--trainer.devices=1",
           f"--seed_everything={seed}", *extra]  # fmt: skip
    config, out = config.resolve(), out.resolve()  # the runs happen in a scratch folder
    with tempfile.TemporaryDirectory() as scratch:
        previous = Path.cwd()
        os.chdir(scratch)
        try:
            fit_here = [*fit[:2], str(config), *fit[3:]]
            lenet([*fit_here, "--trainer.logger.init_args.save_dir=runs", "--trainer.logger.init_args.name=pretrained"])
            run = Path(scratch) / "runs" / "pretrained" / "version_0"
            best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
            out.mkdir(parents=True, exist_ok=True)
            torch.save(weights_only(best), out / FILE)
            load.load(out / FILE)  # a weights-only load reads it back
            lenet(["test", "--config", str(config), "--trainer.accelerator=cpu", "--trainer.devices=1",
                   "--trainer.logger.init_args.save_dir=runs", "--trainer.logger.init_args.name=pretrained",
                   "--ckpt_path", str(out / FILE)])  # fmt: skip
            report = json.loads((Path(scratch) / "runs" / "pretrained" / "version_1" / "report.json").read_text())
        finally:
            os.chdir(previous)
    import lightning  # noqa: PLC0415

    entry = {
        "command": shlex.join(["python", "tools/make_pretrained.py", *sys.argv[1:]]),
        "trains_as": shlex.join(["lenet", *fit]),
        "config": config.name,
        "seed": seed,
        "best_epoch": best["epoch"] + 1,  # of the config's max_epochs: the lowest validation loss
        "best_val_loss": float(
            best["callbacks"][next(k for k in best["callbacks"] if k.startswith("ModelCheckpoint"))]["best_model_score"]
        ),
        "test_accuracy": report["accuracy"],
        "calibration": calibrate(out / FILE),
        "per_class_accuracy": {label: values["accuracy"] for label, values in report["per_class"].items()},
        "sha256": load.sha256(out / FILE),
        "bytes": (out / FILE).stat().st_size,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "torch_threads": torch.get_num_threads(),
        "date": date.today().isoformat(),
        "data": "MNIST as bundled with lenet-cli (sha256-verified, lenet_cli/datasets/mnist): 55 000 training "
        "images, 5 000 held out for validation (split_seed 42), the 10 000 test images for test_accuracy; "
        "plus the config's data.negatives generated non-digits (lenet_cli/data/negatives.py) for training",
        "licence": "CC BY-SA 3.0, as MNIST (Yann LeCun and Corinna Cortes)",
    }
    (out / RECORD).write_text(json.dumps(entry, indent=1) + "\n")
    write_checksums(out)
    return entry


def recalibrate(out: Path) -> dict[str, Any]:
    """Fit ``out/FILE``'s calibration again into its record, and rewrite SHA256SUMS; the new calibration."""
    entry = json.loads((out / RECORD).read_text())
    entry["calibration"] = calibrate(out / FILE)
    (out / RECORD).write_text(json.dumps(entry, indent=1) + "\n")
    write_checksums(out)
    return entry["calibration"]


def export_onnx(out: Path) -> str:
    """``out/ONNX_FILE``: ``out/FILE`` exported by ``lenet export`` with its preprocessing (uint8 (N, 28, 28)
    digits → logits), as ``lenet read`` and ``lenet serve`` run it; returns its sha256.

    The exporter's output is deterministic for one torch/onnx/onnxscript version (the same bytes twice on
    the 2-core AMD EPYC); another version may write other bytes that compute the same: paste the new sha256.
    """
    target = out.resolve() / ONNX_FILE
    with tempfile.TemporaryDirectory() as scratch:
        previous = Path.cwd()
        os.chdir(scratch)  # export's run folder, not the checkout
        try:
            lenet(["export", "--ckpt_path", str(out.resolve() / FILE), "--format", "onnx",
                   "--with_preprocessing", "true", "--output", str(target)])  # fmt: skip
        finally:
            os.chdir(previous)
    return load.sha256(target)


REFUSED_DIGITS = 0.0015  # reject_below: the confidence under which this share of validation digits falls (0.002
# until session 13, when a model refusing more non-digits let it refuse fewer digits: docs/model-card.md)
ECE_BINS = 15


def calibrate(checkpoint: Path) -> dict[str, Any]:
    """Temperature scaling (Guo et al. 2017) fitted on the validation split (the NLL's minimum on a grid of
    0.01), the rejection level, and the expected calibration error on the test split before and after.

    The temperature is the network's own (each field as the pipeline gives it, ``views``' first: thick
    strokes thinned); ``reject_below``, ``test_ece`` and
    ``test_accuracy_read`` are of the confidences the reading pipeline gives: the mean over each field's views
    (``lenet_cli.reading.pipeline.views``, ``decide``). A temperature fitted to that mean (0.73 for the bundled
    model) sharpens every view: it read fewer numbers and refused fewer non-digits (docs/DEVELOPING.md).
    """
    from lenet_cli.data.mnist import MNISTDataModule  # noqa: PLC0415
    from lenet_cli.training.network import LeNet5, network_weights  # noqa: PLC0415

    network = LeNet5()
    network.load_state_dict(network_weights(load.load(checkpoint)["state_dict"]))
    network.eval()
    data = MNISTDataModule()
    data.setup("validate")
    val_logits, val_labels = view_logits(network, data.digits("val")), data.model_inputs("val")[1]
    test_logits, test_labels = view_logits(network, data.digits("test")), data.model_inputs("test")[1]
    temperatures = torch.arange(0.5, 4.0, 0.01)
    losses = [torch.nn.functional.cross_entropy(val_logits[0] / t, val_labels).item() for t in temperatures]
    temperature = round(float(temperatures[int(torch.tensor(losses).argmin())]), 2)
    test_read = read(test_logits, temperature)
    return {
        "temperature": temperature,
        "reject_below": round(float(read(val_logits, temperature).max(dim=1).values.quantile(REFUSED_DIGITS)), 4),
        "fitted_on": f"the validation split (5 000 digits); reject_below refuses {REFUSED_DIGITS:.2%} of them as "
        "the reading pipeline reads them (each field and its views)",
        "test_ece_before": round(expected_calibration_error(test_logits[0].softmax(dim=1), test_labels), 5),
        "test_ece_network": round(expected_calibration_error(read(test_logits[:1], temperature), test_labels), 5),
        "test_ece": round(expected_calibration_error(test_read, test_labels), 5),
        "test_accuracy_read": round(float((test_read.argmax(dim=1) == test_labels).float().mean()), 5),
    }


def view_logits(network: torch.nn.Module, digits: torch.Tensor) -> torch.Tensor:
    """``network``'s logits (views, N, classes) for uint8 (N, 28, 28) ``digits`` and each of their views."""
    from lenet_cli.data.mnist import preprocess  # noqa: PLC0415
    from lenet_cli.reading.pipeline import views  # noqa: PLC0415

    with torch.no_grad():
        logits = network(preprocess(torch.from_numpy(views(digits.numpy()))))
    return logits.reshape(-1, len(digits), logits.shape[1])


def read(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The reading pipeline's probabilities from :func:`view_logits`: the views' softmaxes averaged."""
    return (logits / temperature).softmax(dim=2).mean(dim=0)


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """The mean |accuracy − confidence| over equal-width confidence bins, weighted by their counts."""
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    error = 0.0
    for low, high in itertools.pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += float(inside.float().mean() * (correct[inside].mean() - confidence[inside].mean()).abs())
    return error


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python tools/make_pretrained.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("configs/robust.yaml"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=folder(), help="where to write (default: the package's folder)")
    parser.add_argument("--onnx-only", action="store_true", help="only export the bundled checkpoint to ONNX again")
    parser.add_argument(
        "--calibrate-only", action="store_true", help="only fit the bundled checkpoint's calibration again"
    )
    parser.add_argument("extra", nargs="*", help="more `lenet fit` options, after --")
    arguments = parser.parse_args(argv)
    if arguments.onnx_only:
        print(json.dumps({"onnx_sha256": export_onnx(arguments.out)}))
        return
    if arguments.calibrate_only:
        print(json.dumps(recalibrate(arguments.out)))
        return
    entry = build(arguments.config, arguments.seed, arguments.out, arguments.extra)
    summary = {key: entry[key] for key in ("test_accuracy", "best_epoch", "sha256", "bytes")}
    print(json.dumps(summary | {"onnx_sha256": export_onnx(arguments.out)}))


if __name__ == "__main__":
    main()
