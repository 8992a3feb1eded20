"""Every user mistake ends in one line, ``error: ...``, and exit status 2, and leaves what was already
written as it was.

One row a mistake: ``pytest.param(args_or_setup, fragment, id=...)``. ``args_or_setup`` is the command
line after ``lenet`` (relative paths are in the test's own folder), or a function that makes the bad
input in the folder it is given and returns that command line. ``CPU`` is added after the subcommand.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from jsonargparse import ArgumentError
from PIL import Image

from lenet_cli import idx
from lenet_cli.cli import main
from lenet_cli.errors import DEBUG_VARIABLE, LenetError
from lenet_cli.model import LeNet
from tests.helpers import CPU, NO_PROC, error_line, png_bomb, truncated_png, write_idx

Setup = Callable[[Path], list[str]]

NOT_ROOT = pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permissions do not bind root")
HAS_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


# --- Bad data folders ---------------------------------------------------------------------------------


def data_folder(damage: Callable[[Path], object]) -> Setup:
    """A folder of four small, valid IDX files, then ``damage``d (given the training images' file)."""

    def setup(folder: Path) -> list[str]:
        data = folder / "data"
        data.mkdir()
        for key, stem in idx.FILES.items():
            shape = (20, 28, 28) if key.endswith("images") else (20,)
            write_idx(data / stem, torch.zeros(shape, dtype=torch.uint8))
        damage(data / idx.FILES["train_images"])
        return ["fit", "--data.data_dir=data", "--data.val_size=10"]

    return setup


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def garbage_gzip(path: Path) -> None:
    path.unlink()
    path.with_name(f"{path.name}.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")


def with_file(args: list[str]) -> Setup:
    """``args``, where ``a_file`` is an empty file."""

    def setup(folder: Path) -> list[str]:
        (folder / "a_file").write_text("")
        return args

    return setup


def unwritable_output(folder: Path) -> list[str]:
    """``fit`` with its checkpoints in a folder that may be listed but not written into."""
    (folder / "blocked").mkdir()
    (folder / "blocked").chmod(0o500)
    return ["fit", "--checkpoint.dirpath=blocked/x"]


# --- Bad configs and checkpoints ----------------------------------------------------------------------


def config_file(text: str) -> Setup:
    """``fit --config bad.yaml`` with ``text`` in ``bad.yaml``."""

    def setup(folder: Path) -> list[str]:
        (folder / "bad.yaml").write_text(text)
        return ["fit", "--config", "bad.yaml"]

    return setup


def checkpoint(subcommand: str, contents: Callable[[], dict[str, Any]] | bytes) -> Setup:
    """``subcommand --ckpt_path x.ckpt`` with ``x.ckpt`` holding ``contents`` (bytes as they are)."""

    def setup(folder: Path) -> list[str]:
        if isinstance(contents, bytes):
            (folder / "x.ckpt").write_bytes(contents)
        else:
            torch.save(contents(), folder / "x.ckpt")
        return [subcommand, "--ckpt_path", "x.ckpt"]

    return setup


def five_classes() -> dict[str, Any]:
    model = LeNet(num_classes=5)
    return {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}


def another_model() -> dict[str, Any]:
    return {"state_dict": {"encoder.weight": torch.zeros(3, 3)}}


# --- Bad images for predict ---------------------------------------------------------------------------


def predict(path: str | Path) -> list[str]:
    return ["predict", "--data.predict_path", str(path)]


def not_an_image(folder: Path) -> list[str]:
    (folder / "notes.png").write_text("shopping list")
    return predict("notes.png")


def corrupt_image(folder: Path) -> list[str]:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)  # does not compress
    truncated_png(folder / "broken.png", noise)
    return predict("broken.png")


def blank_image(folder: Path) -> list[str]:
    Image.new("RGB", (40, 40), "white").save(folder / "blank.png")
    return predict("blank.png")


def unreadable_image(folder: Path) -> list[str]:
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(folder / "locked.png")
    (folder / "locked.png").chmod(0)
    return predict("locked.png")


def bomb(width: int) -> Setup:
    """A PNG that claims ``width``² pixels: beyond twice Pillow's limit Pillow refuses it; below, lenet."""

    def setup(folder: Path) -> list[str]:
        png_bomb(folder / "bomb.png", width, width)
        return predict("bomb.png")

    return setup


def empty_folder(folder: Path) -> list[str]:
    (folder / "empty").mkdir()
    return predict("empty")


def folder_of_bad_files(folder: Path) -> list[str]:
    (folder / "bad").mkdir()
    not_an_image(folder / "bad")
    corrupt_image(folder / "bad")
    return predict("bad")


BAD_INPUTS = [
    # The command line
    pytest.param(["fit", "--trainer.max_epoch=3"], "unrecognized arguments: --trainer.max_epoch", id="unknown option"),
    pytest.param(["fitt"], "invalid choice: 'fitt'", id="unknown subcommand"),
    pytest.param(["fit", "--data.batch_size=0"], "batch sizes must be positive", id="batch size 0"),
    pytest.param(["fit", "--trainer.accelerator=gpu"], "no usable CUDA GPU", id="GPU without one", marks=HAS_GPU),
    # Configs
    pytest.param(["fit", "--config", "nothere.yaml"], "does not exist", id="missing config file"),
    pytest.param(config_file("model:\n  lr: fast\n"), 'key "model.lr"', id="wrong type in YAML"),
    pytest.param(config_file("model:\n  lrr: 0.1\n"), "model.lrr", id="unknown key in YAML"),
    pytest.param(config_file("model: [lr\n"), "Problems parsing config", id="YAML that does not parse"),
    # Data
    pytest.param(["fit", "--data.data_dir=nowhere", "--data.download=false"], "lacks the MNIST file", id="no data"),
    pytest.param(with_file(["fit", "--data.data_dir=a_file"]), "a_file is not a folder", id="data dir is a file"),
    pytest.param(data_folder(truncate), "is truncated", id="truncated data file"),
    pytest.param(data_folder(garbage_gzip), "is corrupt or truncated", id="corrupt gzip data file"),
    # Checkpoints
    pytest.param(["test", "--ckpt_path", "none.ckpt"], "checkpoint none.ckpt does not exist", id="missing checkpoint"),
    pytest.param(["fit", "--ckpt_path", "last"], "no run in runs/lenet has checkpoints/last", id="no run to resume"),
    pytest.param(checkpoint("validate", b"not a checkpoint"), "is not a readable checkpoint", id="not a checkpoint"),
    pytest.param(checkpoint("predict", another_model), "not a LeNet checkpoint", id="another model's checkpoint"),
    pytest.param(checkpoint("test", five_classes), "trained for 5 classes, but the data has 10", id="5 classes"),
    pytest.param(["test", "--weights_only=false"], "--weights_only false is not supported", id="weights_only false"),
    # Output folders
    pytest.param(with_file(["fit", "--trainer.logger.init_args.save_dir=a_file/runs"]), "is a file", id="below a file"),
    pytest.param(["test", "--sample_images.output_dir=/proc/x"], "cannot write into /proc", id="/proc", marks=NO_PROC),
    pytest.param(unwritable_output, "cannot write into", id="output folder not writable", marks=NOT_ROOT),
    # Images to predict
    pytest.param(predict("nowhere.png"), "nowhere.png does not exist", id="missing image"),
    pytest.param(predict("*.png"), "no files match *.png", id="glob that matches nothing"),
    pytest.param(empty_folder, "the folder empty holds no files", id="empty folder"),
    pytest.param(not_an_image, "notes.png: not an image file", id="not an image"),
    pytest.param(corrupt_image, "broken.png: corrupt or truncated image", id="corrupt image"),
    pytest.param(blank_image, "blank.png: no digit", id="blank image"),
    pytest.param(unreadable_image, "locked.png: cannot be read (Permission denied)", id="unreadable image"),
    pytest.param(bomb(30_000), "bomb.png: too large to decode safely", id="decompression bomb"),
    pytest.param(bomb(10_000), "bomb.png: 10000×10000 pixels", id="image just over Pillow's limit"),
    pytest.param(folder_of_bad_files, "none of the 2 files of bad is a readable digit image", id="only bad files"),
]

EARLIER_METRICS = "epoch,step\n0,1\n"


@pytest.fixture
def permissions_bind_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """As root, who reads any file, an image without read permission fails to open as for anyone else."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    original_open = Image.open

    def open_as_a_user(file: Any, *args: Any, **kwargs: Any) -> Image.Image:
        if isinstance(file, (str, os.PathLike)) and os.path.exists(file) and not os.stat(file).st_mode & 0o444:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return original_open(file, *args, **kwargs)

    monkeypatch.setattr(Image, "open", open_as_a_user)


@pytest.mark.usefixtures("permissions_bind_root")
@pytest.mark.parametrize(("args_or_setup", "fragment"), BAD_INPUTS)
def test_bad_input_fails_in_one_line(
    args_or_setup: list[str] | Setup,
    fragment: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    earlier = tmp_path / "runs" / "lenet" / "version_0"  # an earlier run: must survive untouched
    earlier.mkdir(parents=True)
    (earlier / "metrics.csv").write_text(EARLIER_METRICS)
    subcommand, *args = args_or_setup(tmp_path) if callable(args_or_setup) else args_or_setup
    before = set(tmp_path.rglob("*"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([subcommand, *CPU, *args])
    assert exit_info.value.code == 2
    assert fragment in error_line(capsys.readouterr().err)
    assert (earlier / "metrics.csv").read_text() == EARLIER_METRICS
    # No output of a run that went ahead: no checkpoint, metrics, predictions or report.
    assert {path.name for path in set(tmp_path.rglob("*")) - before if path.is_file()} <= {"config.yaml"}


@pytest.mark.parametrize(
    ("args", "error_type"),
    [
        pytest.param(["test", "--ckpt_path", "none.ckpt"], LenetError, id="lenet error"),
        pytest.param(["fit", "--trainer.max_epoch=3"], ArgumentError, id="parse error"),
    ],
)
def test_debug_switch_shows_the_traceback(
    args: list[str], error_type: type[Exception], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    with pytest.raises(error_type):
        main(args)
