"""Reading and verifying IDX files: the bundled copy passes, damaged files fail naming the file.

A missing, truncated or corrupt data folder through ``lenet fit`` is a row of ``test_errors.py``.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch

from lenet_cli.data import idx
from lenet_cli.errors import LenetError


def test_bundled_copy_is_mnist() -> None:
    arrays = idx.load()
    assert arrays["train_images"].shape == (60_000, 28, 28)
    assert arrays["test_images"].shape == (10_000, 28, 28)
    assert arrays["train_images"].dtype == torch.uint8
    assert arrays["train_labels"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert arrays["test_labels"][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    counts = torch.bincount(arrays["train_labels"].long()).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    pixels = arrays["train_images"].float() / 255
    assert pixels.mean().item() == pytest.approx(0.1307, abs=1e-4)
    assert pixels.std().item() == pytest.approx(0.3081, abs=1e-4)


def test_attribution_ships_with_the_data() -> None:
    readme = (idx.bundled_dir() / "README.md").read_text()
    assert "Yann LeCun" in readme and "Creative Commons Attribution-Share Alike 3.0" in readme


@pytest.fixture
def user_copy(tmp_path: Path) -> Path:
    """A user folder with the MNIST test files decompressed and the train files as .gz."""
    for stem in idx.FILES.values():
        source = idx.bundled_dir() / f"{stem}.gz"
        if stem.startswith("t10k"):
            (tmp_path / stem).write_bytes(gzip.decompress(source.read_bytes()))
        else:
            shutil.copy(source, tmp_path / source.name)
    return tmp_path


def test_user_folder_plain_and_gz(user_copy: Path) -> None:
    arrays, bundled = idx.load(user_copy, allow_download=False), idx.load()
    assert set(arrays) == set(bundled)
    for key, array in bundled.items():
        assert torch.equal(arrays[key], array), key


def test_flipped_byte_fails_checksum(tmp_path: Path) -> None:
    stem = "t10k-labels-idx1-ubyte"
    data = bytearray(gzip.decompress((idx.bundled_dir() / f"{stem}.gz").read_bytes()))
    data[100] ^= 0x01
    (tmp_path / stem).write_bytes(bytes(data))
    with pytest.raises(LenetError, match=rf"{stem}.*checksum"):
        idx.read_idx(tmp_path / stem, dims=1, sha256=idx.BUNDLED_SHA256[stem])


def test_truncated_gzip_named(user_copy: Path) -> None:
    path = user_copy / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(LenetError, match=r"train-labels-idx1-ubyte.gz is corrupt or truncated"):
        idx.load(user_copy, allow_download=False)


def test_wrong_header_named(user_copy: Path) -> None:
    path = user_copy / "t10k-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[3] = 3  # claims three dimensions
    path.write_bytes(bytes(data))
    with pytest.raises(LenetError, match=r"t10k-labels-idx1-ubyte has a wrong IDX header"):
        idx.load(user_copy, allow_download=False)


def test_mismatched_counts(user_copy: Path) -> None:
    labels = user_copy / "t10k-labels-idx1-ubyte"
    data = labels.read_bytes()
    header = data[:4] + (5000).to_bytes(4, "big")
    labels.write_bytes(header + data[8 : 8 + 5000])
    with pytest.raises(LenetError, match="10000 images but 5000 labels"):
        idx.load(user_copy, allow_download=False)


def test_failed_download_says_so_in_one_line(tmp_path: Path) -> None:
    # A mirror on a closed local port: fails at once, no network involved.
    folder = tmp_path / "new"
    with pytest.raises(LenetError) as error:
        idx.download(folder, mirrors=("http://127.0.0.1:9/",), timeout=2)
    message = str(error.value)
    assert "downloading it failed" in message and "\n" not in message
    assert not folder.exists()  # nothing left behind
