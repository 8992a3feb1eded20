"""Training speed, side by side on one machine and one copy of MNIST (issue 4, part 5).

(a) tutorial  torchvision ``datasets.MNIST`` read from the bundled IDX files, PIL transforms per sample
              (Resize 32×32, ToTensor, Normalize), ``random_split`` 55 000/5 000, shuffling
              ``DataLoader``s, ``lenet_cli.model.LeNet`` and a Lightning ``Trainer``.
(b) plain     the same LeNet layers in a plain PyTorch loop over the in-memory tensors that
              ``lenet_cli.data.MNISTDataModule`` makes, on the device; fused Adam as lenet's; no Lightning.
(c) lenet     ``lenet fit`` itself, run in-process through ``lenet_cli.cli.main``.

Each reports fit seconds, training images per fit second and test accuracy on the 10 000 test images.
Fit seconds cover training and the per-epoch validation on the 5 000 held-out images (which all three
do), nothing else: for (a) and (c) the wall time of ``trainer.fit``, for (b) the epoch loop; the
one-time reading and decoding of the data is timed apart ("data s") and, for (c), subtracted from its
``trainer.fit``. On CUDA the clock is read after a synchronize.

    python benchmarks/speed.py --device cpu --batch-size 32 --epochs 1
    python benchmarks/speed.py --device cuda --which b,c --batch-size 64 --epochs 10 --seeds 3
    python benchmarks/speed.py --device cuda --which a,c --lenet-config configs/mnist.yaml --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import gzip
import inspect
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning
import torch
import torch.nn.functional as F
import torchvision
from lightning.pytorch import Trainer, seed_everything
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, random_split
from torchvision import datasets, transforms

import lenet_cli
from lenet_cli import idx
from lenet_cli.cli import main as lenet_main
from lenet_cli.data import MNISTDataModule
from lenet_cli.graphs import GraphedStep
from lenet_cli.model import LeNet

VARIANTS = {"a": "(a) tutorial pipeline", "b": "(b) plain PyTorch loop", "c": "(c) lenet fit"}
DEFAULT_LR = inspect.signature(LeNet).parameters["lr"].default  # the tutorial's, LeNet's default
TRAIN_SIZE, VAL_SIZE = 55_000, 5_000
SPLIT_SEED = 42  # MNISTDataModule's default split_seed; (a) holds out a split of the same size
EVAL_BATCH_SIZE = 1000  # MNISTDataModule's default eval_batch_size, used by (b) too

TUTORIAL_TRANSFORM = transforms.Compose(
    [transforms.Resize((32, 32)), transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
)

# The runs being compared pay for the same work only: no progress bar, checkpoint files, logger or
# model summary. ``--lenet-full`` times (c) as users run it instead.
QUIET_TRAINER = {
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


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def cpu_counters() -> tuple[float, int, int] | None:
    """(time, clock ticks the machine was busy, ticks this process and its reaped children used); Linux."""
    try:
        machine = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        mine = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[11:15]  # utime .. cstime
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = machine
    return time.perf_counter(), user + nice + system + irq + softirq + steal, sum(int(value) for value in mine)


def other_cpu_share(before: tuple[float, int, int] | None, after: tuple[float, int, int] | None) -> float | None:
    """How much of the machine's CPUs other processes (and the hypervisor) took between two counters."""
    if before is None or after is None:
        return None
    available = (after[0] - before[0]) * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)
    others = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, others / available) if available > 0 else None


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def command_line(argv: list[str]) -> Iterator[None]:
    """``sys.argv`` as ``lenet`` would see it: LightningCLI warns when it holds options besides ``args``."""
    previous = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = previous


@contextlib.contextmanager
def timed_methods(cls: type, names: tuple[str, ...], device: torch.device) -> Iterator[list[tuple[object, float]]]:
    """Record ``(instance, seconds)`` for each outermost call of the methods ``names`` of ``cls`` in the block.

    Patched on the class, since ``lenet fit`` builds its own instances; a timed method that calls
    another counts once.
    """
    calls: list[tuple[object, float]] = []
    originals = {name: getattr(cls, name) for name in names}
    depth = 0

    def timed(original: Callable) -> Callable:
        @functools.wraps(original)
        def wrapper(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            nonlocal depth
            start = clock(device) if depth == 0 else 0.0
            depth += 1
            try:
                return original(self, *args, **kwargs)
            finally:
                depth -= 1
                if depth == 0:
                    calls.append((self, clock(device) - start))

        return wrapper

    for name, original in originals.items():
        setattr(cls, name, timed(original))
    try:
        yield calls
    finally:
        for name, original in originals.items():
            setattr(cls, name, original)


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
        return len(self.dataset)

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
    return {split: tuple(tensor.to(device) for tensor in data.model_inputs(split)) for split in ("train", "val", "test")}


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
    network = nn.Sequential(lenet.features, lenet.classifier).to(device)  # LeNet's layers, no LightningModule
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
# (c) lenet fit


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
    args += [f"--trainer.accelerator={device.type}", "--trainer.devices=1", f"--seed_everything={seed}"]
    if "c" in options.graph:
        args.append("--model.cuda_graph=true")
    args += options.lenet_args.split()
    if options.limit_train_batches:
        args.append(f"--trainer.limit_train_batches={options.limit_train_batches}")
    if not options.lenet_full:
        args += QUIET_LENET_ARGS
    return args


def run_lenet(options: argparse.Namespace, seed: int, device: torch.device, workdir: Path) -> Run:
    with (
        working_directory(workdir),
        timed_methods(Trainer, ("fit",), device) as fits,
        timed_methods(MNISTDataModule, DATA_HOOKS, device) as data_calls,
        command_line([sys.argv[0]]),
    ):
        counters = cpu_counters()  # around the whole command: argument parsing is short
        lenet_main(lenet_args(options, seed, device))
        other_cpu = other_cpu_share(counters, cpu_counters())
    ((trainer, fit_wall),) = fits
    data_seconds = sum(seconds for _, seconds in data_calls)  # the decode runs inside trainer.fit
    assert isinstance(trainer, Trainer)
    datamodule = trainer.datamodule
    with working_directory(workdir):
        (metrics,) = trainer.test(trainer.lightning_module, datamodule=datamodule, verbose=False)
    batch_size = datamodule.hparams.batch_size
    return Run(
        "c", seed, batch_size, trainer.current_epoch, trainer.global_step * batch_size,
        fit_wall - data_seconds, data_seconds, float(metrics["test/acc"]), other_cpu,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Reporting


def machine_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads"


def source_version() -> str | None:
    """The git commit of the lenet_cli being timed, ``+dirty`` if its sources have local changes."""
    package = Path(lenet_cli.__file__).parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=package, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], cwd=package, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None  # an installed copy, not a checkout
    return commit + ("+dirty" if dirty else "")


def mean(runs: list[Run], value: Callable[[Run], float]) -> float:
    return statistics.fmean(value(run) for run in runs)


def summarise(runs: list[Run]) -> dict[str, dict[str, float]]:
    summary = {}
    for key in VARIANTS:
        mine = [run for run in runs if run.variant == key]
        if mine:
            summary[key] = {
                "batch_size": mine[0].batch_size,
                "epochs": mean(mine, lambda run: run.epochs),
                "fit_seconds": mean(mine, lambda run: run.fit_seconds),
                "fit_seconds_min": min(run.fit_seconds for run in mine),  # the least disturbed by other processes
                "fit_seconds_stdev": statistics.stdev(run.fit_seconds for run in mine) if len(mine) > 1 else 0.0,
                "images_per_second": mean(mine, lambda run: run.images_per_second),
                "test_accuracy": mean(mine, lambda run: run.test_accuracy),
                "data_seconds": mean(mine, lambda run: run.data_seconds),
                "other_cpu_max": max((run.other_cpu for run in mine if run.other_cpu is not None), default=None),
                "seeds": len(mine),
            }
    return summary


def ratios(summary: dict[str, dict[str, float]]) -> dict[str, float]:
    """Ratios of mean fit seconds (``a/c``, ``c/b``) and of the fastest seeds (``a/c min``, ``c/b min``)."""
    found = {}
    for slow, fast in (("a", "c"), ("c", "b")):
        if slow in summary and fast in summary:
            found[f"{slow}/{fast}"] = summary[slow]["fit_seconds"] / summary[fast]["fit_seconds"]
            found[f"{slow}/{fast} min"] = summary[slow]["fit_seconds_min"] / summary[fast]["fit_seconds_min"]
    return found


def percent(share: float | None) -> str:
    return "?" if share is None else f"{100 * share:.0f} %"


def print_table(summary: dict[str, dict[str, float]], found: dict[str, float], header: list[str]) -> None:
    print()
    for line in header:
        print(line)
    print(
        f"{'variant':<24}{'batch':>6}{'epochs':>7}{'fit s':>9}{'± s':>7}{'min s':>8}{'images/s':>10}{'test acc':>10}"
        f"{'data s':>8}{'others':>8}"
    )
    for key, row in summary.items():
        print(
            f"{VARIANTS[key]:<24}{row['batch_size']:>6}{row['epochs']:>7.3g}{row['fit_seconds']:>9.2f}"
            f"{row['fit_seconds_stdev']:>7.2f}{row['fit_seconds_min']:>8.2f}{row['images_per_second']:>10.0f}"
            f"{100 * row['test_accuracy']:>9.2f}%{row['data_seconds']:>8.2f}{percent(row['other_cpu_max']):>8}"
        )
    if "a/c" in found:
        print(
            f"(a)/(c) lenet fit vs the tutorial pipeline: {found['a/c']:.2f}x faster "
            f"({found['a/c min']:.2f}x on min s)"
        )
    if "c/b" in found:
        print(
            f"(c)/(b) framework overhead of lenet fit over the plain loop: {found['c/b']:.3f}x "
            f"({found['c/b min']:.3f}x on min s)"
        )


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=DEFAULT_LR)
    parser.add_argument("--which", default="a,b,c", help="comma-separated subset of a, b, c")
    parser.add_argument("--seeds", type=int, default=1, help="repeat each variant with seeds 0..N-1; report means")
    parser.add_argument("--limit-train-batches", type=int, default=None, help="train steps per epoch (smoke runs)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers of (a)")
    parser.add_argument(
        "--lenet-config", type=Path, default=None, help="time (c) with this config (its batch size, epochs, lr)"
    )
    parser.add_argument(
        "--lenet-full",
        action="store_true",
        help="time (c) with its normal progress bar, logger, checkpoints and model summary",
    )
    parser.add_argument(
        "--graph", default="", help="comma-separated subset of b, c that replay their training step from a CUDA graph"
    )
    parser.add_argument("--plain-channels-last", action="store_true", help="(b) in NHWC memory format, as lenet on a CPU")
    parser.add_argument("--lenet-args", default="", help="more `lenet fit` arguments for (c), e.g. --model.channels_last=true")
    parser.add_argument("--json", type=Path, default=None, help="write every run and the summary here")
    options = parser.parse_args(argv)
    options.which = [key.strip() for key in options.which.split(",") if key.strip()]
    options.graph = [key.strip() for key in options.graph.split(",") if key.strip()]
    if not set(options.graph) <= {"b", "c"}:
        parser.error(f"--graph takes a comma-separated subset of b,c; got {','.join(options.graph)}")
    unknown = sorted(set(options.which) - set(VARIANTS))
    if unknown or not options.which:
        parser.error(f"--which takes a comma-separated subset of a,b,c; got {','.join(options.which) or 'nothing'}")
    if options.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    if options.lenet_config is not None:
        if not options.lenet_config.is_file():
            parser.error(f"--lenet-config {options.lenet_config}: no such file")
        options.lenet_config = options.lenet_config.resolve()  # (c) runs in a temporary folder
    if options.seeds < 1 or options.batch_size < 1 or options.epochs < 1:
        parser.error("--seeds, --batch-size and --epochs must be positive")
    return options


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    device = torch.device(options.device)
    # Lightning's start-up banners and the few-workers hint would bury the results; warnings stay.
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")

    # One-time device start-up (CUDA context, kernels, thread pools) is paid before any timed variant.
    warm = torch.randn(64, 64, device=device)
    (warm @ warm).sum().item()

    lightning_note = (
        "(c) runs with its normal progress bar, logger, checkpoints and model summary (--lenet-full); "
        "(a) without them"
        if options.lenet_full
        else "Lightning runs (a), (c): progress bar, checkpointing, logging and model summary off"
    )
    counters = cpu_counters()
    time.sleep(1.0)
    busy = other_cpu_share(counters, cpu_counters())
    if busy is not None and busy > 0.1:
        print(
            f"warning: other processes use {percent(busy)} of the {os.cpu_count()} CPUs: the timings will be slow "
            "and noisy (see the 'others' column)",
            file=sys.stderr,
        )
    limit = f"; {options.limit_train_batches} train batches per epoch" if options.limit_train_batches else ""
    header = [
        f"device: {options.device} ({machine_name(device)}); torch {torch.__version__}, "
        f"lightning {lightning.__version__}, torchvision {torchvision.__version__}, "
        f"lenet_cli {source_version() or '?'}",
        f"{lightning_note}; (a) DataLoader workers: {options.num_workers}{limit}",
        f"(c) config: {options.lenet_config}" if options.lenet_config else "(c) the same batch size, epochs and lr",
        f"fit = training + per-epoch validation on {VAL_SIZE} images; data s = one-time read/decode, not in fit; "
        "others = most CPU share other processes took during a fit (timings are only comparable near 0 %)",
    ]
    for line in header:
        print(line)

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="lenet-speed-") as scratch:
        root = Path(scratch)
        if "a" in options.which:
            unpack_bundled_mnist(root)
        for seed in range(options.seeds):
            for key in options.which:
                if key == "a":
                    run = run_tutorial(options, seed, device, root)
                elif key == "b":
                    run = run_plain(options, seed, device)
                else:
                    workdir = root / f"lenet-seed{seed}"
                    workdir.mkdir()
                    run = run_lenet(options, seed, device, workdir)
                runs.append(run)
                print(
                    f"{VARIANTS[key]:<24} seed {seed}: fit {run.fit_seconds:.2f} s, "
                    f"{run.images_per_second:.0f} images/s, test acc {100 * run.test_accuracy:.2f} %, "
                    f"data {run.data_seconds:.2f} s, "
                    f"other processes {percent(run.other_cpu)} of the CPUs",
                    flush=True,
                )

    summary = summarise(runs)
    found = ratios(summary)
    graphed = f"; CUDA graph: {','.join(options.graph)}" if options.graph else ""
    print_table(summary, found, [header[0] + graphed])
    if options.json is not None:
        settings = vars(options).items()
        report = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": options.device,
            "machine": machine_name(device),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "torchvision": torchvision.__version__,
            "lenet_cli": source_version(),
            "notes": header[1:],
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
