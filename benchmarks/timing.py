"""Timing code the benchmarks share, and `lenet fit` timed by the FitTimer callback.

    python benchmarks/timing.py --config configs/mnist_fast.yaml          # lenet fit ARGS, timed
    python benchmarks/timing.py --json t.json --config configs/mnist.yaml --trainer.max_epochs=3

Runs ``lenet fit`` with the given arguments in this process, FitTimer added, and prints its numbers:
- fit: from the start of the first training epoch to the end of the last; no process start-up, DDP
  set-up or data decode; validation and checkpoints included, as in a user's fit.
- train: the training batches of each epoch only (epoch start to its validation), so "train images/s"
  is training throughput; the first epoch (cuDNN/NCCL warm-up, CUDA-graph capture) is left out of it
  when there are more.
- on a GPU, every training step timed with CUDA events (no sync): ``step_ms_median`` is a steady step,
  ``epoch_start_ms`` what the first 3 steps of an epoch cost beyond 3 steady ones.
Clocks are read after a CUDA synchronize. In a config: ``--trainer.callbacks+=benchmarks.timing.FitTimer
--trainer.callbacks.output=t.json`` (the repository root on PYTHONPATH); under DDP every rank writes
its own file (``t.rank1.json``, ...).

Also here, for the other scripts: ``Clock``, the callback of benchmarks/latency.py (wall-clock marks of a
fit written to $LENET_LATENCY_CLOCK: ``--trainer.callbacks+=benchmarks.timing.Clock``); ``run_step``, one
time-boxed step of a lent machine's call (``ddp.py all``, ``latency.py --gpu-call``); the environment
of a child process that loads these callbacks; clocks, CPU counters and the machine's name.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

ROOT = Path(__file__).resolve().parents[1]
CLOCK_VARIABLE = "LENET_LATENCY_CLOCK"  # Clock writes its marks to this file
STOP_VARIABLE = "LENET_LATENCY_STOP"  # "1": Clock stops the fit after its first training step


def clock(device: torch.device) -> float:
    """``time.perf_counter()`` once the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def call_seconds(function: Callable[[], object], calls: int, device: torch.device | None = None) -> list[float]:
    """Seconds of each of ``calls`` calls of ``function``, each timed on its own (device-synchronised)."""
    device = device or torch.device("cpu")
    times = []
    for _ in range(calls):
        start = clock(device)
        function()
        times.append(clock(device) - start)
    return times


def cpu_counters() -> tuple[float, int, int] | None:
    """(time, clock ticks the machine was busy, ticks this process and its reaped children used); Linux."""
    try:
        machine = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        mine = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[11:15]  # utime .. cstime
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = machine
    return time.perf_counter(), user + nice + system + irq + softirq + steal, sum(int(value) for value in mine)


def other_cpu_share(before: tuple[float, int, int] | None, after: tuple[float, int, int] | None) -> float | None:
    """How much of the machine's CPUs other processes (and the hypervisor) took between two counters."""
    if before is None or after is None:
        return None
    available = (after[0] - before[0]) * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)
    others = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, others / available) if available > 0 else None


def percent(share: float | None) -> str:
    return "?" if share is None else f"{100 * share:.0f} %"


def warn_if_busy(seconds: float = 1.0) -> float | None:
    """Measure other processes' CPU share for ``seconds`` and warn on stderr above 10 %; returns it."""
    counters = cpu_counters()
    time.sleep(seconds)
    busy = other_cpu_share(counters, cpu_counters())
    if busy is not None and busy > 0.1:
        print(
            f"warning: other processes use {percent(busy)} of the {os.cpu_count()} CPUs: the timings will be slow "
            "and noisy",
            file=sys.stderr,
        )
    return busy


def machine_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo with the core and thread counts."""
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
    import lenet_cli

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


def environment(device: torch.device) -> str:
    """One line for a results table's header: machine, versions, lenet's commit."""
    return (
        f"{device.type} ({machine_name(device)}); torch {torch.__version__}, lightning {lightning.__version__}, "
        f"lenet_cli {source_version() or '?'}"
    )


def quiet_lightning() -> None:
    """Lightning's start-up banners and the few-workers hint would bury the results; warnings stay."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def child_environment(src_root: Path = ROOT) -> dict[str, str]:
    """This process's environment for a child that runs ``src_root``'s lenet_cli and loads this checkout's
    ``benchmarks.*`` callbacks by class path: both first on PYTHONPATH, output unbuffered."""
    path = [str(src_root / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path)), "PYTHONUNBUFFERED": "1"}


def run_step(
    name: str, limit: float, command: list[str], out: Path, env: dict[str, str] | None = None, tail: int = 5
) -> None:
    """One step of a lent machine's call: ``command`` with its output in ``out/name.log``, its whole process
    group killed after ``limit`` s (so that a hung step leaves the others their time); prints the log's
    last ``tail`` lines."""
    log = out / f"{name}.log"
    started = time.monotonic()
    with log.open("w") as stream:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            status: int | str = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):  # DDP ranks and torchrun's workers go too
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = f"killed after {limit:.0f} s"
    lines = log.read_text().splitlines()
    print(
        f"== {name}: exit {status}, {time.monotonic() - started:.0f} s",
        *lines[len(lines) - tail :],
        sep="\n",
        flush=True,
    )


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
def wrapped_methods(
    cls: type, names: tuple[str, ...], around: Callable[[], contextlib.AbstractContextManager[Any]]
) -> Iterator[list[tuple[Any, Any]]]:
    """Run each outermost call of the methods ``names`` of ``cls`` in the block inside ``around()``.

    Patched on the class, since ``lenet fit`` builds its own instances; a wrapped method that calls
    another counts once. Yields the list of ``(instance, value of around's context)``, one per call.
    """
    calls: list[tuple[Any, Any]] = []
    originals = {name: getattr(cls, name) for name in names}
    depth = 0

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(self: object, *args: Any, **kwargs: Any) -> Any:
            nonlocal depth
            if depth:
                return original(self, *args, **kwargs)
            depth += 1
            value = None
            try:
                with around() as value:
                    return original(self, *args, **kwargs)
            finally:
                depth -= 1
                calls.append((self, value))

        return wrapper

    for name, original in originals.items():
        setattr(cls, name, wrap(original))
    try:
        yield calls
    finally:
        for name, original in originals.items():
            setattr(cls, name, original)


class Stopwatch:
    """A context manager whose ``seconds`` is the device-synchronised wall time of its block."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.start = clock(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = clock(self.device) - self.start


def timed_methods(
    cls: type, names: tuple[str, ...], device: torch.device
) -> contextlib.AbstractContextManager[list[tuple[Any, Any]]]:
    """``wrapped_methods`` with a Stopwatch: yields ``(instance, Stopwatch)`` per outermost call."""
    return wrapped_methods(cls, names, lambda: Stopwatch(device))


class FitTimer(Callback):
    """Times a fit's training (see the module docstring) and prints or writes the numbers as JSON.

    Args:
        output: The JSON file to write (rank N > 0 writes ``<stem>.rankN<suffix>`` beside it, so a rank
            whose host is slower, and paces the others through the all-reduce, shows); ``None``: print
            the numbers instead.
    """

    def __init__(self, output: str | None = None) -> None:
        self.output = output
        self.numbers: dict[str, Any] = {}
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
        self.epoch_start = (clock(pl_module.device), trainer.global_step)
        self.events = []

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self.batch_size = self.batch_size or len(batch[0])  # lenet's batches: (images, labels, indices)
        if pl_module.device.type == "cuda" and self.epoch_start is not None:
            self.events.append(torch.cuda.Event(enable_timing=True))
            self.events[-1].record()

    def _close_epoch(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.epoch_start is not None:
            started, step = self.epoch_start
            if self.events:
                self.events.append(torch.cuda.Event(enable_timing=True))
                self.events[-1].record()
            self.epochs.append((clock(pl_module.device) - started, trainer.global_step - step))
            self.epoch_start = None
            self.step_ms.append([a.elapsed_time(b) for a, b in zip(self.events, self.events[1:], strict=False)])

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._close_epoch(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._close_epoch(trainer, pl_module)  # epochs without validation

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        seconds = clock(pl_module.device) - self.start
        trainer.strategy.barrier()
        batch_size = self.batch_size
        images_per_step = batch_size * trainer.world_size
        steady = self.epochs[1:] or self.epochs
        train_seconds = sum(s for s, _ in steady)
        step_ms = [ms for epoch in self.step_ms[1:] or self.step_ms for ms in epoch]
        median = statistics.median(step_ms) if step_ms else float("nan")
        starts = [sum(epoch[:3]) - 3 * median for epoch in self.step_ms[1:] if len(epoch) > 3]
        self.numbers = {
            "world_size": trainer.world_size,
            "batch_size_per_device": batch_size,
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "fit_seconds": seconds,
            "fit_images_per_second": trainer.global_step * images_per_step / seconds,
            "train_seconds_per_epoch": [s for s, _ in self.epochs],
            "train_images_per_second": sum(n for _, n in steady) * images_per_step / max(train_seconds, 1e-9),
            "train_ms_per_step": 1e3 * train_seconds / max(1, sum(n for _, n in steady)),
            "step_ms_median": median,
            "epoch_start_ms": sum(starts) / len(starts) if starts else float("nan"),
            "val_acc": float(trainer.callback_metrics.get("val/acc", float("nan"))),
            "device": machine_name(pl_module.device),
        }
        if self.output is None:
            print(f"FitTimer, rank {trainer.global_rank}: {json.dumps(self.numbers)}", flush=True)
            return
        path = Path(self.output)
        if trainer.global_rank:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        path.write_text(json.dumps(self.numbers) + "\n")


class Clock(Callback):
    """Wall-clock timestamps (``time.time()``) of a fit's setup, train start, first step and train end, written
    as JSON to $LENET_LATENCY_CLOCK after each, for benchmarks/latency.py's parent process to read.

    With ``LENET_LATENCY_STOP=1`` the fit stops after its first training step.
    """

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.stop_after_first_step = os.environ.get(STOP_VARIABLE) == "1"

    def _mark(self, name: str, pl_module: LightningModule) -> None:
        if name in self.marks:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.marks[name] = time.time()
        path = os.environ.get(CLOCK_VARIABLE)
        if path:
            Path(path).write_text(json.dumps(self.marks))

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._mark("setup", pl_module)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._mark("train_start", pl_module)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._mark("first_step", pl_module)
        if self.stop_after_first_step:
            trainer.should_stop = True

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._mark("train_end", pl_module)


def timed_fit(lenet_args: list[str], output: Path) -> dict[str, Any]:
    """``lenet fit LENET_ARGS`` in this process with FitTimer writing to ``output``; its numbers."""
    from lenet_cli.cli.main import main as lenet_main

    timer = ["--trainer.callbacks+=benchmarks.timing.FitTimer", f"--trainer.callbacks.output={output}"]
    with command_line([sys.argv[0]]):
        lenet_main(["fit", *lenet_args, *timer])
    return json.loads(output.read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    options, lenet_args = parser.parse_known_args(argv)
    quiet_lightning()
    with tempfile.TemporaryDirectory(prefix="lenet-timing-") as scratch:
        numbers = timed_fit(lenet_args, Path(scratch) / "fit_timer.json")
    print(json.dumps(numbers, indent=1))
    if options.json is not None:
        options.json.write_text(json.dumps(numbers, indent=1) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # run as a file: `benchmarks.timing.FitTimer` must be importable
    main()
