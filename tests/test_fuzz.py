"""Fuzzing (hypothesis): valid IDX files, checkpoints, images and configs, mutated and truncated, end in
success or in lenet's own one-line error (``LenetError``), never in another exception, each example
within a deadline, and all of them within a bounded growth of the process's peak memory.

The default suite runs a few examples of each (derandomized, so that CI is repeatable); ``-m slow``
runs many more, from a random start.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import resource
import zipfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lenet_cli.checkpoints import load
from lenet_cli.cli.main import main
from lenet_cli.data import idx
from lenet_cli.errors import LenetError
from lenet_cli.images import files
from lenet_cli.training.module import LeNet
from tests.helpers import CONFIGS, assert_user_error, write_idx

QUICK_EXAMPLES = 25  # per target in the default suite: ~8 s for all four on a 2-core CPU
# Pillow warns about each damaged TIFF tag it skips: noise here, where damage is the point.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")
MEMORY_GROWTH_KB = 1_000_000  # the peak RSS may grow by at most this over a fuzz run (1 GB)


def fuzz_settings(examples: int, deadline_s: float, long: bool) -> settings:
    return settings(
        max_examples=examples,
        deadline=timedelta(seconds=deadline_s),
        derandomize=not long,
        database=None,  # nothing written into the repository
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    )


@contextlib.contextmanager
def bounded_memory() -> Iterator[None]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < MEMORY_GROWTH_KB, f"the peak RSS grew by {grown / 1e6:.2f} GB"


@st.composite
def mutated(draw: st.DrawFn, base: bytes, hot: tuple[int, int] | None = None) -> bytes:
    """``base`` with a few bytes flipped, set, inserted or deleted, and maybe truncated.

    Positions are drawn across the whole file, and more often inside ``hot`` (start, end): the part
    where structure lives (a header, a zip directory), not bulk data.
    """
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        anywhere = st.integers(0, len(data) - 1)
        position = draw(anywhere if hot is None else st.one_of(anywhere, st.integers(*clamp(hot, len(data)))))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        if kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[position] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))]))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[position : position + draw(st.integers(1, 8))]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def clamp(span: tuple[int, int], size: int) -> tuple[int, int]:
    start = min(max(span[0], 0), size - 1)
    return start, min(max(span[1], start), size - 1)


def one_line_or_success(action: Callable[[], Any]) -> None:
    """``action`` returns, or raises LenetError with a one-line message; nothing else may escape it."""
    try:
        action()
    except LenetError as error:
        assert "\n" not in str(error).strip(), str(error)


def both(
    test: Callable[..., None], strategy: st.SearchStrategy[Any], deadline_s: float, long_examples: int
) -> tuple[Any, Any]:
    """``test`` as a quick default-suite test and a long ``-m slow`` one (``long_examples``), over ``strategy``."""
    quick = fuzz_settings(QUICK_EXAMPLES, deadline_s, long=False)(given(case=strategy)(test))
    long = pytest.mark.slow(fuzz_settings(long_examples, deadline_s, long=True)(given(case=strategy)(test)))
    return quick, long


# --- IDX files ----------------------------------------------------------------------------------------

IDX_IMAGES = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)


def idx_bytes() -> bytes:
    header = b"\x00\x00\x08\x03" + b"".join(n.to_bytes(4, "big") for n in IDX_IMAGES.shape)
    return header + IDX_IMAGES.tobytes()


IDX_CASES = st.tuples(mutated(idx_bytes(), hot=(0, 16)), st.sampled_from(["plain", "gzip of it", "mutated gzip"]))


def check_idx(tmp_path: Path, case: tuple[bytes, str]) -> None:
    data, form = case
    path = tmp_path / ("images.gz" if form != "plain" else "images")
    if form == "plain":
        path.write_bytes(data)
    elif form == "gzip of it":
        path.write_bytes(gzip.compress(data, mtime=0))
    else:  # the gzip stream itself damaged: its CRC, length, or deflate data
        packed = gzip.compress(idx_bytes(), mtime=0)
        path.write_bytes(bytes(b ^ data[i % len(data)] if data and i % 97 == 0 else b for i, b in enumerate(packed)))
    with bounded_memory():
        one_line_or_success(lambda: idx.read_idx(path, dims=3))


test_fuzz_idx, test_fuzz_idx_long = both(check_idx, IDX_CASES, deadline_s=2, long_examples=5000)


# --- Checkpoints --------------------------------------------------------------------------------------


def checkpoint_bytes() -> bytes:
    model = LeNet()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.zeros(1, 1, 32, 32)).sum().backward()
    optimizer.step()  # Adam's moments, as in a real checkpoint
    checkpoint = {
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 1,
        "state_dict": model.state_dict(),
        "optimizer_states": [optimizer.state_dict()],
        "hyper_parameters": dict(model.hparams),
        "callbacks": {
            "ModelCheckpoint{}": {"best_model_path": "runs/x/best.ckpt", "best_model_score": torch.tensor(0.5)}
        },
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


CHECKPOINT = checkpoint_bytes()
PICKLE_NAME = next(name for name in zipfile.ZipFile(io.BytesIO(CHECKPOINT)).namelist() if name.endswith("data.pkl"))
PICKLE = zipfile.ZipFile(io.BytesIO(CHECKPOINT)).read(PICKLE_NAME)


def with_pickle(pickled: bytes) -> bytes:
    """The checkpoint with ``pickled`` as its data.pkl, rewritten with correct CRCs (past the CRC check)."""
    source, target = zipfile.ZipFile(io.BytesIO(CHECKPOINT)), io.BytesIO()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for entry in source.infolist():
            archive.writestr(entry.filename, pickled if entry.filename == PICKLE_NAME else source.read(entry))
    return target.getvalue()


CHECKPOINT_CASES = st.one_of(
    mutated(CHECKPOINT, hot=(len(CHECKPOINT) - 4000, len(CHECKPOINT))),  # the zip directory is at the end
    mutated(PICKLE).map(with_pickle),  # the pickle itself, with valid CRCs
)


def check_checkpoint(tmp_path: Path, case: bytes) -> None:
    path = tmp_path / "x.ckpt"
    path.write_bytes(case)

    def load_and_fit() -> None:
        checkpoint = load.load(path)
        load.check_fits(checkpoint, LeNet(), path)

    with bounded_memory():
        one_line_or_success(load_and_fit)


test_fuzz_checkpoint, test_fuzz_checkpoint_long = both(
    check_checkpoint, CHECKPOINT_CASES, deadline_s=5, long_examples=5000
)


# --- Images -------------------------------------------------------------------------------------------


def image_bytes(format: str) -> bytes:
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[6:22, 12:16] = 255  # a "1"
    buffer = io.BytesIO()
    Image.fromarray(digit).convert("RGB").save(buffer, format=format)
    return buffer.getvalue()


IMAGE_CASES = st.sampled_from(["PNG", "JPEG", "BMP", "GIF", "TIFF"]).flatmap(
    lambda format: mutated(image_bytes(format), hot=(0, 64)).map(lambda data: (format, data))
)


def check_image(tmp_path: Path, case: tuple[str, bytes]) -> None:
    format, data = case
    path = tmp_path / f"digit.{format.lower()}"
    path.write_bytes(data)
    with bounded_memory():
        one_line_or_success(lambda: files.load_digits(path))


test_fuzz_image, test_fuzz_image_long = both(check_image, IMAGE_CASES, deadline_s=5, long_examples=5000)


# --- Configs ------------------------------------------------------------------------------------------

CONFIG = (CONFIGS / "mnist.yaml").read_bytes()


def check_config(tmp_path: Path, case: bytes) -> None:
    path = tmp_path / "fuzzed.yaml"
    path.write_bytes(case)
    out, err = io.StringIO(), io.StringIO()
    with bounded_memory(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["fit", "--config", str(path), "--print_config"])
            status = 0
        except SystemExit as stop:
            status = int(stop.code or 0)
    if status != 0:
        assert_user_error(status, err.getvalue(), "")


test_fuzz_config, test_fuzz_config_long = both(check_config, mutated(CONFIG), deadline_s=10, long_examples=500)


def test_idx_bytes_are_what_write_idx_writes(tmp_path: Path) -> None:
    """The fuzzed IDX base is a valid file: the same bytes as the tests' own writer makes."""
    assert write_idx(tmp_path / "x", torch.from_numpy(IDX_IMAGES)).read_bytes() == idx_bytes()
    assert torch.equal(idx.read_idx(tmp_path / "x", dims=3), torch.from_numpy(IDX_IMAGES))
