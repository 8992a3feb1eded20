"""The LeNet that ships inside lenet-cli: ``--ckpt_path pretrained``, and what ``test``/``predict`` use
when no ``--ckpt_path`` is given.

A weights-only checkpoint (the weights and the model's plain hyperparameters, no optimizer or loop
state; ~250 KB) trained by configs/robust.yaml on the bundled MNIST, checked against its sha256 at
every load as the bundled data is (lenet_cli/idx.py). Made from a checkout of the repository by

    python -m lenet_cli.pretrained --config configs/robust.yaml --seed 1

which trains on the CPU, tests the best checkpoint, and writes ``pretrained/lenet-robust.ckpt`` and
``pretrained/lenet-robust.json`` (the command, versions, machine, accuracies) into the package; paste
the sha256 it prints into :data:`SHA256`. docs/model-card.md describes the model.
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
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from lenet_cli import checkpoints
from lenet_cli.errors import LenetError

ALIAS = "pretrained"  # --ckpt_path pretrained
UNTRAINED = "untrained"  # --ckpt_path untrained: run a freshly initialised network, on purpose
FILE = "lenet-robust.ckpt"
RECORD = "lenet-robust.json"
SHA256 = "15f62c1c1320919d5bbde0499434c1b844b0fa28ea370ad5fbc1504d35676901"
# Lightning's checkpoint keys kept: the weights, the model's constructor arguments, and the version
# Lightning reads to decide whether a checkpoint needs migrating.
KEPT = ("state_dict", "hyper_parameters", "pytorch-lightning_version")


def folder() -> Path:
    """The folder inside the installed package that holds the pretrained model and its record."""
    return Path(str(resources.files("lenet_cli") / "pretrained"))


def path() -> Path:
    """The pretrained checkpoint, after checking its sha256 (a damaged or replaced file fails in one line)."""
    checkpoint = folder() / FILE
    if not checkpoint.is_file():
        raise LenetError(f"the pretrained model {checkpoint} is missing from this installation; reinstall lenet-cli")
    if checkpoints.sha256(checkpoint) != SHA256:
        raise LenetError(
            f"the pretrained model {checkpoint} does not match its verified checksum (corrupt or modified); "
            "reinstall lenet-cli"
        )
    return checkpoint


def record() -> dict[str, Any]:
    """How the pretrained model was made and how well it reads: the JSON beside it."""
    loaded: dict[str, Any] = json.loads((folder() / RECORD).read_text())
    return loaded


def describe() -> str:
    """One line naming the model for the messages that say it is used."""
    try:
        accuracy = f", {100 * record()['test_accuracy']:.2f} % MNIST test accuracy"
    except (OSError, KeyError, ValueError):
        accuracy = ""
    return f"the robust LeNet bundled with lenet-cli{accuracy}, docs/model-card.md"


def resolve_option(subcommand: str, ckpt_path: str | None) -> tuple[str | None, str | None]:
    """What ``--ckpt_path`` means for ``subcommand`` once the run-folder aliases are resolved, and the
    line that says so (None: nothing to say).

    ``pretrained`` is the bundled model; ``test`` and ``predict`` take it when no ``--ckpt_path`` is
    given. ``validate`` without one fails: it would report an untrained network's numbers.
    ``untrained`` asks for a freshly initialised network on purpose.
    """
    if ckpt_path == UNTRAINED:
        return (
            None,
            None
            if subcommand == "fit"
            else f"--ckpt_path {UNTRAINED}: a freshly initialised network (random weights), as asked",
        )
    if ckpt_path == ALIAS:
        if subcommand == "fit":
            raise LenetError(
                "--ckpt_path pretrained: fit resumes a run from its training state, which the pretrained model "
                "does not keep; give --ckpt_path last (or a checkpoint file) of your own run"
            )
        chosen = path()
        return str(chosen), f"--ckpt_path {ALIAS}: using {describe()}: {chosen}"
    if ckpt_path is None and subcommand in ("test", "predict"):
        return str(path()), f"no --ckpt_path: using {describe()} (--ckpt_path best, last or a file for your own)"
    if ckpt_path is None and subcommand == "validate":
        raise LenetError(
            "lenet validate needs --ckpt_path: best, last, pretrained or a checkpoint file "
            "(or untrained, to validate a freshly initialised network)"
        )
    return ckpt_path, None


def weights_only(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A Lightning checkpoint without its training state: the keys of :data:`KEPT` and nothing else."""
    stripped = {key: checkpoint[key] for key in KEPT if key in checkpoint}
    stripped["hyper_parameters"] = {
        key: value for key, value in stripped["hyper_parameters"].items() if not key.startswith("_")
    }
    return stripped


def build(config: Path, seed: int, out: Path, extra: list[str]) -> dict[str, Any]:
    """Train ``config`` with ``seed`` on the CPU, test its best checkpoint, write FILE and RECORD to ``out``."""
    from lenet_cli import checkpoints  # noqa: PLC0415 - the builder only
    from lenet_cli.cli import main as lenet  # noqa: PLC0415

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
            checkpoints.load(out / FILE)  # a weights-only load reads it back
            lenet(["test", "--config", str(config), "--trainer.accelerator=cpu", "--trainer.devices=1",
                   "--trainer.logger.init_args.save_dir=runs", "--trainer.logger.init_args.name=pretrained",
                   "--ckpt_path", str(out / FILE)])  # fmt: skip
            report = json.loads((Path(scratch) / "runs" / "pretrained" / "version_1" / "report.json").read_text())
        finally:
            os.chdir(previous)
    import lightning  # noqa: PLC0415

    entry = {
        "command": shlex.join(["python", "-m", "lenet_cli.pretrained", *sys.argv[1:]]),
        "trains_as": shlex.join(["lenet", *fit]),
        "config": config.name,
        "seed": seed,
        "best_epoch": best["epoch"] + 1,  # of the config's max_epochs: the lowest validation loss
        "best_val_loss": float(
            best["callbacks"][next(k for k in best["callbacks"] if k.startswith("ModelCheckpoint"))]["best_model_score"]
        ),
        "test_accuracy": report["accuracy"],
        "per_class_accuracy": {label: values["accuracy"] for label, values in report["per_class"].items()},
        "sha256": checkpoints.sha256(out / FILE),
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
    return entry


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lenet_cli.pretrained", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("configs/robust.yaml"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=folder(), help="where to write (default: the package's folder)")
    parser.add_argument("extra", nargs="*", help="more `lenet fit` options, after --")
    arguments = parser.parse_args(argv)
    entry = build(arguments.config, arguments.seed, arguments.out, arguments.extra)
    print(json.dumps({key: entry[key] for key in ("test_accuracy", "best_epoch", "sha256", "bytes")}))


if __name__ == "__main__":
    main()
