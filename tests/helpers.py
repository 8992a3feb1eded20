"""What the tests share: paths and options, ``lenet`` in a new process, reading what a run wrote, and
inputs made on the spot (IDX files, user-style and broken images, a run that kills itself).

A plain module (``from tests.helpers import ...``); the fixtures are in ``conftest.py``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from PIL import Image

from lenet_cli.cli.main import main
from lenet_cli.data import idx
from lenet_cli.errors import DEBUG_VARIABLE
from lenet_cli.outputs.predictions import COLUMNS, FILE_COLUMNS
from lenet_cli.training.module import LeNet

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
# Quiet, CPU-only, small: what every in-process CLI test adds to its arguments.
NO_PROC = pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
CPU = ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.enable_progress_bar=false"]
# configs/quick.yaml (one short epoch, runs/quick/) on the CPU.
QUICK = ["--config", str(CONFIGS / "quick.yaml"), *CPU]


def quiet_trainer(**settings: Any) -> Trainer:
    """A Trainer on one CPU device without logger, checkpoints, progress bar or summary (``settings`` win)."""
    quiet = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return Trainer(**{"accelerator": "cpu", "devices": 1, **quiet, **settings})


# --- lenet in a new process ---------------------------------------------------------------------------


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a ``lenet`` child, plus ``env``.

    The repository is importable (``--trainer.callbacks`` may name :class:`CrashAt`) and ``LENET_DEBUG``
    is unset, so that errors come out as the user sees them.
    """
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    child = {key: value for key, value in os.environ.items() if key != DEBUG_VARIABLE}
    return {**child, "PYTHONPATH": pythonpath, **(env or {})}


def lenet_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "lenet_cli", *args]


def lenet_subprocess(
    args: list[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``lenet ARGS`` in a new process in ``cwd`` (``env`` added to the environment); its output captured."""
    return subprocess.run(
        lenet_command(args), cwd=cwd, env=child_env(env), capture_output=True, text=True, timeout=timeout
    )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- One-line errors: the contract every user mistake keeps -------------------------------------------


def error_line(stderr: str) -> str:
    """The one ``error:`` line ``main()`` printed, checked to be the only one and the last, with no traceback.

    (Warnings and Lightning's log lines may come before it.)
    """
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in stderr and len(errors) == 1, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == errors[0], stderr[-2000:]
    return errors[0]


def assert_user_error(status: object, stderr: str, message: str) -> str:
    """A command that ended with exit ``status`` and ``stderr`` failed as a user mistake: status 2 and one
    ``error:`` line, the last, holding ``message``, no traceback. Returns the line.

    For a ``lenet`` of another process (its return code) as well as ``main()`` here (``SystemExit.code``).
    """
    line = error_line(stderr)
    assert status == 2, f"exit status {status}: {line}"
    assert message in line, line
    return line


def folder_state(folder: Path) -> dict[str, str]:
    """What is below ``folder``, by relative path: the sha256 of each regular file, ``"folder"``, or the kind
    of a special entry (a FIFO, a link). Special files are never opened (a FIFO would block); a file that
    cannot be read (no read permission) is described by its size and modification time instead."""
    state = {}
    for path in sorted(folder.rglob("*")):
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            kind = "folder"
        elif not stat.S_ISREG(mode):
            kind = f"special {stat.S_IFMT(mode):o}"
        else:
            try:
                kind = hashlib.sha256(path.read_bytes()).hexdigest()
            except PermissionError:
                kind = f"unreadable, {path.stat().st_size} bytes, modified {path.stat().st_mtime_ns}"
        state[str(path.relative_to(folder))] = kind
    return state


def assert_one_line_error(
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    *,
    folder: Path | None = None,
    check_files: bool = True,
) -> str:
    """``main(args)`` (``lenet ARGS`` in this process) fails as a user mistake (:func:`assert_user_error`)
    and leaves ``folder`` (by default the working folder) as it was (:func:`assert_unchanged`).
    ``check_files=False`` for a mistake found mid-run, after the run has written its files. Returns the
    error line.
    """
    folder = Path.cwd() if folder is None else folder
    before = folder_state(folder) if check_files else {}
    capsys.readouterr()  # what earlier steps printed
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    line = assert_user_error(exit_info.value.code, capsys.readouterr().err, message)
    if check_files:
        assert_unchanged(folder, before, line)
    return line


def assert_unchanged(folder: Path, before: dict[str, str], context: str = "") -> None:
    """``folder`` holds what :func:`folder_state` found ``before``: no file added, changed or removed, no
    folder removed. New empty folders pass: a refused ``fit --config configs/quick.yaml`` leaves an empty
    ``runs/quick/`` (the logger's folder, made before the checks that refuse; no ``version_N`` below it)."""
    after = folder_state(folder)
    changed = {name for name, state in before.items() if after.get(name) != state}
    new = set(after) - set(before)
    added = {name for name in new if after[name] != "folder"}
    assert not changed and not added, f"{context}\nchanged or removed: {sorted(changed)}\nadded: {sorted(added)}"


# --- What a run wrote ---------------------------------------------------------------------------------


def read_metrics(run: Path) -> list[dict[str, str]]:
    """The rows of the run folder's ``metrics.csv`` (Lightning's CSVLogger: one column per metric)."""
    with (run / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def last_logged(run: Path, key: str) -> float:
    """The last value of metric ``key`` (``val/acc``, ``test/acc``, ...) in the run's ``metrics.csv``."""
    values = [row[key] for row in read_metrics(run) if row.get(key)]
    assert values, f"{run / 'metrics.csv'} has no {key}"
    return float(values[-1])


def read_predictions(run: Path) -> list[dict[str, str]]:
    """The rows of ``predictions.csv``, checked to have the columns in order: ``COLUMNS`` for the MNIST
    test set, ``FILE_COLUMNS`` (one row per picture, its text read) for the user's files."""
    with (run / "predictions.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames in (COLUMNS, FILE_COLUMNS)
        return list(reader)


def read_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


# --- Inputs -------------------------------------------------------------------------------------------


def write_idx(path: Path, array: torch.Tensor) -> Path:
    """``array`` (uint8) as a plain IDX file: the format of MNIST's files."""
    header = struct.pack(">HBB", 0, 0x08, array.dim()) + b"".join(struct.pack(">I", n) for n in array.shape)
    path.write_bytes(header + array.contiguous().numpy().tobytes())
    return path


def dark_on_light_rgb(digit: np.ndarray, scale: int = 1) -> np.ndarray:
    """A light-on-dark uint8 digit → blue ink on cream paper, uint8 (H, W, 3), ``scale`` times larger."""
    ink = digit.astype(np.float32) / 255
    if scale > 1:
        size = (digit.shape[1] * scale, digit.shape[0] * scale)
        ink = np.asarray(Image.fromarray(ink, mode="F").resize(size, Image.Resampling.BICUBIC)).clip(0, 1)
    paper, pen = np.array([245, 240, 225], np.float32), np.array([20, 30, 90], np.float32)
    return (paper * (1 - ink[..., None]) + pen * ink[..., None]).round().astype(np.uint8)


def on_canvas(picture: np.ndarray, size: tuple[int, int], top: int, left: int) -> np.ndarray:
    """``picture`` (H, W, 3) pasted at (top, left) on a canvas of its own corner's colour."""
    canvas = np.empty((*size, 3), dtype=np.uint8)
    canvas[:] = picture[0, 0]
    canvas[top : top + picture.shape[0], left : left + picture.shape[1]] = picture
    return canvas


def png_claiming(width: int = 30_000, height: int = 30_000) -> bytes:
    """A PNG of a few hundred bytes whose header claims ``width``×``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    rows = zlib.compress(b"\x00" * (1 + width // 8) * 16)  # the first 16 rows; the decoder never gets there
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def png_bomb(path: Path, width: int = 30_000, height: int = 30_000) -> Path:
    """:func:`png_claiming` written to ``path``."""
    path.write_bytes(png_claiming(width, height))
    return path


def make_user_images(folder: Path, count: int, seed: int = 0) -> tuple[list[int], torch.Tensor]:
    """``count`` MNIST test digits as a user would bring them; returns their test indices and labels.

    Each is inverted to blue ink on cream paper (RGB), enlarged 1-3×, placed off-centre on a larger
    canvas and saved as PNG or (every other one) JPEG. Names sort in the order of the returned lists.
    """
    arrays = idx.load(None, allow_download=False, splits=("test",))
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(arrays["test_images"]), count, replace=False).tolist())
    folder.mkdir(parents=True, exist_ok=True)
    for position, index in enumerate(chosen):
        picture = dark_on_light_rgb(arrays["test_images"][index].numpy(), scale=int(rng.integers(1, 4)))
        side = picture.shape[0]
        size = int(rng.integers(side + 20, 2 * side + 40))
        top, left = (int(value) for value in rng.integers(0, size - side + 1, 2))
        image = Image.fromarray(on_canvas(picture, (size, size), top, left))
        image.save(folder / f"digit{position:04d}.{'png' if position % 2 == 0 else 'jpg'}", quality=90)
    return chosen, arrays["test_labels"][chosen].long()


def truncated_png(path: Path, digit: np.ndarray) -> Path:
    """``digit`` (uint8 (H, W)) saved as PNG, then cut to half its bytes."""
    Image.fromarray(digit).save(path)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return path


def alias_bomb(levels: int = 9, width: int = 9, inline: bool = False) -> str:
    """YAML of a few hundred bytes whose aliases expand to ``width ** levels`` values ("billion laughs")."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "{" + ", ".join(lines) + "}" if inline else "\n".join(lines) + "\n"


def deflated_zeros(prefix: bytes, size: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``prefix`` and then ``size`` zero bytes, and the CRC-32 of all of it.

    Made in a fraction of a second whatever ``size`` (a multiple of 16 MiB): after a full flush the
    compressor starts afresh, so every 16 MiB block of zeros compresses to the same bytes (~16 KB).
    """
    chunk = bytes(2**24)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(prefix)
    for _ in range(size // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    return head + block * (size // len(chunk)) + compressor.flush(), crc


def gzip_bomb(path: Path, prefix: bytes, size: int) -> Path:
    """A .gz file of a few MB that inflates to ``prefix`` and ``size`` zero bytes."""
    stream, crc = deflated_zeros(prefix, size)
    total = len(prefix) + size
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # gzip, deflate, no name, no time
    path.write_bytes(header + stream + struct.pack("<II", crc, total % 2**32))
    return path


def checkpoint_bomb(path: Path, size: int) -> Path:
    """A LeNet checkpoint of a few MB whose first tensor declares ``size`` bytes (a multiple of 16 MiB,
    below 2 GiB), stored as a deflated entry that inflates to exactly that: what torch reads in full."""
    marker = 123_457  # the placeholder tensor's length, found and replaced in the pickle
    buffer = io.BytesIO()
    torch.save({"bomb": torch.zeros(marker, dtype=torch.uint8), "state_dict": LeNet().state_dict()}, buffer)
    source = zipfile.ZipFile(buffer)
    stream, crc = deflated_zeros(b"", size)
    out, directory = io.BytesIO(), []
    for entry in source.infolist():
        data, method, length = source.read(entry), 0, 0
        if entry.filename.endswith("/data.pkl"):  # its storage's byte count and the tensor's size
            data = data.replace(b"J" + struct.pack("<i", marker), b"J" + struct.pack("<i", size))
        if entry.filename.endswith("/data/0"):
            data, method, length, check = stream, 8, size, crc
        else:
            length, check = len(data), zlib.crc32(data)
        name, offset = entry.filename.encode(), out.tell()
        sizes = (check, len(data), length, len(name))
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, *sizes, 0) + name + data)
        central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, *sizes, 0, 0, 0, 0, 0, offset)
        directory.append(central + name)
    start = out.tell()
    out.write(b"".join(directory))
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(directory), len(directory), out.tell() - start, start, 0))
    path.write_bytes(out.getvalue())
    return path


# --- Short runs on the small copy of MNIST ---------------------------------------------------------------


def small_run(subcommand: str, data_dir: Path, *extra: str, steps: int = 2, val_batches: int | None = 1) -> list[str]:
    """``lenet SUBCOMMAND`` with configs/quick.yaml on the CPU and the small IDX copy of MNIST in ``data_dir``
    (conftest's ``small_mnist``; 1000 training images held out for validation): ``steps`` training
    batches an epoch and ``val_batches`` validation batches (None: all 16), then ``extra``."""
    limits = [f"--trainer.limit_train_batches={steps}"]
    limits += [] if val_batches is None else [f"--trainer.limit_val_batches={val_batches}"]
    return [subcommand, *QUICK, f"--data.data_dir={data_dir}", "--data.val_size=1000", *limits, *extra]


# --- A fit that is killed or stopped, and resumed -----------------------------------------------------

STEPS_PER_EPOCH = 10
EPOCHS = 3


def resumable_fit_args(data_dir: Path, *extra: str) -> list[str]:
    """``lenet fit`` of EPOCHS short epochs with a one-cycle schedule and early stopping: every kind of
    state a resume must bring back (weights, Adam moments, scheduler, callback and loop state)."""
    early_stopping = {"class_path": "lightning.pytorch.callbacks.EarlyStopping", "init_args": {"monitor": "val/loss"}}
    return small_run(
        "fit",
        data_dir,
        f"--trainer.max_epochs={EPOCHS}",
        "--model.lr_schedule=onecycle",
        "--model.lr=0.005",  # peak rate: 30 steps reach ~80 % test accuracy
        "--seed_everything=3",
        f"--trainer.callbacks+={json.dumps(early_stopping)}",
        *extra,
        steps=STEPS_PER_EPOCH,
        val_batches=None,
    )


class CrashAt(Callback):
    """Kills or signals its own process during ``fit`` (given with :func:`crash_at`).

    Args:
        point: ``"batch"``: after the batch that reaches ``step`` (``"batch_twice"``: twice at once);
            ``"writing_last"``: half-way through
            writing ``last.ckpt`` once ``global_step >= step``; ``"before_last"``: once ``best.ckpt``
            of that epoch is written and ``last.ckpt`` is not.
        step: The global step to act at.
        signal_name: What ``"batch"`` sends: SIGKILL, SIGINT or SIGTERM.
        rank: Only the process of this global rank acts (``None``: every process).
    """

    def __init__(self, point: str, step: int, signal_name: str = "SIGKILL", rank: int | None = None) -> None:
        self.point, self.step, self.signal, self.rank = point, step, getattr(signal, signal_name), rank

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if self.rank is not None and trainer.global_rank != self.rank:
            return
        if self.point in ("batch", "batch_twice") and trainer.global_step == self.step:
            os.kill(os.getpid(), self.signal)
            if self.point == "batch_twice":
                os.kill(os.getpid(), self.signal)  # before the loop reaches the batch boundary

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.rank is not None and trainer.global_rank != self.rank:
            return
        checkpoint_io = trainer.strategy.checkpoint_io
        save = checkpoint_io.save_checkpoint

        def save_then_crash(checkpoint: dict, path: str, storage_options: Any = None) -> None:
            if trainer.global_step >= self.step and str(path).endswith("last.ckpt"):
                if self.point == "before_last":
                    os.kill(os.getpid(), signal.SIGKILL)
                if self.point == "writing_last":
                    torch.save = _write_half_then_die
            save(checkpoint, path, storage_options)

        checkpoint_io.save_checkpoint = save_then_crash


_TORCH_SAVE = torch.save


def _write_half_then_die(obj: Any, path: Any, *args: Any, **kwargs: Any) -> None:
    """Stands in for ``torch.save``: the process dies with half the bytes written."""
    buffer = io.BytesIO()
    _TORCH_SAVE(obj, buffer)
    half = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    if hasattr(path, "write"):  # an open file of the checkpoint IO's (the temporary beside the checkpoint)
        path.write(half)
        path.flush()
        os.fsync(path.fileno())
    else:
        with open(path, "wb") as f:  # whatever file the checkpoint IO writes to
            f.write(half)
            f.flush()
            os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def callback_option(callback: type[Callback], **init_args: Any) -> str:
    """The option that adds ``callback`` (a class of this module) with ``init_args`` to a run's callbacks."""
    return (
        f"--trainer.callbacks+={json.dumps({'class_path': f'{__name__}.{callback.__name__}', 'init_args': init_args})}"
    )


def crash_at(point: str, step: int, signal_name: str = "SIGKILL", rank: int | None = None) -> str:
    """The option that adds :class:`CrashAt` to a ``fit``'s callbacks."""
    return callback_option(CrashAt, point=point, step=step, signal_name=signal_name, rank=rank)


class GraphRecord(Callback):
    """Writes what the CUDA-graph training step did to the JSON file ``path`` at the end of ``fit``
    (added with :func:`callback_option`): ``graphed`` (a GraphedStep was set up),
    ``captures``, ``calls`` (training steps that went through it) and ``steps`` (the trainer's)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        step = getattr(pl_module, "_graphed", None)
        record = {"graphed": step is not None, "steps": trainer.global_step}
        if step is not None:
            record |= {"captures": step.captures, "calls": step.calls}
        self.path.write_text(json.dumps(record))
