"""ONNX Runtime vs torch eager on the CPU: batch-1 latency and batch-1000 throughput, same weights, one process.

    python benchmarks/export_speed.py --ckpt_path runs/quick/version_0/checkpoints/best.ckpt --threads 2

The LeNet (the checkpoint's weights, or a seeded random initialisation without ``--ckpt_path``: the
speed does not depend on the values) is exported to a temporary ONNX file by ``lenet export``'s own
code and run by ONNX Runtime's CPU provider; torch runs the same module eagerly under
``inference_mode``, in NCHW and in the channels-last format ``lenet predict`` uses on the CPU. Both
get ``--threads`` intra-op threads (torch: ``set_num_threads``; ONNX Runtime: ``intra_op_num_threads``)
and one inter-op thread. Inputs are MNIST test digits made into the model's input once, beforehand.

Batch 1: ``--calls`` single-image calls per engine, each timed on its own (what a caller waits,
the engines' Python overhead included): median and 95th percentile. Batch 1000: ``--repeats`` calls
on 1000 images: images per second of the median call. The engines take turns in ``--rounds`` rounds,
so a neighbour's load on a shared machine falls on all of them alike.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning
import numpy as np
import onnxruntime
import torch

from lenet_cli import checkpoints, data, export, idx
from lenet_cli.model import LeNet
from lenet_cli.pretrained import cpu_name

Engine = Callable[[np.ndarray, torch.Tensor], object]  # one forward pass: (numpy input, the same as a tensor)


def load_model(ckpt_path: str | None, channels_last: bool) -> LeNet:
    torch.manual_seed(0)
    model = LeNet(channels_last=channels_last)
    if ckpt_path is not None:
        checkpoint = checkpoints.load(ckpt_path)
        checkpoints.check_fits(checkpoint, model, ckpt_path)
        model.load_state_dict(checkpoint["state_dict"])
    model.configure_model()  # what a trainer calls: NHWC weights when channels_last
    return model.eval()


def onnx_session(model: LeNet, folder: Path, threads: int) -> onnxruntime.InferenceSession:
    path = folder / "lenet.onnx"
    classifier = export.Classifier(model).eval()
    export.write_onnx(classifier, export.example_input(model, False), path, {"benchmark": "true"})
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def one_at_a_time(run: Engine, arrays: np.ndarray, images: torch.Tensor, calls: int) -> list[float]:
    """Seconds of each of ``calls`` batch-1 calls, on the images in turn."""
    times = []
    for call in range(calls):
        array, tensor = arrays[call % len(arrays)][None], images[call % len(images)][None]
        start = time.perf_counter()
        run(array, tensor)
        times.append(time.perf_counter() - start)
    return times


def whole_batch(run: Engine, arrays: np.ndarray, images: torch.Tensor, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run(arrays, images)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", default=None, help="checkpoint whose weights to time (default: random weights)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads of both engines")
    parser.add_argument("--calls", type=int, default=2000, help="batch-1 calls per engine per round")
    parser.add_argument("--repeats", type=int, default=10, help="batch-1000 calls per engine per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds in which the engines take turns")
    options = parser.parse_args()

    torch.set_num_threads(options.threads)
    torch.set_num_interop_threads(1)
    model = load_model(options.ckpt_path, channels_last=False)
    channels_last = load_model(options.ckpt_path, channels_last=True)
    images = data.to_model_input(idx.load(None, allow_download=False)["test_images"][:1000]).contiguous()
    arrays = images.numpy()

    with tempfile.TemporaryDirectory() as folder:
        session = onnx_session(model, Path(folder), options.threads)
        engines: dict[str, Engine] = {
            "ONNX Runtime (CPU provider)": lambda array, tensor: session.run(["logits"], {"images": array}),
            "torch eager, NCHW": lambda array, tensor: model(tensor),
            "torch eager, channels-last (lenet predict)": lambda array, tensor: channels_last(tensor),
        }
        # Same answers first: the timings are of equal work.
        with torch.inference_mode():
            reference = model(images).numpy()
            for name, run in engines.items():
                out = run(arrays, images)
                out = out[0] if isinstance(out, list) else out.numpy()
                assert np.abs(out - reference).max() < 1e-4, name

        single: dict[str, list[float]] = {name: [] for name in engines}
        batch: dict[str, list[float]] = {name: [] for name in engines}
        with torch.inference_mode():
            for run in engines.values():  # warm-up: allocators, oneDNN's primitive caches
                one_at_a_time(run, arrays, images, 200)
                whole_batch(run, arrays, images, 3)
            for _ in range(options.rounds):
                for name, run in engines.items():
                    single[name] += one_at_a_time(run, arrays, images, options.calls)
                for name, run in engines.items():
                    batch[name] += whole_batch(run, arrays, images, options.repeats)

    command = " ".join(["python", *sys.argv])
    print(
        f"{cpu_name()}, {os.cpu_count()} logical CPUs; {datetime.date.today()}; torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, lightning {lightning.__version__}; {options.threads} threads"
    )
    print(f"`{command}`: batch 1 over {options.rounds} × {options.calls} calls, batch 1000 over "
          f"{options.rounds} × {options.repeats} calls\n")  # fmt: skip
    print("| engine | batch 1: median µs | batch 1: p95 µs | batch 1000: images/s (median call) |")
    print("| --- | --- | --- | --- |")
    for name in engines:
        ordered = sorted(single[name])
        p95 = ordered[int(0.95 * (len(ordered) - 1))]
        rate = 1000 / statistics.median(batch[name])
        print(f"| {name} | {1e6 * statistics.median(ordered):.0f} | {1e6 * p95:.0f} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
