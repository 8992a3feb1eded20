"""``lenet serve`` without torch: the bundled model or ``--model FILE.onnx``, started in ~1 s.

``lenet_cli.__main__`` sends ``lenet serve`` here when its options are only this module's (no
``--ckpt_path``, ``--config``, ``--data.*``, ``--trainer.*``: those need the LightningCLI, ``serving.run``);
the reader-only install (``reader/``) has only this one. The options, their defaults and their checks are
decided here for both.
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from lenet_cli.errors import LenetError, escaped

HOST, PORT, MAX_BATCH_SIZE, BATCH_TIMEOUT, MAX_REQUEST_BYTES = "127.0.0.1", 8000, 1, 0.002, 10 * 1024 * 1024
HOSTS = ("127.0.0.1", "0.0.0.0", "::")  # the addresses LitServe binds
INSTALL = (
    "lenet serve needs LitServe, an optional extra: pip install 'lenet-cli[serve]' "
    "(in a checkout: pip install '.[serve]', or pip install './reader[serve]' for the reader alone)"
)
# The options this module answers; any other sends `lenet serve` to the LightningCLI.
OPTIONS = ("--model", "--host", "--port", "--max_batch_size", "--batch_timeout", "--max_request_bytes")


def answers(words: Sequence[str]) -> bool:
    """Whether ``lenet serve WORDS`` is this module's: only :data:`OPTIONS`, each with its value."""
    return all(not word.startswith("-") or word.split("=", 1)[0] in OPTIONS for word in words)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise LenetError(f"{message} (`lenet serve --help` lists the options)")


def main(argv: Sequence[str]) -> int:
    """``lenet serve`` on ONNX Runtime; the exit status (2: a one-line error)."""
    parser = _Parser(prog="lenet serve", add_help=False)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--max_batch_size", type=int, default=MAX_BATCH_SIZE)
    parser.add_argument("--batch_timeout", type=float, default=BATCH_TIMEOUT)
    parser.add_argument("--max_request_bytes", type=int, default=MAX_REQUEST_BYTES)
    try:
        options = vars(parser.parse_args(list(argv)))
        model = options.pop("model")
        check(model, **options)
        from lenet_cli.serving import server  # noqa: PLC0415 - LitServe, once it is known to be there

        server.serve(model, **options)
    except LenetError as error:
        print(f"error: {escaped(str(error))}", flush=True, file=sys.stderr)
        return 2
    return 0


def check(model: Path | None, host: str, port: int, max_batch_size: int, batch_timeout: float,
          max_request_bytes: int) -> None:  # fmt: skip
    """Everything a user can get wrong, each in one line, before any process starts."""
    for module in ("litserve", "python_multipart"):
        if importlib.util.find_spec(module) is None:
            raise LenetError(INSTALL)
    if host not in HOSTS:
        raise LenetError(f"--host {host}: LitServe listens on one of {', '.join(HOSTS)} (127.0.0.1: this machine only)")
    if not 1024 <= port <= 65535:
        raise LenetError(f"--port {port}: choose a port from 1024 to 65535")
    if max_batch_size < 1:
        raise LenetError(f"--max_batch_size {max_batch_size}: must be at least 1 (1: no batching)")
    if batch_timeout < 0:
        raise LenetError(f"--batch_timeout {batch_timeout}: must be 0 or more seconds")
    if max_request_bytes < 1024:
        raise LenetError(f"--max_request_bytes {max_request_bytes}: must be at least 1024")
    from lenet_cli.reading.model import OnnxClassifier  # noqa: PLC0415 - ONNX Runtime: after the cheap checks

    OnnxClassifier(model)  # a bad --model fails here in one line, not in the worker after start-up
    check_port_free(host, port)


def check_port_free(host: str, port: int) -> None:
    """Fail in one line when the port is taken (uvicorn would log the error and exit 1 after start-up)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError as error:
            raise LenetError(
                f"--port {port}: cannot listen on {host}:{port} ({error.strerror or error}); "
                "stop what uses it or choose another --port"
            ) from error
