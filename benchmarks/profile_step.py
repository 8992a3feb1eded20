"""Where does a `lenet fit` step spend its time? Host syncs, Python hot spots, and a plain loop to compare.

    python benchmarks/profile_step.py --batch-size 1024 --epochs 2
"""

from __future__ import annotations

import argparse
import cProfile
import collections
import io
import pstats
import time
import traceback
import warnings

import torch
import torch.nn.functional as F

from lenet_cli.cli import TRAINER_DEFAULTS, LenetCLI
from lenet_cli.data import MNISTDataModule, to_model_input
from lenet_cli import idx
from lenet_cli.model import LeNet


def plain_loop_ms_per_step(batch_size: int, steps: int, device: str) -> float:
    arrays = idx.load()
    images = to_model_input(arrays["train_images"][:55_000], device=device)
    labels = arrays["train_labels"][:55_000].long().to(device)
    model = LeNet().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=device == "cuda")
    order = torch.randperm(len(images), device=device)
    def step(i: int) -> None:
        index = order[(i * batch_size) % (len(images) - batch_size):][:batch_size]
        loss = F.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    for i in range(20):
        step(i)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    if device == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / steps


def build(batch_size: int, epochs: int, extra: list[str]) -> LenetCLI:
    return LenetCLI(
        LeNet, MNISTDataModule, run=False, trainer_defaults=TRAINER_DEFAULTS,
        args=["--config", "configs/mnist.yaml", f"--data.batch_size={batch_size}", f"--trainer.max_epochs={epochs}",
              "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
              "--trainer.logger.init_args.save_dir=runs/profile", *extra],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--extra", default="", help="more lenet fit arguments")
    options = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    extra = options.extra.split()

    print(f"plain loop: {plain_loop_ms_per_step(options.batch_size, 200, device):.3f} ms/step")

    if device == "cuda":  # every host sync inside fit, by the line that caused it
        cli = build(options.batch_size, 1, extra)
        syncs: collections.Counter[str] = collections.Counter()
        def record(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
            if "synchroniz" in str(message):
                stack = [f for f in traceback.extract_stack()[:-2] if "/torch/" not in f.filename or "lightning" in f.filename]
                syncs[" <- ".join(f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in stack[-4:])] += 1
        warnings.showwarning = record
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        torch.cuda.set_sync_debug_mode(0)
        steps = cli.trainer.global_step
        print(f"host syncs during a {steps}-step epoch (count: where):")
        for where, count in syncs.most_common(25):
            print(f"  {count:5d}: {where}")

    cli = build(options.batch_size, options.epochs, extra)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    profiler.disable()
    seconds = time.perf_counter() - start
    steps = cli.trainer.global_step
    print(f"lenet fit under cProfile: {seconds:.2f} s, {steps} steps, {1000 * seconds / steps:.2f} ms/step")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
    print(out.getvalue()[:9000])
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
    print(out.getvalue()[:12000])


if __name__ == "__main__":
    main()
