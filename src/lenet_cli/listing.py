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
from dataclasses import dataclass, field
from pathlib import Path

from lenet_cli.errors import LenetError, escaped

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


def _walk_glob(pattern: Path) -> Listing:
    parts = pattern.parts
    first_magic = next(index for index, part in enumerate(parts) if MAGIC.search(part))
    base = Path(*parts[:first_magic]) if first_magic else Path()
    rest = parts[first_magic:]
    listing = Listing()
    visited: set[tuple[int, int, int]] = set()  # (device, inode, pattern position): each real folder once

    def visit(folder: Path, position: int) -> None:
        try:
            status = folder.stat()
        except OSError:
            return
        key = (status.st_dev, status.st_ino, position)
        if key in visited:
            return  # reached again through a link: a loop, or another way to the same folder
        visited.add(key)
        part, last = rest[position], position == len(rest) - 1
        if part == "**":
            if not last:
                visit(folder, position + 1)  # ** matches no folder at all, too
            for entry in _entries(folder):
                if not entry.name.startswith(".") and _is_folder(entry):
                    visit(entry, position)
                elif last and not entry.name.startswith("."):
                    _add(listing, entry, folders_too=False)
            return
        for entry in _entries(folder):
            if not fnmatch.fnmatchcase(entry.name, part) or (entry.name.startswith(".") and not part.startswith(".")):
                continue
            if last:
                _add(listing, entry, folders_too=False)
            elif _is_folder(entry):
                visit(entry, position + 1)

    visit(base, 0)
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
