"""How well and how fast the bundled model reads what people write (issue #23), on sets made from the
MNIST *test* split and from shapes and fonts (tests/writing.py, tests/photos.py), with the default
reading and no option: what ``lenet predict``, ``lenet read`` and ``lenet serve`` do.

    PYTHONPATH=$PWD/src:$PWD python benchmarks/reading.py [--per-set 500] [--photos 100]

prints a table and writes ``benchmarks/results/reading-<date>.json`` (per set: share read exactly,
share refused, count; speeds in ms; the CPU, versions and the command). Sets marked "held out" were
made another way and never looked at while tuning. The classifier here is the bundled network in
torch (one thread, as the 2-core CPU's reader); the reading itself is the torch-free pipeline.

    PYTHONPATH=$PWD/src:$PWD python benchmarks/reading.py speed [--runs 5] [--install-size]

``speed`` (#24, docs/reader.md): cold ``lenet read`` of 1 and 2 000 PNGs beside ``import torch, lightning``,
warm ``Reader.read`` per 28×28 image, the reader-only install's size: ``results/reading-speed.json``.
"""

from __future__ import annotations

import argparse
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
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import cpu_model
from lenet_cli.checkpoints import pretrained
from lenet_cli.checkpoints.load import load
from lenet_cli.data.mnist import preprocess as model_input
from lenet_cli.images.decode import read_grayscale
from lenet_cli.reading.pipeline import Calibration, propose, read_gray
from lenet_cli.training.network import LeNet5, network_weights
from tests import photos, writing

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / "src" / "lenet_cli" / "data" / "datasets" / "mnist"
RESULTS = Path(__file__).parent / "results"
DIGIT_SETS = {  # name → generator; thresholds of the issue in THRESHOLDS
    "tight crops": writing.tight,
    "one edge touched": writing.one_edge,
    "8x8 upscaled": writing.low_resolution,
    "14x14 upscaled": lambda images, labels, count, seed=0: writing.low_resolution(
        images, labels, count, seed, side=14
    ),
    "light on dark": writing.light_on_dark,
    "thick pen": writing.thick,
    "numbers of 2-6 digits": writing.numbers,
    "touching pairs": writing.touching,
    "numbers on photographed paper (held out)": writing.held_out_numbers,
}
NEGATIVE_SETS = {"non-digits": writing.negatives, "non-digits (held out)": writing.held_out_negatives}
THRESHOLDS = {
    "tight crops": 0.985,
    "one edge touched": 0.99,
    "8x8 upscaled": 0.95,
    "phone-style photos": 0.993,
    "numbers of 2-6 digits": 0.95,
    "touching pairs": 0.85,
    "non-digits": 0.95,
}
SINGLE = ("tight crops", "one edge touched", "light on dark", "thick pen")  # for "digits wrongly refused"


def classifier() -> tuple[torch.nn.Module, Calibration]:
    """The bundled network, NHWC as ``lenet predict`` runs it on the CPU (``GraphedTraining.configure_model``:
    its max-pools take half the time so; ~0.6 ms of a 6-digit number's ~10)."""
    network = LeNet5()
    network.load_state_dict(network_weights(load(pretrained.path())["state_dict"]))
    return network.eval().to(memory_format=torch.channels_last), pretrained.calibration()


def logits_of(network: torch.nn.Module):  # type: ignore[no-untyped-def]
    def classify(fields: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            images = model_input(torch.from_numpy(fields)).contiguous(memory_format=torch.channels_last)
            return network(images).numpy()

    return classify


def measure(samples: list[tuple[np.ndarray, str]], classify, calibration: Calibration) -> dict[str, float]:  # type: ignore[no-untyped-def]
    exact = refused = 0
    for gray, text in samples:
        reading = read_gray(gray, classify, calibration)
        exact += reading.text == text
        refused += not reading.found
    return {"exact": exact / len(samples), "refused": refused / len(samples), "count": len(samples)}


def phone_photos(count: int, classify, calibration: Calibration, images, labels) -> dict[str, float]:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as folder:
        made = photos.generate(Path(folder), images, labels, per_condition=count)
        samples = [(read_grayscale(photo.path), str(photo.label)) for photo in made]
    return measure(samples, classify, calibration)


def speed(classify, calibration: Calibration, images, labels) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Median ms from decoded intensities to the text (propose + classify + decide), per kind of picture;
    the 12-MP photo from its JPEG file, decoding included."""
    rng = np.random.default_rng(0)
    small = writing.tight(images, labels, 50)
    number = [writing.write_number(images, labels, rng, 6) for _ in range(20)]
    six = [(writing._paper(ink, rng), text) for ink, text in number]
    with tempfile.TemporaryDirectory() as folder:
        big = photos.photo(images[0], "small", np.random.default_rng(3))
        big = big.resize((4000, 3000))
        path = Path(folder) / "12mp.jpg"
        big.save(path, quality=90)

        def photo_once() -> None:
            read_gray(read_grayscale(path), classify, calibration)

        result = {"12-MP JPEG photo, decode included": _median_ms(photo_once, 10)}
    result["small image (tight crop)"] = _median_ms(
        lambda: [read_gray(g, classify, calibration) for g, _ in small], 5
    ) / len(small)
    result["6-digit number"] = _median_ms(lambda: [read_gray(g, classify, calibration) for g, _ in six], 5) / len(six)
    result["propose only, small image"] = _median_ms(lambda: [propose(g) for g, _ in small], 5) / len(small)
    return result


def _median_ms(work, repeats: int) -> float:  # type: ignore[no-untyped-def]
    work()  # warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def figure(path: Path, classify, calibration: Calibration, images, labels) -> None:  # type: ignore[no-untyped-def]
    """docs/reading.png: pictures of each kind with what the bundled model read from them."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(7)
    shown = [
        writing.tight(images, labels, 1, seed=5)[0],
        writing.one_edge(images, labels, 1, seed=5)[0],
        writing.low_resolution(images, labels, 1, seed=6, side=10)[0],
        writing.light_on_dark(images, labels, 1, seed=5)[0],
        writing.numbers(images, labels, 4, seed=5)[3],
        writing.touching(images, labels, 1, seed=8)[0],
        writing.held_out_numbers(images, labels, 2, seed=5)[1],
        *writing.negatives(5, seed=5)[1:5],
        (writing._paper(writing._text_ink("Hi", writing._fonts()[0], 60, rng), rng), ""),
    ]
    tile, font = 200, ImageFont.load_default(size=15)
    canvas = Image.new("RGB", (4 * tile, 3 * (tile + 44)), "white")
    draw = ImageDraw.Draw(canvas)
    for number, (gray, truth) in enumerate(shown):
        reading = read_gray(gray, classify, calibration)
        picture = Image.fromarray(gray.astype(np.uint8))
        scale = (tile - 10) / max(picture.size)
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))))
        left, top = (number % 4) * tile, (number // 4) * (tile + 44)
        canvas.paste(picture, (left + 5, top + 5))
        said = f"read {reading.text} ({reading.confidence:.2f})" if reading.found else "no digit"
        right = reading.text == truth
        draw.text((left + 5, top + tile - 2), said, fill=(0, 110, 0) if right else (200, 0, 0), font=font)
        draw.text((left + 5, top + tile + 18), f"written: {truth or 'no digit'}", fill=(90, 90, 90), font=font)
    canvas.save(path)


def mnist_digits(count: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = writing.mnist_test()
    return images[:count], labels[:count]


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
    runs_s = [round(value, 3) for value in times]
    return {"median_s": round(statistics.median(times), 3), "cpu_s": round(statistics.median(cpu), 3), "runs_s": runs_s}


def speed_cold(folder: Path, runs: int) -> dict[str, object]:
    """Cold ``lenet read`` of one picture, and of 2 000, beside importing torch and Lightning (interleaved)."""
    digits, _ = mnist_digits(2000)
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
    ratio = round(medians["read_one"] / medians["import_torch_lightning"], 3)
    return {"cpu_s": cpu, "medians_s": medians, "read_one_over_import": ratio, "runs": results}


def speed_warm(count: int = 2000) -> dict[str, object]:
    """Warm ``Reader.read`` per 28×28 image: an array, and a PNG's bytes (decoding included)."""
    from lenet_cli.reading.reader import Reader

    reader = Reader()
    digits, labels = mnist_digits(count)
    arrays = [255 - digit for digit in digits]
    pngs = [png_bytes(array) for array in arrays]
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


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def install_size() -> dict[str, object]:
    """``pip install ./reader`` into a fresh venv: its size and whether torch came along; deleted after."""
    folder = Path(tempfile.mkdtemp(prefix="lenet-reader-venv-"))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # not this checkout's src
    try:
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        began = time.perf_counter()
        subprocess.run([str(folder / "bin" / "pip"), "install", "-q", str(ROOT / "reader")], check=True, env=env)
        seconds = time.perf_counter() - began
        size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())
        probe = "import importlib.util as u; print(u.find_spec('torch') is not None)"
        python = str(folder / "bin" / "python")
        found = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True, env=env)
        torch = found.stdout.strip()
        return {"venv_mb": round(size / 1e6), "pip_install_s": round(seconds, 1), "torch_installed": torch == "True"}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def reader_timings(arguments: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as scratch:
        result: dict[str, object] = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "cpu": f"{cpu_model()}, {os.cpu_count()} logical cores",
            "python": platform.python_version(),
            "command": " ".join(["python", "benchmarks/reading.py", *sys.argv[1:]]),
            "cold": speed_cold(Path(scratch), arguments.runs),
            "warm": speed_warm(),
        }
    if arguments.install_size:
        result["install"] = install_size()
    return result


def reader_speed(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="benchmarks/reading.py speed")
    parser.add_argument("--runs", type=int, default=5, help="cold runs of each command (default 5)")
    parser.add_argument("--install-size", action="store_true", help="also pip install ./reader into a temp venv")
    result = reader_timings(parser.parse_args(argv))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reading-speed.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({key: value for key, value in result.items() if key != "cold"}, indent=1))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["speed"]:
        reader_speed(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-set", type=int, default=500, help="pictures per generated set")
    parser.add_argument("--photos", type=int, default=100, help="phone-style photos per condition (10 conditions)")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--figure", type=Path, help="also draw examples and what was read into this PNG")
    arguments = parser.parse_args(argv)
    torch.set_num_threads(1)
    network, calibration = classifier()
    classify = logits_of(network)
    images, labels = writing.mnist_test()
    if arguments.figure:
        figure(arguments.figure, classify, calibration, images, labels)
    sets: dict[str, dict[str, float]] = {}
    for name, make in DIGIT_SETS.items():
        sets[name] = measure(make(images, labels, arguments.per_set), classify, calibration)
        print(f"{name:45s} read exactly {sets[name]['exact']:7.2%}  refused {sets[name]['refused']:6.2%}", flush=True)
    for name, make in NEGATIVE_SETS.items():
        sets[name] = measure(make(arguments.per_set), classify, calibration)
        print(f"{name:45s} refused {sets[name]['refused']:7.2%}", flush=True)
    if arguments.photos:
        sets["phone-style photos"] = phone_photos(arguments.photos, classify, calibration, images, labels)
        print(f"{'phone-style photos':45s} read exactly {sets['phone-style photos']['exact']:7.2%}", flush=True)
    refused_digits = float(np.mean([sets[name]["refused"] for name in SINGLE]))
    record = pretrained.record()
    result = {
        "command": " ".join(["python", "benchmarks/reading.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model": {"sha256": record["sha256"], "mnist_test_accuracy": record["test_accuracy"], **record["calibration"]},
        "sets": sets,
        "single digits wrongly refused": refused_digits,
        "thresholds": {
            name: {"needed": bar, "measured": sets[name]["refused" if "non-digits" in name else "exact"]}
            for name, bar in THRESHOLDS.items()
            if name in sets
        },
    }
    print(f"{'single digits wrongly refused':45s} {refused_digits:7.2%}")
    if not arguments.no_speed:
        result["speed_ms"] = speed(classify, calibration, images, labels)
        for name, value in result["speed_ms"].items():
            print(f"{name:45s} {value:7.2f} ms")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"reading-{date.today().isoformat()}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
