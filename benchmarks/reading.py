"""Reading digits: how fast (``speed``; the reader issue, #24) — and how well (the reading issue's part).

    python benchmarks/reading.py speed [--install-size]

``speed`` (2-core CPU figures in docs/reader.md), side by side in one run, each a median of ``--runs``:

- cold ``lenet read one.png`` (a new process: imports, model, one 112×112 PNG) beside a bare
  ``python -c "import torch, lightning.pytorch"``, the floor of every command that uses torch;
- cold ``lenet read`` of a folder of 2 000 small PNGs (MNIST test digits, dark on light, 56×56);
- warm ``Reader.read`` per image: a 28×28 array, and a 28×28 PNG's bytes (decode included);
- with ``--install-size``: ``pip install ./reader`` into a fresh venv under /tmp (PyPI), its size on
  disk and that torch is absent; the venv is deleted after.

Results as JSON in benchmarks/results/reading-speed.json.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / "src" / "lenet_cli" / "data" / "datasets" / "mnist"
RESULTS = ROOT / "benchmarks" / "results"


def mnist_test(count: int) -> tuple[np.ndarray, np.ndarray]:
    images = np.frombuffer(gzip.decompress((MNIST / "t10k-images-idx3-ubyte.gz").read_bytes()), np.uint8, offset=16)
    labels = np.frombuffer(gzip.decompress((MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes()), np.uint8, offset=8)
    return images.reshape(-1, 28, 28)[:count], labels[:count]


def wall(command: list[str], runs: int) -> dict[str, object]:
    """Median wall seconds of ``command`` in a new process, this checkout's src first on the path, and its
    CPU seconds (user + system of the child: what a quiet machine's wall time would be, about)."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}")
    times, cpu = [], []
    for _ in range(runs):
        before = os.times()
        began = time.perf_counter()
        subprocess.run(command, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - began)
        after = os.times()
        cpu.append(after.children_user + after.children_system - before.children_user - before.children_system)
    return {
        "median_s": round(statistics.median(times), 3),
        "cpu_s": round(statistics.median(cpu), 3),
        "runs_s": [round(value, 3) for value in times],
    }


def speed_cold(folder: Path, runs: int) -> dict[str, object]:
    """Cold ``lenet read`` of one picture, and of 2 000, beside importing torch and Lightning (interleaved)."""
    digits, _ = mnist_test(2000)
    one = folder / "one.png"
    Image.fromarray(255 - digits[0]).resize((112, 112), Image.Resampling.BICUBIC).save(one)
    many = folder / "many"
    many.mkdir()
    for index, digit in enumerate(digits):
        Image.fromarray(255 - digit).resize((56, 56), Image.Resampling.BICUBIC).save(many / f"{index:04d}.png")
    read_one = [sys.executable, "-m", "lenet_cli", "read", str(one)]
    torch_import = [sys.executable, "-c", "import torch, lightning.pytorch"]
    read_many = [sys.executable, "-m", "lenet_cli", "read", str(many)]
    results: dict[str, list[dict[str, object]]] = {"read_one": [], "import_torch_lightning": [], "read_2000": []}
    for _ in range(runs):  # interleaved: a busy moment of the machine falls on all of them
        results["read_one"].append(wall(read_one, 1))
        results["import_torch_lightning"].append(wall(torch_import, 1))
        results["read_2000"].append(wall(read_many, 1))
    medians = {name: statistics.median(run["median_s"] for run in values) for name, values in results.items()}  # type: ignore[misc]
    cpu = {name: statistics.median(run["cpu_s"] for run in values) for name, values in results.items()}  # type: ignore[misc]
    return {
        "cpu_s": cpu,
        "read_one_s": medians["read_one"],
        "import_torch_lightning_s": medians["import_torch_lightning"],
        "read_one_over_import": round(medians["read_one"] / medians["import_torch_lightning"], 3),
        "read_2000_s": medians["read_2000"],
        "runs": results,
    }


def speed_warm(count: int = 2000) -> dict[str, object]:
    """Warm ``Reader.read`` per 28×28 image: an array, and a PNG's bytes (decoding included)."""
    sys.path.insert(0, str(ROOT / "src"))
    from lenet_cli.reading.reader import Reader

    reader = Reader()
    digits, labels = mnist_test(count)
    arrays = [255 - digit for digit in digits]
    pngs = []
    for array in arrays:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    for image in arrays[:50]:
        reader.read(image)  # warm: ONNX Runtime's first runs allocate
    result: dict[str, object] = {}
    for name, images in (("array_ms", arrays), ("png_ms", pngs)):
        began, cpu = time.perf_counter(), time.process_time()
        texts = [reader.read(image).text for image in images]
        result[name] = round(1000 * (time.perf_counter() - began) / count, 3)
        # CPU time too: on a machine shared with other jobs the wall time says more about them than about us.
        result[name.replace("_ms", "_cpu_ms")] = round(1000 * (time.process_time() - cpu) / count, 3)
        result[f"{name.removesuffix('_ms')}_accuracy"] = round(float(np.mean(np.array(texts) == labels.astype(str))), 4)
    began = time.perf_counter()
    reader.read_many(arrays)
    result["read_many_ms"] = round(1000 * (time.perf_counter() - began) / count, 3)
    return result


def install_size() -> dict[str, object]:
    """``pip install ./reader`` into a fresh venv: its size and whether torch came along; deleted after."""
    folder = Path(tempfile.mkdtemp(prefix="lenet-reader-venv-"))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        began = time.perf_counter()
        subprocess.run([str(folder / "bin" / "pip"), "install", "-q", str(ROOT / "reader")], check=True)
        seconds = time.perf_counter() - began
        size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())
        probe = "import importlib.util as u; print(u.find_spec('torch') is not None)"
        python = str(folder / "bin" / "python")
        torch = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
        return {"venv_mb": round(size / 1e6), "pip_install_s": round(seconds, 1), "torch_installed": torch == "True"}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def speed(arguments: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as scratch:
        result: dict[str, object] = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "cpu": f"{_cpu()}, {os.cpu_count()} logical cores",
            "python": platform.python_version(),
            "command": " ".join(["python", "benchmarks/reading.py", *sys.argv[1:]]),
            "cold": speed_cold(Path(scratch), arguments.runs),
            "warm": speed_warm(),
        }
    if arguments.install_size:
        result["install"] = install_size()
    return result


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parts = parser.add_subparsers(dest="part", required=True)
    speed_part = parts.add_parser("speed", help="cold and warm reading, the reader's install")
    speed_part.add_argument("--runs", type=int, default=5, help="cold runs of each command (default 5)")
    speed_part.add_argument("--install-size", action="store_true", help="also pip install ./reader into a temp venv")
    arguments = parser.parse_args()
    result = speed(arguments)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reading-speed.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({key: value for key, value in result.items() if key != "cold"} | {
        "cold": {key: value for key, value in result["cold"].items() if key != "runs"}  # type: ignore[union-attr]
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
