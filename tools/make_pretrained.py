"""Build the LeNet bundled with lenet-cli (``lenet_cli/checkpoints/bundled/``), reproducibly.

    python tools/make_pretrained.py --config configs/robust.yaml --seed 1

trains on the CPU, tests the best checkpoint, and writes ``lenet-robust.ckpt``, ``lenet-robust.json``
(the command, versions, machine, accuracies), ``SHA256SUMS`` (of both, checked at every use) and
``lenet-robust.onnx`` (the same network with its preprocessing, for ``lenet read``) into the package;
paste the ONNX sha256 it prints into ``lenet_cli.reading.model.BUNDLED_SHA256``.

    python tools/make_pretrained.py --onnx-only

writes only ``lenet-robust.onnx`` again, from the bundled checkpoint (after a retrain, or a new exporter).
Both bit-identical twice on the 2-core AMD EPYC; another machine may round differently. Not part of the
package: it drives ``lenet fit``, ``lenet test`` and ``lenet export``.
"""

from __future__ import annotations

import argparse
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
        "images, 5 000 held out for validation (split_seed 42), the 10 000 test images for test_accuracy",
        "licence": "CC BY-SA 3.0, as MNIST (Yann LeCun and Corinna Cortes)",
    }
    (out / RECORD).write_text(json.dumps(entry, indent=1) + "\n")
    write_checksums(out)
    return entry


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
    parser.add_argument("extra", nargs="*", help="more `lenet fit` options, after --")
    arguments = parser.parse_args(argv)
    if arguments.onnx_only:
        print(json.dumps({"onnx_sha256": export_onnx(arguments.out)}))
        return
    entry = build(arguments.config, arguments.seed, arguments.out, arguments.extra)
    summary = {key: entry[key] for key in ("test_accuracy", "best_epoch", "sha256", "bytes")}
    print(json.dumps(summary | {"onnx_sha256": export_onnx(arguments.out)}))


if __name__ == "__main__":
    main()
