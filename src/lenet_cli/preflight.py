"""Checks made before any work, so that what would fail late (after an epoch) fails at once in one line."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from lenet_cli.errors import LenetError
from lenet_cli.paths import configured_output_folders


def preflight(config: Any) -> None:
    """Fail in one line, before any work, on what would otherwise fail late: an output folder that
    cannot be written (found after an epoch, at the first save), a GPU the machine does not have
    (Lightning's "No supported gpu backend found!" comes after seeding and its log lines)."""
    for option, folder in configured_output_folders(config):
        check_writable(option, folder)
    accelerator = str((config.get("trainer") or {}).get("accelerator") or "")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise LenetError(
            f"--trainer.accelerator {accelerator}: this machine has no usable CUDA GPU; "
            "use --trainer.accelerator cpu (or auto)"
        )


def check_writable(option: str, folder: str | Path) -> None:
    """Fail in one line, before any work, when ``folder`` cannot be created or written into."""
    if "://" in str(folder):
        return  # remote storage: only the upload can tell
    existing = Path(folder).expanduser().absolute()
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise LenetError(f"--{option} {folder}: cannot create this folder, {existing} is a file")
    try:
        # A real attempt: os.access says yes to root even where the filesystem refuses (/proc, quotas).
        os.rmdir(tempfile.mkdtemp(prefix=".lenet-write-check-", dir=existing))
    except OSError as error:
        raise LenetError(f"--{option} {folder}: cannot write into {existing} ({error.strerror or error})") from error
