"""Training speed: fits side by side, one fit's step time, a step profile, DDP on N GPUs vs 1.

    python benchmarks/training.py speed --device cpu --batch-size 32 --epochs 1 --seeds 3
    python benchmarks/training.py speed --device cuda --which b,c --batch-size 1024 --epochs 8 --lr 0.01 --graph c
    python benchmarks/training.py speed --which c --variant "augment=--config configs/robust.yaml" \\
        --variant "plain=--config configs/robust.yaml --data.augment=false" --seeds 3
    python benchmarks/training.py fit --config configs/mnist_fast.yaml        # lenet fit ARGS, FitTimer's numbers
    python benchmarks/training.py profile --steps 200:230 -- --config configs/ddp.yaml --trainer.devices=2
    python benchmarks/training.py ddp --devices 2 --epochs 10 --batch-sizes 512 --repeats 2

``speed`` runs, in one process on one copy of MNIST:
(a) tutorial  torchvision ``datasets.MNIST`` read from the bundled IDX files, PIL transforms per sample
              (Resize 32×32, ToTensor, Normalize), ``random_split`` 55 000/5 000, shuffling ``DataLoader``s,
              lenet's ``LeNet`` and a Lightning ``Trainer``.
(b) plain     the same network (``LeNet5``) in a plain PyTorch loop over the in-memory tensors lenet's
              datamodule makes, on the device; fused Adam as lenet's; no Lightning.
(c) lenet     ``lenet fit`` itself, in-process, with progress bar, logger, checkpoints and model summary off.
NAME          each ``--variant NAME=ARGS``: ``lenet fit ARGS`` with its checkpoints and logger (augmented
              training vs plain is two variants, as above).
Fit seconds cover training and the per-epoch validation, nothing else: the wall time of ``trainer.fit``
less the one-time data decode ("data s"), for (b) the epoch loop; on CUDA read after a synchronize.
Test accuracy is on the 10 000 test images (of the best checkpoint where the fit saved one). Ratios
of mean fit seconds: (a)/(c), how many times faster lenet is than the tutorial; (c)/(b), lenet's
framework overhead. Runs alternate within a seed, so a busy machine slows all alike.

``fit`` (and ``ddp``) time a fit with the FitTimer callback (its docstring says what each number covers).
``profile``: torch.profiler over global steps FIRST:LAST of a ``lenet fit`` in a new process; each rank
writes ``rank{N}.txt``. ``ddp``: ``configs/ddp.yaml`` on N devices vs 1 at the same per-device batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: `benchmarks.common` importable

import argparse
import gzip
import inspect
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor

from benchmarks.common import (
    ROOT,
    clock,
    cpu_counters,
    header,
    lenet,
    other_cpu_share,
    quiet_lightning,
    run_boxed,
    stopwatch,
    working_directory,
    wrapped_methods,
    write_results,
)
from lenet_cli.data import idx
from lenet_cli.data.mnist import MNISTDataModule
from lenet_cli.training.cuda_graph import GraphedStep
from lenet_cli.training.module import LeNet

LABELS = {"a": "(a) tutorial pipeline", "b": "(b) plain PyTorch loop", "c": "(c) lenet fit"}
DEFAULT_LR = inspect.signature(LeNet).parameters["lr"].default  # the tutorial's, LeNet's default
SPLIT_SEED = 42  # MNISTDataModule's default split_seed; (a) holds out a split of the same size
EVAL_BATCH_SIZE = 1000  # MNISTDataModule's default eval_batch_size, used by (b) too
# (c) pays for the same work as (a) and (b): no progress bar, checkpoint files, logger, model summary or
# sample images. lenet always adds its ModelCheckpoint: save_top_k=0 and no last.ckpt make it write nothing.
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
QUIET_C = [*QUIET, "--trainer.logger=false", "--checkpoint.save_top_k=0", "--checkpoint.save_last=false",
           "--sample_images.num_images=0"]  # fmt: skip


@dataclass
class Run:
    variant: str
    seed: int
    batch_size: int
    epochs: int  # epochs trained (early stopping may end a config's fit sooner)
    train_images: int  # optimizer steps × batch size
    fit_seconds: float
    data_seconds: float  # one-time read/decode of the data, outside fit_seconds
    test_accuracy: float
    other_cpu: float | None  # share of all CPUs that other processes used meanwhile (Linux)


def run_tutorial(options: argparse.Namespace, seed: int, device: torch.device, root: Path) -> Run:
    from torch.utils.data import DataLoader, Dataset, random_split
    from torchvision import datasets, transforms

    class WithIndex(Dataset):  # (image, label, index): LeNet's steps take the batches lenet's datamodule yields
        def __init__(self, dataset: Any) -> None:
            self.dataset = dataset

        def __len__(self) -> int:
            return len(self.dataset)

        def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
            return (*self.dataset[index], index)

    raw = root / "MNIST" / "raw"  # where torchvision looks before downloading
    raw.mkdir(parents=True, exist_ok=True)
    for stem in idx.FILES.values():
        path = idx.find_file(idx.bundled_dir(), stem)
        assert path is not None, f"the bundled MNIST copy lacks {stem}"
        (raw / stem).write_bytes(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes())
    seed_everything(seed, verbose=False)
    transform = transforms.Compose(
        [transforms.Resize((32, 32)), transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    start = time.perf_counter()
    train_full = datasets.MNIST(str(root), train=True, transform=transform)
    test_set = datasets.MNIST(str(root), train=False, transform=transform)
    train_set, val_set = random_split(train_full, [55_000, 5_000], torch.Generator().manual_seed(SPLIT_SEED))
    data_seconds = time.perf_counter() - start

    def loader(dataset: Any, shuffle: bool = False) -> DataLoader:
        return DataLoader(WithIndex(dataset), batch_size=options.batch_size, shuffle=shuffle)

    model = LeNet(lr=options.lr)
    trainer = Trainer(
        accelerator=device.type, devices=1, max_epochs=options.epochs, default_root_dir=str(root),
        limit_train_batches=options.limit_train_batches or 1.0, enable_progress_bar=False,
        enable_checkpointing=False, logger=False, enable_model_summary=False,
    )  # fmt: skip
    counters, start = cpu_counters(), clock(device)
    trainer.fit(model, loader(train_set, shuffle=True), loader(val_set))
    fit_seconds, other_cpu = clock(device) - start, other_cpu_share(counters, cpu_counters())
    (metrics,) = trainer.test(model, loader(test_set), verbose=False)
    return Run("a", seed, options.batch_size, trainer.current_epoch, trainer.global_step * options.batch_size,
               fit_seconds, data_seconds, float(metrics["test/acc"]), other_cpu)  # fmt: skip


@torch.no_grad()
def accuracy(network: torch.nn.Module, images: Tensor, labels: Tensor) -> float:
    network.eval()
    correct = torch.zeros((), dtype=torch.long, device=images.device)
    for start in range(0, len(images), EVAL_BATCH_SIZE):
        logits = network(images[start : start + EVAL_BATCH_SIZE])
        correct += (logits.argmax(dim=1) == labels[start : start + EVAL_BATCH_SIZE]).sum()
    network.train()
    return correct.item() / len(images)  # the one host sync per evaluation


def run_plain(options: argparse.Namespace, seed: int, device: torch.device) -> Run:
    start = clock(device)
    data = MNISTDataModule()
    data.setup("fit")  # the splits exactly as lenet makes them (split, resize, normalisation)
    splits = {split: tuple(t.to(device) for t in data.model_inputs(split)) for split in ("train", "val", "test")}
    data_seconds = clock(device) - start
    torch.manual_seed(seed)
    network = LeNet(lr=options.lr).network.to(device)  # the plain nn.Module, no LightningModule
    if options.plain_channels_last:  # what lenet does on the CPU by default
        network.to(memory_format=torch.channels_last)
        splits = {name: (x.contiguous(memory_format=torch.channels_last), y) for name, (x, y) in splits.items()}
    optimizer = torch.optim.Adam(network.parameters(), lr=options.lr, fused=True)  # as LeNet's, CPU and CUDA
    images, labels = splits["train"]
    steps = min(len(images) // options.batch_size, options.limit_train_batches or len(images))  # drop_last
    generator = torch.Generator(device=device).manual_seed(seed)
    graphed = None  # --graph b: the same CUDA-graph step as lenet's --model.cuda_graph

    def eager_backward(x: Tensor, y: Tensor) -> None:
        # A function, so that no loss outlives its step: a live loss keeps its autograd graph's
        # gradient-accumulation nodes, and a capture reusing them runs them on the default stream.
        loss = F.cross_entropy(network(x), y)
        optimizer.zero_grad(set_to_none=graphed is None or graphed.graph is None)
        loss.backward()

    if "b" in options.graph and device.type == "cuda":
        graphed = GraphedStep(lambda x, y: (F.cross_entropy(network(x), y),), list(network.parameters()))
    counters, start = cpu_counters(), clock(device)
    for _ in range(options.epochs):
        order = torch.randperm(len(images), device=device, generator=generator)
        for step in range(steps):
            batch = order[step * options.batch_size : (step + 1) * options.batch_size]
            if graphed is None or graphed(images[batch], labels[batch]) is None:
                eager_backward(images[batch], labels[batch])
            optimizer.step()
        accuracy(network, *splits["val"])  # the Lightning loops validate after every epoch too
    fit_seconds, other_cpu = clock(device) - start, other_cpu_share(counters, cpu_counters())
    return Run("b", seed, options.batch_size, options.epochs, options.epochs * steps * options.batch_size,
               fit_seconds, data_seconds, accuracy(network, *splits["test"]), other_cpu)  # fmt: skip


def absolute_configs(args: list[str]) -> list[str]:
    """``args`` with each ``--config PATH`` made absolute: lenet runs in a scratch folder."""
    after_flag = [previous == "--config" for previous in ["", *args]]
    return [
        str(Path(arg).resolve())
        if flagged
        else "--config=" + str(Path(arg[9:]).resolve())
        if arg.startswith("--config=")
        else arg
        for arg, flagged in zip(args, after_flag, strict=False)
    ]


def run_lenet(key: str, args: list[str], seed: int, device: torch.device, workdir: Path) -> Run:
    """``lenet fit ARGS`` in ``workdir``; test accuracy of its best checkpoint if it saved one."""
    data_hooks = ("prepare_data", "setup", "train_dataloader", "val_dataloader")  # where lenet decodes MNIST
    with (
        wrapped_methods(Trainer, ("fit",), lambda: stopwatch(device)) as fits,
        wrapped_methods(MNISTDataModule, data_hooks, lambda: stopwatch(device)) as data_calls,
    ):
        counters = cpu_counters()
        lenet(args, workdir)
        other_cpu = other_cpu_share(counters, cpu_counters())
    ((trainer, fit_watch),) = fits
    data_seconds = sum(watch[0] for _, watch in data_calls)  # the decode runs inside trainer.fit
    datamodule = trainer.datamodule
    best = (
        trainer.checkpoint_callback.best_model_path if isinstance(trainer.checkpoint_callback, ModelCheckpoint) else ""
    )
    with working_directory(workdir):
        (metrics,) = trainer.test(
            trainer.lightning_module, datamodule=datamodule, ckpt_path=best or None, verbose=False
        )
    batch_size = datamodule.hparams.batch_size
    return Run(key, seed, batch_size, trainer.current_epoch, trainer.global_step * batch_size,
               fit_watch[0] - data_seconds, data_seconds, float(metrics["test/acc"]), other_cpu)  # fmt: skip


def summarise(runs: list[Run]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys(run.variant for run in runs):
        mine = [run for run in runs if run.variant == key]
        fits = [run.fit_seconds for run in mine]
        summary[key] = {
            "label": LABELS.get(key, key),
            "batch_size": mine[0].batch_size,
            "epochs": statistics.fmean(run.epochs for run in mine),
            "fit_seconds": statistics.fmean(fits),
            "fit_seconds_stdev": statistics.stdev(fits) if len(fits) > 1 else 0.0,
            "fit_seconds_min": min(fits),  # the least disturbed by other processes
            "images_per_second": statistics.fmean(run.train_images / run.fit_seconds for run in mine),
            "test_accuracy": statistics.fmean(run.test_accuracy for run in mine),
            "test_accuracy_min": min(run.test_accuracy for run in mine),
            "data_seconds": statistics.fmean(run.data_seconds for run in mine),
            "other_cpu_max": max((run.other_cpu for run in mine if run.other_cpu is not None), default=None),
        }
    for slow, fast in (("a", "c"), ("c", "b")):
        if slow in summary and fast in summary:
            summary[f"{slow}/{fast}"] = {"ratio": summary[slow]["fit_seconds"] / summary[fast]["fit_seconds"]}
    return summary


def speed(options: argparse.Namespace) -> None:
    device = torch.device(options.device)
    warm = torch.randn(64, 64, device=device)  # one-time device start-up before any timed run
    (warm @ warm).sum().item()
    record = header(device.type, options.seeds, ("torchvision",))
    keys = options.which + list(options.variant)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="lenet-speed-") as scratch:
        for seed in range(options.seeds):
            for key in keys:
                workdir = Path(scratch) / f"run{len(runs)}"
                workdir.mkdir()
                common = [f"--trainer.accelerator={device.type}", "--trainer.devices=1", f"--seed_everything={seed}"]
                if options.limit_train_batches:
                    common.append(f"--trainer.limit_train_batches={options.limit_train_batches}")
                if key == "a":
                    run = run_tutorial(options, seed, device, Path(scratch))
                elif key == "b":
                    run = run_plain(options, seed, device)
                elif key == "c":
                    args = ["fit", f"--data.batch_size={options.batch_size}", f"--trainer.max_epochs={options.epochs}",
                            f"--model.lr={options.lr}", *common, *QUIET_C]  # fmt: skip
                    args += ["--model.cuda_graph=true"] if "c" in options.graph else []
                    run = run_lenet(key, args, seed, device, workdir)
                else:
                    run = run_lenet(key, ["fit", *options.variant[key], *common, *QUIET], seed, device, workdir)
                runs.append(run)
                print(f"{LABELS.get(key, key):<24} seed {seed}: fit {run.fit_seconds:.2f} s, test acc "
                      f"{100 * run.test_accuracy:.2f} %, data {run.data_seconds:.2f} s, others {run.other_cpu}",
                      flush=True)  # fmt: skip
    summary = summarise(runs)
    print(f"\n{'variant':<24}{'batch':>6}{'epochs':>7}{'fit s':>8}{'± s':>7}{'min s':>8}{'test acc':>10}{'others':>8}")
    for row in (row for row in summary.values() if "label" in row):
        print(f"{row['label']:<24}{row['batch_size']:>6}{row['epochs']:>7.3g}{row['fit_seconds']:>8.2f}"
              f"{row['fit_seconds_stdev']:>7.2f}{row['fit_seconds_min']:>8.2f}{100 * row['test_accuracy']:>9.2f}%"
              f"{row['other_cpu_max'] or 0:>8.0%}")  # fmt: skip
    for name, row in summary.items():
        if "ratio" in row:
            print(f"{name}: {row['ratio']:.2f}×")
    write_results(f"training-speed-{device.type}", record, {"runs": [asdict(r) for r in runs], "summary": summary},
                  options.out)  # fmt: skip


# --- FitTimer, fit and ddp ----------------------------------------------------------------------------------


class FitTimer(Callback):
    """Times a fit and writes the numbers as JSON: "fit" from the first training epoch's start to the last
    one's end; "train" the batches of every epoch but the first (warm-up, the CUDA graph's capture); on a GPU
    each step by CUDA events (``step_ms_median``: a steady step).

    ``--trainer.callbacks+=benchmarks.training.FitTimer --trainer.callbacks.output=t.json`` (the
    repository root on PYTHONPATH).

    Args:
        output: The JSON file; rank N > 0 writes ``<stem>.rankN<suffix>`` beside it, so that a rank whose
            host is slower, and paces the others through the all-reduce, shows.
    """

    def __init__(self, output: str = "fit_timer.json") -> None:
        self.output = Path(output)
        self.batch_size = 0  # per device, from the first training batch
        self.start = 0.0
        self.epoch_start: tuple[float, int] | None = None  # (time, global step)
        self.epochs: list[tuple[float, int]] = []  # (training seconds, optimizer steps) per epoch
        self.events: list[torch.cuda.Event] = []  # at each training batch's start, this epoch
        self.step_ms: list[list[float]] = []  # per epoch, each step's milliseconds on the GPU's clock

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.strategy.barrier()
        self.start = clock(pl_module.device)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.epoch_start, self.events = (clock(pl_module.device), trainer.global_step), []

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self.batch_size = self.batch_size or len(batch[0])  # lenet's batches: (images, labels, indices)
        if pl_module.device.type == "cuda" and self.epoch_start is not None:
            self.events.append(torch.cuda.Event(enable_timing=True))
            self.events[-1].record()

    def _close_epoch(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.epoch_start is None:
            return
        if self.events:
            self.events.append(torch.cuda.Event(enable_timing=True))
            self.events[-1].record()
        started, step = self.epoch_start
        self.epochs.append((clock(pl_module.device) - started, trainer.global_step - step))
        self.step_ms.append([a.elapsed_time(b) for a, b in zip(self.events, self.events[1:], strict=False)])
        self.epoch_start = None

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._close_epoch(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close_epoch(trainer, pl_module)  # epochs without validation

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        seconds = clock(pl_module.device) - self.start
        trainer.strategy.barrier()
        images_per_step = self.batch_size * trainer.world_size
        steady = self.epochs[1:] or self.epochs
        train_seconds, train_steps = sum(s for s, _ in steady), max(1, sum(n for _, n in steady))
        step_ms = [ms for epoch in self.step_ms[1:] or self.step_ms for ms in epoch]
        numbers = {
            "world_size": trainer.world_size,
            "batch_size_per_device": self.batch_size,
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "fit_seconds": seconds,
            "fit_images_per_second": trainer.global_step * images_per_step / seconds,
            "train_seconds_per_epoch": [s for s, _ in self.epochs],
            "train_images_per_second": train_steps * images_per_step / max(train_seconds, 1e-9),
            "train_ms_per_step": 1e3 * train_seconds / train_steps,
            "step_ms_median": statistics.median(step_ms) if step_ms else None,
            "val_acc": float(trainer.callback_metrics.get("val/acc", float("nan"))),
        }
        path = self.output
        if trainer.global_rank:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        path.write_text(json.dumps(numbers) + "\n")


def timer_args(output: Path) -> list[str]:
    return ["--trainer.callbacks+=benchmarks.training.FitTimer", f"--trainer.callbacks.output={output}"]


def fit(options: argparse.Namespace) -> None:
    device = "cuda" if torch.cuda.is_available() and "--trainer.accelerator=cpu" not in options.lenet_args else "cpu"
    record = header(device, 1)
    with tempfile.TemporaryDirectory(prefix="lenet-fit-") as scratch:
        output = Path(scratch) / "fit_timer.json"
        lenet(["fit", *absolute_configs(options.lenet_args), *QUIET, *timer_args(output)], Path(scratch))
        numbers = json.loads(output.read_text())
    print(json.dumps(numbers, indent=1))
    write_results(f"training-fit-{device}", record, numbers, options.out)


def ddp(options: argparse.Namespace) -> None:
    record = header("cuda" if options.accelerator == "gpu" else "cpu", options.repeats)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lenet-ddp-") as scratch:
        for batch_size in [int(size) for size in options.batch_sizes.split(",")] * options.repeats:
            row: dict[str, Any] = {"batch_size_per_device": batch_size}
            for devices in (1, options.devices):
                output = Path(scratch) / f"timer{len(results)}-{devices}.json"
                command = [
                    sys.executable, "-m", "lenet_cli", "fit", "--config", str(ROOT / "configs" / "ddp.yaml"),
                    f"--trainer.accelerator={options.accelerator}", f"--trainer.devices={devices}",
                    *([] if devices > 1 else ["--trainer.strategy=auto"]), f"--data.batch_size={batch_size}",
                    f"--trainer.max_epochs={options.epochs}", f"--model.lr={options.lr}", "--seed_everything=0", *QUIET,
                    f"--trainer.logger.init_args.save_dir={Path(scratch) / 'runs'}", *options.extra.split(),
                    *timer_args(output),
                ]  # fmt: skip
                status = run_boxed(command, options.limit, output.with_suffix(".log"))
                if status != 0:
                    raise SystemExit(
                        f"lenet fit on {devices} devices: {status}\n{output.with_suffix('.log').read_text()[-3000:]}"
                    )
                row[str(devices)] = json.loads(output.read_text())
                rank1 = output.with_name(f"{output.stem}.rank1.json")  # the second rank's own clock
                row[str(devices)]["rank1_step_ms_median"] = (
                    json.loads(rank1.read_text())["step_ms_median"] if rank1.exists() else None
                )
            row["speedup"] = row[str(options.devices)]["train_images_per_second"] / row["1"]["train_images_per_second"]
            results.append(row)
            one, many = row["1"], row[str(options.devices)]
            print(f"batch {batch_size}/device: train images/s {one['train_images_per_second']:.0f} on 1, "
                  f"{many['train_images_per_second']:.0f} on {options.devices} ({row['speedup']:.2f}×); median step "
                  f"{one['step_ms_median']} → {many['step_ms_median']} ms (rank 1: {many['rank1_step_ms_median']})",
                  flush=True)  # fmt: skip
    write_results(f"training-ddp-{options.devices}x{options.accelerator}", record, results, options.out)


# --- profile ------------------------------------------------------------------------------------------


class StepProfiler(Callback):
    """torch.profiler over global steps ``first`` to ``last``; each rank writes ``output_dir/rank{N}.txt``.

    The profiler itself roughly doubles host times.

    Args:
        first: The global step at which profiling starts.
        last: The global step at which it stops.
        output_dir: Where each rank writes its table.
    """

    def __init__(self, first: int = 200, last: int = 230, output_dir: str = "profile") -> None:
        self.first, self.last, self.output_dir = first, last, Path(output_dir)
        self.profiler: torch.profiler.profile | None = None
        self.started = 0.0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.first and self.profiler is None:
            activities = [torch.profiler.ProfilerActivity.CPU]
            activities += [torch.profiler.ProfilerActivity.CUDA] if pl_module.device.type == "cuda" else []
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.__enter__()
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if self.profiler is None or trainer.global_step != self.last:
            return
        seconds = clock(pl_module.device) - self.started
        self.profiler.__exit__(None, None, None)
        table = self.profiler.key_averages().table(sort_by="cpu_time_total", row_limit=60, max_name_column_width=70)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / f"rank{trainer.global_rank}.txt").write_text(
            f"world size {trainer.world_size}, steps {self.first}..{self.last}: "
            f"{1e3 * seconds / (self.last - self.first):.3f} ms a step (host, profiler on)\n\n{table}\n"
        )
        self.profiler = None


def profile(options: argparse.Namespace) -> None:
    header("cuda" if torch.cuda.is_available() else "cpu", 1)
    first, _, last = options.steps.partition(":")
    command = [
        sys.executable, "-m", "lenet_cli", "fit", *absolute_configs(options.lenet_args), *QUIET,
        "--trainer.callbacks+=benchmarks.training.StepProfiler", f"--trainer.callbacks.first={int(first)}",
        f"--trainer.callbacks.last={int(last)}", f"--trainer.callbacks.output_dir={options.out_dir.resolve()}",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="lenet-profile-") as scratch:
        status = run_boxed(command, options.limit, options.out_dir / "fit.log", cwd=Path(scratch))
    print(f"lenet fit: exit {status}; log {options.out_dir / 'fit.log'}")
    for table in sorted(options.out_dir.glob("rank*.txt")):
        print(f"{table}: {table.read_text().splitlines()[0]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    modes = parser.add_subparsers(dest="mode", required=True)
    mode = modes.add_parser("speed", help="(a) tutorial, (b) plain loop, (c) lenet fit and variants side by side")
    mode.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    mode.add_argument("--which", help="a comma-separated subset of a,b,c (default: all; none with --variant)")
    mode.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS", help="also time `lenet fit ARGS`")
    mode.add_argument("--batch-size", type=int, default=64, help="batch size of (a), (b), (c)")
    mode.add_argument("--epochs", type=int, default=1, help="epochs of (a), (b), (c)")
    mode.add_argument("--lr", type=float, default=DEFAULT_LR, help="learning rate of (a), (b), (c)")
    mode.add_argument("--seeds", type=int, default=1, help="repeat each run with seeds 0..N-1; report means")
    mode.add_argument("--limit-train-batches", type=int, default=None, help="train steps per epoch (smoke runs)")
    mode.add_argument("--graph", default="", help="the subset of b,c that replay their step from a CUDA graph")
    mode.add_argument("--plain-channels-last", action="store_true", help="(b) in NHWC format, as lenet on a CPU")
    modes.add_parser("fit", help="one lenet fit timed by FitTimer (LENET_FIT_ARGS after --)")
    mode = modes.add_parser("ddp", help="lenet fit --config configs/ddp.yaml on N devices vs 1")
    mode.add_argument("--devices", type=int, default=2)
    mode.add_argument("--accelerator", default="gpu", help="gpu, or cpu for a smoke run on gloo")
    mode.add_argument("--batch-sizes", default="512", help="per-device batch sizes, comma-separated")
    mode.add_argument("--epochs", type=int, default=10)
    mode.add_argument("--repeats", type=int, default=1, help="run each pair (1 device, N) this many times")
    mode.add_argument("--lr", type=float, default=0.005, help="--model.lr of every fit (the one-cycle peak)")
    mode.add_argument("--extra", default="", help="more lenet fit arguments, e.g. --model.cuda_graph=false")
    mode.add_argument("--limit", type=float, default=300, help="seconds one fit may take before it is killed")
    mode = modes.add_parser("profile", help="torch.profiler over chosen steps of a lenet fit, a table per rank")
    mode.add_argument("--steps", default="200:230", help="FIRST:LAST global steps to profile")
    mode.add_argument("--out-dir", type=Path, default=Path("profile"), help="folder of rank{N}.txt and fit.log")
    mode.add_argument("--limit", type=float, default=300, help="seconds the fit may take before it is killed")
    for name, mode in modes.choices.items():
        mode.allow_abbrev = False
        if name != "profile":
            mode.add_argument("--out", type=Path, help="the results file (default: in benchmarks/results/)")
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    options, unknown = parser.parse_known_args(argv[:split])
    options.lenet_args = unknown + argv[split + 1 :]  # fit, profile: the lenet fit arguments
    if options.lenet_args and options.mode in ("speed", "ddp"):
        parser.error(f"unrecognized arguments: {' '.join(options.lenet_args)}")
    if options.mode == "speed":
        options.which = [key for key in (options.which or ("" if options.variant else "a,b,c")).split(",") if key]
        options.graph = [key for key in options.graph.split(",") if key]
        if not set(options.which) <= set(LABELS) or not set(options.graph) <= {"b", "c"}:
            parser.error("--which takes a subset of a,b,c and --graph one of b,c")
        variants = [spec.partition("=") for spec in options.variant]
        if any(not equals or name in LABELS for name, equals, _ in variants):
            parser.error("--variant: give NAME=ARGS with a name other than a, b, c")
        options.variant = {name: absolute_configs(args.split()) for name, _, args in variants}
        if options.device == "cuda" and not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device is visible to torch")
    quiet_lightning()
    {"speed": speed, "fit": fit, "ddp": ddp, "profile": profile}[options.mode](options)


if __name__ == "__main__":
    main()
