"""Finding and checking checkpoints: ``best``/``last`` across processes, and safe loading."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from lenet_cli.errors import LenetError

ALIASES = ("best", "last")


def run_folders(runs_dir: Path) -> list[Path]:
    """``version_N`` folders of ``runs_dir``, newest (highest N) first."""
    if not runs_dir.is_dir():
        return []
    versions = [(int(m.group(1)), p) for p in runs_dir.iterdir() if (m := re.fullmatch(r"version_(\d+)", p.name))]
    return [path for _, path in sorted(versions, reverse=True)]


def resolve(alias: str, runs_dir: Path) -> Path:
    """``best``/``last``: ``checkpoints/{alias}.ckpt`` of the newest run in ``runs_dir`` that has one."""
    for folder in run_folders(runs_dir):
        candidate = folder / "checkpoints" / f"{alias}.ckpt"
        if candidate.is_file():
            return candidate
    raise LenetError(f"--ckpt_path {alias}: no run in {runs_dir} has checkpoints/{alias}.ckpt; train one with `lenet fit` first")


def load(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint without running code from it (``weights_only``), or fail in one line."""
    path = Path(path)
    if not path.is_file():
        raise LenetError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise LenetError(f"checkpoint {path} refused: it needs arbitrary unpickling, which could run code ({first_line})") from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise LenetError(f"{path} is not a readable checkpoint ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise LenetError(f"{path} is not a Lightning checkpoint (no state_dict)")
    if not any(key.startswith("features.0.") for key in checkpoint["state_dict"]):
        raise LenetError(f"{path} is not a LeNet checkpoint of lenet-cli (its weights have other names)")
    return checkpoint
