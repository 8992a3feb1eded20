"""The HTTP side of ``POST /predict``: read and check the request, find each image's digit fields, answer.

This ASGI middleware runs in LitServe's API-server processes, in front of LitServe's own ``/predict``
route. Every bad request (too large, wrong type, not an image, malformed JSON ...) is answered here with
a 4xx and ``{"detail": "<one line>"}``. A good request's images are decoded and their digit fields found
here (the reading pipeline's ``propose``: NumPy and OpenCV, no torch); then, by default, this process
classifies them (ONNX Runtime, one thread) and decides what was read, and answers.

LitServe's own route would cost each request about 1 ms of CPU more on the 2-core CPU (its queues go
through a manager process: four round trips, and a thread hop in the API process; docs/serve.md), about as
much as reading the digit itself, while LeNet gains little from batching (46 µs a field alone, 30 in a batch
of 16 requests). With ``--max_batch_size`` > 1 a good request goes on to that route instead, as a small JSON
body of the uint8 28×28 fields with their boxes, which LitServe queues for its inference worker
(``serving.worker.DigitAPI``) in batches. No bad request reaches the worker: LitServe fails a whole batch
when one request in it raises (LitServe issue #340), and any other exception there is a 500.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lenet_cli.reading.model import OnnxClassifier
from lenet_cli.reading.pipeline import Proposal
from lenet_cli.serving.limits import Decoder
from lenet_cli.serving.requests import RequestError, Upload, read_uploads
from lenet_cli.serving.worker import answer


class Gateway:
    """ASGI middleware that answers ``POST /predict`` requests (or turns them into model inputs), or refuses them.

    Args:
        app: The ASGI app behind it (LitServe's FastAPI app).
        max_request_bytes: Largest request body accepted; larger ones get a 413.
        model: The ONNX file to classify with (``None``: the bundled model), when ``answer_here``.
        answer_here: Classify and answer in this process; False: hand the fields on to LitServe's route
            (its inference worker batches them).
        api_path: The route it serves.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_request_bytes: int = 10 * 1024 * 1024,
        model: Path | None = None,
        answer_here: bool = False,
        api_path: str = "/predict",
    ) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.api_path = api_path
        self._decoder = Decoder()  # small images at once, large ones queued (serving.limits)
        # Built in each API process (Starlette builds its middleware on the first call, after the fork).
        self._classifier = OnnxClassifier(model) if answer_here else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.api_path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            with self._decoder.admit(scope):  # a large body: one at a time per process, else 503 unread
                body = await self._read_body(scope, receive)
                uploads, return_input = await read_uploads(scope, body)
                proposals = await self._decoder.decode(uploads)
        except RequestError as error:
            response = JSONResponse({"detail": error.message}, status_code=error.status, headers=error.headers)
            await response(scope, receive, send)
            return
        except _ClientGone:
            return
        if self._classifier is not None:
            await self._answer(proposals, uploads, return_input, send)
            return
        forwarded = json.dumps(self._payload(proposals, uploads, return_input), default=int).encode()  # numpy ints
        headers = [(key, value) for key, value in scope["headers"] if key not in _BODY_HEADERS]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(forwarded)).encode())]
        await self.app(dict(scope, headers=headers), _replay(forwarded, receive), send)

    async def _answer(self, proposals: list[Proposal], uploads: list[Upload], return_input: bool, send: Send) -> None:
        assert self._classifier is not None
        inputs = np.concatenate([proposal.inputs for proposal in proposals])  # uint8 (K × views, 28, 28)
        logits = self._classifier(inputs)  # (0, classes) for no field
        seen = [png_base64(proposal.fields) for proposal in proposals] if return_input else None
        names = [upload.name for upload in uploads]
        reading = answer(names, proposals, logits, self._classifier.calibration, seen)
        # As FastAPI writes a route's answer (compact UTF-8), without its encoder's walk over the values.
        body = json.dumps(reading, ensure_ascii=False, separators=(",", ":"), default=_number).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

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

    def _payload(self, proposals: list[Proposal], uploads: list[Upload], return_input: bool) -> dict[str, Any]:
        fields = np.concatenate([proposal.fields for proposal in proposals])  # uint8 (K, 28, 28), all images
        return {
            "fields": base64.b64encode(fields.tobytes()).decode("ascii"),
            "counts": [len(proposal.fields) for proposal in proposals],
            "proposals": [carried(proposal) for proposal in proposals],
            "names": [upload.name for upload in uploads],
            "seen": [png_base64(proposal.fields) for proposal in proposals] if return_input else None,
        }


def carried(proposal: Proposal) -> dict[str, Any]:
    """What the worker's ``decide`` needs of a proposal besides its fields: every member of the dataclass
    (boxes, note, and whatever the pipeline adds) but the fields (sent as bytes) and ``steps`` (pictures
    for --data.explain_dir; the row reader's row made from them, as JSON). serving.worker rebuilds the Proposal."""
    row = proposal.keep_row()
    return {
        member.name: getattr(proposal, member.name)
        for member in dataclasses.fields(proposal)
        if member.name not in ("fields", "steps", "row", "ink")
    } | {"row": row.as_json() if row is not None else None}


def png_base64(fields: np.ndarray) -> str | None:
    """An image's uint8 (K, 28, 28) digit fields side by side as a base64 PNG (white strokes on black, as the
    model sees them); None when it has none."""
    if len(fields) == 0:
        return None
    buffer = io.BytesIO()
    Image.fromarray(np.hstack(list(fields)), mode="L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _number(value: Any) -> Any:
    """A NumPy scalar as JSON's number (``json.dumps``'s ``default``)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


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
