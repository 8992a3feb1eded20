"""Running LitServe for lenet: inference worker, gateway and page, the ready line, and a clean stop.

Processes (all die with the main one, see ``serving.processes``): the main process (this code, and
LitServe's monitor), LitServe's manager, ``API_SERVERS`` forked uvicorn processes that run the gateway
(which answers ``/predict`` itself by default) and the page, and one spawned inference worker running
``DigitAPI`` (it classifies only with ``--max_batch_size`` > 1; otherwise it is what ``/health`` waits for).
"""

from __future__ import annotations

import functools
import http.client
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import cv2
import litserve as ls
from fastapi import FastAPI
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

from lenet_cli.errors import LenetError
from lenet_cli.serving import processes
from lenet_cli.serving.gateway import Gateway
from lenet_cli.serving.limits import spread_connections, uvicorn_options
from lenet_cli.serving.worker import DigitAPI

# uvicorn processes running the gateway, each reading its own requests to the answer (and, with
# --max_batch_size > 1, handing the fields to the worker): one a core of the 2-core CPU.
API_SERVERS = 2
GRACEFUL_SECONDS = 3  # how long a stop waits for requests in flight (LitServe's default: 30)
READY_TIMEOUT = 120  # seconds to wait for /health before saying the server did not come up


def static_dir() -> Path:
    """The page's files, shipped in the package (nothing is fetched from elsewhere)."""
    return Path(str(resources.files("lenet_cli.serving") / "static"))


def serve(
    model: Path | None, *, host: str, port: int, max_batch_size: int, batch_timeout: float, max_request_bytes: int
) -> None:
    """Serve the ONNX ``model`` (``lenet export``'s, with or without preprocessing; ``None``: the bundled one)
    until Ctrl-C or SIGTERM, then stop every process and return. The options' defaults are ``serving.cli``'s
    (``lenet serve``'s), and only there."""
    # The gateway processes (forked: they inherit it) find digits in one picture at a time per thread:
    # OpenCV's thread pool only adds contention there (see lenet_cli.reading.cli).
    cv2.setNumThreads(1)
    spread_connections(API_SERVERS)
    server = ls.LitServer(
        DigitAPI(model, max_batch_size=max_batch_size, batch_timeout=batch_timeout),
        accelerator="cpu",
        workers_per_device=1,
        # The gateway answers by itself unless asked to batch in the worker (serving.gateway says why).
        middlewares=[
            (Gateway, {"max_request_bytes": max_request_bytes, "model": model, "answer_here": max_batch_size == 1})
        ],
        disable_openapi_url=True,  # its Swagger page loads scripts from a CDN; docs/serve.md documents the API
        # A restartable worker costs every request a "started" message through LitServe's queues (~15 % more
        # CPU a request, docs/serve.md); bad requests never reach the worker, so it only dies if killed.
        restart_workers=False,
    )
    server.uvicorn_graceful_timeout = GRACEFUL_SECONDS
    add_page(server.app)
    _children_die_with_server()
    stopped = threading.Event()
    threading.Thread(target=_announce_when_ready, args=(host, port, stopped), daemon=True).start()
    _stop_on_signals()
    try:
        with _spawn_without_main():
            server.run(
                host=host,
                port=port,
                num_api_servers=API_SERVERS,
                log_level="warning",  # no line per request; the ready line says where to go
                generate_client_file=False,  # LitServe would write a client.py into the working folder
                access_log=False,
                **uvicorn_options(),  # a bound on header bytes (serving.limits)
            )
    except KeyboardInterrupt:  # stopped while starting: the children die with this process
        pass
    except (EOFError, ConnectionError) as error:  # LitServe shut its manager down: the worker died
        raise LenetError(
            "the inference worker stopped unexpectedly (killed, or out of memory?), so LitServe stopped the server; "
            "start lenet serve again"
        ) from error
    finally:
        stopped.set()
    print("lenet serve: stopped", file=sys.stderr, flush=True)


def add_page(app: FastAPI) -> None:
    """The draw-a-digit page at ``/`` (instead of LitServe's "litserve running") and its files at ``/static``."""
    app.router.routes[:] = [route for route in app.router.routes if getattr(route, "path", None) != "/"]
    folder = static_dir()

    async def index() -> FileResponse:
        return FileResponse(folder / "index.html", media_type="text/html")

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=folder), name="static")


def urls(host: str, port: int) -> tuple[str, str]:
    """The page's and the API's URL for a browser on this machine."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, host)
    return f"http://{shown}:{port}/", f"http://{shown}:{port}/predict"


def _announce_when_ready(host: str, port: int, stopped: threading.Event) -> None:
    page, api = urls(host, port)
    address = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    deadline = time.monotonic() + READY_TIMEOUT
    while not stopped.is_set() and time.monotonic() < deadline:
        # http.client rather than urllib: no proxy from the environment may answer for 127.0.0.1.
        connection = http.client.HTTPConnection(address, port, timeout=1)
        try:
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                everywhere = " (listening on all interfaces)" if host in ("0.0.0.0", "::") else ""
                print(
                    f"lenet serve: ready{everywhere}\n  page: {page}\n  API:  POST {api}   (Ctrl-C stops)", flush=True
                )
                return
        except OSError:
            pass
        finally:
            connection.close()
        stopped.wait(0.1)
    if not stopped.is_set():
        print(f"lenet serve: no answer from {page}health after {READY_TIMEOUT} s", file=sys.stderr, flush=True)


def _stop_on_signals() -> None:
    """SIGTERM stops the server as Ctrl-C does (LitServe's graceful shutdown); a second signal is ignored."""

    def stop(signum: int, frame: types.FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


@functools.cache
def _children_die_with_server() -> None:
    """Register, once per process (os.register_at_fork cannot be undone), what each forked child does first."""
    os.register_at_fork(after_in_child=processes.after_fork_in_child)


@contextmanager
def _spawn_without_main() -> Iterator[None]:
    """Start spawned workers without re-running ``__main__`` (the ``lenet`` script or ``lenet_cli.__main__``).

    multiprocessing's spawn imports the parent's main module in each child: for ``lenet`` that is the
    whole CLI, Lightning included (~4 s and ~300 MB more per worker start). Nothing the worker runs
    lives in ``__main__``, so the parent shows spawn an empty one while it starts them.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main
