"""What lenet's benchmarks share: one machine header, clocks, results files and time-boxed steps.

Every benchmark prints the header first and writes it, with its numbers, to one JSON file under
``benchmarks/results/`` (``--out`` elsewhere): the whole record of a run, as airbench keeps it —
date, machine (GPU or CPU model and cores), Python, torch and Lightning versions, lenet's commit,
the exact command, the number of runs and how busy the machine was. docs/benchmarks.md summarises
these files; a new run replaces its file and git keeps the old one.

Run the scripts from the repository root with ``PYTHONPATH=$PWD/src:$PWD``.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


# --- the header -------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def version(package: str) -> str | None:
    """An installed package's version without importing it (torch's import alone takes seconds)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def lenet_commit() -> str | None:
    """The git commit of the lenet_cli being timed, ``+dirty`` if its sources have local changes."""
    import lenet_cli

    package = Path(lenet_cli.__file__).parent
    try:
        git = functools.partial(subprocess.run, cwd=package, capture_output=True, text=True, check=True)
        commit = git(["git", "rev-parse", "--short", "HEAD"]).stdout.strip()
        dirty = git(["git", "status", "--porcelain", "--", "."]).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None  # an installed copy, not a checkout
    return commit + ("+dirty" if dirty else "")


def header(device: str, runs: int, packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """The record's header, also printed: ``device`` is ``"cpu"`` or ``"cuda"``; ``runs`` how many times
    each measurement was repeated; ``packages`` more versions to note (litserve, onnxruntime, ...)."""
    machine = f"{cpu_model()}, {os.cpu_count()} logical CPUs"
    if device == "cuda":
        import torch

        count = torch.cuda.device_count()
        machine = f"{count} × {torch.cuda.get_device_name(0)}; {machine}"
    record = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "device": device,
        "python": platform.python_version(),
        **{name: version(name) for name in ("torch", "lightning", *packages)},
        "lenet_cli": lenet_commit(),
        "command": shlex.join(["python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "runs": runs,
        "other_cpu_share": busy_share(),
    }
    print(" | ".join(f"{key}: {value}" for key, value in record.items()), flush=True)
    return record


def write_results(name: str, record: dict[str, Any], results: Any, out: Path | None) -> Path:
    """``{"header": record, "results": results}`` as JSON in ``out``, or ``benchmarks/results/NAME.json``."""
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"header": record, "results": results}, indent=1) + "\n")
    print(f"wrote {path}", flush=True)
    return path


# --- clocks and the machine's load ------------------------------------------------------------------------


def clock(device: Any = None) -> float:
    """``time.perf_counter()`` once a CUDA ``device`` (a torch.device) has finished its queued work."""
    if device is not None and device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
    return time.perf_counter()


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
    """The share of all CPUs that other processes (and the hypervisor) took between two counters."""
    if before is None or after is None:
        return None
    available = (after[0] - before[0]) * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)
    others = (after[1] - before[1]) - (after[2] - before[2])
    return round(max(0.0, others / available), 3) if available > 0 else None


def busy_share(seconds: float = 1.0) -> float | None:
    """Other processes' CPU share over ``seconds``, with a warning on stderr above 10 %: compare runs near 0."""
    counters = cpu_counters()
    time.sleep(seconds)
    busy = other_cpu_share(counters, cpu_counters())
    if busy is not None and busy > 0.1:
        print(f"warning: other processes use {busy:.0%} of the CPUs: timings will be slow and noisy", file=sys.stderr)
    return busy


# --- running lenet in this process or in a child -----------------------------------------------------------


def quiet_lightning() -> None:
    """Lightning's start-up banners and the few-workers hint would bury the results; warnings stay."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def child_environment() -> dict[str, str]:
    """The environment of a child process that runs this checkout's lenet_cli and loads its ``benchmarks.*``
    callbacks by class path: both first on PYTHONPATH, output unbuffered."""
    path = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path)), "PYTHONUNBUFFERED": "1"}


def run_boxed(command: list[str], limit: float, log: Path, cwd: Path = ROOT) -> int | str:
    """``command`` in a new process group with its output in ``log``; the whole group (DDP ranks and
    torchrun's workers included) killed after ``limit`` s, so that a hung step leaves the others their
    time. The exit status, or ``"killed after N s"``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as stream:
        process = subprocess.Popen(
            command, cwd=cwd, env=child_environment(), stdout=stream, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            return process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return f"killed after {limit:.0f} s"


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def lenet(args: list[str], workdir: Path) -> None:
    """``lenet ARGS`` in this process, in ``workdir``, with ``sys.argv`` as lenet would see it (LightningCLI
    warns when it holds options besides ``args``)."""
    from lenet_cli.cli.main import main

    previous = sys.argv
    sys.argv = [previous[0]]
    try:
        with working_directory(workdir):
            main(args)
    finally:
        sys.argv = previous


@contextlib.contextmanager
def wrapped_methods(
    cls: type, names: tuple[str, ...], around: Callable[[], contextlib.AbstractContextManager[Any]]
) -> Iterator[list[tuple[Any, Any]]]:
    """Run each outermost call of the methods ``names`` of ``cls`` inside ``around()``.

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


@contextlib.contextmanager
def stopwatch(device: Any = None) -> Iterator[list[float]]:
    """Yields a list that holds the block's device-synchronised wall seconds once the block has ended."""
    seconds: list[float] = []
    start = clock(device)
    yield seconds
    seconds.append(clock(device) - start)
