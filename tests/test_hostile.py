"""Hostile inputs that need more than a row of tests/test_errors.py: a program that must not start, a folder
that must not be aborted by one bad file, hostile run folders and requests."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from lenet_cli.cli.main import main
from lenet_cli.images.decode import BadImage, read_grayscale
from tests.helpers import CPU, error_line, lenet_subprocess
from tests.test_errors import POSTSCRIPT

POSIX = pytest.mark.skipif(os.name != "posix", reason="a shell script as a fake program, FIFOs")


@pytest.fixture
def fake_ghostscript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``gs`` first on PATH that leaves a marker file when anything runs it; the marker's path."""
    bin_folder, marker = tmp_path / "bin", tmp_path / "gs-ran"
    bin_folder.mkdir()
    script = bin_folder / "gs"
    script.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 1\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # Pillow caches whether it found gs
    return marker


@POSIX
def test_postscript_named_png_starts_no_program(
    fake_ghostscript: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("digit.png").write_bytes(POSTSCRIPT)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", *CPU, "--data.predict_path", "digit.png"])
    assert exit_info.value.code == 2
    assert "digit.png: not an image file" in capsys.readouterr().err
    # The server's decoder (serving.requests.decode) is the same function.
    with pytest.raises(BadImage, match="not an image file"):
        read_grayscale(io.BytesIO(POSTSCRIPT), "upload")
    assert not fake_ghostscript.exists(), fake_ghostscript.read_text()


def test_the_fake_ghostscript_would_be_found(fake_ghostscript: Path) -> None:
    """The test above can fail: Pillow's own EPS path runs the fake gs."""
    with Image.open(io.BytesIO(POSTSCRIPT)) as image, pytest.raises(Exception):  # noqa: B017 - any failure
        image.load()
    assert fake_ghostscript.exists()


def test_one_cielab_tiff_does_not_abort_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("digits").mkdir()
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255  # a 1
    Image.fromarray(digit).save("digits/one.png")
    Image.new("LAB", (40, 40), (50, 0, 0)).save("digits/lab.tif")
    main(["predict", *CPU, "--data.predict_path", "digits", "--ckpt_path", "pretrained"])
    err = capsys.readouterr().err
    assert "skipped 1 of 2 files" in err and "lab.tif: cannot be made grayscale" in err
    rows = next(Path("runs").rglob("predictions.csv")).read_text().splitlines()
    assert len(rows) == 2 and "one.png" in rows[1]


def test_python_m_lenet_cli_imports_nothing_from_the_working_folder(tmp_path: Path) -> None:
    """A new process: `python -m` is the point. A config naming ./evilmod.py's class must not run it."""
    marker = tmp_path / "evilmod-ran"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass X: ...\n")
    (tmp_path / "c.yaml").write_text("trainer:\n  callbacks:\n    - class_path: evilmod.X\n")
    result = lenet_subprocess(["fit", "--config", "c.yaml", *CPU], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "No module named 'evilmod'" in error_line(result.stderr)
    assert not marker.exists()
