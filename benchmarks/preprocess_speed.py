"""Time lenet's preprocessing of one digit photo (decode + flatten + threshold + components + 28×28).

    python benchmarks/preprocess_speed.py                # 0.3, 3 and 12 megapixels, JPEG and PNG
    python benchmarks/preprocess_speed.py --repeats 50 --threads 1

For each size, one phone-style photo (tests/photos.py, then per-pixel sensor noise at full size so the
JPEG is as large as a phone's, quality 90) is written to a temporary folder and read back
``--repeats`` times by ``lenet_cli.images.load_digit``; the median and fastest milliseconds are
printed for the whole call, for its decoding alone (``read_image``: EXIF, JPEG draft scaling, reduction
to the working size) and for the rest (``preprocess``). As a baseline in the same run, the full-size
decode that a reader without draft scaling pays (``Image.open(...).convert("L")``). Results are noisy on
a shared machine: compare rows of one run. Recorded in docs/photos.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]  # tests.photos, and lenet_cli from this checkout

from lenet_cli import idx, images  # noqa: E402
from lenet_cli.pretrained import cpu_name  # noqa: E402
from tests import photos  # noqa: E402

SIZES = {"0.3 MP": (640, 480), "3 MP": (2000, 1500), "12 MP": (4000, 3000)}


def make_photo(size: tuple[int, int], seed: int) -> Image.Image:
    digit = idx.load(None, allow_download=False)["test_images"][0].numpy()
    rng = np.random.default_rng(seed)
    picture = photos.photo(digit, "gradient", rng).resize(size, Image.Resampling.BICUBIC)
    noisy = np.asarray(picture, np.int16) + rng.normal(0, 4, (size[1], size[0], 1)).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def milliseconds(function: Callable[[], object], repeats: int) -> tuple[float, float]:
    function()  # warm: file cache, OpenCV's first calls
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def time_one(path: Path, repeats: int) -> list[tuple[float, float]]:
    """load_digit, its decoding, the rest, and a full-size decode, timed on one file."""
    gray = images.read_grayscale(path, path.name)
    return [
        milliseconds(lambda: images.load_digit(path, path.name), repeats),
        milliseconds(lambda: images.read_image(path, path.name), repeats),
        milliseconds(lambda: images.preprocess(gray, path.name), repeats),
        milliseconds(lambda: Image.open(path).convert("L"), max(3, repeats // 4)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per row (default 20)")
    parser.add_argument("--threads", type=int, default=None, help="OpenCV threads (default: OpenCV's own choice)")
    arguments = parser.parse_args()
    if arguments.threads is not None:
        cv2.setNumThreads(arguments.threads)
    import PIL

    print(
        f"{date.today()}, {cpu_name()} ({os.cpu_count()} logical CPUs), Python {platform.python_version()}, "
        f"Pillow {PIL.__version__}, OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), numpy {np.__version__}"
    )
    print(f"median (fastest) ms of {arguments.repeats} calls")
    print(f"{'photo':>16} {'file':>8} | {'load_digit':>14} {'decode':>14} {'preprocess':>14} | {'full decode':>14}")
    with tempfile.TemporaryDirectory() as folder:
        for label, size in SIZES.items():
            picture = make_photo(size, seed=0)
            for suffix in ("jpg", "png"):
                path = Path(folder) / f"photo.{suffix}"
                picture.save(path, quality=90) if suffix == "jpg" else picture.save(path, compress_level=1)
                rows = time_one(path, arguments.repeats)
                cells = " ".join(f"{median:7.1f} ({fastest:4.1f})" for median, fastest in rows[:3])
                print(
                    f"{label + ' ' + suffix.upper():>16} {path.stat().st_size / 1e6:6.2f}MB | {cells} | "
                    f"{rows[3][0]:7.1f} ({rows[3][1]:4.1f})"
                )


if __name__ == "__main__":
    main()
