"""Where a `lenet fit` training step spends its time, four ways.

    python benchmarks/profile_step.py syncs --batch-size 1024           # CUDA: host syncs by call site
    python benchmarks/profile_step.py cprofile --batch-size 1024 --epochs 2
    python benchmarks/profile_step.py torch --steps 200:230 --out prof -- --config configs/ddp.yaml --trainer.devices=2
    python benchmarks/profile_step.py progress-bar --steps 2000

- ``syncs`` (CUDA only): every host-device synchronisation during one epoch of ``lenet fit``, counted
  by the lines that caused it (``torch.cuda.set_sync_debug_mode``). Any per-step sync costs more than
  LeNet's whole step on a GPU.
- ``cprofile``: ms a step of a plain PyTorch loop (LeNet, fused Adam, in-memory data; no Lightning),
  then ``lenet fit`` under cProfile, sorted by own time and by cumulative time.
- ``torch``: torch.profiler over training steps FIRST:LAST of a ``lenet fit`` run in a new process
  (DDP's launcher starts its other ranks), through the StepProfiler callback; every rank writes
  ``OUT/rank{N}.txt`` with its host ms a step and the operators sorted by CPU time.
- ``progress-bar``: what Lightning's progress bar costs a step, with a model of next to no arithmetic
  (CPU, 1 thread, each setting twice): no bar, redrawn every 1, 10 or 100 batches.

``syncs`` and ``cprofile`` run ``lenet fit --config configs/mnist.yaml`` (progress bar and model summary
off) with the given batch size and epochs, plus ``--`` and any more ``lenet fit`` arguments; ``torch``
runs ``lenet fit`` with the arguments after ``--`` only.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: `benchmarks.timing` importable

import argparse
import collections
import contextlib
import cProfile
import io
import logging
import os
import pstats
import subprocess
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from torch.profiler import ProfilerActivity, profile

from benchmarks.timing import ROOT, command_line, environment, quiet_lightning, wrapped_methods
from lenet_cli.cli.main import main as lenet_main
from lenet_cli.data.mnist import MNISTDataModule
from lenet_cli.training.module import LeNet


class StepProfiler(Callback):
    """torch.profiler over training steps ``first`` to ``last`` (global steps); a table per rank.

    ``--trainer.callbacks+=benchmarks.profile_step.StepProfiler --trainer.callbacks.first=200 ...``
    (the repository root on PYTHONPATH). The profiler itself roughly doubles host times.

    Args:
        first: The global step at which profiling starts.
        last: The global step at which it stops.
        output_dir: Where each rank writes ``rank{N}.txt``.
    """

    def __init__(self, first: int = 200, last: int = 230, output_dir: str = "profile") -> None:
        self.first, self.last = first, last
        self.output_dir = Path(output_dir)
        self.profiler: profile | None = None
        self.started = 0.0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.first and self.profiler is None:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if pl_module.device.type == "cuda" else [])
            self.profiler = profile(activities=activities)
            self.profiler.__enter__()
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if self.profiler is not None and trainer.global_step == self.last:
            seconds = time.perf_counter() - self.started
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)
            self.profiler.__exit__(None, None, None)
            table = self.profiler.key_averages().table(sort_by="cpu_time_total", row_limit=60, max_name_column_width=70)
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / f"rank{trainer.global_rank}.txt").write_text(
                f"world size {trainer.world_size}, steps {self.first}..{self.last}: "
                f"{1e3 * seconds / (self.last - self.first):.3f} ms a step (host, profiler on)\n\n{table}\n"
            )
            self.profiler = None


def mnist_fit_args(options: argparse.Namespace, epochs: int) -> list[str]:
    return [
        "fit", "--config", str(ROOT / "configs" / "mnist.yaml"), f"--data.batch_size={options.batch_size}",
        f"--trainer.max_epochs={epochs}", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", *options.lenet_args,
    ]  # fmt: skip


def fit_inside(around: Any, args: list[str], workdir: Path) -> Trainer:
    """``lenet fit ARGS`` in ``workdir``, its ``trainer.fit`` run inside the context ``around()``."""
    previous = Path.cwd()
    os.chdir(workdir)
    try:
        with wrapped_methods(Trainer, ("fit",), around) as calls, command_line([sys.argv[0]]):
            lenet_main(args)
    finally:
        os.chdir(previous)
    ((trainer, _),) = calls
    assert isinstance(trainer, Trainer)
    return trainer


def host_syncs(options: argparse.Namespace, workdir: Path) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("syncs: needs a CUDA device (a CPU has no host-device syncs to find)")
    syncs: collections.Counter[str] = collections.Counter()

    def record(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if "synchroniz" in str(message):
            stack = [
                frame
                for frame in traceback.extract_stack()[:-2]
                if "/torch/" not in frame.filename or "lightning" in frame.filename
            ]
            syncs[" <- ".join(f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in stack[-4:])] += 1

    @contextlib.contextmanager
    def sync_debug() -> Iterator[None]:
        with warnings.catch_warnings():  # restores showwarning and the filters afterwards
            warnings.simplefilter("always")
            warnings.showwarning = record
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield
            finally:
                torch.cuda.set_sync_debug_mode(0)

    trainer = fit_inside(sync_debug, mnist_fit_args(options, 1), workdir)
    print(f"host syncs during a {trainer.global_step}-step epoch (count: where):")
    for where, count in syncs.most_common(25):
        print(f"  {count:5d}: {where}")


def plain_ms_per_step(batch_size: int, steps: int, device: torch.device) -> float:
    """ms a step of a plain loop: LeNet, fused Adam, a random index gather from in-memory data."""
    data = MNISTDataModule()
    data.setup("fit")
    images, labels = (tensor.to(device) for tensor in data.model_inputs("train"))
    model = LeNet().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

    def step() -> None:
        index = torch.randint(len(images), (batch_size,), device=device)
        loss = F.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(20):  # warm-up: cuDNN, the optimizer state
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 1e3 * (time.perf_counter() - start) / steps


def cprofile_fit(options: argparse.Namespace, workdir: Path) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"plain loop: {plain_ms_per_step(options.batch_size, options.plain_steps, device):.3f} ms a step")
    profiler = cProfile.Profile()

    @contextlib.contextmanager
    def profiled() -> Iterator[None]:
        profiler.enable()
        try:
            yield
        finally:
            profiler.disable()

    start = time.perf_counter()
    trainer = fit_inside(profiled, mnist_fit_args(options, options.epochs), workdir)
    seconds, steps = time.perf_counter() - start, trainer.global_step
    print(f"lenet fit under cProfile: {seconds:.2f} s, {steps} steps, {1e3 * seconds / steps:.2f} ms a step")
    for order, rows in (("tottime", 30), ("cumulative", 45)):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(rows)
        print(out.getvalue())


def torch_profile(options: argparse.Namespace) -> None:
    first, _, last = options.steps.partition(":")
    command = [
        sys.executable, "-m", "lenet_cli", "fit", *options.lenet_args,
        "--trainer.callbacks+=benchmarks.profile_step.StepProfiler", f"--trainer.callbacks.first={int(first)}",
        f"--trainer.callbacks.last={int(last)}", f"--trainer.callbacks.output_dir={options.out.resolve()}",
    ]  # fmt: skip
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    subprocess.run(command, env={**os.environ, "PYTHONPATH": path}, check=True)
    for table in sorted(options.out.glob("rank*.txt")):
        print(f"{table}: {table.read_text().splitlines()[0]}")


class Tiny(LightningModule):
    """Next to no arithmetic: what is timed is Lightning's loop and the bar."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer(batch).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def bar_microseconds_per_step(refresh_rate: int | None, steps: int) -> float:
    bar: dict[str, Any] = (
        {"callbacks": [TQDMProgressBar(refresh_rate)]} if refresh_rate else {"enable_progress_bar": False}
    )
    trainer = Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_model_summary=False, **bar
    )
    samples = torch.zeros(steps, 4)  # batches of 1
    data: torch.utils.data.DataLoader[torch.Tensor] = torch.utils.data.DataLoader(samples)  # type: ignore[arg-type]
    start = time.perf_counter()
    trainer.fit(Tiny(), data)
    return 1e6 * (time.perf_counter() - start) / steps


def progress_bar(options: argparse.Namespace) -> None:
    """lenet redraws its default bar every ``lenet_cli.cli.PROGRESS_BAR_REFRESH_RATE`` batches."""
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    settings = [None, 1, 10, 100]
    results: dict[int | None, list[float]] = {setting: [] for setting in settings}
    for _ in range(2):
        for setting in settings:
            results[setting].append(bar_microseconds_per_step(setting, options.steps))
    for setting, times in results.items():  # the bars themselves went to stderr, as in a real run
        label = "no bar" if setting is None else f"redrawn every {setting} batch{'es' if setting > 1 else ''}"
        print(f"{label:28} {' '.join(f'{t:6.0f}' for t in times)} µs a step", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    modes = parser.add_subparsers(dest="mode", required=True)
    for name, text in (("syncs", "host syncs by call site (CUDA)"), ("cprofile", "plain loop vs lenet fit's cProfile")):
        mode = modes.add_parser(name, help=text, description=text, allow_abbrev=False)
        mode.add_argument("--batch-size", type=int, default=1024)
        if name == "cprofile":
            mode.add_argument("--epochs", type=int, default=2)
            mode.add_argument("--plain-steps", type=int, default=200, help="timed steps of the plain loop")
        mode.add_argument("lenet_args", nargs="*", metavar="-- LENET_FIT_ARGS", help="more lenet fit arguments")
    text = "torch.profiler over chosen steps of lenet fit, one table per rank"
    mode = modes.add_parser("torch", help=text, description=text, allow_abbrev=False)
    mode.add_argument("--steps", default="200:230", help="FIRST:LAST global steps to profile")
    mode.add_argument("--out", type=Path, default=Path("profile"), help="folder of the rank{N}.txt tables")
    mode.add_argument("lenet_args", nargs="*", metavar="-- LENET_FIT_ARGS", help="the lenet fit arguments")
    text = "what Lightning's progress bar costs a step (CPU)"
    mode = modes.add_parser("progress-bar", help=text, description=text, allow_abbrev=False)
    mode.add_argument("--steps", type=int, default=2000, help="steps of batch 1 per timing")
    options = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() and options.mode != "progress-bar" else "cpu")
    print(f"device: {environment(device)}", flush=True)
    if options.mode == "torch":
        torch_profile(options)
    elif options.mode == "progress-bar":
        progress_bar(options)
    else:
        quiet_lightning()
        with tempfile.TemporaryDirectory(prefix="lenet-profile-") as scratch:
            (host_syncs if options.mode == "syncs" else cprofile_fit)(options, Path(scratch))


if __name__ == "__main__":
    main()
