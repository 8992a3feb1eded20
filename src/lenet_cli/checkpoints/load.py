"""Reading and writing checkpoints: loading without running code from the file, checking that the
weights fit the model, and saves that a kill cannot leave half-written."""

from __future__ import annotations

import hashlib
import math
import pickle
import re
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule

from lenet_cli.errors import LenetError, escaped
from lenet_cli.training.network import upgraded

# A LeNet checkpoint holds well under 1 MiB of tensors (61 706 weights, Adam's two moments, a few
# scalars): anything near this is no LeNet checkpoint, and refused before torch reads a byte of it.
MAX_CHECKPOINT_BYTES = 256 * 2**20
MAX_ARCHIVE_ENTRIES = 10_000


def load(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint without running code from it (``weights_only``), or fail in one line.

    The file is verified first (:func:`verify_archive`: a ``torch.save`` zip archive whose CRCs match,
    nothing compressed, of a size a LeNet checkpoint can have), then read once, memory-mapped, and
    its contents checked to be LeNet weights of the right kinds (:func:`check_contents`).
    """
    path = Path(path)
    name = escaped(path)
    if not path.exists():
        raise LenetError(f"checkpoint {name} does not exist")
    if path.is_dir():
        raise LenetError(f"checkpoint {name} is a folder; give a checkpoint file in it, such as {name}/best.ckpt")
    if not path.is_file():
        raise LenetError(f"checkpoint {name} is not a regular file (a device, FIFO or socket); give a .ckpt file")
    verify_archive(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: noise before our one line
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        if unsafe := unsafe_globals(path, error):
            raise LenetError(
                f"checkpoint {name} refused: loading it would need arbitrary unpickling, which can run code "
                f"from the file (it calls {', '.join(unsafe)}); lenet loads only tensors and plain values"
            ) from error
        raise LenetError(
            f"{name} is not a readable checkpoint (a weights-only load rejects it: {escaped(rejection(error))})"
        ) from error
    except Exception as error:  # torch's reader raises many kinds on a damaged file
        # Damage that the archive's directory does not show (a pickle that torch's reader stumbles on).
        detail = str(error).splitlines()[0] if str(error) else ""
        raise LenetError(f"{name} is not a readable checkpoint ({type(error).__name__}: {escaped(detail)})") from error
    check_contents(checkpoint, name)
    checkpoint["state_dict"] = upgraded(checkpoint["state_dict"])  # a 0.2 checkpoint's layer names
    return checkpoint


def verify_archive(path: Path) -> None:
    """Fail in one line unless ``path`` is a sound ``torch.save`` archive of a LeNet checkpoint's size.

    Read from the zip directory and CRCs only, before anything is unpickled or inflated: torch would
    inflate a compressed entry (a few MB that claim GiB of tensor) in full, and load a file with
    flipped bytes without noticing. ``torch.save`` never compresses, so no compressed entry is taken.
    """
    name = escaped(path)
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            if len(entries) > MAX_ARCHIVE_ENTRIES:
                raise LenetError(f"checkpoint {name} has {len(entries)} entries: no LeNet checkpoint has that many")
            if not any(entry.filename.endswith("/data.pkl") or entry.filename == "data.pkl" for entry in entries):
                raise LenetError(f"{name} is not a readable checkpoint (a zip file, but not one that torch.save wrote)")
            compressed = [entry.filename for entry in entries if entry.compress_type != zipfile.ZIP_STORED]
            if compressed:
                raise LenetError(
                    f"checkpoint {name} refused: it has compressed entries ({escaped(compressed[0])}), which "
                    "torch.save never writes and torch would inflate in full; re-save it with torch.save"
                )
            size = sum(entry.file_size for entry in entries)
            if size > MAX_CHECKPOINT_BYTES or size > path.stat().st_size:
                raise LenetError(
                    f"checkpoint {name} refused: it declares {size / 2**20:.0f} MiB of data in a "
                    f"{path.stat().st_size / 2**20:.1f} MiB file; a LeNet checkpoint holds less than "
                    f"{MAX_CHECKPOINT_BYTES // 2**20} MiB"
                )
            damaged = archive.testzip()
    except zipfile.BadZipFile as error:
        raise LenetError(
            f"{name} is not a readable checkpoint (not the zip archive that torch.save writes: {error})"
        ) from error
    except (OSError, EOFError, zlib.error, NotImplementedError, ValueError) as error:
        raise LenetError(f"{name} is not a readable checkpoint ({type(error).__name__}: {escaped(error)})") from error
    if damaged is not None:
        raise LenetError(
            f"checkpoint {name} is damaged: its entry {escaped(damaged)} fails the CRC check (changed or corrupted "
            "since it was written); use another checkpoint"
        )


def check_contents(checkpoint: Any, name: str) -> None:
    """Fail in one line unless ``checkpoint`` holds LeNet weights and hyperparameters of the right kinds."""
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise LenetError(f"{name} is not a Lightning checkpoint (no state_dict)")
    state_dict = checkpoint["state_dict"]
    if not isinstance(state_dict, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state_dict.items()
    ):
        raise LenetError(f"checkpoint {name}: its state_dict does not map weight names to tensors; the file is damaged")
    if not any(key.startswith(("features.0.", "network.features.0.")) for key in state_dict):
        raise LenetError(f"{name} is not a LeNet checkpoint of lenet-cli (its weights have other names)")
    if not isinstance(checkpoint.get("pytorch-lightning_version"), str):
        # Lightning's loading reads it first (a KeyError otherwise): a bare torch.save of weights.
        raise LenetError(
            f"{name} is not a Lightning checkpoint (it has no pytorch-lightning_version): lenet reads the "
            "checkpoints that lenet fit writes"
        )
    for key, value in state_dict.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise LenetError(
                f"checkpoint {name} holds NaN or infinite weights ({escaped(key)}): its training diverged; "
                "use an earlier checkpoint, or train again with a lower --model.lr"
            )
    for section in ("hyper_parameters", "datamodule_hyper_parameters", "callbacks", "loops"):
        value = checkpoint.get(section)
        if value is not None and not isinstance(value, dict):
            raise LenetError(
                f"checkpoint {name}: its {section} is a {type(value).__name__}, not a mapping; the file is damaged"
            )
    hparams = checkpoint.get("hyper_parameters") or {}
    for key in ("num_classes", "in_channels"):
        value = hparams.get(key)
        if key in hparams and (type(value) is not int or not 1 <= value <= 100_000):
            raise LenetError(
                f"checkpoint {name}: its hyperparameter {key} is {escaped(repr(value))}, not a whole number from 1 "
                "to 100000; the file was not written by lenet fit"
            )
    for key in ("lr", "weight_decay"):  # LightningCLI makes them --model options, past lenet's range checks
        value = hparams.get(key)
        if key in hparams and not (
            isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf
        ):
            raise LenetError(
                f"checkpoint {name}: its hyperparameter {key} is {escaped(repr(value))}, not a number of at "
                "least 0; the file was not written by lenet fit"
            )


def unsafe_globals(path: Path, error: Exception) -> list[str]:
    """The functions and classes a full unpickling of ``path`` would call, as far as they can be read."""
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - not a torch.save zip file: read torch's message
        unsafe = []
    return unsafe or re.findall(r"GLOBAL (\S+)", str(error))


def rejection(error: Exception) -> str:
    """The gist of torch's page-long ``weights_only`` error (which also suggests the unsafe load)."""
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    details = [line for line in lines if not line.startswith(boilerplate) and not line.endswith(":")]
    return details[0] if details else type(error).__name__


def check_fits(checkpoint: dict[str, Any], model: LightningModule, path: str | Path) -> None:
    """Fail in one line when the checkpoint's weights do not have this model's names and shapes.

    Lightning would raise a long ``load_state_dict`` traceback instead; the usual cause is a checkpoint
    trained for another number of classes or channels than ``--data`` has.
    """
    saved = checkpoint["state_dict"]
    expected = model.state_dict()
    path = escaped(path)
    hparams = checkpoint.get("hyper_parameters") or {}
    for name in ("num_classes", "in_channels"):
        ours = model.hparams.get(name)
        if name in hparams and ours is not None and hparams[name] != ours:
            what = "classes" if name == "num_classes" else "input channels"
            raise LenetError(
                f"checkpoint {path} was trained for {hparams[name]} {what}, but the data has {ours}; "
                "use a checkpoint trained on this kind of data"
            )
    missing, unexpected = sorted(expected.keys() - saved.keys()), sorted(saved.keys() - expected.keys())
    if missing or unexpected:
        raise LenetError(
            f"checkpoint {path} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for key, tensor in expected.items():
        if saved[key].shape != tensor.shape:
            raise LenetError(
                f"checkpoint {path} does not fit this model: {key} is {list(saved[key].shape)} there, "
                f"{list(tensor.shape)} here"
            )


def refuse_unsafe(path: Path, target: str | Path) -> None:
    """Fail before ``target`` is written if loading it would need arbitrary unpickling.

    Everything Lightning puts in a checkpoint is tensors and plain Python values, so this only trips
    when a hyperparameter or callback state holds some object: better at the first save than when the
    run is over and no ``weights_only`` load can read its checkpoints.
    """
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    if unsafe:
        raise LenetError(
            f"refusing to write checkpoint {target}: it would hold {', '.join(unsafe)}, which a safe "
            "(weights_only) load cannot read; keep hyperparameters to numbers, strings, lists and dicts"
        )


def sha256(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
