"""What one request may cost ``lenet serve``: header bytes, pixels, and a place in the decoding queue.

A request body is bounded by ``--max_request_bytes``; these bound what the body's bytes would turn into:

- header bytes (request line and headers) per request: :class:`BoundedHeaders`, uvicorn's httptools
  protocol with a limit (uvicorn has none for httptools: six 400 MB header lines took 1.7 GB);
- decoded pixels per request (:data:`MAX_REQUEST_PIXELS`), read from the image headers before any
  decoding: an 11 KB PNG can claim 88 Mpx;
- concurrent decoding of large images (:class:`Decoder`): one at a time per API process, at the lowest
  CPU priority, with at most :data:`MAX_WAITING` waiting; beyond that a 503 with ``Retry-After``.

Small images (a drawn digit, the page's canvas) are decoded on the event loop and never wait behind a
large one, so good requests keep their latency while large ones are queued (docs/hostile-inputs.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lenet_cli.images.decode import BadImage, decoded_pixels
from lenet_cli.serving.requests import RequestError, Upload, decode

MAX_HEADER_BYTES = 64 * 1024  # request line + headers; nginx's default large_client_header_buffers is 32 KB
# Decoded pixels in one request: a 24 Mpx PNG passes (~0.6 s to decode on the 2-core CPU); a JPEG counts
# at the reduced scale it is decoded at, so any camera's photo passes.
MAX_REQUEST_PIXELS = 25_000_000
# Requests of at most this many decoded pixels are decoded on the event loop (the page's 280×280
# canvas: ~1 ms); a thread hand-off costs more than that. Larger ones go through the Decoder.
INLINE_PIXELS = 320 * 320
MAX_WAITING = 2  # large requests waiting per API process behind the one being decoded; more: 503
RETRY_AFTER_SECONDS = 1
LOWEST_PRIORITY = 19  # nice value of the decoding thread (Linux: per thread)


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


class Decoder:
    """Decodes one API process's requests: small ones at once, large ones one at a time in a low-priority thread.

    Args:
        max_waiting: Large requests that may wait for the thread; one more is refused with a 503.
    """

    def __init__(self, max_waiting: int = MAX_WAITING) -> None:
        self.max_waiting = max_waiting
        self._pending = 0  # large requests decoding or waiting (touched on the event loop only)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode", initializer=_lowest_priority)

    async def decode(self, uploads: list[Upload]) -> np.ndarray:
        """uint8 (N, 28, 28) digits of ``uploads``; RequestError (400, 413, 503) when refused."""
        if request_pixels(uploads) <= INLINE_PIXELS:
            return decode(uploads)
        if self._pending > self.max_waiting:
            raise RequestError(
                503,
                "the server is busy decoding large images; retry in a moment or send smaller images",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, decode, uploads)
        finally:
            self._pending -= 1


def _lowest_priority() -> None:
    """Large decodes yield the CPU to the event loop and the inference worker (Linux: nice applies per thread)."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux: the queue's limit still holds
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)


class BoundedHeaders(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 431 and closing when a request's header passes
    :data:`MAX_HEADER_BYTES`. Pass it as ``uvicorn.Config(http=BoundedHeaders)``.

    httptools buffers a header line whole before uvicorn sees it, so the bytes are counted as they arrive.
    tests/test_hostile.py fails if uvicorn renames the hooks this uses.
    """

    _header_bytes = 0
    _reading_header = True

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
