"""Train configs with and without ``--data.augment`` over several seeds: time per epoch, test and photo accuracy.

    python benchmarks/robust_training.py --configs configs/robust.yaml configs/mnist.yaml --seeds 1 2 3
    python benchmarks/robust_training.py --configs configs/mnist.yaml --variants plain augment \\
        --seeds 1 --max-epochs 2 --no-test                       # the cost of augmenting, per epoch
    python benchmarks/robust_training.py --configs configs/robust.yaml+--trainer.max_epochs=20 ...

A config may carry options of its own after ``+`` signs (``PATH+--option=value+...``).

    python benchmarks/robust_training.py --batch-cost 512      # no fits: one batch's distortion vs one step

``--batch-cost B`` times, interleaved (so that a busy machine slows both alike), the distortion of a
batch of B training images (un-normalise, distort, normalise, as the batch iterator does) and one
eager training step of LeNet on such a batch (forward, loss, backward, fused Adam), and prints their
medians.
Each (config, variant, seed) is one ``lenet fit`` in-process (``lenet_cli.cli.main``) in a temporary
folder, timed by benchmarks/timing.py's FitTimer (training batches only, the first epoch left out), then
``lenet test --ckpt_path best``. The variant ``augment`` adds ``--data.augment true``, ``plain`` adds
``--data.augment false``, ``as-is`` leaves the config alone. With ``--photos N``, the best checkpoint
also reads N phone-style photos per condition (tests/photos.py, generated once) and the accuracy per
condition is printed. Variants alternate within a seed, so a busy machine slows both alike.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from lenet_cli import checkpoints, idx, images  # noqa: E402
from lenet_cli.cli import main as lenet  # noqa: E402
from lenet_cli.data import to_model_input  # noqa: E402
from lenet_cli.model import LeNet  # noqa: E402
from tests import photos  # noqa: E402

VARIANTS = {"as-is": [], "plain": ["--data.augment=false"], "augment": ["--data.augment=true"]}


def test_accuracy(run: Path) -> float:
    with (run / "metrics.csv").open(newline="") as f:
        return float([row for row in csv.DictReader(f) if row.get("test/acc")][-1]["test/acc"])


def photo_accuracy(checkpoint: Path, folder: Path, per_condition: int) -> dict[str, float]:
    saved = checkpoints.load(checkpoint)
    model = LeNet(**{key: saved["hyper_parameters"][key] for key in ("in_channels", "num_classes")})
    model.load_state_dict(saved["state_dict"])
    labels = idx.load(None, allow_download=False)["test_labels"].numpy()
    plan = {str(photo.path): photo for photo in photos.plan(folder, labels, per_condition)}
    digits, sources = images.load_digits(folder, num_workers=os.cpu_count() or 1)
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
    import time

    from lenet_cli.augment import Augmentation, epoch_generator
    from lenet_cli.data import MEAN, STD

    inputs = to_model_input(idx.load(None, allow_download=False)["train_images"][:batch_size], device=device)
    labels = torch.randint(0, 10, (batch_size,), device=device)
    model = LeNet().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    augment, generator = Augmentation(), epoch_generator(device, 0, 0, 0)

    def distort() -> None:
        augment(inputs.clone().mul_(STD).add_(MEAN), generator).sub_(MEAN).div_(STD)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()

    timings: dict[str, list[float]] = {"distort": [], "step": []}
    for round_number in range(repeats + 5):
        for name, function in (("distort", distort), ("step", step)):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            function()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if round_number >= 5:
                timings[name].append((time.perf_counter() - start) * 1000)
    distortion, training = statistics.median(timings["distort"]), statistics.median(timings["step"])
    print(
        f"{device}, {torch.get_num_threads()} threads, batch {batch_size}: distortion {distortion:.2f} ms, "
        f"eager training step {training:.2f} ms ({100 * distortion / training:.0f} % of a step), medians of {repeats}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["configs/robust.yaml"])
    parser.add_argument("--variants", nargs="+", default=["as-is"], choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--max-epochs", type=int, default=None, help="override the configs' max_epochs")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--no-test", action="store_true", help="time the fits only")
    parser.add_argument("--photos", type=int, default=0, help="phone-style photos per condition to read (0: none)")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument(
        "--batch-cost", type=int, default=0, metavar="B", help="time one batch's distortion vs one step"
    )
    arguments = parser.parse_args()
    if arguments.batch_cost:
        device = torch.device("cuda" if arguments.accelerator in ("gpu", "cuda") else "cpu")
        batch_cost(arguments.batch_cost, device)
        return

    rows = []
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
                    os.chdir(work)
                    path, *options = config.split("+")
                    common = [
                        "--config",
                        str(ROOT / path),
                        *options,
                        f"--trainer.accelerator={arguments.accelerator}",
                        "--trainer.enable_progress_bar=false",
                        "--trainer.logger.init_args.save_dir=runs",
                        "--trainer.logger.init_args.name=run",
                        *VARIANTS[variant],
                    ]
                    epochs = [f"--trainer.max_epochs={arguments.max_epochs}"] if arguments.max_epochs else []
                    timed = [
                        "--trainer.callbacks+=benchmarks.timing.FitTimer",
                        f"--trainer.callbacks.output={work}/timer.json",
                    ]
                    lenet(["fit", *common, *epochs, f"--seed_everything={seed}", *timed])
                    timer = json.loads((work / "timer.json").read_text())
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
                    best = work / "runs" / "run" / "version_0" / "checkpoints" / "best.ckpt"
                    if not arguments.no_test:
                        lenet(["test", *common, "--ckpt_path", str(best)])
                        row["test_acc"] = test_accuracy(work / "runs" / "run" / "version_1")
                    if arguments.photos:
                        row["photos"] = photo_accuracy(best, photo_folder, arguments.photos)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        os.chdir(ROOT)

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


if __name__ == "__main__":
    main()
