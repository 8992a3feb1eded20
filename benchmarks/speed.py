"""Training speed side by side, in one process on one machine and one copy of MNIST.

(a) tutorial  torchvision ``datasets.MNIST`` read from the bundled IDX files, PIL transforms per sample
              (Resize 32×32, ToTensor, Normalize), ``random_split`` 55 000/5 000, shuffling
              ``DataLoader``s, ``lenet_cli.model.LeNet`` and a Lightning ``Trainer``.
(b) plain     the same LeNet layers in a plain PyTorch loop over the in-memory tensors that
              ``lenet_cli.data.MNISTDataModule`` makes, on the device; fused Adam as lenet's; no Lightning.
(c) lenet     ``lenet fit`` itself, in-process through ``lenet_cli.cli.main``, with progress bar,
              logger, checkpoints and model summary off (``--lenet-full``: on, as users run it).
NAME          each ``--variant NAME=ARGS``: ``lenet fit ARGS`` with its checkpoints and logger, progress
              bar and model summary off.

Each run reports fit seconds, training images per fit second and test accuracy on the 10 000 test
images (of the best checkpoint where the fit saved one, else of the final weights). Fit seconds cover
training and the per-epoch validation on the 5 000 held-out images, nothing else: for (a), (c) and the
variants the wall time of ``trainer.fit``, for (b) the epoch loop; the one-time reading and decoding
of the data is timed apart ("data s") and subtracted from ``trainer.fit``. On CUDA the clock is read
after a synchronize. Ratios are of mean fit seconds ((a)/(c): how many times faster lenet is than the
tutorial; (c)/(b): lenet's framework overhead). "others" is the largest CPU share other processes took
during a fit: compare runs near 0 % only.

    python benchmarks/speed.py --device cpu --batch-size 32 --epochs 1 --seeds 3
    python benchmarks/speed.py --device cuda --which b,c --batch-size 1024 --epochs 8 --lr 0.01 --graph c
    python benchmarks/speed.py --seeds 5 --variant "fast=--config configs/mnist_fast.yaml" \\
        --variant "fast-eager=--config configs/mnist_fast.yaml --model.cuda_graph=false"
    python benchmarks/speed.py --device cpu --limit-train-batches 20          # a smoke run of seconds

``augment``: configs trained with and without ``--data.augment`` over several seeds, time per epoch, test
and photo accuracy (``python benchmarks/speed.py augment --help``):

    python benchmarks/speed.py augment --configs configs/robust.yaml configs/mnist.yaml --seeds 1 2 3
    python benchmarks/speed.py augment --configs configs/mnist.yaml --variants plain augment \\
        --seeds 1 --max-epochs 2 --no-test                       # the cost of augmenting, per epoch
    python benchmarks/speed.py augment --configs configs/robust.yaml+--trainer.max_epochs=20 ...
    python benchmarks/speed.py augment --batch-cost 512     # no fits: one batch's distortion vs one step

A config may carry options of its own after ``+`` signs (``PATH+--option=value+...``). Each (config,
variant, seed) is one ``lenet fit`` in-process in a temporary folder, timed by benchmarks/timing.py's
FitTimer (training batches only, the first epoch left out), then ``lenet test --ckpt_path best``. The
variant ``augment`` adds ``--data.augment true``, ``plain`` adds ``--data.augment false``, ``as-is``
leaves the config alone; variants alternate within a seed, so a busy machine slows both alike. With
``--photos N``, the best checkpoint also reads N phone-style photos per condition (tests/photos.py,
generated once) and the accuracy per condition is printed. ``--batch-cost B`` times, interleaved, the
distortion of a batch of B training images (un-normalise, distort, normalise, as the batch iterator
does) and one eager training step of LeNet on such a batch (forward, loss, backward, fused Adam), and
prints their medians.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: `benchmarks.timing` importable

import argparse
import csv
import datetime
import gzip
import inspect
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import lightning
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, random_split
from torchvision import datasets, transforms

from benchmarks.timing import (
    ROOT,
    clock,
    command_line,
    cpu_counters,
    environment,
    machine_name,
    other_cpu_share,
    percent,
    quiet_lightning,
    source_version,
    timed_fit,
    timed_methods,
    warn_if_busy,
    working_directory,
)
from lenet_cli.checkpoints import load
from lenet_cli.cli.main import main as lenet_main
from lenet_cli.data import idx
from lenet_cli.data.mnist import MNISTDataModule, to_model_input
from lenet_cli.images import files
from lenet_cli.training.cuda_graph import GraphedStep
from lenet_cli.training.module import LeNet

LABELS = {"a": "(a) tutorial pipeline", "b": "(b) plain PyTorch loop", "c": "(c) lenet fit"}
DEFAULT_LR = inspect.signature(LeNet).parameters["lr"].default  # the tutorial's, LeNet's default
TRAIN_SIZE, VAL_SIZE = 55_000, 5_000
SPLIT_SEED = 42  # MNISTDataModule's default split_seed; (a) holds out a split of the same size
EVAL_BATCH_SIZE = 1000  # MNISTDataModule's default eval_batch_size, used by (b) too

TUTORIAL_TRANSFORM = transforms.Compose(
    [transforms.Resize((32, 32)), transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
)

# The runs being compared pay for the same work only: no progress bar, checkpoint files, logger or
# model summary. ``--lenet-full`` times (c) as users run it instead.
QUIET_TRAINER: dict[str, Any] = {
    "enable_progress_bar": False,
    "enable_checkpointing": False,
    "logger": False,
    "enable_model_summary": False,
}
# The datamodule hooks in which lenet reads, decodes and converts MNIST, once per fit.
DATA_HOOKS = ("prepare_data", "setup", "train_dataloader", "val_dataloader")
# lenet always adds its ModelCheckpoint (stable best/last paths); save_top_k=0 and no last.ckpt make it
# write nothing. Sample images are only written after test/predict, which the fit does not run.
QUIET_LENET_ARGS = [
    "--trainer.enable_progress_bar=false",
    "--trainer.logger=false",
    "--trainer.enable_model_summary=false",
    "--checkpoint.save_top_k=0",
    "--checkpoint.save_last=false",
    "--sample_images.num_images=0",
]
# A --variant keeps its checkpoints and logger; only what draws on the console is off.
VARIANT_ARGS = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@dataclass
class Run:
    variant: str
    seed: int
    batch_size: int
    epochs: int  # epochs actually trained (early stopping may end a config's fit sooner)
    train_images: int  # images trained on: optimizer steps × batch size
    fit_seconds: float
    data_seconds: float  # one-time read/decode of the data, outside fit_seconds
    test_accuracy: float
    other_cpu: float | None = None  # share of all CPUs that other processes used meanwhile (Linux)

    @property
    def images_per_second(self) -> float:
        return self.train_images / self.fit_seconds


# ---------------------------------------------------------------------------------------------------
# (a) the tutorial pipeline


def unpack_bundled_mnist(root: Path) -> None:
    """Decompressed IDX files in ``root/MNIST/raw``, where torchvision looks before downloading."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem in idx.FILES.values():
        path = idx.find_file(idx.bundled_dir(), stem)
        assert path is not None, f"the bundled MNIST copy lacks {stem}"
        (raw / stem).write_bytes(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes())


class WithIndex(Dataset):
    """``(image, label, index)`` samples: LeNet's steps take the batches lenet's datamodule yields."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]  # MNIST and random_split's Subsets have a length

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        image, label = self.dataset[index]
        return image, label, index


def run_tutorial(options: argparse.Namespace, seed: int, device: torch.device, root: Path) -> Run:
    seed_everything(seed, verbose=False)
    start = time.perf_counter()
    train_full = datasets.MNIST(str(root), train=True, transform=TUTORIAL_TRANSFORM, download=False)
    test_set = datasets.MNIST(str(root), train=False, transform=TUTORIAL_TRANSFORM, download=False)
    train_set, val_set = random_split(
        train_full, [TRAIN_SIZE, VAL_SIZE], generator=torch.Generator().manual_seed(SPLIT_SEED)
    )
    data_seconds = time.perf_counter() - start

    def loader(dataset: Dataset, shuffle: bool = False) -> DataLoader:
        return DataLoader(
            WithIndex(dataset), batch_size=options.batch_size, shuffle=shuffle, num_workers=options.num_workers
        )

    model = LeNet(lr=options.lr)
    trainer = Trainer(
        accelerator=device.type,
        devices=1,
        max_epochs=options.epochs,
        limit_train_batches=options.limit_train_batches or 1.0,
        default_root_dir=str(root),
        **QUIET_TRAINER,
    )
    train_loader, val_loader = loader(train_set, shuffle=True), loader(val_set)
    counters = cpu_counters()
    start = clock(device)
    trainer.fit(model, train_loader, val_loader)
    fit_seconds = clock(device) - start
    other_cpu = other_cpu_share(counters, cpu_counters())
    (metrics,) = trainer.test(model, loader(test_set), verbose=False)
    return Run(
        "a", seed, options.batch_size, trainer.current_epoch, trainer.global_step * options.batch_size,
        fit_seconds, data_seconds, float(metrics["test/acc"]), other_cpu,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# (b) a plain PyTorch loop


def load_tensors(device: torch.device) -> dict[str, tuple[Tensor, Tensor]]:
    """The splits exactly as lenet's datamodule makes them (split, resize, normalisation), on ``device``."""
    data = MNISTDataModule()
    data.setup("fit")
    splits = {}
    for split in ("train", "val", "test"):
        images, labels = data.model_inputs(split)
        splits[split] = (images.to(device), labels.to(device))
    return splits


@torch.no_grad()
def accuracy(network: nn.Module, images: Tensor, labels: Tensor) -> float:
    network.eval()
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    for start in range(0, len(images), EVAL_BATCH_SIZE):
        logits = network(images[start : start + EVAL_BATCH_SIZE])
        correct += (logits.argmax(dim=1) == labels[start : start + EVAL_BATCH_SIZE]).sum()
    network.train()
    return correct.item() / len(images)  # the one host sync per evaluation


def run_plain(options: argparse.Namespace, seed: int, device: torch.device) -> Run:
    start = clock(device)
    splits = load_tensors(device)
    data_seconds = clock(device) - start

    torch.manual_seed(seed)
    lenet = LeNet(lr=options.lr)
    network = lenet.network.to(device)  # LeNet's layers, no LightningModule
    if options.plain_channels_last:  # what lenet does on the CPU by default
        network.to(memory_format=torch.channels_last)
        splits = {name: (x.contiguous(memory_format=torch.channels_last), y) for name, (x, y) in splits.items()}
    optimizer = torch.optim.Adam(network.parameters(), lr=options.lr, fused=True)  # as LeNet's, CPU and CUDA
    images, labels = splits["train"]
    steps_per_epoch = len(images) // options.batch_size  # drop_last, as lenet's training batches
    if options.limit_train_batches:
        steps_per_epoch = min(steps_per_epoch, options.limit_train_batches)
    generator = torch.Generator(device=device).manual_seed(seed)
    graphed = None  # --graph: the same CUDA-graph step as lenet's --model.cuda_graph

    def eager_backward(x: Tensor, y: Tensor) -> None:
        # A function, so that no loss outlives its step: a live loss keeps its autograd graph's
        # gradient-accumulation nodes, and a capture reusing them runs them on the default stream.
        loss = F.cross_entropy(network(x), y)
        optimizer.zero_grad(set_to_none=graphed is None or graphed.graph is None)
        loss.backward()

    if "b" in options.graph and device.type == "cuda":
        graphed = GraphedStep(lambda x, y: (F.cross_entropy(network(x), y),), list(network.parameters()))

    counters = cpu_counters()
    start = clock(device)
    for _ in range(options.epochs):
        order = torch.randperm(len(images), device=device, generator=generator)
        for step in range(steps_per_epoch):
            batch = order[step * options.batch_size : (step + 1) * options.batch_size]
            if graphed is None or graphed(images[batch], labels[batch]) is None:
                eager_backward(images[batch], labels[batch])
            optimizer.step()
        accuracy(network, *splits["val"])  # the Lightning loops validate after every epoch too
    fit_seconds = clock(device) - start
    other_cpu = other_cpu_share(counters, cpu_counters())
    return Run(
        "b", seed, options.batch_size, options.epochs, options.epochs * steps_per_epoch * options.batch_size,
        fit_seconds, data_seconds, accuracy(network, *splits["test"]), other_cpu,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# (c) lenet fit, and the --variant runs


def absolute_configs(args: list[str]) -> list[str]:
    """``args`` with each ``--config PATH`` made absolute: lenet runs in a scratch folder."""
    resolved = []
    for previous, arg in zip(["", *args], args, strict=False):
        if previous == "--config":
            resolved.append(str(Path(arg).resolve()))
        elif arg.startswith("--config="):
            resolved.append("--config=" + str(Path(arg.split("=", 1)[1]).resolve()))
        else:
            resolved.append(arg)
    return resolved


def lenet_args(options: argparse.Namespace, seed: int, device: torch.device) -> list[str]:
    args = ["fit"]
    if options.lenet_config:
        args += ["--config", str(options.lenet_config)]  # batch size, epochs and lr come from the config
    else:
        args += [
            f"--data.batch_size={options.batch_size}",
            f"--trainer.max_epochs={options.epochs}",
            f"--model.lr={options.lr}",
        ]
    args += common_args(options, seed, device)
    if "c" in options.graph:
        args.append("--model.cuda_graph=true")
    args += absolute_configs(options.lenet_args.split())
    return args + ([] if options.lenet_full else QUIET_LENET_ARGS)


def common_args(options: argparse.Namespace, seed: int, device: torch.device) -> list[str]:
    args = [f"--trainer.accelerator={device.type}", "--trainer.devices=1", f"--seed_everything={seed}"]
    if options.limit_train_batches:
        args.append(f"--trainer.limit_train_batches={options.limit_train_batches}")
    return args


def run_lenet(key: str, args: list[str], seed: int, device: torch.device, workdir: Path) -> Run:
    """``lenet fit ARGS`` in ``workdir``; test accuracy of its best checkpoint if it saved one."""
    with (
        working_directory(workdir),
        timed_methods(Trainer, ("fit",), device) as fits,
        timed_methods(MNISTDataModule, DATA_HOOKS, device) as data_calls,
        command_line([sys.argv[0]]),
    ):
        counters = cpu_counters()  # around the whole command: argument parsing is short
        lenet_main(args)
        other_cpu = other_cpu_share(counters, cpu_counters())
    ((trainer, fit_watch),) = fits
    data_seconds = sum(watch.seconds for _, watch in data_calls)  # the decode runs inside trainer.fit
    assert isinstance(trainer, Trainer)
    datamodule = trainer.datamodule  # type: ignore[attr-defined]  # set by Trainer.fit
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
    with working_directory(workdir):
        (metrics,) = trainer.test(
            trainer.lightning_module, datamodule=datamodule, ckpt_path=best or None, verbose=False
        )
    batch_size = datamodule.hparams.batch_size
    return Run(
        key, seed, batch_size, trainer.current_epoch, trainer.global_step * batch_size,
        fit_watch.seconds - data_seconds, data_seconds, float(metrics["test/acc"]), other_cpu,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Reporting


def mean(runs: list[Run], value: Callable[[Run], float]) -> float:
    return statistics.fmean(value(run) for run in runs)


def summarise(runs: list[Run], keys: list[str]) -> dict[str, dict[str, float | None]]:
    summary: dict[str, dict[str, float | None]] = {}
    for key in keys:
        mine = [run for run in runs if run.variant == key]
        summary[key] = {
            "batch_size": mine[0].batch_size,
            "epochs": mean(mine, lambda run: run.epochs),
            "fit_seconds": mean(mine, lambda run: run.fit_seconds),
            "fit_seconds_min": min(run.fit_seconds for run in mine),  # the least disturbed by other processes
            "fit_seconds_stdev": statistics.stdev(run.fit_seconds for run in mine) if len(mine) > 1 else 0.0,
            "images_per_second": mean(mine, lambda run: run.images_per_second),
            "test_accuracy": mean(mine, lambda run: run.test_accuracy),
            "test_accuracy_min": min(run.test_accuracy for run in mine),
            "data_seconds": mean(mine, lambda run: run.data_seconds),
            "other_cpu_max": max((run.other_cpu for run in mine if run.other_cpu is not None), default=None),
            "seeds": len(mine),
        }
    return summary


def ratios(summary: dict[str, dict[str, float | None]]) -> dict[str, float]:
    """Ratios of mean fit seconds (``a/c``, ``c/b``) and of the fastest seeds (``a/c min``, ``c/b min``)."""
    found = {}
    for slow, fast in (("a", "c"), ("c", "b")):
        if slow in summary and fast in summary:
            for name, column in ((f"{slow}/{fast}", "fit_seconds"), (f"{slow}/{fast} min", "fit_seconds_min")):
                found[name] = float(summary[slow][column] or 0) / float(summary[fast][column] or 1)
    return found


def print_table(summary: dict[str, dict[str, float | None]], found: dict[str, float], header: str) -> None:
    print(f"\n{header}")
    print(
        f"{'variant':<24}{'batch':>6}{'epochs':>7}{'fit s':>9}{'± s':>7}{'min s':>8}{'images/s':>10}{'test acc':>10}"
        f"{'min acc':>9}{'data s':>8}{'others':>8}"
    )
    for key, row in summary.items():
        v = {name: float(value) for name, value in row.items() if value is not None}
        print(
            f"{LABELS.get(key, key):<24}{v['batch_size']:>6.0f}{v['epochs']:>7.3g}{v['fit_seconds']:>9.2f}"
            f"{v['fit_seconds_stdev']:>7.2f}{v['fit_seconds_min']:>8.2f}{v['images_per_second']:>10.0f}"
            f"{100 * v['test_accuracy']:>9.2f}%{100 * v['test_accuracy_min']:>8.2f}%"
            f"{v['data_seconds']:>8.2f}{percent(row['other_cpu_max']):>8}"
        )
    if "a/c" in found:
        print(
            f"(a)/(c) lenet fit vs the tutorial pipeline: {found['a/c']:.2f}x faster ({found['a/c min']:.2f}x on min s)"
        )
    if "c/b" in found:
        print(
            f"(c)/(b) framework overhead of lenet fit over the plain loop: {found['c/b']:.3f}x "
            f"({found['c/b min']:.3f}x on min s)"
        )


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size of (a), (b), (c) (default: 64)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of (a), (b), (c) (default: 1)")
    parser.add_argument(
        "--lr", type=float, default=DEFAULT_LR, help=f"learning rate of (a), (b), (c) (default: {DEFAULT_LR})"
    )
    parser.add_argument(
        "--which",
        default=None,
        help="comma-separated subset of a, b, c, run in this order (default: a,b,c; none with --variant)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="also time `lenet fit ARGS` as NAME (repeatable)",
    )
    parser.add_argument("--seeds", type=int, default=1, help="repeat each run with seeds 0..N-1; report means")
    parser.add_argument("--limit-train-batches", type=int, default=None, help="train steps per epoch (smoke runs)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers of (a)")
    parser.add_argument(
        "--lenet-config", type=Path, default=None, help="time (c) with this config (its batch size, epochs, lr)"
    )
    parser.add_argument(
        "--lenet-full",
        action="store_true",
        help="time (c) with its progress bar, logger, checkpoints and model summary",
    )
    parser.add_argument(
        "--graph", default="", help="comma-separated subset of b, c that replay their training step from a CUDA graph"
    )
    parser.add_argument(
        "--plain-channels-last", action="store_true", help="(b) in NHWC memory format, as lenet on a CPU"
    )
    parser.add_argument(
        "--lenet-args", default="", help="more `lenet fit` arguments for (c), e.g. --model.channels_last=true"
    )
    parser.add_argument("--json", type=Path, default=None, help="write every run, the means, ratios and machine here")
    options = parser.parse_args(argv)
    options.which = [
        key.strip() for key in (options.which or ("" if options.variant else "a,b,c")).split(",") if key.strip()
    ]
    options.graph = [key.strip() for key in options.graph.split(",") if key.strip()]
    if not set(options.graph) <= {"b", "c"}:
        parser.error(f"--graph takes a comma-separated subset of b,c; got {','.join(options.graph)}")
    if sorted(set(options.which) - set(LABELS)):
        parser.error(f"--which takes a comma-separated subset of a,b,c; got {','.join(options.which)}")
    variants = {}
    for spec in options.variant:
        name, equals, args = spec.partition("=")
        if not equals or not name.strip() or name.strip() in LABELS or name.strip() in variants:
            parser.error(f"--variant {spec!r}: give NAME=ARGS with a new name other than a, b, c")
        variants[name.strip()] = absolute_configs(args.split())
    options.variant = variants
    if not options.which and not variants:
        parser.error("nothing to run: give --which or --variant")
    if options.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    if options.lenet_config is not None:
        if not options.lenet_config.is_file():
            parser.error(f"--lenet-config {options.lenet_config}: no such file")
        options.lenet_config = options.lenet_config.resolve()  # (c) runs in a temporary folder
    if options.seeds < 1 or options.batch_size < 1 or options.epochs < 1:
        parser.error("--seeds, --batch-size and --epochs must be positive")
    return options


# ---------------------------------------------------------------------------------------------------
# augment: configs with and without --data.augment


AUGMENT_VARIANTS = {"as-is": [], "plain": ["--data.augment=false"], "augment": ["--data.augment=true"]}


def logged_test_accuracy(run: Path) -> float:
    """The last ``test/acc`` in a run folder's metrics.csv."""
    with (run / "metrics.csv").open(newline="") as f:
        return float([row for row in csv.DictReader(f) if row.get("test/acc")][-1]["test/acc"])


def photo_accuracy(checkpoint: Path, folder: Path, per_condition: int) -> dict[str, float]:
    """Accuracy of ``checkpoint`` on tests/photos.py's phone-style photos in ``folder``, per condition and overall."""
    from tests import photos

    saved = load.load(checkpoint)
    model = LeNet(**{key: saved["hyper_parameters"][key] for key in ("in_channels", "num_classes")})
    model.load_state_dict(saved["state_dict"])
    labels = idx.load(None, allow_download=False)["test_labels"].numpy()
    plan = {str(photo.path): photo for photo in photos.plan(folder, labels, per_condition)}
    digits, sources = files.load_digits(folder, num_workers=os.cpu_count() or 1)
    with torch.no_grad():
        predicted = model.eval()(to_model_input(digits)).argmax(dim=1).numpy()
    correct: dict[str, list[bool]] = {condition: [] for condition in photos.CONDITIONS}
    for prediction, source in zip(predicted, sources, strict=True):
        correct[plan[source].condition].append(bool(prediction == plan[source].label))
    for source in set(plan) - set(sources):  # a photo skipped as unreadable counts as wrong
        correct[plan[source].condition].append(False)
    result = {condition: float(np.mean(values)) for condition, values in correct.items()}
    result["overall"] = float(np.mean([value for values in correct.values() for value in values]))
    return result


def batch_cost(batch_size: int, device: torch.device, repeats: int = 50) -> None:
    """Median ms of one batch's distortion and of one eager training step on it, interleaved."""
    from lenet_cli.data.augment import Augmentation, epoch_generator
    from lenet_cli.data.mnist import MEAN, STD

    inputs = to_model_input(idx.load(None, allow_download=False)["train_images"][:batch_size], device=device)
    labels = torch.randint(0, 10, (batch_size,), device=device)
    model = LeNet().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    augment, generator = Augmentation(), epoch_generator(device, 0, 0, 0)

    def distort() -> None:
        augment(inputs.clone().mul_(STD).add_(MEAN), generator).sub_(MEAN).div_(STD)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), labels).backward()
        optimizer.step()

    timings: dict[str, list[float]] = {"distort": [], "step": []}
    for round_number in range(repeats + 5):  # the first 5 rounds warm up
        for name, function in (("distort", distort), ("step", step)):
            start = clock(device)
            function()
            if round_number >= 5:
                timings[name].append((clock(device) - start) * 1000)
    distortion, training = statistics.median(timings["distort"]), statistics.median(timings["step"])
    print(
        f"{device}, {torch.get_num_threads()} threads, batch {batch_size}: distortion {distortion:.2f} ms, "
        f"eager training step {training:.2f} ms ({100 * distortion / training:.0f} % of a step), medians of {repeats}"
    )


def augment_fits(arguments: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (seed, config, variant): FitTimer's epoch time and step time, test and photo accuracy."""
    from tests import photos

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        photo_folder = Path(scratch) / "photos"
        if arguments.photos:
            arrays = idx.load(None, allow_download=False)
            photos.generate(
                photo_folder, arrays["test_images"].numpy(), arrays["test_labels"].numpy(), arguments.photos
            )
        for seed in arguments.seeds:
            for config in arguments.configs:
                for variant in arguments.variants:
                    work = Path(scratch) / f"run{len(rows)}"
                    work.mkdir()
                    path, *options = config.split("+")
                    common = [
                        "--config",
                        str(ROOT / path),
                        *options,
                        f"--trainer.accelerator={arguments.accelerator}",
                        "--trainer.enable_progress_bar=false",
                        "--trainer.logger.init_args.save_dir=runs",
                        "--trainer.logger.init_args.name=run",
                        *AUGMENT_VARIANTS[variant],
                    ]
                    epochs = [f"--trainer.max_epochs={arguments.max_epochs}"] if arguments.max_epochs else []
                    with working_directory(work):
                        timer = timed_fit([*common, *epochs, f"--seed_everything={seed}"], work / "timer.json")
                        best = work / "runs" / "run" / "version_0" / "checkpoints" / "best.ckpt"
                        row = {
                            "config": config,
                            "variant": variant,
                            "seed": seed,
                            "epochs": timer["epochs"],
                            "train_s_per_epoch": statistics.median(
                                timer["train_seconds_per_epoch"][1:] or timer["train_seconds_per_epoch"]
                            ),
                            "train_ms_per_step": timer["train_ms_per_step"],
                            "device": timer["device"],
                        }
                        if not arguments.no_test:
                            with command_line([sys.argv[0]]):
                                lenet_main(["test", *common, "--ckpt_path", str(best)])
                            row["test_acc"] = logged_test_accuracy(work / "runs" / "run" / "version_1")
                    if arguments.photos:
                        row["photos"] = photo_accuracy(best, photo_folder, arguments.photos)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def augment_main(argv: list[str]) -> None:
    text = __doc__[__doc__.index("``augment``") :]
    parser = argparse.ArgumentParser(
        prog="speed.py augment", description=text, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", nargs="+", default=["configs/robust.yaml"])
    parser.add_argument("--variants", nargs="+", default=["as-is"], choices=list(AUGMENT_VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--max-epochs", type=int, default=None, help="override the configs' max_epochs")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--no-test", action="store_true", help="time the fits only")
    parser.add_argument("--photos", type=int, default=0, help="phone-style photos per condition to read (0: none)")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument(
        "--batch-cost", type=int, default=0, metavar="B", help="time one batch's distortion vs one step"
    )
    arguments = parser.parse_args(argv)
    quiet_lightning()
    if arguments.batch_cost:
        batch_cost(arguments.batch_cost, torch.device("cuda" if arguments.accelerator in ("gpu", "cuda") else "cpu"))
        return
    rows = augment_fits(arguments)
    width = max(len(config) for config in arguments.configs)
    header = f"{'variant':>8} {'seeds':>6} {'epochs':>6} {'s/epoch':>8} {'ms/step':>8} {'test acc':>9} {'photos':>7}"
    print(f"\n{'config':>{width}} {header}")
    for config in arguments.configs:
        for variant in arguments.variants:
            group = [row for row in rows if row["config"] == config and row["variant"] == variant]
            accuracy = [row["test_acc"] for row in group if "test_acc" in row]
            photo = [row["photos"]["overall"] for row in group if "photos" in row]
            print(
                f"{config:>{width}} {variant:>8} {len(group):>6} {statistics.mean(r['epochs'] for r in group):>6.1f} "
                f"{statistics.mean(r['train_s_per_epoch'] for r in group):>8.2f} "
                f"{statistics.mean(r['train_ms_per_step'] for r in group):>8.2f} "
                f"{statistics.mean(accuracy) if accuracy else float('nan'):>9.4f} "
                f"{statistics.mean(photo) if photo else float('nan'):>7.4f}"
            )
    if arguments.out:
        arguments.out.write_text(json.dumps(rows, indent=1))


# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["augment"]:
        augment_main(argv[1:])
        return
    options = parse_options(argv)
    device = torch.device(options.device)
    quiet_lightning()
    # One-time device start-up (CUDA context, kernels, thread pools) is paid before any timed run.
    warm = torch.randn(64, 64, device=device)
    (warm @ warm).sum().item()

    busy = warn_if_busy()
    lightning_note = (
        "(c) with its progress bar, logger, checkpoints and model summary (--lenet-full)"
        if options.lenet_full
        else "(a), (c): progress bar, checkpointing, logging and model summary off"
    )
    limit = f"; {options.limit_train_batches} train batches per epoch" if options.limit_train_batches else ""
    graphed = f"; CUDA graph: {','.join(options.graph)}" if options.graph else ""
    header = f"device: {environment(device)}, torchvision {torchvision.__version__}{graphed}"
    notes = [
        f"{lightning_note}; (a) DataLoader workers: {options.num_workers}{limit}",
        f"(c) config: {options.lenet_config}" if options.lenet_config else "(c) the same batch size, epochs and lr",
    ]
    print(header, *notes, sep="\n")

    keys = options.which + list(options.variant)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="lenet-speed-") as scratch:
        root = Path(scratch)
        if "a" in options.which:
            unpack_bundled_mnist(root)
        for seed in range(options.seeds):
            for key in keys:
                workdir = root / f"run{len(runs)}"  # lenet's runs/ of (c) and the variants
                if key == "a":
                    run = run_tutorial(options, seed, device, root)
                elif key == "b":
                    run = run_plain(options, seed, device)
                elif key == "c":
                    workdir.mkdir()
                    run = run_lenet(key, lenet_args(options, seed, device), seed, device, workdir)
                else:
                    workdir.mkdir()
                    args = ["fit", *options.variant[key], *common_args(options, seed, device), *VARIANT_ARGS]
                    run = run_lenet(key, args, seed, device, workdir)
                runs.append(run)
                print(
                    f"{LABELS.get(key, key):<24} seed {seed}: fit {run.fit_seconds:.2f} s, "
                    f"{run.images_per_second:.0f} images/s, test acc {100 * run.test_accuracy:.2f} %, "
                    f"data {run.data_seconds:.2f} s, other processes {percent(run.other_cpu)} of the CPUs",
                    flush=True,
                )

    summary = summarise(runs, keys)
    found = ratios(summary)
    print_table(summary, found, header)
    if options.json is not None:
        settings = vars(options).items()
        report = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "device": options.device,
            "machine": machine_name(device),
            "python": sys.version.split()[0],
            "header": header,
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "torchvision": torchvision.__version__,
            "lenet_cli": source_version(),
            "notes": notes,
            "other_cpu_before_start": busy,
            "options": {name: str(value) if isinstance(value, Path) else value for name, value in settings},
            "runs": [asdict(run) | {"images_per_second": run.images_per_second} for run in runs],
            "summary": summary,
            "ratios": found,
        }
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {options.json}")


if __name__ == "__main__":
    main()
