"""``lenet read PATH...``: the digits in pictures, one line each, with the bundled model and no torch.

    $ lenet read photo.jpg scans/ 'forms/*.png'
    photo.jpg: 2026 (confidence 0.97)
    scans/blank.png: no digit (the image is one flat colour)

Files, folders (their files, not their subfolders), quoted globs (``**`` enters subfolders) and ``-``
(an image on stdin). Exit status: 0 when every picture was read, 1 when some had no digit, 2 on a
usage or file error (one ``error:`` line each; the other pictures are still read). Imports NumPy,
OpenCV, Pillow and ONNX Runtime only: ~0.2 s from a cold start on the 2-core CPU (docs/reader.md).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import multiprocessing
import sys
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, NoReturn

import cv2

from lenet_cli.errors import LenetError, escaped
from lenet_cli.images.decode import read_grayscale
from lenet_cli.images.files import list_files
from lenet_cli.reading.pipeline import Proposal, propose
from lenet_cli.reading.reader import Reader, as_json
from lenet_cli.reading.result import Reading

# The line `lenet --help` starts with (lenet_cli.cli.help) and the reader-only install prints.
READ_FIRST = (
    "To read a digit or a number: `lenet read photo.jpg` (files, folders, quoted globs, - for stdin; "
    "--json; --model FILE.onnx). It uses the bundled model, needs no training and starts in a fraction of "
    "a second; `lenet read --help` says more."
)
BATCH = 256  # pictures whose fields are classified in one ONNX Runtime call
# Threads that decode pictures and find their fields: Pillow and OpenCV release the GIL for part of it.
# 2000 small PNGs on the 2-core CPU: ~1.6 s with two, 2.0-3.6 s with one (a busy machine; docs/reader.md).
WORKERS = 2  # threads, or forked processes from PROCESSES_FROM pictures on
PROCESSES_FROM = 64  # pictures from which lenet read finds digits in forked processes


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's usage block → lenet's one line
        raise LenetError(f"{message} (`lenet read --help` lists the options)")


def parser() -> argparse.ArgumentParser:
    reading = _Parser(
        prog="lenet read",
        description="Read the digits in pictures with the model bundled with lenet-cli (or --model), without "
        "torch. One line per picture: `PATH: 2026 (confidence 0.97)` or `PATH: no digit (reason)`. "
        "Exit status 0: every picture read; 1: some had no digit; 2: a usage or file error.",
    )
    reading.add_argument(
        "paths", nargs="+", metavar="PATH", help="image files, folders, quoted globs ('digits/*.png'), or - for stdin"
    )
    reading.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line: path, text, confidence, digits (text, confidence, box), note",
    )
    reading.add_argument(
        "--model", metavar="FILE.onnx", help="an ONNX file written by `lenet export` (default: the bundled model)"
    )
    return reading


def main(argv: Sequence[str]) -> int:
    """Run ``lenet read`` with ``argv`` (the words after ``read``); the exit status."""
    try:
        arguments = parser().parse_args(list(argv))
        sources = [source for path in arguments.paths for source in _sources(path)]
        reader = Reader(arguments.model)
    except LenetError as error:
        _error(str(error))
        return 2
    # OpenCV's own thread pool on top of WORKERS fights for the cores over pictures this small: 2000 small
    # PNGs took 2.4 s with it (0.6 s of it in the kernel), 1.7 s without, on the 2-core CPU.
    cv2.setNumThreads(1)
    status = 0
    pool = _pool(sources)
    try:
        # Submitted at once: the workers find the next pictures' digits while this process classifies a batch.
        results = iter(pool.map(_find, sources, chunksize=16))
        while found := list(itertools.islice(results, BATCH)):
            proposals = [(name, result) for name, result in found if isinstance(result, Proposal)]
            for _, result in found:
                if isinstance(result, LenetError):
                    _error(str(result))
                    status = 2
            readings = reader.decide([proposal for _, proposal in proposals])
            for (name, _), reading in zip(proposals, readings, strict=True):
                print(_line(name, reading, arguments.json), flush=False)
                if not reading.found:
                    status = max(status, 1)
    finally:  # on an error or Ctrl-C, the pictures not begun are dropped, not read first
        pool.shutdown(cancel_futures=True)
    sys.stdout.flush()
    return status


def _pool(sources: list[tuple[str, Path | BinaryIO]]) -> Executor:
    """Threads for a few pictures; for many, forked processes: finding a small picture's digits is ~1 ms of
    NumPy on small arrays that holds the GIL, so threads do not overlap it (2 000 56×56 PNGs: 3.5 s with
    threads on the 2-core CPU). The children only decode and segment; ONNX Runtime runs in this process."""
    many = len(sources) >= PROCESSES_FROM and all(isinstance(file, Path) for _, file in sources)
    if many and "fork" in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(WORKERS)


def _sources(path: str) -> list[tuple[str, Path | BinaryIO]]:
    if path == "-":
        return [("-", sys.stdin.buffer)]
    return [(str(file), file) for file in list_files(path, what="lenet read").files]


def _find(source: tuple[str, Path | BinaryIO]) -> tuple[str, Proposal | LenetError]:
    """One picture decoded and its digit fields found (in a worker thread), or why it cannot be read."""
    name, file = source
    try:
        if not isinstance(file, Path):
            file = io.BytesIO(file.read())  # stdin is not seekable; Pillow needs to seek
        proposal = propose(read_grayscale(file, escaped(name)), escaped(name))
        proposal.keep_ink()  # the row reader's, from the steps, which are not sent between processes (the
        proposal.steps = None  # views are: Proposal.inputs); nor are the explain pictures
        return name, proposal
    except LenetError as error:
        return name, error


def _line(name: str, reading: Reading, in_json: bool) -> str:
    if in_json:
        return json.dumps({"path": name, **as_json(reading)}, ensure_ascii=False)
    if reading.found:
        return f"{escaped(name)}: {reading.text} (confidence {reading.confidence:.2f})"
    return f"{escaped(name)}: no digit ({reading.note or 'nothing read'})"


def _error(message: str) -> None:
    print(f"error: {escaped(message)}", file=sys.stderr)
