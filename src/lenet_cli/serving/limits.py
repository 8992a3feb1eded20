"""What one request may cost ``lenet serve``: header bytes, pixels, and a place in the decoding queue.

A request body is bounded by ``--max_request_bytes``; these bound what the body's bytes would turn into:

- header bytes (request line and headers) per request: :class:`BoundedHeaders`, uvicorn's httptools
  protocol with a limit (uvicorn has none for httptools: six 400 MB header lines took 1.7 GB);
- decoded pixels per request (:data:`MAX_REQUEST_PIXELS`), read from the image headers before any
  decoding: an 11 KB PNG can claim 88 Mpx;
- concurrent decoding (:class:`Decoder`): small images (a drawn digit, the page's canvas) on the event
  loop; photos one at a time per API process in a lane of their own; large images one at a time in
  another, at the lowest CPU priority. A lane that already has its limit waiting answers 503 with
  ``Retry-After``.

So a flood of large images waits in its own lane and yields the CPU, and digits and photos keep their
latency (measured: docs/hostile-inputs.md).

The same protocol class spreads keep-alive connections over the API processes (:func:`spread_connections`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.types import Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lenet_cli.images.decode import BadImage, decoded_pixels
from lenet_cli.reading.pipeline import Proposal
from lenet_cli.serving.requests import RequestError, Upload, decode

MAX_HEADER_BYTES = 64 * 1024  # request line + headers; nginx's default large_client_header_buffers is 32 KB
# Decoded pixels in one request: a 24 Mpx PNG passes (~0.6 s to decode on the 2-core CPU); a JPEG counts
# at the reduced scale it is decoded at, so any camera's photo passes.
MAX_REQUEST_PIXELS = 25_000_000
# Requests of at most this many decoded pixels are decoded on the event loop (the page's 280×280
# canvas: ~1 ms); a thread hand-off costs more than that. Larger ones go through the Decoder's lanes.
INLINE_PIXELS = 320 * 320
# Up to this many: the photo lane (a phone's JPEG decodes at 1/4 or 1/8 scale to well under it; ~10-40 ms).
# More: the large lane, at the lowest CPU priority, so that a large image never delays a photo.
PHOTO_PIXELS = 2_000_000
MAX_WAITING_PHOTOS = 8  # per API process, behind the one being decoded; more: 503
MAX_WAITING_LARGE = 2
# A body larger than this (by its Content-Length) is read only when no other is being read, parsed or
# decoded in this API process; another gets a 503 before a byte of it is parsed. 8 MB multipart bodies
# sent back to back held both API processes' event loops (~50 ms of parsing each) and raised the
# p99 of drawn digits ×13 while every one of them was refused with a 413 (docs/hostile-inputs.md).
LARGE_BODY_BYTES = 1024 * 1024
RETRY_AFTER_SECONDS = 1
LOWEST_PRIORITY = 19  # nice value of the large lane's thread


def request_pixels(uploads: list[Upload]) -> int:
    """The pixels decoding ``uploads`` would produce, from their headers; 400 for an unreadable one, 413 past
    :data:`MAX_REQUEST_PIXELS`."""
    total = 0
    for upload in uploads:
        try:
            total += decoded_pixels(io.BytesIO(upload.data), upload.name)
        except BadImage as error:
            raise RequestError(400, str(error)) from error
        if total > MAX_REQUEST_PIXELS:
            raise RequestError(
                413,
                f"the images of this request decode to more than {MAX_REQUEST_PIXELS} pixels "
                f"(lenet serve's limit per request); send smaller images or fewer at a time",
            )
    return total


# One large decode at a time in the whole server, whichever API process got the request: on 2 cores the
# other core stays free for digits, photos and the inference worker. Made before LitServe forks the API
# processes (this module is imported by the server first), so they all share it.
_LARGE_SLOT = multiprocessing.get_context("fork").BoundedSemaphore(1) if hasattr(os, "fork") else None


def decode_one_at_a_time(uploads: list[Upload]) -> list[Proposal]:
    """:func:`decode` holding the server's one large-decode slot (waited for in the large lane's thread)."""
    with _LARGE_SLOT if _LARGE_SLOT is not None else contextlib.nullcontext():
        return decode(uploads)


class Lane:
    """One thread that decodes requests in turn, and refuses with a 503 when ``max_waiting`` already wait.

    Args:
        name: The thread's name.
        max_waiting: Requests that may wait while one is decoded.
        decoder: What the lane's thread runs.
        nice: The thread's nice value (Linux applies it per thread; elsewhere the lane's bound still holds).
    """

    def __init__(
        self, name: str, max_waiting: int, decoder: Callable[[list[Upload]], list[Proposal]] = decode, nice: int = 0
    ) -> None:
        self.max_waiting = max_waiting
        self._decode = decoder
        self._pending = 0  # decoding or waiting (touched on the event loop only)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name, initializer=_nice, initargs=(nice,))

    async def decode(self, uploads: list[Upload]) -> list[Proposal]:
        if self._pending > self.max_waiting:
            raise busy()
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._decode, uploads)
        finally:
            self._pending -= 1


class Decoder:
    """One API process's decoding: small requests at once, photos and large images each in a lane of their own."""

    def __init__(self) -> None:
        self._large_body = False  # a body over LARGE_BODY_BYTES is being read or decoded
        self.photos = Lane("decode-photo", MAX_WAITING_PHOTOS)
        self.large = Lane("decode-large", MAX_WAITING_LARGE, decode_one_at_a_time, nice=LOWEST_PRIORITY)

    async def decode(self, uploads: list[Upload]) -> list[Proposal]:
        """uint8 (N, 28, 28) digits of ``uploads``; RequestError (400, 413, 503) when refused."""
        pixels = request_pixels(uploads)
        if pixels <= INLINE_PIXELS:
            return decode(uploads)
        return await (self.photos if pixels <= PHOTO_PIXELS else self.large).decode(uploads)

    @contextlib.contextmanager
    def admit(self, scope: Scope) -> Iterator[None]:
        """Admit a request's body: 503 with ``Retry-After`` for one declared over :data:`LARGE_BODY_BYTES`
        while another is in this process."""
        declared = next((value for key, value in scope["headers"] if key == b"content-length"), b"")
        if not declared.isdigit() or int(declared) <= LARGE_BODY_BYTES:
            yield
            return
        if self._large_body:
            raise busy()
        self._large_body = True
        try:
            yield
        finally:
            self._large_body = False


def busy() -> RequestError:
    return RequestError(
        503,
        "the server is busy with large images; retry in a moment or send smaller images",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _nice(value: int) -> None:
    """Set this thread's nice value (Linux: per thread): large decodes yield the cores to the event loops,
    the photo lane and the inference worker. A thread shares the GIL with the event loop, but Pillow and
    OpenCV release it while they work: a 23 Mpx PNG decoded 3 times held it 12 ms at most (2-core CPU)."""
    if value:
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), value)


def spread_connections(processes: int) -> None:
    """Before LitServe forks ``processes`` API processes that share one listening socket: have them keep
    about as many keep-alive connections each.

    libuv (uvloop, uvicorn's loop) accepts every pending connection at once, so the process that woke first
    took all 16 connections of a load test, which then stayed with it (1 635 against 5 µs of CPU a request:
    one core idle). ``UV_TCP_SINGLE_ACCEPT`` makes libuv accept one at a time, which helps only when the other
    process is awake to take the next; so a process with more than one connection over the fewest answers
    its next request with ``Connection: close``, and the client's reconnection lands anew (see
    :class:`BoundedHeaders`).
    """
    os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")  # read by libuv in the forked API processes
    if hasattr(os, "fork"):
        BoundedHeaders.connections_of_processes = multiprocessing.get_context("fork").Array("i", processes, lock=False)


class OneWrite:
    """A transport that sends what one turn of the event loop writes in one write: uvicorn writes an answer's
    status line and headers, then its body, in two; a replica killed between them (nginx in front) left a
    client with the headers and no body, which nginx cannot send to the other replica any more."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        if self._pending and not self._transport.is_closing():
            self._transport.write(b"".join(self._pending))
        self._pending.clear()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class BoundedHeaders(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 431 and closing when a request's header passes
    :data:`MAX_HEADER_BYTES`, and closing after its answer a keep-alive connection of an API process that has
    more than its share (:func:`spread_connections`). Pass it as ``uvicorn.Config(http=BoundedHeaders)``.

    httptools buffers a header line whole before uvicorn sees it, so the bytes are counted as they arrive.
    tests/test_hostile.py fails if uvicorn renames the hooks this uses.
    """

    _header_bytes = 0
    _reading_header = True
    _leaving = False  # this connection closes after its current answer
    _leaving_in_process = 0  # class-wide: such connections of this process
    # Open connections of each API process (index: LitServe's LITSERVE_WORKER_ID), in memory shared by the
    # processes forked after spread_connections(); None: not shared. Each process writes only its own.
    connections_of_processes: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.transport = OneWrite(transport)  # type: ignore[assignment]  # the request cycles write through it
        self._count_connections()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._leaving:
            BoundedHeaders._leaving_in_process -= 1
        self._count_connections()

    def _count_connections(self) -> int:
        """Publish this process's connections (those not leaving) for the other API processes; 0: none shared."""
        shared = self.connections_of_processes
        if shared is None:
            return 0
        mine = len(self.connections) - BoundedHeaders._leaving_in_process
        shared[int(os.environ.get("LITSERVE_WORKER_ID", "0")) % len(shared)] = mine
        return mine

    def data_received(self, data: bytes) -> None:
        if self._reading_header:
            self._header_bytes += len(data)
        super().data_received(data)  # may complete the header (on_headers_complete below)
        if self._reading_header and self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._refuse()

    def on_message_begin(self) -> None:
        self._reading_header = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._reading_header, self._header_bytes = False, 0
        super().on_headers_complete()
        shared = self.connections_of_processes
        if (
            shared is not None
            and not self._leaving
            and self.cycle is not None
            and self._count_connections() > min(shared) + 1
        ):
            self.cycle.keep_alive = False  # uvicorn adds "connection: close" to the answer, then closes
            self._leaving = True
            BoundedHeaders._leaving_in_process += 1
            self._count_connections()

    def _refuse(self) -> None:
        body = b'{"detail": "request header of more than %d bytes; lenet serve accepts at most %d"}' % (
            self._header_bytes,
            MAX_HEADER_BYTES,
        )
        head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
        self.transport.write(head + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body)
        self.transport.close()


def uvicorn_options() -> dict[str, Any]:
    """What ``LitServer.run`` passes on to uvicorn for these limits."""
    return {"http": BoundedHeaders}
