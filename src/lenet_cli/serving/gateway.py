"""The HTTP side of ``POST /predict``: read and check the request, decode its images, hand LitServe tensors.

This ASGI middleware runs in LitServe's API-server processes, in front of LitServe's own ``/predict``
route. Every bad request (too large, wrong type, not an image, malformed JSON ...) is answered here with
a 4xx and ``{"detail": "<one line>"}``, so it never reaches the inference worker: there LitServe fails a
whole batch when one request in it raises (LitServe issue #340), and any other exception is a 500.
A good request goes on as a small JSON body of normalised model inputs, which LitServe's route parses
and queues for the worker (``serving.worker.DigitAPI``).
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lenet_cli.data.mnist import to_model_input
from lenet_cli.serving.limits import Decoder
from lenet_cli.serving.requests import RequestError, Upload, read_uploads


class Gateway:
    """ASGI middleware that turns ``POST /predict`` requests into model inputs, or refuses them.

    Args:
        app: The ASGI app behind it (LitServe's FastAPI app).
        max_request_bytes: Largest request body accepted; larger ones get a 413.
        input_mode: How digits become LeNet's 32×32 input, as ``--data.input_mode`` (``resize``/``pad``).
        api_path: The route it serves.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_request_bytes: int = 10 * 1024 * 1024,
        input_mode: Literal["resize", "pad"] = "resize",
        api_path: str = "/predict",
    ) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.input_mode = input_mode
        self.api_path = api_path
        self._decoder = Decoder()  # small images at once, large ones queued (serving.limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.api_path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            with self._decoder.admit(scope):  # a large body: one at a time per process, else 503 unread
                body = await self._read_body(scope, receive)
                uploads, return_input = await read_uploads(scope, body)
                digits = await self._decoder.decode(uploads)
        except RequestError as error:
            response = JSONResponse({"detail": error.message}, status_code=error.status, headers=error.headers)
            await response(scope, receive, send)
            return
        except _ClientGone:
            return
        forwarded = json.dumps(self._payload(digits, uploads, return_input)).encode()
        headers = [(key, value) for key, value in scope["headers"] if key not in _BODY_HEADERS]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(forwarded)).encode())]
        await self.app(dict(scope, headers=headers), _replay(forwarded, receive), send)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_request_bytes
        declared = next((value for key, value in scope["headers"] if key == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            # Refused before reading: a client that sent "Expect: 100-continue" (curl, for large bodies)
            # never sends the body; uvicorn reads and discards what others send.
            raise RequestError(413, _too_large(int(declared), limit))
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestError(413, _too_large(size, limit, at_least=message.get("more_body", False)))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _payload(self, digits: np.ndarray, uploads: list[Upload], return_input: bool) -> dict[str, Any]:
        inputs = to_model_input(torch.from_numpy(digits), self.input_mode).numpy()  # (N, 1, 32, 32) float32
        return {
            "inputs": base64.b64encode(inputs.tobytes()).decode("ascii"),
            "shape": list(inputs.shape),
            "names": [upload.name for upload in uploads],
            "seen": [png_base64(digit) for digit in digits] if return_input else None,
        }


def png_base64(digit: np.ndarray) -> str:
    """A uint8 (28, 28) digit as a base64 PNG (white strokes on black, as the model sees it)."""
    buffer = io.BytesIO()
    Image.fromarray(digit, mode="L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class _ClientGone(Exception):
    """The client disconnected before its request body arrived: there is no one to answer."""


_BODY_HEADERS = {b"content-type", b"content-length", b"transfer-encoding", b"expect"}


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then waits on the client's connection (for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _too_large(size: int, limit: int, at_least: bool = False) -> str:
    more = "more than " if at_least else ""
    return (
        f"request body of {more}{size} bytes is over the limit of {limit} bytes "
        "(lenet serve --max_request_bytes); send a smaller image"
    )
