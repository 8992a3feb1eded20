"""Hostile inputs that need more than a row of tests/test_errors.py: a program that must not start, a folder
that must not be aborted by one bad file, hostile run folders and requests."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from lenet_cli.cli.main import main
from lenet_cli.images.decode import BadImage, read_grayscale
from lenet_cli.runs import ckpt_path
from tests.helpers import CPU, error_line, lenet_subprocess
from tests.test_errors import POSTSCRIPT
from tests.test_runs_listing import fake_run

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


@pytest.mark.slow
@pytest.mark.processes
def test_python_m_lenet_cli_imports_nothing_from_the_working_folder(tmp_path: Path) -> None:
    """A new process: `python -m` is the point. A config naming ./evilmod.py's class must not run it."""
    marker = tmp_path / "evilmod-ran"
    (tmp_path / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass X: ...\n")
    (tmp_path / "c.yaml").write_text("trainer:\n  callbacks:\n    - class_path: evilmod.X\n")
    result = lenet_subprocess(["fit", "--config", "c.yaml", *CPU], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "No module named 'evilmod'" in error_line(result.stderr)
    assert not marker.exists()


# --- The server ---------------------------------------------------------------------------------------


def test_uvicorn_still_has_the_hooks_that_bound_header_bytes() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    for hook in ("data_received", "on_message_begin", "on_headers_complete"):
        assert callable(getattr(HttpToolsProtocol, hook, None)), hook


def test_a_huge_header_is_refused_with_431_and_the_server_goes_on(digit_server) -> None:
    from lenet_cli.serving.limits import MAX_HEADER_BYTES

    with socket.create_connection(("127.0.0.1", digit_server.port), timeout=30) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        answer = b""
        with contextlib.suppress(OSError):  # the server may close while the header is still being sent
            for _ in range(4 * MAX_HEADER_BYTES // 4096):
                connection.sendall(b"a" * 4096)
        with contextlib.suppress(OSError):
            while chunk := connection.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"request header of more than" in answer
    assert httpx.get(f"{digit_server.url}/health", timeout=30).status_code == 200


def test_concurrent_large_images_are_queued_then_refused_with_503_and_retry_after(digit_server) -> None:
    """More large images at once than the queues hold: 200 or 503 + Retry-After each, never a 500."""
    image = np.zeros((4800, 4800), np.uint8)  # 23 Mpx, under the 25 Mpx a request may decode: ~25 KB as PNG
    image[1200:3600, 2200:2600] = 255
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    body = buffer.getvalue()

    def post(_: int) -> httpx.Response:
        return httpx.post(
            f"{digit_server.url}/predict", content=body, headers={"Content-Type": "image/png"}, timeout=120
        )

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(post, range(16)))
    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses and 503 in statuses, statuses  # 2 API processes × (1 decoding + 2 waiting) < 16
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["retry-after"] == "1" and "busy with large images" in answer.json()["detail"]
        else:
            assert answer.json()["text"] == "1"
    assert httpx.get(f"{digit_server.url}/health", timeout=30).status_code == 200


# --- Run folders --------------------------------------------------------------------------------------


def broken_runs(runs: Path) -> dict[str, str]:
    """Next to a good run (version_0), run folders each broken one way: {folder: what the warning says}."""
    fake_run(runs / "version_0", [0.3, 0.2])
    broken = {
        "version_1": "run.json is not a regular file",  # a FIFO: hung `lenet runs`
        "version_2": "metrics.csv is not a regular file",  # a link to /dev/zero: ate memory
        "version_3": "run.json: its subcommand is 5",
        "version_4": "metrics.csv: val/loss 'abc' is not a number",
        "version_5": "run.json is nested too deeply",
        "version_6": "run.json: its configs is",
    }
    for name in broken:
        fake_run(runs / name, [0.1])  # a lower val/loss than version_0's: best would pick it
    os.mkfifo(runs / "version_1" / "run.json")
    (runs / "version_2" / "metrics.csv").unlink()
    (runs / "version_2" / "metrics.csv").symlink_to("/dev/zero")
    (runs / "version_3" / "run.json").write_text(json.dumps({"subcommand": 5}))
    (runs / "version_4" / "metrics.csv").write_text("epoch,step,val/loss\n0,1,abc\n")
    (runs / "version_5" / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    (runs / "version_6" / "run.json").write_text(json.dumps({"subcommand": "fit", "configs": [{"deep": [1]}]}))
    return broken


@POSIX
def test_broken_run_folders_are_skipped_with_one_warning_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    broken = broken_runs(Path("runs/mnist"))
    main(["runs", "runs/mnist"])
    out, err = capsys.readouterr()
    assert [line.split()[0] for line in out.splitlines()[1:] if line.startswith("runs/")] == ["runs/mnist/version_0"]
    assert "--ckpt_path best in runs/mnist: runs/mnist/version_0/checkpoints/best.ckpt" in out
    warnings_ = [line for line in err.splitlines() if line.startswith("warning: skipped the run folder")]
    assert len(warnings_) == len(broken)  # the table and the choice of best read each folder
    for name, reason in broken.items():
        assert any(f"runs/mnist/{name}: " in line and reason in line for line in warnings_), (name, err)
    assert "Traceback" not in err
    best, _ = ckpt_path.best_checkpoint(Path("runs/mnist"))
    assert best == Path("runs/mnist/version_0/checkpoints/best.ckpt")


# --- Names on the terminal ----------------------------------------------------------------------------

FORGED = "a\nerror: forged\x1b[2J"  # a line break that would start a fake error line; a clear-screen sequence


@POSIX
def test_lenet_runs_and_export_print_names_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    fake_run(Path("runs") / FORGED / "version_0", [0.2], {"subcommand": "fit\x1b[31m", "configs": [FORGED]})
    main(["runs", "runs"])
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\nerror:" not in out + err
    assert "runs/a\\nerror: forged\\x1b[2J/version_0" in out and "fit\\x1b[31m" in out
    main(["export", *CPU, "--ckpt_path", "pretrained", "--output", f"{FORGED}.onnx"])
    out = capsys.readouterr().out
    assert "\x1b" not in out and out.startswith("wrote a\\nerror: forged\\x1b[2J.onnx (onnx, ")
    assert Path(f"{FORGED}.onnx").stat().st_size > 10_000


# --- Full disks and deep globs ------------------------------------------------------------------------


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every atomic write's temporary file is a link to /dev/full: each write fails with ENOSPC. (But
    config.yaml's: jsonargparse refuses to write onto a device before writing, unlike on a full disk.)"""
    from lenet_cli import atomic

    temporary_beside = atomic.temporary_beside

    def onto_dev_full(path: Path) -> Path:
        if path.name == "config.yaml":
            return temporary_beside(path)
        temporary = path.parent / f".{path.name}.full.tmp"
        temporary.symlink_to("/dev/full")
        return temporary

    monkeypatch.setattr(atomic, "temporary_beside", onto_dev_full)


@POSIX
@pytest.mark.usefixtures("full_disk")
def test_a_full_disk_during_a_checkpoint_save_names_the_free_space(tmp_path: Path) -> None:
    import torch

    from lenet_cli.checkpoints.save import AtomicCheckpointIO
    from lenet_cli.errors import LenetError

    # torch.save raises RuntimeError("... unexpected pos ...") for the file's ENOSPC: no longer a traceback.
    with pytest.raises(LenetError, match=r"cannot write .*x\.ckpt: No space left on device, [\d.]+ MiB free; free"):
        AtomicCheckpointIO().save_checkpoint({"weights": torch.zeros(100_000)}, tmp_path / "x.ckpt")
    assert not (tmp_path / "x.ckpt").exists()


@POSIX
@pytest.mark.usefixtures("full_disk")
def test_a_full_disk_during_predict_is_one_line_with_the_free_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    Image.fromarray(digit).save("one.png")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", *CPU, "--data.predict_path", "one.png"])
    assert exit_info.value.code == 2
    line = error_line(capsys.readouterr().err)
    assert "No space left on device, " in line and " MiB free; free some space" in line


def test_an_os_error_of_a_full_disk_is_worded_with_the_free_space(tmp_path: Path) -> None:
    import errno

    from lenet_cli.errors import describe

    message = describe(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "metrics.csv")))
    assert message.startswith("No space left on device: ") and " MiB free" in message


def test_a_glob_over_a_1100_level_tree_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lenet_cli.images.files import MAX_GLOB_DEPTH, list_files

    monkeypatch.chdir(tmp_path)
    deep = Path("tree")
    deep.mkdir()
    for _ in range(1100):  # a recursive walk: RecursionError (so is Path.mkdir(parents=True))
        deep /= "d"
        deep.mkdir()
    (deep / "deep.png").write_bytes(b"")
    (Path("tree") / "top.png").write_bytes(b"")
    try:
        listing = list_files("tree/**/*.png")
    finally:  # bottom up: shutil.rmtree (pytest's clean-up of old temporary folders) recurses, and would fail
        (deep / "deep.png").unlink()
        while deep != Path("tree"):
            deep.rmdir()
            deep = deep.parent
    assert listing.files == [Path("tree/top.png")]
    assert [(str(entry).count("/"), kind) for entry, kind in listing.skipped] == [
        (MAX_GLOB_DEPTH + 1, f"a folder more than {MAX_GLOB_DEPTH} levels deep, not searched")
    ]


def test_a_second_large_body_in_a_process_is_refused_before_it_is_read() -> None:
    from lenet_cli.serving.limits import LARGE_BODY_BYTES, Decoder
    from lenet_cli.serving.requests import RequestError

    def scope(size: int) -> dict:
        return {"headers": [(b"content-length", str(size).encode())]}

    decoder = Decoder()
    with decoder.admit(scope(LARGE_BODY_BYTES + 1)):
        with decoder.admit(scope(100)):  # small bodies are never held back
            pass
        with pytest.raises(RequestError) as refused, decoder.admit(scope(8_000_000)):
            pass
    assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}
    with decoder.admit(scope(8_000_000)):  # free again
        pass
