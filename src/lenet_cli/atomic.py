"""Writing files so that a kill at any instant leaves either the old complete file or the new one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replace_atomically(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        with temporary.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)  # atomic on POSIX and Windows within one filesystem
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> Path:
    with replace_atomically(path) as temporary:
        temporary.write_text(text)
    return Path(path)
