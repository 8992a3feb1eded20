"""Wall time of lenet's everyday commands beside the import floor, measured in the same run.

    python benchmarks/latency.py [--rounds 5] [--steps help,predict_one,...] [--accelerator cpu] [--json out.json]
    python benchmarks/latency.py --imports     # what each command imports beyond the floor (-X importtime)
    python benchmarks/latency.py --figures     # seconds each figure takes to draw, in one process
    python benchmarks/latency.py --gpu-call "$OUT"   # a lent GPU machine's whole call, files into $OUT

The floor is ``python -c "import torch, lightning.pytorch"``: what any Lightning program pays before it
does anything, and at its exit (Python's final garbage collection over all those objects, ~2 s on a
2-core CPU). lenet's own process skips that collection (``lenet_cli.cli.exit_quickly``), so each step
is also compared with the "quick-exit floor", the same import followed by ``gc.freeze()``: the
difference to that one is lenet's own work.

Every round runs both floors and then each step once, each in a new process, from a working folder
prepared once (a short training's checkpoint, 2 000 small PNGs). The table gives, per step, the
median wall time, the median of (step - floor of the same round) with its min..max (the noise), and
the median CPU time (user + system) of the process, which other programs on the machine disturb less
than wall time. ``--baseline OTHER_CHECKOUT`` runs every step with that checkout's lenet_cli as well,
right after this one's: a before/after in the same rounds (the fits' clock callback,
``benchmarks.timing.Clock``, is this checkout's in both).

Steps: help (``lenet --help``), fit_help, predict_one (one PNG), predict_folder (2 000 PNGs and the
predictions.png grid), test (``--config configs/mnist.yaml`` with its report figures), fit_first_step
(``fit --config configs/mnist.yaml --trainer.max_epochs 1`` up to the end of its first training step,
from a callback's clock) and fit (a whole ``fit --config configs/mnist.yaml``; with the time of the
training loop itself, on_train_start to on_train_end, so that wall - floor - loop is what is not
training). Run from the repository root.

``--gpu-call OUT`` is issue #17 on a lent GPU machine in one call (after installing the jsonargparse
wheels, docs/DEVELOPING.md): where the start-up seconds go beyond the import floor, then this
benchmark there. Each step is time-boxed (``benchmarks.timing.run_step``) and the later, less important
ones start only while time is left, so a slow or hung step still leaves the others' results. Into OUT
(7 files): floor_packages.txt (what the floor imports, by package, and who imported it first),
startup_probe.json (``--startup-probe``: one process step by step, imports, NVML, lenet's parser and
classes, CUDA context, cuDNN, data), latency.log and latency.json (``--accelerator auto --rounds 2
--budget 150``, the whole fit first), console.txt (each step's stderr, whose Lightning warnings or tips
are printed: none expected), fit_profile.txt (cProfile of a fit up to its first step) and imports.log
(``--imports`` of ``fit --help``). Module-level imports here are the standard library's only, so that
``--startup-probe`` times torch's import itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file: `benchmarks.timing` importable (imported where used: torch)
CONFIG = str(ROOT / "configs" / "mnist.yaml")
CLOCK_CALLBACK = "benchmarks.timing.Clock"
STEPS = ("help", "fit_help", "predict_one", "predict_folder", "test", "fit_first_step")
GPU_CALL_STEPS = "fit,fit_first_step,test,predict_folder,predict_one,help"
# Lines of a GPU console that mean Lightning warned or gave a tip (lenet's console should show none).
CONSOLE_NOISE = re.compile(
    r"\.py:[0-9]+: |Warning|Tip|💡|deprecated|No seed|Seed set|available: |dirpath has changed|LOCAL_RANK|You are using"
)
FOLDER_SIZE = 2000
BASELINE = " (baseline)"


def timed(command: list[str], cwd: Path, timeout: float, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stderr tail) of one new process running ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return wall, cpu, result.stderr


def prepare(workdir: Path, accelerator: str, env: dict[str, str], timeout: float) -> Path:
    """A checkpoint from a short training and a folder of small PNGs, in ``workdir``; the checkpoint."""
    lenet = [sys.executable, "-m", "lenet_cli"]
    subprocess.run(
        [
            *lenet,
            "fit",
            "--config",
            CONFIG,
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=20",
            "--trainer.limit_val_batches=2",
            f"--trainer.accelerator={accelerator}",
            "--trainer.enable_progress_bar=false",
            "--trainer.logger.init_args.save_dir=prepared",
        ],
        cwd=workdir,
        env=env,
        check=True,
        capture_output=True,
        timeout=timeout,
    )
    checkpoint = workdir / "prepared" / "mnist" / "version_0" / "checkpoints" / "best.ckpt"
    script = (
        "import sys; from pathlib import Path; from PIL import Image; from lenet_cli import idx\n"
        "images = idx.load(None)['test_images']\n"
        "folder = Path(sys.argv[1]); folder.mkdir()\n"
        f"for i in range({FOLDER_SIZE}): Image.fromarray(images[i].numpy()).save(folder / f'{{i}}.png')\n"
        "Image.fromarray(images[0].numpy()).save('one.png')\n"
    )
    subprocess.run([sys.executable, "-c", script, "digits"], cwd=workdir, env=env, check=True, timeout=timeout)
    return checkpoint


def step_commands(checkpoint: Path, accelerator: str) -> dict[str, list[str]]:
    lenet = [sys.executable, "-m", "lenet_cli"]
    device = [f"--trainer.accelerator={accelerator}", "--trainer.enable_progress_bar=false"]
    weights = ["--config", CONFIG, "--ckpt_path", str(checkpoint), *device]
    return {
        "floor": [sys.executable, "-c", "import torch, lightning.pytorch"],
        # The floor with the quick exit that lenet's own process takes (lenet_cli.cli.exit_quickly).
        "floor_quick_exit": [sys.executable, "-c", "import torch, lightning.pytorch, gc; gc.freeze()"],
        "help": [*lenet, "--help"],
        "fit_help": [*lenet, "fit", "--help"],
        "predict_one": [*lenet, "predict", *weights, "--data.predict_path=one.png"],
        "predict_folder": [*lenet, "predict", *weights, "--data.predict_path=digits"],
        "test": [*lenet, "test", *weights],
        "fit_first_step": [
            *lenet,
            "fit",
            "--config",
            CONFIG,
            "--trainer.max_epochs=1",
            *device,
            f"--trainer.callbacks+={CLOCK_CALLBACK}",
        ],
        "fit": [*lenet, "fit", "--config", CONFIG, *device, f"--trainer.callbacks+={CLOCK_CALLBACK}"],
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.timing import CLOCK_VARIABLE, STOP_VARIABLE, child_environment
    from lenet_cli.checkpoints.pretrained import cpu_name

    env = child_environment()
    steps = [step for step in args.steps.split(",") if step]
    workdir = Path(tempfile.mkdtemp(prefix="lenet-latency-"))
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": f"{cpu_name()} ({os.cpu_count()} logical CPUs)",
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "rounds": args.rounds,
        "baseline": str(args.baseline) if args.baseline else None,
        "steps": {},
    }
    try:
        versions = subprocess.run(
            [
                sys.executable,
                "-c",
                "import torch, lightning; print(torch.__version__, lightning.__version__, "
                "torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=args.timeout,
        ).stdout.split(maxsplit=2)
        results["torch"], results["lightning"], results["gpu"] = (part.strip() for part in versions)
        checkpoint = prepare(workdir, args.accelerator, env, args.timeout)
        commands = step_commands(checkpoint, args.accelerator)
        # With --baseline, every step also runs with that tree's lenet_cli right after this one's.
        trees = {"": env} | ({BASELINE: child_environment(args.baseline)} if args.baseline else {})
        order = ["floor", "floor_quick_exit", *(step + tree for step in steps for tree in trees)]
        samples: dict[str, list[dict[str, float]]] = {step: [] for step in order}
        deadline = time.monotonic() + args.budget if args.budget else None
        for round_number in range(args.rounds):
            for step in order:
                if deadline is not None and time.monotonic() > deadline:
                    break
                tree = BASELINE if step.endswith(BASELINE) else ""
                clock = workdir / f"clock-{step}-{round_number}.json".replace(" ", "_")
                step_env = trees[tree] | {
                    CLOCK_VARIABLE: str(clock),
                    STOP_VARIABLE: "1" if step.startswith("fit_first_step") else "0",
                }
                started = time.time()
                wall, cpu, stderr = timed(commands[step.removesuffix(BASELINE)], workdir, args.timeout, step_env)
                if args.keep_stderr is not None and round_number == 0:
                    args.keep_stderr.mkdir(parents=True, exist_ok=True)
                    (args.keep_stderr / f"{step.replace(' ', '_')}.stderr.txt").write_text(stderr)
                sample = {"wall": wall, "cpu": cpu}
                if clock.is_file():
                    marks = json.loads(clock.read_text())
                    sample |= {f"at_{name}": stamp - started for name, stamp in marks.items()}
                    if "train_start" in marks and "train_end" in marks:
                        sample["training_loop"] = marks["train_end"] - marks["train_start"]
                    if step.startswith("fit_first_step") and "first_step" in marks:
                        sample["wall"] = marks["first_step"] - started  # up to the first step, as the issue asks
                samples[step].append(sample)
                print(f"round {round_number + 1} {step}: {sample['wall']:.2f} s", file=sys.stderr)
        results["steps"] = summarise(samples)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def summarise(samples: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    floors = [sample["wall"] for sample in samples["floor"]]
    quick_floors = [sample["wall"] for sample in samples.get("floor_quick_exit", [])]
    summary: dict[str, Any] = {}
    for step, runs in samples.items():
        if not runs:
            continue
        over = [run["wall"] - floor for run, floor in zip(runs, floors, strict=False)]
        entry = {
            "runs": len(runs),
            "wall_median": statistics.median(run["wall"] for run in runs),
            "cpu_median": statistics.median(run["cpu"] for run in runs),
            "over_floor_median": statistics.median(over),
            "over_floor_min": min(over),
            "over_floor_max": max(over),
        }
        over_quick = [run["wall"] - floor for run, floor in zip(runs, quick_floors, strict=False)]
        if over_quick:
            entry |= {
                "over_quick_exit_floor_median": statistics.median(over_quick),
                "over_quick_exit_floor_min": min(over_quick),
                "over_quick_exit_floor_max": max(over_quick),
            }
        for key in sorted({key for run in runs for key in run if key.startswith(("at_", "training_loop"))}):
            entry[f"{key}_median"] = statistics.median(run[key] for run in runs if key in run)
        if "training_loop_median" in entry:
            not_training = [
                run["wall"] - floor - run["training_loop"] for run, floor in zip(runs, floors, strict=False)
            ]
            entry["wall_minus_floor_minus_loop_median"] = statistics.median(not_training)
        summary[step] = entry
    return summary


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{results['date']}; {results['cpu']}; GPU: {results.get('gpu')}; torch {results.get('torch')}, "
        f"Lightning {results.get('lightning')}, Python {results['python']}; {results['rounds']} rounds; "
        f"load average at start {', '.join(f'{x:.1f}' for x in results['load_average_at_start'])}",
        "",
        "| step | wall s (median) | over the floor s: median (min..max) | over the quick-exit floor s | CPU s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]

    def over(entry: dict[str, float], key: str) -> str:
        if f"{key}_median" not in entry:
            return "-"
        return f"{entry[f'{key}_median']:+.2f} ({entry[f'{key}_min']:+.2f}..{entry[f'{key}_max']:+.2f})"

    for step, entry in results["steps"].items():
        versus = "-" if step == "floor" else over(entry, "over_floor")
        versus_quick = "-" if step.startswith("floor") else over(entry, "over_quick_exit_floor")
        lines.append(f"| {step} | {entry['wall_median']:.2f} | {versus} | {versus_quick} | {entry['cpu_median']:.2f} |")
    for step, entry in results["steps"].items():
        marks = {key: value for key, value in entry.items() if key.startswith(("at_", "training_loop", "wall_minus"))}
        if marks:
            lines.append(
                f"\n{step}: "
                + ", ".join(f"{key.removesuffix('_median')} {value:.2f} s" for key, value in marks.items())
            )
    return "\n".join(lines)


def imports(args: argparse.Namespace) -> None:
    """Per command, the modules imported beyond the floor, with the import time they add (their own, summed)."""
    from benchmarks.timing import child_environment

    env = child_environment()
    floor = importtime([sys.executable, "-X", "importtime", "-c", "import torch, lightning.pytorch"], env, args.timeout)
    lenet = [sys.executable, "-X", "importtime", "-m", "lenet_cli"]
    commands = {"help": ["--help"], "fit --help": ["fit", "--help"], "predict --help": ["predict", "--help"]}
    for name, words in commands.items():
        if args.import_commands and name not in args.import_commands.split(","):
            continue
        extra = importtime([*lenet, *words], env, args.timeout)
        new = {module: own for module, own in extra.items() if module not in floor}
        packages: dict[str, int] = {}
        for module, own in new.items():
            packages[module.split(".")[0]] = packages.get(module.split(".")[0], 0) + own
        listed = ", ".join(
            f"{package} {own / 1000:.0f} ms" for package, own in sorted(packages.items(), key=lambda p: -p[1])
        )
        print(f"{name}: {len(new)} modules beyond the floor, {sum(new.values()) / 1000:.0f} ms: {listed}")


def figures(args: argparse.Namespace) -> None:
    """Seconds each figure takes to draw and write, in this process (median of ``--rounds``)."""
    sys.path.insert(0, str(ROOT / "src"))
    import numpy as np

    from lenet_cli.data import idx
    from lenet_cli.data.mnist import to_model_input
    from lenet_cli.outputs import mosaic, plots

    digits = idx.load(None)["test_images"][:100]
    inputs = to_model_input(digits).squeeze(1)
    captions = [f"{index}.png\n{index % 10}  97%" for index in range(100)]
    confusion = np.diag([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]) + np.eye(10, k=1, dtype=int) * 3
    history = {name: {epoch: 1 / (epoch + 2) for epoch in range(10)} for name in ("train/loss", "val/loss")}
    with tempfile.TemporaryDirectory() as folder:
        drawings = {
            "predictions.png (100 model inputs, captions, marks)": lambda: mosaic.save_image_grid(
                inputs, captions, Path(folder) / "p.png", marked=[i % 7 == 0 for i in range(100)], title="predictions"
            ),
            "misclassified.png (100 digits)": lambda: mosaic.save_image_grid(
                digits, [f"#{i}: 4 → 9" for i in range(100)], Path(folder) / "m.png", title="misclassified"
            ),
            "confusion_matrix.png": lambda: plots.save_confusion_matrix(
                confusion, [str(c) for c in range(10)], Path(folder) / "c.png", title="accuracy"
            ),
            "curves.png": lambda: plots.save_training_curves(history, Path(folder) / "t.png", title="runs/x"),
        }
        for name, draw in drawings.items():
            draw()  # the first call also loads fonts and matplotlib
            seconds = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                draw()
                seconds.append(time.perf_counter() - start)
            print(f"{name}: {statistics.median(seconds):.3f} s (min {min(seconds):.3f}, {args.rounds} draws)")


def importtime_rows(stderr: str) -> list[tuple[int, str, int]]:
    """``-X importtime``'s lines as (nesting depth, module, its own import time in microseconds)."""
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            own, _, name = line.removeprefix("import time:").split("|")
            rows.append((len(name) - len(name.lstrip()), name.strip(), int(own)))
    return rows


def importtime(command: list[str], env: dict[str, str], timeout: float) -> dict[str, int]:
    """Module → its own import time in microseconds (``-X importtime``'s "self" column)."""
    result = subprocess.run(command, check=True, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return {name: own for _, name, own in importtime_rows(result.stderr)}


def floor_packages(stderr: str) -> str:
    """What the floor imports, by top-level package: the import time of its own modules, and which module
    of another package imported it first (-X importtime lists a module's imports above it, indented)."""
    rows = importtime_rows(stderr)
    own: dict[str, int] = {}
    importer: dict[str, str] = {}
    for index, (depth, name, micros) in enumerate(rows):
        package = name.split(".")[0]
        own[package] = own.get(package, 0) + micros
        if package in importer:
            continue
        chain, level = [], depth  # the modules this one was imported from, nearest first
        for later_depth, later_name, _ in rows[index + 1 :]:
            if later_depth < level:
                chain.append(later_name)
                level = later_depth
        outside = [module for module in chain if module.split(".")[0] != package]
        importer[package] = " < ".join(outside[:3]) or "(the command)"
    lines = [f"floor: {sum(own.values()) / 1e6:.2f} s of imports in all"]
    for package, micros in sorted(own.items(), key=lambda item: -item[1])[:25]:
        lines.append(f"  {package:22s} {micros / 1e6:6.2f} s  first imported from {importer.get(package)}")
    return "\n".join(lines) + "\n"


def startup_probe(output: Path) -> None:
    """One process, step by step, on a GPU: seconds of each start-up stage, printed and written to ``output``."""
    marks, last = {}, time.perf_counter()

    def mark(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        marks[name] = round(now - last, 3)
        last = now

    import torch

    mark("import torch")
    import lightning.pytorch  # noqa: F401

    mark("import lightning.pytorch")
    from lenet_cli.cli.lightning_cli import LenetCLI

    mark("import lenet_cli.cli")
    torch.cuda.is_available()
    count = torch.cuda.device_count()
    mark("torch.cuda.is_available + device_count (NVML)")
    from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator, XLAAccelerator

    CUDAAccelerator.is_available()
    MPSAccelerator.is_available()
    XLAAccelerator.is_available()
    mark("Lightning's accelerator probes")
    del sys.argv[1:]  # LightningCLI warns when sys.argv holds options besides its args
    cli = LenetCLI(run=False, args=["--config", CONFIG, "--trainer.logger=false"])
    mark("LenetCLI(run=False): parse, model, data, Trainer")
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    mark("CUDA context (first tensor on the GPU)")
    name = torch.cuda.get_device_name(0)
    mark("get_device_name")
    x = torch.randn(512, 1, 32, 32, device="cuda")
    torch.nn.functional.conv2d(x, torch.randn(6, 1, 5, 5, device="cuda"))
    torch.cuda.synchronize()
    mark("first cuDNN convolution")
    cli.datamodule.setup("fit")
    mark("MNIST: read, verify, split (CPU)")
    from lenet_cli.data.mnist import to_model_input

    to_model_input(cli.datamodule.raw["train"][0], device="cuda")
    torch.cuda.synchronize()
    mark("55 000 training images to 32x32 on the GPU")
    output.write_text(json.dumps({"gpu": name, "devices": count, "seconds": marks}, indent=2) + "\n")
    print(json.dumps(marks, indent=2))


def gpu_call(out: Path) -> None:
    """Issue #17 on a lent GPU machine in one call: the module docstring's ``--gpu-call``."""
    from benchmarks.timing import STOP_VARIABLE, child_environment, run_step

    started = time.monotonic()
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = child_environment()
    python, me = sys.executable, str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory(prefix="lenet-gpu-call-") as folder:
        scratch = Path(folder)  # the logs that need not come back: a lent machine returns 8 files at most
        # 1. The first import on a fresh machine reads everything from a cold disk; the second is the floor.
        cold = "import time; t = time.perf_counter(); import torch, lightning.pytorch; "
        cold += "print(f'cold import: {time.perf_counter() - t:.2f} s')"
        run_step("cold_import", 90, [python, "-c", cold], scratch, env)
        floor = [python, "-X", "importtime", "-c", "import torch, lightning.pytorch"]
        run_step("floor_importtime", 60, floor, scratch, env, tail=0)
        report = floor_packages((scratch / "floor_importtime.log").read_text())
        (out / "floor_packages.txt").write_text(report)
        print(report, end="")
        # 2. One process, step by step: imports, NVML, lenet's parser and classes, CUDA context, cuDNN, data.
        run_step(
            "startup_probe", 120, [python, me, "--startup-probe", str(out / "startup_probe.json")], scratch, env, 15
        )
        # 3. This benchmark: every step beside the floor of its round; the whole fit of configs/mnist.yaml first.
        stderr = scratch / "stderr"
        rounds = ["--accelerator", "auto", "--rounds", "2", "--budget", "150", "--timeout", "120"]
        files = ["--json", str(out / "latency.json"), "--keep-stderr", str(stderr)]
        latency = [python, me, *rounds, "--steps", GPU_CALL_STEPS, *files]
        run_step("latency", 240, latency, out, env, tail=30)
        console = "".join(f"===== {file.name}\n{file.read_text()}" for file in sorted(stderr.glob("*.stderr.txt")))
        (out / "console.txt").write_text(console)
        noise = [
            f"{number}:{line}" for number, line in enumerate(console.splitlines(), 1) if CONSOLE_NOISE.search(line)
        ]
        print("== Lightning warnings or tips on the GPU console (none expected):", *noise[:20], sep="\n")
        # 4. Where a fit's seconds before its first step go, by function (cProfile inflates Python-heavy parts).
        if time.monotonic() - started < 290:
            profile = scratch / "fit.prof"
            fit = [python, "-m", "cProfile", "-o", str(profile), "-m", "lenet_cli", "fit", "--config", CONFIG,
                   "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
                   f"--trainer.callbacks+={CLOCK_CALLBACK}",
                   f"--trainer.logger.init_args.save_dir={scratch / 'runs'}"]  # fmt: skip
            run_step("fit_profile", 60, fit, scratch, env | {STOP_VARIABLE: "1"}, tail=0)
            with (out / "fit_profile.txt").open("w") as stream:
                if profile.is_file():
                    stats = pstats.Stats(str(profile), stream=stream).sort_stats("cumulative")
                    stats.print_stats(45)
                    stats.print_stats(
                        "lenet_cli|setup_environment|_log_device_info|_call_setup_hook|capture|accelerator", 25
                    )
            wanted = re.compile(
                r"lenet_cli/(cli|graphs|data)|setup_environment|_log_device_info|capture|instantiate_classes|_run_stage"
            )
            print(
                *[line for line in (out / "fit_profile.txt").read_text().splitlines() if wanted.search(line)][:25],
                sep="\n",
            )
        # 5. What lenet itself imports beyond the floor there.
        if time.monotonic() - started < 320:
            run_step("imports", 30, [python, me, "--imports", "--import-commands", "fit --help"], out, env)
    print(f"== done at {time.monotonic() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of floor + every step (default: 5)")
    parser.add_argument(
        "--steps", default=",".join(STEPS), help=f"comma-separated steps (default: {','.join(STEPS)}; also: fit)"
    )
    parser.add_argument("--accelerator", default="cpu", help="--trainer.accelerator of the commands (default: cpu)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds any one process may take (default: 300)")
    parser.add_argument(
        "--budget", type=float, default=0, help="stop starting new steps after this many seconds (0: none)"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (its src/): run each step with its lenet_cli too, for a before/after",
    )
    parser.add_argument("--imports", action="store_true", help="list what the commands import beyond the floor instead")
    parser.add_argument("--figures", action="store_true", help="time each figure's drawing in this process instead")
    parser.add_argument("--import-commands", help="with --imports: some of 'help,fit --help,predict --help'")
    parser.add_argument("--keep-stderr", type=Path, help="write each step's stderr of the first round into this folder")
    parser.add_argument(
        "--gpu-call", type=Path, metavar="OUT", help="a lent GPU machine's whole call instead, its files into OUT"
    )
    parser.add_argument(
        "--startup-probe", type=Path, metavar="JSON", help="time each start-up stage of one process on a GPU instead"
    )
    args = parser.parse_args()
    if args.gpu_call:
        gpu_call(args.gpu_call)
        return
    if args.startup_probe:
        startup_probe(args.startup_probe)
        return
    if args.imports:
        imports(args)
        return
    if args.figures:
        figures(args)
        return
    results = measure(args)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
