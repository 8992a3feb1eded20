"""Time `lenet fit` variants side by side in one process: fit seconds, images/s, test accuracy.

Each variant is a list of `lenet fit` arguments; all run on the same machine, data and process, so the
ratios between them are what to read (absolute times on shared machines drift).

    python benchmarks/variants.py --preset gpu --json variants.json
    python benchmarks/variants.py --variant "fast=--config configs/mnist_fast.yaml" --seeds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from lenet_cli.cli import TRAINER_DEFAULTS, LenetCLI
from lenet_cli.data import MNISTDataModule
from lenet_cli.model import LeNet

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]

PRESETS = {
    "gpu": {
        "tutorial-b64": ["--config", "configs/mnist.yaml"],
        "b256-onecycle": ["--config", "configs/mnist.yaml", "--data.batch_size=256", "--model.lr=0.003",
                          "--model.lr_schedule=onecycle"],
        "b512-onecycle": ["--config", "configs/mnist.yaml", "--data.batch_size=512", "--model.lr=0.005",
                          "--model.lr_schedule=onecycle", "--trainer.max_epochs=8"],
        "b1024-onecycle": ["--config", "configs/mnist.yaml", "--data.batch_size=1024", "--model.lr=0.01",
                           "--model.lr_schedule=onecycle", "--trainer.max_epochs=8"],
        "b1024-onecycle-bf16": ["--config", "configs/mnist.yaml", "--data.batch_size=1024", "--model.lr=0.01",
                                "--model.lr_schedule=onecycle", "--trainer.max_epochs=8", "--trainer.precision=bf16-mixed"],
        "b1024-onecycle-compile": ["--config", "configs/mnist.yaml", "--data.batch_size=1024", "--model.lr=0.01",
                                   "--model.lr_schedule=onecycle", "--trainer.max_epochs=8", "--model.compile=true"],
        "b1024-onecycle-nhwc": ["--config", "configs/mnist.yaml", "--data.batch_size=1024", "--model.lr=0.01",
                                "--model.lr_schedule=onecycle", "--trainer.max_epochs=8", "--model.channels_last=true"],
    },
    "cpu": {
        "b256-onecycle-1ep": ["--config", "configs/mnist.yaml", "--trainer.accelerator=cpu", "--data.batch_size=256",
                              "--model.lr=0.003", "--model.lr_schedule=onecycle", "--trainer.max_epochs=1"],
    },
}


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_variant(args: list[str], seed: int, root: Path) -> dict[str, float]:
    cli = LenetCLI(
        LeNet, MNISTDataModule, run=False, trainer_defaults=TRAINER_DEFAULTS,
        args=[*args, *QUIET, f"--seed_everything={seed}", f"--trainer.logger.init_args.save_dir={root}"],
    )
    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    start = time.perf_counter()
    datamodule.setup("fit")  # decoding + moving to the device, timed apart from the fit
    synchronize()
    data_seconds = time.perf_counter() - start
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    synchronize()
    fit_seconds = time.perf_counter() - start
    steps = trainer.global_step
    images = steps * datamodule.hparams.batch_size
    result = trainer.test(model, datamodule=datamodule, ckpt_path="best", verbose=False)[0]
    return {
        "data_seconds": data_seconds,
        "fit_seconds": fit_seconds,
        "epochs": trainer.current_epoch,
        "steps": steps,
        "train_images_per_second": images / fit_seconds,
        "ms_per_step": 1000 * fit_seconds / max(steps, 1),
        "test_acc": result["test/acc"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a named set of variants")
    parser.add_argument("--variant", action="append", default=[], help='"name=ARGS" (lenet fit arguments)')
    parser.add_argument("--only", default="", help="comma-separated variant names to keep")
    parser.add_argument("--seeds", type=int, default=1, help="runs per variant (seeds 0..N-1); the mean is reported")
    parser.add_argument("--root", default="runs/bench", help="where the runs are written")
    parser.add_argument("--json", help="write all numbers here")
    options = parser.parse_args()

    variants = dict(PRESETS.get(options.preset, {}))
    for spec in options.variant:
        name, _, args = spec.partition("=")
        variants[name] = args.split()
    if options.only:
        variants = {k: v for k, v in variants.items() if k in options.only.split(",")}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"device: {device}; torch {torch.__version__}")
    if torch.cuda.is_available():  # CUDA context and cuBLAS handles out of the first timing
        (torch.randn(256, 256, device="cuda") @ torch.randn(256, 256, device="cuda")).sum().item()

    results: dict[str, list[dict[str, float]]] = {}
    for name, args in variants.items():
        results[name] = []
        for seed in range(options.seeds):
            numbers = run_variant(args, seed, Path(options.root) / name)
            results[name].append(numbers)
            print(f"{name} seed {seed}: " + ", ".join(f"{k}={v:.4g}" for k, v in numbers.items()), flush=True)

    print(f"\n{'variant':28} {'fit s':>7} {'ms/step':>8} {'img/s':>9} {'epochs':>6} {'test acc':>9} {'min acc':>8}")
    for name, runs in results.items():
        mean = {k: statistics.mean(r[k] for r in runs) for k in runs[0]}
        low = min(r["test_acc"] for r in runs)
        print(f"{name:28} {mean['fit_seconds']:7.2f} {mean['ms_per_step']:8.2f} {mean['train_images_per_second']:9.0f} "
              f"{mean['epochs']:6.1f} {100 * mean['test_acc']:8.2f}% {100 * low:7.2f}%")
    if options.json:
        Path(options.json).write_text(json.dumps({"device": device, "torch": torch.__version__, "results": results}, indent=1))


if __name__ == "__main__":
    main()
