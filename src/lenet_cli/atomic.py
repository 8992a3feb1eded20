"""Writing files: so that a kill at any instant leaves either the old complete file or the new one, and
checked before any work (a folder that cannot be written fails in one line)."""

from __future__ import annotations

import errno
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lenet_cli.errors import LenetError, escaped, free_space


@contextmanager
def replace_atomically(path: str | Path, remedy: str = "write elsewhere") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed over ``path``.

    A kill before the rename leaves the old ``path`` untouched (and a stray ``.NAME.*.tmp`` file); the
    rename itself is atomic, and the folder is fsynced after it so the new name survives a power cut.
    A full disk (or quota) is a LenetError naming ``path``, the space left and ``remedy``, whichever
    write hit it.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = temporary_beside(path)
    except OSError as error:
        raise_if_full(path, error, remedy)
        raise
    try:
        yield temporary
        with temporary.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)  # atomic on POSIX and Windows within one filesystem
        fsync_folder(path.parent)
    except OSError as error:
        raise_if_full(path, error, remedy)
        raise
    finally:
        temporary.unlink(missing_ok=True)


def temporary_beside(path: Path) -> Path:
    """A new empty file ``.NAME.XXXXXXXX.tmp`` in ``path``'s folder (on its filesystem: the rename stays atomic)."""
    temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    # Not tempfile.mkstemp: its 0600 mode would make every checkpoint and figure private to the owner.
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return temporary


def raise_if_full(path: str | Path, error: OSError, remedy: str = "write elsewhere") -> None:
    """A LenetError, one line with the free space, when ``error`` is a full disk or an exhausted quota."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        raise LenetError(
            f"cannot write {escaped(path)}: {error.strerror or 'no space left'}{free_space(path)}; "
            f"free some space or {remedy}"
        ) from error


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the rename is still atomic
    finally:
        os.close(descriptor)


def write_text_atomically(path: str | Path, text: str) -> Path:
    with replace_atomically(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def expand_user(option: str, value: str) -> Path:
    """``value`` with ``~`` and ``~user`` expanded; one line for a user this machine does not have."""
    try:
        return Path(value).expanduser()
    except RuntimeError as error:  # pathlib: "Could not determine home directory."
        user = value.split("/", 1)[0]
        raise LenetError(
            f"--{option} {escaped(value)}: {escaped(user)} names no user of this machine; give the full path"
        ) from error


def check_writable(option: str, folder: str | Path) -> None:
    """Fail in one line, before any work, when ``folder`` cannot be created or written into."""
    if "://" in str(folder):
        return  # remote storage: only the upload can tell
    existing = expand_user(option, str(folder)).absolute()
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise LenetError(f"--{option} {folder}: cannot create this folder, {existing} is a file")
    try:
        # A real attempt: os.access says yes to root even where the filesystem refuses (/proc, quotas).
        os.rmdir(tempfile.mkdtemp(prefix=".lenet-write-check-", dir=existing))
    except OSError as error:
        raise LenetError(f"--{option} {folder}: cannot write into {existing} ({error.strerror or error})") from error
