"""Training throughput on N GPUs vs 1 at the same per-GPU batch, measured in one run (Lightning DDP).

    python benchmarks/ddp_scaling.py --devices 2 --batch-sizes 512,2048 --epochs 4

Each configuration is a separate `lenet fit` process (DDP's launcher starts the other ranks); the
FitTimer callback (benchmarks/fit_timer.py) reports two throughputs of each: "train", the training
batches of every epoch after the first (what the speed-up is of), and "fit", the whole fit with its
validation and checkpoints.

    python benchmarks/ddp_scaling.py --devices 2 --ddp-args=--trainer.strategy=ddp   # plain "ddp" instead of
                                                                      # configs/ddp.yaml's strategy
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fit(devices: int, batch_size: int, epochs: int, lr: float, workdir: Path, extra: list[str]) -> dict[str, float]:
    output = workdir / f"timer-{devices}-{batch_size}.json"
    strategy = [] if devices > 1 else ["--trainer.strategy=auto"]  # several: configs/ddp.yaml's DDP
    command = [
        sys.executable, "-m", "lenet_cli", "fit", "--config", str(ROOT / "configs" / "ddp.yaml"),
        f"--trainer.devices={devices}", *strategy, f"--data.batch_size={batch_size}",
        f"--trainer.max_epochs={epochs}", f"--model.lr={lr}", "--trainer.enable_progress_bar=false",
        "--trainer.callbacks+=benchmarks.fit_timer.FitTimer", "--seed_everything=0",
        f"--trainer.logger.init_args.save_dir={workdir / 'runs'}", *extra,
    ]
    environment = {**os.environ, "LENET_FIT_TIMER": str(output), "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"lenet fit failed ({devices} devices, batch {batch_size}):\n{result.stderr[-3000:]}")
    numbers = json.loads(output.read_text())
    other = output.with_name(f"{output.stem}.rank1{output.suffix}")  # the second rank's own clock
    numbers["rank1_step_ms_median"] = json.loads(other.read_text())["step_ms_median"] if other.exists() else float("nan")
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--batch-sizes", default="512,2048", help="per-GPU batch sizes, comma-separated")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--extra", default="", help="more lenet fit arguments, e.g. --trainer.accelerator=cpu")
    parser.add_argument("--ddp-args", default="", help="more arguments for the multi-GPU runs only")
    parser.add_argument("--repeats", type=int, default=1, help="run each pair (1 GPU, N GPUs) this many times")
    parser.add_argument("--json", help="write all numbers here")
    options = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as folder:
        for batch_size in [int(b) for b in options.batch_sizes.split(",")] * options.repeats:
            one = fit(1, batch_size, options.epochs, options.lr, Path(folder), options.extra.split())
            many = fit(options.devices, batch_size, options.epochs, options.lr, Path(folder),
                       options.extra.split() + options.ddp_args.split())
            speedup = many["train_images_per_second"] / one["train_images_per_second"]
            fit_speedup = many["fit_images_per_second"] / one["fit_images_per_second"]
            results.append({"batch_size_per_device": batch_size, "one": one, "many": many, "speedup": speedup,
                            "fit_speedup": fit_speedup})
            print(json.dumps(results[-1]), flush=True)
    n = options.devices
    print(f"\n{'batch/GPU':>9} {'train img/s 1':>14} {f'train img/s {n}':>14} {'speed-up':>9} {'ms/step 1':>10} "
          f"{f'ms/step {n}':>10} {'fit speed-up':>13} {'val acc 1':>10} {f'val acc {n}':>10} "
          f"{'median step 1':>14} {f'median step {n}':>14} {'(rank 1)':>9} {'epoch start 1':>14} {f'epoch start {n}':>14}")
    for r in results:
        one, many = r["one"], r["many"]
        print(f"{r['batch_size_per_device']:9d} {one['train_images_per_second']:14.0f} {many['train_images_per_second']:14.0f} "
              f"{r['speedup']:8.2f}× {one['train_ms_per_step']:10.2f} {many['train_ms_per_step']:10.2f} "
              f"{r['fit_speedup']:12.2f}× {one['val_acc']:10.4f} {many['val_acc']:10.4f} "
              f"{one['step_ms_median']:14.3f} {many['step_ms_median']:14.3f} {many['rank1_step_ms_median']:9.3f} "
              f"{one['epoch_start_ms']:14.2f} "
              f"{many['epoch_start_ms']:14.2f}")
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
