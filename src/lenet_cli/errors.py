"""The errors a user can fix, and how ``lenet`` words them: one line on stderr and exit status 2."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
from typing import TextIO

DEBUG_VARIABLE = "LENET_DEBUG"  # set to 1 for full tracebacks instead of one-line errors


class LenetError(Exception):
    """A mistake the user can fix (bad path, corrupt file, wrong checkpoint).

    ``lenet_cli.cli.main`` prints ``error: <message>`` and exits with status 2 instead of a traceback;
    set ``LENET_DEBUG=1`` to get the traceback as well.
    """


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user causes and can fix: main() prints them as one line. Anything else is a bug: traceback.

    Imported here, not at the top: this module is on ``lenet read``'s path, which never loads torch,
    jsonargparse or Lightning (the training commands have them loaded by the time they ask).
    """
    import torch  # noqa: PLC0415
    from jsonargparse import ArgumentError  # noqa: PLC0415
    from lightning.fabric.utilities.exceptions import MisconfigurationException  # noqa: PLC0415

    return (LenetError, ArgumentError, MisconfigurationException, OSError, torch.cuda.OutOfMemoryError)


def escaped(name: object) -> str:
    """``name`` (a path, a message) safe to print on one line of a terminal.

    Control characters (a newline in a file name would start a forged ``error:`` line; an escape
    sequence would drive the terminal) are written as Python escapes, and the bytes of a file name that
    are not UTF-8 (which Python keeps as surrogates) as ``\\xNN``.
    """
    text = os.fsdecode(name) if isinstance(name, (bytes, os.PathLike)) else str(name)
    if text.isprintable():
        return text
    parts = []
    for character in text:
        if character.isprintable():
            parts.append(character)
        elif 0xDC80 <= ord(character) <= 0xDCFF:  # os.fsdecode's stand-in for an undecodable byte
            parts.append(f"\\x{ord(character) - 0xDC00:02x}")
        else:
            parts.append(character.encode("unicode_escape").decode("ascii"))
    return "".join(parts)


def free_space(path: object) -> str:
    """``", 12.3 MiB free"`` on the disk that holds ``path`` (its nearest existing folder); "" when unknown."""
    if path is None:
        return ""
    folder = os.path.abspath(os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path))
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        return f", {shutil.disk_usage(folder).free / 2**20:.1f} MiB free"
    except OSError:
        return ""


def print_safely(message: str, stream: TextIO | None = None) -> None:
    """``message`` on ``stream`` (default stderr) if it can be written: a warning must not end the
    command it warns about (stderr closed, on a full disk or a broken pipe).

    Through ``tqdm.write``: a progress bar still drawn (the predict bar, at 100 %, when the writer
    reports) is cleared and redrawn below the message instead of having it glued to its line.
    """
    stream = sys.stderr if stream is None else stream
    if stream is None:
        return
    from tqdm import tqdm  # noqa: PLC0415 - Lightning's dependency, already imported by the time lenet prints

    with contextlib.suppress(OSError, ValueError):
        tqdm.write(message, file=stream)
        stream.flush()


def describe(error: BaseException, subcommand: str | None = None) -> str:
    """``error`` as one line, with a pointer to more where the message alone may not be enough.

    ``subcommand`` is the one the command line named, for the ``--help`` pointer of a parse error.
    """
    if isinstance(error, OSError) and error.strerror:
        where = f" {escaped(error.filename)}" if error.filename else ""
        message = f"{error.strerror}:{where}" if where else error.strerror
        if error.errno in (errno.ENOSPC, errno.EDQUOT):  # a full disk during a save lenet does not make itself
            message += free_space(error.filename)
    elif isinstance(error, LenetError):
        # lenet's messages are one line: a line break in one comes from a name in it, shown escaped.
        message = escaped(str(error).strip()) or type(error).__name__
    else:
        message = " ".join(str(error).split()) or type(error).__name__
    message = escaped(message)
    if isinstance(error, LenetError):
        return message
    import torch  # noqa: PLC0415 - see user_errors
    from jsonargparse import ArgumentError  # noqa: PLC0415

    if isinstance(error, ArgumentError):
        return f"{message} (`lenet {subcommand + ' ' if subcommand else ''}--help` lists the options)"
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return f"out of memory: {message[:200]} (lower --data.batch_size or --data.eval_batch_size)"
    return f"{message} ({DEBUG_VARIABLE}=1 shows the traceback)"
