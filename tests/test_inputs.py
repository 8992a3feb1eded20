"""Folder and glob inputs to ``predict`` (each real file once, link loops cut, odd entries named), file
names that are not UTF-8, a stderr that cannot be written and a disk that is full: correct results, or
one line.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from lenet_cli.checkpoints import save
from lenet_cli.cli.main import main
from lenet_cli.data import idx
from tests.helpers import CPU, assert_one_line_error, child_env, lenet_command, read_predictions, small_run

POSIX = pytest.mark.skipif(os.name != "posix", reason="symbolic links, FIFOs and byte file names")
pytestmark = POSIX


def digit(path: Path) -> Path:
    """An MNIST test digit as a PNG (a shape touching the image's edges would not count as a digit)."""
    Image.fromarray(idx.load(None, splits=("test",))["test_images"][0].numpy()).save(path)
    return path


def predict(path: str) -> list[str]:
    return ["predict", *CPU, "--data.predict_path", path]


def predicted_sources(tmp_path: Path) -> list[str]:
    return [row["source"] for row in read_predictions(tmp_path / "runs" / "lenet" / "version_0")]


def test_glob_through_a_link_loop_visits_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d" / "sub").mkdir(parents=True)
    digit(tmp_path / "d" / "1.png")
    digit(tmp_path / "d" / "sub" / "2.png")
    (tmp_path / "d" / "sub" / "up").symlink_to(tmp_path / "d")  # d/sub/up/sub/up/... for ever
    (tmp_path / "d" / "again.png").symlink_to(tmp_path / "d" / "1.png")  # the same real file twice
    started = time.monotonic()
    main(predict("d/**/*.png"))
    assert predicted_sources(tmp_path) == ["d/1.png", "d/sub/2.png"]
    assert time.monotonic() - started < 60  # glob.glob looped here until the path length limit


def test_odd_entries_of_a_folder_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    digit(tmp_path / "d" / "good.png")
    (tmp_path / "d" / "dangling.png").symlink_to(tmp_path / "gone.png")
    os.mkfifo(tmp_path / "d" / "pipe.png")  # reading it would block for ever
    (tmp_path / "d" / "zeros.png").symlink_to("/dev/zero")  # ... and this one would never end
    main(predict("d"))
    assert predicted_sources(tmp_path) == ["d/good.png"]
    err = capsys.readouterr().err
    assert "warning: skipped 3 entries of d that are not regular files:" in err
    assert "d/dangling.png: a dangling symbolic link" in err and "d/pipe.png: a FIFO" in err
    assert "d/zeros.png: a device" in err


def test_file_names_that_are_not_utf8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    digit(Path(os.fsdecode(bytes(tmp_path / "d") + b"/caf\xe9.png")))  # Latin-1, as an old camera writes
    digit(tmp_path / "d" / "line\nbreak.png")
    main(predict("d"))
    assert predicted_sources(tmp_path) == ["d/caf\\xe9.png", "d/line\\nbreak.png"]  # the CSV is UTF-8, one row each


@pytest.mark.slow
@pytest.mark.processes
def test_a_warning_on_an_unwritable_stderr_does_not_stop_predict(tmp_path: Path) -> None:
    """stderr on a full disk: the skipped-file warning cannot be printed, predictions are still written."""
    (tmp_path / "d").mkdir()
    digit(tmp_path / "d" / "good.png")
    (tmp_path / "d" / "notes.png").write_text("not an image")
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            lenet_command(predict("d")),
            cwd=tmp_path,
            env=child_env(),
            stderr=full,
            stdout=subprocess.DEVNULL,
            timeout=300,
        )
    assert result.returncode == 0
    assert predicted_sources(tmp_path) == ["d/good.png"]


@pytest.mark.usefixtures("one_thread")
def test_full_disk_during_a_checkpoint_save_is_one_line(
    small_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_atomically = save.atomic.replace_atomically

    @contextmanager
    def onto_a_full_disk(path: str | Path, *remedy: str) -> Iterator[Path]:
        if not str(path).endswith(".ckpt"):  # config.yaml and the rest as usual
            with replace_atomically(path, *remedy) as temporary:
                yield temporary
            return
        yield Path("/dev/full")  # every write fails with ENOSPC, as on a full disk

    monkeypatch.setattr(save.atomic, "replace_atomically", onto_a_full_disk)
    monkeypatch.chdir(tmp_path)
    args = small_run("fit", small_mnist, val_batches=None)
    line = assert_one_line_error(args, "No space left on device", capsys, check_files=False)  # found mid-run
    assert line.startswith("error: cannot write runs/quick/version_0/checkpoints/")
    assert "MiB free; free some space or give --checkpoint.dirpath" in line
