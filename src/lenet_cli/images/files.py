"""The files an input path names (one file, a folder, or a glob), each real file once, and the entries
that are not regular files (dangling links, FIFOs, devices, sockets) listed rather than dropped.

A glob is walked here rather than by :func:`glob.glob`, which follows symbolic links to folders: a
link to a folder above it makes ``dir/**/*.png`` loop until the path length limit (each file found
once per lap) or hang. Here every real folder is entered once for each part of the pattern.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np
from PIL import Image

from lenet_cli.errors import LenetError, escaped, print_safely
from lenet_cli.images.decode import BadImage, read_grayscale, read_image
from lenet_cli.images.explain import write_all as draw_steps
from lenet_cli.images.mnist_style import Steps, preprocess, to_mnist

MAGIC = re.compile(r"[*?[]")


@dataclass
class Listing:
    """What :func:`list_files` found: regular files in natural order, and ``(entry, what it is)`` skipped."""

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    single: bool = False  # the path named one file (not a folder or a glob)


def list_files(path: str, what: str = "--data.predict_path") -> Listing:
    """The regular files that ``path`` (a file, a folder, or a glob with ``*``, ``?``, ``[…]``, ``**``) names.

    Hidden names (``.x``) are left out as :func:`glob.glob` does; a folder is not entered (only a
    glob's ``**`` goes into subfolders). Fails in one line when ``path`` names nothing usable.
    """
    if not path.strip():
        raise LenetError(f"{what} is empty: give an image file, a folder of images or a glob such as 'digits/*.png'")
    try:
        candidate = Path(path).expanduser()
    except RuntimeError as error:  # "~someone" with no such user
        user = path.split("/", 1)[0]
        raise LenetError(
            f"{what} {escaped(path)}: {escaped(user)} names no user of this machine; give the full path"
        ) from error
    name = escaped(candidate)
    if candidate.is_dir():
        listing = Listing()
        try:
            entries = sorted(entry for entry in candidate.iterdir() if not entry.name.startswith("."))
        except OSError as error:
            raise LenetError(f"cannot list the folder {name}: {error.strerror or error}") from error
        for entry in entries:
            _add(listing, entry, folders_too=False)
        _keep_each_real_file_once(listing)
        if not listing.files:
            raise LenetError(f"the folder {name} holds no files: put digit images in it{_skipped_note(listing)}")
        return listing
    if candidate.is_file():
        return Listing(files=[candidate], single=True)
    if MAGIC.search(path):
        listing = _walk_glob(candidate)
        if not listing.files:
            raise LenetError(f"no files match {escaped(path)}{_skipped_note(listing)}")
        return listing
    if candidate.is_symlink() and not candidate.exists():
        raise LenetError(f"{name} is a dangling symbolic link (its target {escaped(os.readlink(candidate))} is gone)")
    if candidate.exists():
        raise LenetError(f"{name} is {_kind(candidate) or 'neither a file nor a folder'}, not an image file")
    raise LenetError(f"{name} does not exist (give an image file, a folder of images or a glob such as 'digits/*.png')")


def natural_key(path: Path) -> list[str | int]:
    """``2.png`` before ``10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


# Folders a glob enters below its fixed part: far more than any photo library nests, far less than the
# depth at which a recursive walk would hit Python's recursion limit (the walk below is a loop anyway).
MAX_GLOB_DEPTH = 64


def _walk_glob(pattern: Path) -> Listing:
    parts = pattern.parts
    first_magic = next(index for index, part in enumerate(parts) if MAGIC.search(part))
    base = Path(*parts[:first_magic]) if first_magic else Path()
    rest = parts[first_magic:]
    listing = Listing()
    visited: set[tuple[int, int, int]] = set()  # (device, inode, pattern position): each real folder once
    pending = [(base, 0, 0)]  # (folder, pattern position, depth below base): a stack, not recursion

    def enter(folder: Path, position: int, depth: int) -> None:
        if depth > MAX_GLOB_DEPTH:
            listing.skipped.append((folder, f"a folder more than {MAX_GLOB_DEPTH} levels deep, not searched"))
        else:
            pending.append((folder, position, depth))

    while pending:
        folder, position, depth = pending.pop()
        try:
            status = folder.stat()
        except OSError:
            continue
        key = (status.st_dev, status.st_ino, position)
        if key in visited:
            continue  # reached again through a link: a loop, or another way to the same folder
        visited.add(key)
        part, last = rest[position], position == len(rest) - 1
        if part == "**":
            if not last:
                pending.append((folder, position + 1, depth))  # ** matches no folder at all, too
            for entry in _entries(folder):
                if not entry.name.startswith(".") and _is_folder(entry):
                    enter(entry, position, depth + 1)
                elif last and not entry.name.startswith("."):
                    _add(listing, entry, folders_too=False)
            continue
        for entry in _entries(folder):
            if not fnmatch.fnmatchcase(entry.name, part) or (entry.name.startswith(".") and not part.startswith(".")):
                continue
            if last:
                _add(listing, entry, folders_too=False)
            elif _is_folder(entry):
                enter(entry, position + 1, depth + 1)

    _keep_each_real_file_once(listing)
    return listing


def _entries(folder: Path) -> list[Path]:
    try:
        return [Path(folder, entry.name) if folder != Path() else Path(entry.name) for entry in os.scandir(folder)]
    except OSError:
        return []  # unreadable or vanished: glob.glob skips those too


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _kind(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file (``None`` for one)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a dangling symbolic link" if path.is_symlink() else "gone"
    except OSError as error:
        return "a symbolic link loop" if error.errno == errno.ELOOP else f"unreadable ({error.strerror})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _add(listing: Listing, entry: Path, folders_too: bool) -> None:
    kind = _kind(entry)
    if kind is None:
        listing.files.append(entry)
    elif kind != "a folder" or folders_too:
        listing.skipped.append((entry, kind))


def _keep_each_real_file_once(listing: Listing) -> None:
    """Natural order; a file reached under several names (links) is kept under the first."""
    seen: set[str] = set()
    files = []
    for file in sorted(listing.files, key=natural_key):
        real = os.path.realpath(file)
        if real not in seen:
            seen.add(real)
            files.append(file)
    listing.files = files
    listing.skipped.sort(key=lambda item: natural_key(item[0]))


def _skipped_note(listing: Listing) -> str:
    if not listing.skipped:
        return ""
    shown = ", ".join(f"{escaped(entry)} ({kind})" for entry, kind in listing.skipped[:3])
    more = f" and {len(listing.skipped) - 3} more" if len(listing.skipped) > 3 else ""
    return f" (only entries that are not regular files: {shown}{more})"


Decoded = TypeVar("Decoded")
MAX_LISTED = 10  # skipped files named one by one in a message; the rest are counted


def load_digit(source: Path | BinaryIO, name: str) -> np.ndarray:
    """One picture (a file path or an open binary file) → uint8 (28, 28), light on dark, MNIST-style.

    Raises BadImage naming ``name`` when it cannot be decoded or holds no digit.
    """
    return to_mnist(read_grayscale(source, name), name)


def decode_each(
    path: str | Path,
    attempt: Callable[[Path], Decoded],
    num_workers: int = 0,
    usable: str = "readable images",
    skipped: list[Path] | None = None,
) -> list[tuple[Path, Decoded]]:
    """``attempt`` on each file of the image file, folder or glob ``path``, in natural order: the files it read.

    ``attempt`` raises BadImage for a file it cannot use. A single file that cannot be used fails; from a
    folder or glob the good files are kept and the bad ones listed in a warning (``usable`` says what they
    are not), failing only when none is left. ``num_workers`` threads run ``attempt`` (Pillow and OpenCV
    work without holding the GIL). The files that could not be used are added to ``skipped`` when given (the
    summary names them again: listing a folder of 2 000 files a second time took ~0.2 s).
    """
    files, single = collect(str(path))

    def guarded(file: Path) -> Decoded | BadImage:
        try:
            return attempt(file)
        except BadImage as error:
            return error

    # Pillow only warns for images between MAX_IMAGE_PIXELS and twice that; read_image refuses
    # them itself, so the warning would be noise. Set here, in the calling thread, as filters are global.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if num_workers > 0 and len(files) > 1:
            with ThreadPoolExecutor(max_workers=num_workers) as pool:
                results = list(pool.map(guarded, files))
        else:
            results = [guarded(file) for file in files]

    failures = [result for result in results if isinstance(result, BadImage)]
    if single and failures:
        raise failures[0]
    kept = [(file, result) for file, result in zip(files, results, strict=True) if not isinstance(result, BadImage)]
    if skipped is not None:
        skipped += [file for file, result in zip(files, results, strict=True) if isinstance(result, BadImage)]
    if not kept:
        raise LenetError(
            f"none of the {len(files)} files of {path} is a readable digit image: {_listing(failures, '; ')}"
        )
    if failures:
        listing = _listing(failures, "\n  ")
        _warn(f"warning: skipped {len(failures)} of {len(files)} files of {path} that are not {usable}:\n  {listing}")
    return kept


def load_digits(
    path: str | Path, num_workers: int = 0, explain_dir: str | Path | None = None
) -> tuple[np.ndarray, list[str]]:
    """Digits of the image file, folder or glob ``path``: uint8 (N, 28, 28) light on dark, and sources.

    The files are read as :func:`decode_each` says. With ``explain_dir``, each digit's steps are drawn into
    ``explain_dir/NNNN-<name>.png`` (NNNN: its index in predictions.csv).
    """
    explain = explain_dir is not None

    def attempt(file: Path) -> tuple[np.ndarray, Image.Image | None, Steps | None]:
        if not explain:
            return to_mnist(read_grayscale(file, str(file)), str(file)), None, None
        # Decoded twice: in colour for the picture, and exactly as without explain_dir for the digit.
        steps = preprocess(read_grayscale(file, str(file)), str(file))
        return steps.digit, read_image(file, str(file), colour=True), steps

    kept = decode_each(path, attempt, num_workers, "readable digit images")
    if explain_dir is not None and rank_zero():  # one rank draws
        draw_steps(Path(explain_dir), [(file, image, steps, "") for file, (_, image, steps) in kept])
    digits = np.stack([digit for _, (digit, _, _) in kept])
    return digits, [str(file) for file, _ in kept]


def collect(path: str) -> tuple[list[Path], bool]:
    """The files ``path`` names, in natural order (``2.png`` before ``10.png``), and whether it is one file.

    Each real file once, symbolic link loops cut (:func:`lenet_cli.listing.list_files`); entries that
    are not regular files (dangling links, FIFOs, devices) are named in a warning.
    """
    listing = list_files(path)
    if listing.skipped:
        lines = [f"{escaped(entry)}: {kind}" for entry, kind in listing.skipped[:MAX_LISTED]]
        if len(listing.skipped) > MAX_LISTED:
            lines.append(f"… and {len(listing.skipped) - MAX_LISTED} more")
        _warn(
            f"warning: skipped {len(listing.skipped)} entries of {escaped(path)} that are not regular files:\n  "
            + "\n  ".join(lines)
        )
    return listing.files, listing.single


def _listing(failures: Sequence[BadImage], separator: str) -> str:
    lines = [escaped(failure) for failure in failures[:MAX_LISTED]]
    if len(failures) > MAX_LISTED:
        lines.append(f"… and {len(failures) - MAX_LISTED} more")
    return separator.join(lines)


def _warn(message: str) -> None:
    if rank_zero():  # every DDP rank reads the files; one of them says so
        print_safely(message)


def rank_zero() -> bool:
    """Whether this is the first process of a distributed run (or the only one): Lightning's launchers and
    torchrun set these variables (lightning's ``rank_zero_only`` reads the same), without importing Lightning."""
    return all(os.environ.get(variable, "0") == "0" for variable in ("RANK", "LOCAL_RANK", "NODE_RANK"))
