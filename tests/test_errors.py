"""Every user mistake ends in one line, ``error: ...``, and exit status 2, and leaves what was already
written as it was.

One row a mistake: ``pytest.param(args_or_setup, fragment, id=...)``. ``args_or_setup`` is the command
line after ``lenet`` (relative paths are in the test's own folder), or a function that makes the bad
input in the folder it is given and returns that command line. ``CPU`` is added after the subcommand.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import pytest
import torch
from jsonargparse import ArgumentError
from PIL import Image

from lenet_cli.checkpoints import pretrained
from lenet_cli.cli.main import main
from lenet_cli.data import idx
from lenet_cli.errors import DEBUG_VARIABLE, LenetError
from lenet_cli.training.module import LeNet
from tests.helpers import CPU, NO_PROC, alias_bomb, assert_one_line_error, png_bomb, truncated_png, write_idx

Setup = Callable[[Path], list[str]]

NOT_ROOT = pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permissions do not bind root")
HAS_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


# --- Bad data folders ---------------------------------------------------------------------------------


def data_folder(damage: Callable[[Path], object]) -> Setup:
    """:func:`data_folder_with`, ``damage`` given the training images' file."""
    return data_folder_with(lambda data: damage(data / idx.FILES["train_images"]))


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
    return {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), **LIGHTNING}


LIGHTNING = {"pytorch-lightning_version": lightning.__version__}  # what Trainer.save_checkpoint adds


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


def unreadable_image(folder: Path) -> list[str]:
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(folder / "locked.png")
    (folder / "locked.png").chmod(0)
    return predict("locked.png")


POSTSCRIPT = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nnewpath 0 0 moveto 28 28 lineto stroke\nshowpage\n"


def postscript_named_png(folder: Path) -> list[str]:
    """An EPS file named .png: Pillow's EPS plugin would hand it to Ghostscript (tests/test_hostile.py)."""
    (folder / "digit.png").write_bytes(POSTSCRIPT)
    return predict("digit.png")


def cielab_tiff(folder: Path) -> list[str]:
    """A CIELab TIFF: Pillow decodes it, but cannot make it grayscale (a ValueError, once a traceback)."""
    Image.new("LAB", (40, 40), (50, 0, 0)).save(folder / "lab.tif")
    return predict("lab.tif")


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


def as_test(setup: Setup) -> Setup:
    """``setup``'s data folder given to ``lenet test`` (fit reads only the training files)."""
    return lambda folder: ["test", *setup(folder)[1:]]


def data_folder_with(damage: Callable[[Path], object], *options: str) -> Setup:
    """A folder of four small, valid IDX files (20 images each), ``damage``d (given the folder)."""

    def setup(folder: Path) -> list[str]:
        data = folder / "data"
        data.mkdir()
        for key, stem in idx.FILES.items():
            shape = (20, 28, 28) if key.endswith("images") else (20,)
            write_idx(data / stem, torch.zeros(shape, dtype=torch.uint8))
        damage(data)
        return ["fit", "--data.data_dir=data", "--data.val_size=10", *options]

    return setup


def replace_file(stem: str, array: torch.Tensor) -> Callable[[Path], None]:
    return lambda data: write_idx(data / idx.FILES[stem], array)


def labels_beyond_classes(data: Path) -> None:
    write_idx(data / idx.FILES["train_labels"], torch.full((20,), 12, dtype=torch.uint8))


def data_file_is(kind: str) -> Callable[[Path], None]:
    """The training images' file replaced by a folder or a FIFO of the same name."""

    def damage(data: Path) -> None:
        path = data / idx.FILES["train_images"]
        path.unlink()
        path.mkdir() if kind == "folder" else os.mkfifo(path)

    return damage


def gzip_longer_than_header(data: Path) -> None:
    """A .gz file whose header says 20 images and whose stream inflates to 4 MB more (a small zip bomb)."""
    path = data / idx.FILES["train_images"]
    data_bytes = path.read_bytes() + bytes(4 * 2**20)
    path.unlink()
    path.with_name(f"{path.name}.gz").write_bytes(gzip.compress(data_bytes))


def header_claims(shape: tuple[int, ...]) -> Callable[[Path], None]:
    def damage(data: Path) -> None:
        header = struct.pack(">HBB", 0, 0x08, len(shape)) + b"".join(struct.pack(">I", n) for n in shape)
        (data / idx.FILES["train_images"]).write_bytes(header + bytes(100))

    return damage


def wrong_magic(data: Path) -> None:
    path = data / idx.FILES["train_images"]
    path.write_bytes(b"\x00\x00\x0d\x03" + path.read_bytes()[4:])  # 0x0D: float32, not unsigned bytes


def config_bytes(data: bytes) -> Setup:
    """``fit --config bad.yaml`` with ``data`` as the file's bytes."""

    def setup(folder: Path) -> list[str]:
        (folder / "bad.yaml").write_bytes(data)
        return ["fit", "--config", "bad.yaml"]

    return setup


def config_door(option: str, data: bytes | None, nested: bool = False) -> Setup:
    """``fit OPTION other.yaml`` with ``data`` in ``other.yaml`` (a FIFO when ``None``); with ``nested``,
    ``fit --config bad.yaml`` where bad.yaml says ``model: other.yaml``."""

    def setup(folder: Path) -> list[str]:
        if data is None:
            os.mkfifo(folder / "other.yaml")
        else:
            (folder / "other.yaml").write_bytes(data)
        if nested:
            (folder / "bad.yaml").write_text(f"{option}: other.yaml\n")
            return ["fit", "--config", "bad.yaml"]
        return ["fit", f"--{option}", "other.yaml"]

    return setup


def special_file(kind: str, name: str = "special") -> Callable[[Path], Path]:
    """Make a dangling symbolic link or a FIFO called ``name`` in the folder given."""

    def make(folder: Path) -> Path:
        path = folder / name
        if kind == "dangling link":
            path.symlink_to(folder / "gone.png")
        else:
            os.mkfifo(path)
        return path

    return make


def predict_special(kind: str) -> Setup:
    def setup(folder: Path) -> list[str]:
        special_file(kind, "digit.png")(folder)
        return predict("digit.png")

    return setup


def folder_of_specials(folder: Path) -> list[str]:
    (folder / "odd").mkdir()
    special_file("dangling link", "a.png")(folder / "odd")
    special_file("fifo", "b.png")(folder / "odd")
    return predict("odd")


def glob_of_specials(folder: Path) -> list[str]:
    special_file("fifo", "b.png")(folder)
    return predict("*.png")


def forged_name(folder: Path) -> list[str]:
    """A file whose name holds a line break and a fake error line."""
    (folder / "a\nerror: forged.png").write_text("not an image")
    return predict("a\nerror: forged.png")


def with_folder(name: str, args: list[str]) -> Setup:
    def setup(folder: Path) -> list[str]:
        (folder / name).mkdir()
        return args

    return setup


def with_fifo(name: str, args: list[str]) -> Setup:
    def setup(folder: Path) -> list[str]:
        os.mkfifo(folder / name)
        return args

    return setup


def export_onto_its_checkpoint(folder: Path) -> list[str]:
    """``lenet export`` with ``--output`` naming the checkpoint it exports (it used to replace it, exit 0)."""
    (folder / "x.ckpt").write_bytes(pretrained.path().read_bytes())  # a good checkpoint, read before export
    return ["export", "--ckpt_path", "x.ckpt", "--output", "x.ckpt"]


def lenet_bytes(transform: Callable[[bytes, dict[str, Any]], bytes] | None = None, **extra: Any) -> bytes:
    """A LeNet checkpoint's bytes as torch.save writes them (with ``extra`` keys), then ``transform``ed."""
    checkpoint = {"state_dict": LeNet().state_dict(), **extra}
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue() if transform is None else transform(buffer.getvalue(), checkpoint)


def flip_weight_bytes(data: bytes, checkpoint: dict[str, Any]) -> bytes:
    """A few bytes of the first weight flipped: the archive is intact, its CRC no longer matches."""
    weights = checkpoint["state_dict"]["network.features.0.weight"].numpy().tobytes()
    at = data.index(weights) + 40
    return data[:at] + bytes(b ^ 0xFF for b in data[at : at + 4]) + data[at + 4 :]


def deflated(data: bytes, checkpoint: dict[str, Any]) -> bytes:
    """The same archive with its entries compressed, which torch.save never does (and torch inflates)."""
    source, target = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry in source.infolist():
            archive.writestr(entry.filename, source.read(entry))
    return target.getvalue()


def zip_of(names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, "hello")
    return buffer.getvalue()


def lenet_with(**changes: Any) -> Callable[[], dict[str, Any]]:
    """A LeNet checkpoint dict with ``changes`` (``state_dict`` entries prefixed ``sd_``)."""

    def contents() -> dict[str, Any]:
        state_dict = LeNet().state_dict()
        checkpoint: dict[str, Any] = {"state_dict": state_dict, **LIGHTNING}
        for key, value in changes.items():
            if key.startswith("sd_"):
                state_dict[key[3:].replace("__", ".")] = value
            else:
                checkpoint[key] = value
        return checkpoint

    return contents


POSIX = pytest.mark.skipif(os.name != "posix", reason="FIFOs, /dev/zero and symbolic links")


BAD_INPUTS = [
    # The command line
    pytest.param(["fit", "--trainer.max_epoch=3"], "unrecognized arguments: --trainer.max_epoch", id="unknown option"),
    pytest.param(["fitt"], "invalid choice: 'fitt'", id="unknown subcommand"),
    pytest.param(
        ["fit", "--data.batch_size=0"],
        "--data.batch_size 0: out of range; give a value of at least 1",
        id="batch size 0",
    ),
    pytest.param(["fit", "--trainer.accelerator=gpu"], "no usable CUDA GPU", id="GPU without one", marks=HAS_GPU),
    # Configs
    pytest.param(["fit", "--config", "nothere.yaml"], "does not exist", id="missing config file"),
    pytest.param(config_file("model:\n  lr: fast\n"), 'key "model.lr"', id="wrong type in YAML"),
    pytest.param(config_file("model:\n  lrr: 0.1\n"), "model.lrr", id="unknown key in YAML"),
    pytest.param(config_file("model: [lr\n"), "bad.yaml is not valid YAML: expected", id="YAML that does not parse"),
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
    pytest.param(unreadable_image, "locked.png: cannot be read (Permission denied)", id="unreadable image"),
    pytest.param(postscript_named_png, "digit.png: not an image file", id="PostScript named .png"),
    pytest.param(cielab_tiff, "lab.tif: cannot be made grayscale", id="CIELab TIFF"),
    pytest.param(bomb(30_000), "bomb.png: too large to decode safely", id="decompression bomb"),
    pytest.param(bomb(10_000), "bomb.png: 10000×10000 pixels", id="image just over Pillow's limit"),
    pytest.param(folder_of_bad_files, "none of the 2 files of bad is a readable digit image", id="only bad files"),
    # Checkpoints that are not, or are damaged, or hold the wrong kinds of values
    pytest.param(
        checkpoint("test", b"hello, I am text\n"), "is not a readable checkpoint (not the zip", id="text ckpt"
    ),
    pytest.param(checkpoint("test", b"state_dict:\n  w: [1, 2]\n"), "is not a readable checkpoint", id="YAML ckpt"),
    pytest.param(checkpoint("test", np.random.default_rng(1).bytes(4096)), "not a readable", id="random bytes ckpt"),
    pytest.param(checkpoint("test", zip_of(["hello.txt"])), "but not one that torch.save wrote", id="other zip ckpt"),
    pytest.param(checkpoint("test", lenet_bytes()[:3000]), "is not a readable checkpoint", id="truncated ckpt"),
    pytest.param(checkpoint("test", lenet_bytes(flip_weight_bytes)), "fails the CRC check", id="flipped bytes ckpt"),
    pytest.param(checkpoint("test", lenet_bytes(deflated)), "has compressed entries", id="compressed ckpt"),
    pytest.param(
        checkpoint("test", lenet_with(sd_network__features__0__weight="abc")),
        "does not map weight names to tensors",
        id="string weight",
    ),
    pytest.param(checkpoint("test", lambda: {"state_dict": [1, 2]}), "does not map weight names", id="state_dict list"),
    pytest.param(
        checkpoint("test", lenet_with(hyper_parameters=[1])), "its hyper_parameters is a list", id="hparams list"
    ),
    pytest.param(
        checkpoint("test", lenet_with(hyper_parameters={"num_classes": "10"})),
        "x.ckpt: its hyperparameter num_classes is '10', not a whole number",
        id="num_classes a string",
    ),
    pytest.param(
        checkpoint("test", lenet_with(hyper_parameters={"lr": "fast"})), "hyperparameter lr is 'fast'", id="lr a string"
    ),
    pytest.param(
        checkpoint("test", lenet_with(callbacks=[])), "its callbacks is a list, not a mapping", id="callbacks list"
    ),
    pytest.param(
        checkpoint("test", lambda: {"state_dict": LeNet().state_dict()}),
        "is not a Lightning checkpoint (it has no pytorch-lightning_version)",
        id="bare torch.save of weights",
    ),
    pytest.param(
        checkpoint("test", lenet_with(hyper_parameters={"lr_schedule": "weird"})),
        'checkpoint x.ckpt: its hyperparameters are not options of this lenet (Parser key "model.lr_schedule"',
        id="hparam not an option value",
    ),
    pytest.param(
        checkpoint("fit", lenet_with(hyper_parameters={"lr": -1.0})),
        "checkpoint x.ckpt: its hyperparameter lr is -1.0, not a number of at least 0",
        id="hparam lr out of range",
    ),
    pytest.param(
        checkpoint("predict", lenet_with(sd_network__features__0__weight=torch.full((6, 1, 5, 5), float("nan")))),
        "holds NaN or infinite weights (network.features.0.weight)",
        id="NaN weights",
    ),
    pytest.param(
        with_folder("ckpts", ["test", "--ckpt_path", "ckpts"]), "checkpoint ckpts is a folder", id="ckpt folder"
    ),
    pytest.param(
        ["test", "--ckpt_path", "/dev/zero"], "/dev/zero is not a regular file", id="ckpt /dev/zero", marks=POSIX
    ),
    pytest.param(
        with_fifo("x.ckpt", ["test", "--ckpt_path", "x.ckpt"]),
        "x.ckpt is not a regular file",
        id="ckpt FIFO",
        marks=POSIX,
    ),
    # Data that is empty, mislabelled, a bomb, or not a file
    pytest.param(
        data_folder_with(labels_beyond_classes),
        "labels of data go up to 12, but there are 10 classes",
        id="labels out of range",
    ),
    pytest.param(
        data_folder_with(
            lambda d: (
                replace_file("train_images", torch.zeros(0, 28, 28, dtype=torch.uint8))(d),
                replace_file("train_labels", torch.zeros(0, dtype=torch.uint8))(d),
            ),
            "--data.val_size=1",
        ),
        "holds no images",
        id="no training images",
    ),
    pytest.param(
        as_test(
            data_folder_with(
                lambda d: (
                    replace_file("test_images", torch.zeros(0, 28, 28, dtype=torch.uint8))(d),
                    replace_file("test_labels", torch.zeros(0, dtype=torch.uint8))(d),
                )
            )
        ),
        "the test set of data holds no images",
        id="empty test set",
    ),
    pytest.param(
        data_folder_with(replace_file("train_images", torch.zeros(20, 0, 0, dtype=torch.uint8))),
        "have no pixels (0×0)",
        id="images of no pixels",
    ),
    pytest.param(
        data_folder_with(replace_file("train_labels", torch.zeros(7, dtype=torch.uint8))),
        "train has 20 images but 7 labels",
        id="images and labels differ",
    ),
    pytest.param(
        data_folder_with(data_file_is("folder")), "train-images-idx3-ubyte is a folder", id="data file a folder"
    ),
    pytest.param(
        data_folder_with(data_file_is("fifo")), "is not a regular file (a FIFO", id="data file a FIFO", marks=POSIX
    ),
    pytest.param(data_folder_with(gzip_longer_than_header), "is longer than its header says", id="gzip bomb"),
    pytest.param(
        data_folder_with(header_claims((3_000_000, 28, 28))), "GiB of pixels or labels, more than", id="huge header"
    ),
    pytest.param(data_folder_with(wrong_magic), "has a wrong IDX header (magic 00000d03", id="wrong IDX type"),
    pytest.param(
        ["fit", "--data.data_dir=~nouser/mnist"], "~nouser names no user of this machine", id="data ~unknownuser"
    ),
    pytest.param(
        data_folder_with(lambda d: None, "--data.batch_size=64"),
        "--data.batch_size 64 is larger than the 10 training images",
        id="batch larger than the data",
    ),
    pytest.param(
        data_folder_with(lambda d: None, "--data.val_size=20"),
        "val_size must be between 1 and 19",
        id="val_size too large",
    ),
    # Config files that are not text, empty, not a mapping, or a bomb
    pytest.param(
        config_bytes(b"\xff\xfe\x00\x01 binary"), "config file bad.yaml is not UTF-8 text", id="binary config"
    ),
    pytest.param(
        config_bytes(b"model:\n  lr: 0.1\x00\n"), "config file bad.yaml is not valid YAML", id="NUL in config"
    ),
    pytest.param(config_file(""), "config file bad.yaml is empty", id="empty config"),
    pytest.param(config_file("# only a comment\n"), "config file bad.yaml is empty", id="comment-only config"),
    pytest.param(config_file("- model\n- data\n"), "holds a list, not options", id="config list"),
    pytest.param(config_file("fit fast\n"), "holds a single value, not options", id="config scalar"),
    pytest.param(
        config_file(alias_bomb()), "its YAML aliases expand it to more than 100000 values", id="billion laughs"
    ),
    pytest.param(config_file("model: &m {lr: *m}\n"), "a YAML alias in it refers to itself", id="recursive alias"),
    pytest.param(
        config_file("a: " + "[" * 100 + "]" * 100 + "\n"), "is nested more than 64 levels deep", id="deep config"
    ),
    pytest.param(config_file("# " + "x" * (2**20 + 10) + "\n"), "more than a config can be (1 MiB)", id="huge config"),
    pytest.param(with_folder("cfg", ["fit", "--config", "cfg"]), "config file cfg is a folder", id="config folder"),
    pytest.param(
        ["fit", "--config", "/dev/zero"],
        "config file /dev/zero is not a regular file",
        id="config /dev/zero",
        marks=POSIX,
    ),
    pytest.param(
        ["fit", f"--model={alias_bomb(inline=True)}"], "aliases expand it to more than", id="inline alias bomb"
    ),
    # ... and every other door to a config file: --model/--data/--trainer FILE, a file named in a config
    pytest.param(
        config_door("model", alias_bomb().encode()),
        "config file other.yaml refused: its YAML aliases expand it to more than",
        id="alias bomb as --model",
    ),
    pytest.param(
        config_door("model", alias_bomb().encode(), nested=True),
        "config file other.yaml refused: its YAML aliases",
        id="alias bomb named in a config",
    ),
    pytest.param(
        config_door("data", b"\xff\xfe\x00\x01 binary"), "config file other.yaml is not UTF-8", id="binary --data"
    ),
    pytest.param(
        config_door("trainer", None), "config file other.yaml is not a regular file", id="FIFO --trainer", marks=POSIX
    ),
    pytest.param(
        config_door("trainer", b"# " + b"x" * (2**20 + 10) + b"\n", nested=True),
        "config file other.yaml is 1.0 MiB, more than a config can be",
        id="huge config named in a config",
    ),
    # Option values out of range
    pytest.param(
        ["fit", "--model.lr=-1"], "--model.lr -1.0: out of range; give a value of at least 0", id="negative lr"
    ),
    pytest.param(
        ["fit", "--model.weight_decay=-0.1"], "--model.weight_decay -0.1: out of range", id="negative weight decay"
    ),
    pytest.param(
        ["fit", "--seed_everything=-1"],
        "--seed_everything -1: out of range; give a value from 0 to 4294967295",
        id="negative seed",
    ),
    pytest.param(["fit", "--seed_everything=4294967296"], "from 0 to 4294967295", id="seed too large"),
    pytest.param(["fit", "--data.split_seed=-3"], "--data.split_seed -3: out of range", id="negative split seed"),
    pytest.param(
        ["fit", "--trainer.accumulate_grad_batches=0"],
        "accumulate_grad_batches 0: out of range; give a value of at least 1",
        id="accumulate 0",
    ),
    pytest.param(
        ["fit", "--trainer.check_val_every_n_epoch=0"],
        "check_val_every_n_epoch 0: out of range",
        id="validate every 0 epochs",
    ),
    pytest.param(
        ["fit", "--trainer.val_check_interval=0"], "val_check_interval 0: out of range", id="validate every 0 steps"
    ),
    pytest.param(["fit", "--data.num_workers=-1"], "--data.num_workers -1: out of range", id="negative workers"),
    pytest.param(
        ["fit", "--trainer.max_epochs=-2"],
        "--trainer.max_epochs -2: out of range; give a value of at least -1",
        id="max_epochs -2",
    ),
    # Inputs to predict that name nothing usable
    pytest.param(predict(""), "--data.predict_path is empty", id="empty predict_path"),
    pytest.param(predict("~nouser/x.png"), "~nouser names no user of this machine", id="predict ~unknownuser"),
    pytest.param(
        predict_special("dangling link"), "digit.png is a dangling symbolic link", id="dangling link", marks=POSIX
    ),
    pytest.param(predict_special("fifo"), "digit.png is a FIFO, not an image file", id="FIFO to predict", marks=POSIX),
    pytest.param(
        folder_of_specials,
        "(only entries that are not regular files: odd/a.png (a dangling symbolic link), odd/b.png (a FIFO))",
        id="folder of specials",
        marks=POSIX,
    ),
    pytest.param(
        glob_of_specials,
        "no files match *.png (only entries that are not regular files: b.png (a FIFO))",
        id="glob of a FIFO",
        marks=POSIX,
    ),
    pytest.param(forged_name, "a\\nerror: forged.png: not an image file", id="line break in a name"),
    # lenet export --output: a regular file only, never the checkpoint itself
    pytest.param(
        ["export", "--ckpt_path", "pretrained", "--output", "/dev/null"],
        "--output /dev/null: is not a regular file",
        id="export onto a device",
        marks=POSIX,
    ),
    pytest.param(
        with_fifo("out.onnx", ["export", "--ckpt_path", "pretrained", "--output", "out.onnx"]),
        "--output out.onnx: is not a regular file",
        id="export onto a FIFO",
        marks=POSIX,
    ),
    pytest.param(export_onto_its_checkpoint, "--output x.ckpt is the checkpoint being exported", id="export onto ckpt"),
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
    assert_one_line_error([subcommand, *CPU, *args], fragment, capsys)


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
