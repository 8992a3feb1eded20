"""Wall time of lenet's everyday commands beside the import floor, measured in the same run.

    python benchmarks/latency.py [--rounds 5] [--steps help,predict_one,...] [--accelerator cpu] [--json out.json]
    python benchmarks/latency.py --imports     # what each command imports beyond the floor (-X importtime)
    python benchmarks/latency.py --figures     # seconds each figure takes to draw, in one process

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
right after this one's: a before/after in the same rounds.

Steps: help (``lenet --help``), fit_help, predict_one (one PNG), predict_folder (2 000 PNGs and the
predictions.png grid), test (``--config configs/mnist.yaml`` with its report figures), fit_first_step
(``fit --config configs/mnist.yaml --trainer.max_epochs 1`` up to the end of its first training step,
from a callback's clock) and fit (a whole ``fit --config configs/mnist.yaml``; with the time of the
training loop itself, on_train_start to on_train_end, so that wall - floor - loop is what is not
training). Run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lenet_cli.pretrained import cpu_name

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "mnist.yaml")
CLOCK_VARIABLE = "LENET_LATENCY_CLOCK"
CLOCK_CALLBACK = "benchmarks.latency_clock.Clock"
STEPS = ("help", "fit_help", "predict_one", "predict_folder", "test", "fit_first_step")
FOLDER_SIZE = 2000
BASELINE = " (baseline)"


def environment(root: Path = ROOT) -> dict[str, str]:
    """This process's environment with ``root``'s lenet_cli (and benchmarks) first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


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
    env = environment()
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
        trees = {"": env} | ({BASELINE: environment(args.baseline)} if args.baseline else {})
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
                    "LENET_LATENCY_STOP": "1" if step.startswith("fit_first_step") else "0",
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
    env = environment()
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

    from lenet_cli import idx, mosaic, plots
    from lenet_cli.data import to_model_input

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


def importtime(command: list[str], env: dict[str, str], timeout: float) -> dict[str, int]:
    """Module → its own import time in microseconds (``-X importtime``'s "self" column)."""
    result = subprocess.run(command, check=True, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    modules = {}
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            own, _, name = line.removeprefix("import time:").split("|")
            modules[name.strip()] = int(own)
    return modules


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
        help="another checkout (its src/ and benchmarks/): run each step with it too, for a before/after",
    )
    parser.add_argument("--imports", action="store_true", help="list what the commands import beyond the floor instead")
    parser.add_argument("--figures", action="store_true", help="time each figure's drawing in this process instead")
    parser.add_argument("--import-commands", help="with --imports: some of 'help,fit --help,predict --help'")
    parser.add_argument("--keep-stderr", type=Path, help="write each step's stderr of the first round into this folder")
    args = parser.parse_args()
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
