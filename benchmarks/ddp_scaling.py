"""Training throughput on N GPUs vs 1 at the same per-GPU batch, measured in one run (Lightning DDP).

    python benchmarks/ddp_scaling.py --devices 2 --batch-sizes 512,2048 --epochs 4

Each configuration is a separate `lenet fit` process (DDP's launcher starts the other ranks); the
FitTimer callback (benchmarks/fit_timer.py) reports the training seconds of each.
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
    strategy = "ddp" if devices > 1 else "auto"
    command = [
        sys.executable, "-m", "lenet_cli", "fit", "--config", str(ROOT / "configs" / "ddp.yaml"),
        f"--trainer.devices={devices}", f"--trainer.strategy={strategy}", f"--data.batch_size={batch_size}",
        f"--trainer.max_epochs={epochs}", f"--model.lr={lr}", "--trainer.enable_progress_bar=false",
        "--trainer.callbacks+=benchmarks.fit_timer.FitTimer", "--seed_everything=0",
        f"--trainer.logger.init_args.save_dir={workdir / 'runs'}", *extra,
    ]
    environment = {**os.environ, "LENET_FIT_TIMER": str(output), "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"lenet fit failed ({devices} devices, batch {batch_size}):\n{result.stderr[-3000:]}")
    return json.loads(output.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--batch-sizes", default="512,2048", help="per-GPU batch sizes, comma-separated")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--extra", default="", help="more lenet fit arguments, e.g. --trainer.accelerator=cpu")
    parser.add_argument("--json", help="write all numbers here")
    options = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as folder:
        for batch_size in [int(b) for b in options.batch_sizes.split(",")]:
            one = fit(1, batch_size, options.epochs, options.lr, Path(folder), options.extra.split())
            many = fit(options.devices, batch_size, options.epochs, options.lr, Path(folder), options.extra.split())
            speedup = many["train_images_per_second"] / one["train_images_per_second"]
            results.append({"batch_size_per_device": batch_size, "one": one, "many": many, "speedup": speedup})
            print(json.dumps(results[-1]), flush=True)
    print(f"\n{'batch/GPU':>9} {'1 GPU img/s':>12} {f'{options.devices} GPU img/s':>12} {'speed-up':>9} {'1 GPU val acc':>14} {f'{options.devices} GPU val acc':>14}")
    for r in results:
        print(f"{r['batch_size_per_device']:9d} {r['one']['train_images_per_second']:12.0f} {r['many']['train_images_per_second']:12.0f} "
              f"{r['speedup']:8.2f}× {r['one']['val_acc']:14.4f} {r['many']['val_acc']:14.4f}")
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
