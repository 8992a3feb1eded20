"""Inference speed on the CPU: ONNX Runtime vs torch eager (``export``), one photo's preprocessing (``preprocess``).

    python benchmarks/inference.py export --ckpt_path runs/quick/version_0/checkpoints/best.ckpt --threads 2
    python benchmarks/inference.py preprocess                # 0.3, 3 and 12 megapixels, JPEG and PNG
    python benchmarks/inference.py preprocess --repeats 50 --threads 1

``export``: batch-1 latency and batch-1000 throughput, same weights, one process. The LeNet (the
checkpoint's weights, or a seeded random initialisation without ``--ckpt_path``: the speed does not
depend on the values) is exported to a temporary ONNX file by ``lenet export``'s own code and run by
ONNX Runtime's CPU provider; torch runs the same module eagerly under ``inference_mode``, in NCHW and
in the channels-last format ``lenet predict`` uses on the CPU. Both get ``--threads`` intra-op threads
(torch: ``set_num_threads``; ONNX Runtime: ``intra_op_num_threads``) and one inter-op thread. Inputs
are MNIST test digits made into the model's input once, beforehand. Batch 1: ``--calls`` single-image
calls per engine, each timed on its own (what a caller waits, the engines' Python overhead included):
median and 95th percentile. Batch 1000: ``--repeats`` calls on 1000 images: images per second of the
median call. The engines take turns in ``--rounds`` rounds, so a neighbour's load on a shared machine
falls on all of them alike. Recorded in docs/export.md.

``preprocess``: lenet's preprocessing of one digit photo (decode + flatten + threshold + components +
28×28). For each size, one phone-style photo (tests/photos.py, then per-pixel sensor noise at full
size so the JPEG is as large as a phone's, quality 90) is written to a temporary folder and read back
``--repeats`` times by ``lenet_cli.images.load_digit``; the median and fastest milliseconds are
printed for the whole call, for its decoding alone (``read_image``: EXIF, JPEG draft scaling, reduction
to the working size) and for the rest (``preprocess``). As a baseline in the same run, the full-size
decode that a reader without draft scaling pays (``Image.open(...).convert("L")``). Results are noisy on
a shared machine: compare rows of one run. Recorded in docs/photos.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # lenet_cli from this checkout
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: `benchmarks.timing`, `tests.photos`

import argparse
import datetime
import functools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from benchmarks.timing import call_seconds
from lenet_cli.checkpoints.pretrained import cpu_name
from lenet_cli.data import idx

if TYPE_CHECKING:
    import onnxruntime

    from lenet_cli.training.module import LeNet

Engine = Callable[[np.ndarray, torch.Tensor], object]  # one forward pass: (numpy input, the same as a tensor)
SIZES = {"0.3 MP": (640, 480), "3 MP": (2000, 1500), "12 MP": (4000, 3000)}  # preprocess's photos


# ---------------------------------------------------------------------------------------------------
# export: ONNX Runtime vs torch eager


def load_model(ckpt_path: str | None, channels_last: bool) -> LeNet:
    from lenet_cli.checkpoints import load
    from lenet_cli.training.module import LeNet

    torch.manual_seed(0)
    model = LeNet(channels_last=channels_last)
    if ckpt_path is not None:
        checkpoint = load.load(ckpt_path)
        load.check_fits(checkpoint, model, ckpt_path)
        model.load_state_dict(checkpoint["state_dict"])
    model.configure_model()  # what a trainer calls: NHWC weights when channels_last
    return model.eval()


def onnx_session(model: LeNet, folder: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime

    from lenet_cli import export

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


def export_mode(options: argparse.Namespace) -> None:
    import lightning
    import onnxruntime

    from lenet_cli.data import mnist

    torch.set_num_threads(options.threads)
    torch.set_num_interop_threads(1)
    model = load_model(options.ckpt_path, channels_last=False)
    channels_last = load_model(options.ckpt_path, channels_last=True)
    images = mnist.to_model_input(idx.load(None, allow_download=False)["test_images"][:1000]).contiguous()
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
                assert np.abs(np.asarray(out[0] if isinstance(out, list) else out) - reference).max() < 1e-4, name

        single: dict[str, list[float]] = {name: [] for name in engines}
        batch: dict[str, list[float]] = {name: [] for name in engines}
        with torch.inference_mode():
            for run in engines.values():  # warm-up: allocators, oneDNN's primitive caches
                one_at_a_time(run, arrays, images, 200)
                call_seconds(functools.partial(run, arrays, images), 3)
            for _ in range(options.rounds):
                for name, run in engines.items():
                    single[name] += one_at_a_time(run, arrays, images, options.calls)
                for name, run in engines.items():
                    batch[name] += call_seconds(functools.partial(run, arrays, images), options.repeats)

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


# ---------------------------------------------------------------------------------------------------
# preprocess: one digit photo through lenet_cli.images


def make_photo(size: tuple[int, int], seed: int) -> Image.Image:
    from tests import photos

    digit = idx.load(None, allow_download=False)["test_images"][0].numpy()
    rng = np.random.default_rng(seed)
    picture = photos.photo(digit, "gradient", rng).resize(size, Image.Resampling.BICUBIC)
    noisy = np.asarray(picture, np.int16) + rng.normal(0, 4, (size[1], size[0], 1)).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def milliseconds(function: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median and fastest milliseconds of ``repeats`` calls, after one that warms up."""
    function()  # warm: file cache, OpenCV's first calls
    times = [1000 * seconds for seconds in call_seconds(function, repeats)]
    return statistics.median(times), min(times)


def time_one(path: Path, repeats: int) -> list[tuple[float, float]]:
    """load_digit, its decoding, the rest, and a full-size decode, timed on one file."""
    from lenet_cli.images import decode, files, mnist_style

    gray = decode.read_grayscale(path, path.name)
    return [
        milliseconds(lambda: files.load_digit(path, path.name), repeats),
        milliseconds(lambda: decode.read_image(path, path.name), repeats),
        milliseconds(lambda: mnist_style.preprocess(gray, path.name), repeats),
        milliseconds(lambda: Image.open(path).convert("L"), max(3, repeats // 4)),
    ]


def preprocess_mode(options: argparse.Namespace) -> None:
    import cv2
    import PIL

    if options.threads is not None:
        cv2.setNumThreads(options.threads)
    print(
        f"{datetime.date.today()}, {cpu_name()} ({os.cpu_count()} logical CPUs), Python {platform.python_version()}, "
        f"Pillow {PIL.__version__}, OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), numpy {np.__version__}"
    )
    print(f"median (fastest) ms of {options.repeats} calls")
    print(f"{'photo':>16} {'file':>8} | {'load_digit':>14} {'decode':>14} {'preprocess':>14} | {'full decode':>14}")
    with tempfile.TemporaryDirectory() as folder:
        for label, size in SIZES.items():
            picture = make_photo(size, seed=0)
            for suffix in ("jpg", "png"):
                path = Path(folder) / f"photo.{suffix}"
                picture.save(path, quality=90) if suffix == "jpg" else picture.save(path, compress_level=1)
                rows = time_one(path, options.repeats)
                cells = " ".join(f"{median:7.1f} ({fastest:4.1f})" for median, fastest in rows[:3])
                print(
                    f"{label + ' ' + suffix.upper():>16} {path.stat().st_size / 1e6:6.2f}MB | {cells} | "
                    f"{rows[3][0]:7.1f} ({rows[3][1]:4.1f})"
                )


def main(argv: list[str] | None = None) -> None:
    assert __doc__ is not None
    export_help = __doc__[__doc__.index("``export``:") : __doc__.index("``preprocess``:")].strip()
    preprocess_help = __doc__[__doc__.index("``preprocess``:") :].strip()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    modes = parser.add_subparsers(dest="mode", required=True)
    mode = modes.add_parser(
        "export", help="ONNX Runtime vs torch eager on the CPU", description=export_help, allow_abbrev=False
    )
    mode.add_argument("--ckpt_path", default=None, help="checkpoint whose weights to time (default: random weights)")
    mode.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads of both engines")
    mode.add_argument("--calls", type=int, default=2000, help="batch-1 calls per engine per round")
    mode.add_argument("--repeats", type=int, default=10, help="batch-1000 calls per engine per round")
    mode.add_argument("--rounds", type=int, default=3, help="rounds in which the engines take turns")
    mode.set_defaults(run=export_mode)
    mode = modes.add_parser(
        "preprocess", help="one digit photo's preprocessing", description=preprocess_help, allow_abbrev=False
    )
    mode.add_argument("--repeats", type=int, default=20, help="timed calls per row (default 20)")
    mode.add_argument("--threads", type=int, default=None, help="OpenCV threads (default: OpenCV's own choice)")
    mode.set_defaults(run=preprocess_mode)
    options = parser.parse_args(argv)
    options.run(options)


if __name__ == "__main__":
    main()
