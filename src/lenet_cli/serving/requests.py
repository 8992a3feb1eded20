"""What a ``POST /predict`` may carry, read into digit images, or refused with a 4xx and a one-line reason.

Three ways to send images, all answered alike:

- ``multipart/form-data`` with one or more file fields named ``image`` (a browser form, ``curl -F``);
- a raw body whose ``Content-Type`` is an image type (``image/png``, ``image/jpeg``, ...) or
  ``application/octet-stream``;
- JSON ``{"image": "<base64>"}`` or ``{"images": ["<base64>", ...]}`` (a ``data:`` URL works too).

``?return_input=true`` (or ``"return_input": true`` in the JSON) asks for the 28×28 the model saw.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import Receive, Scope

from lenet_cli.images.decode import BadImage, read_grayscale
from lenet_cli.reading.pipeline import Proposal, propose

MAX_IMAGES = 64  # images in one request: a tiny PNG is ~100 bytes, so the byte limit alone would allow 100 000
ACCEPTED = (
    "send a multipart form with a file field 'image', a raw image body (Content-Type: image/png, image/jpeg, ...) "
    'or JSON {"image": "<base64>"}'
)
TRUE = ("1", "true", "yes", "on")


class RequestError(Exception):
    """A request that cannot be answered: its HTTP status and a one-line message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


@dataclass
class Upload:
    name: str  # how messages and answers name the image: its file name, or "image" / "image 2"
    data: bytes


def media_type(scope: Scope) -> str:
    """The request's ``Content-Type`` without parameters, lower case ("" when there is none)."""
    for key, value in scope["headers"]:
        if key == b"content-type":
            return value.decode("latin-1").split(";")[0].strip().lower()
    return ""


def wants_input(scope: Scope) -> bool:
    """Whether the query string asks for the 28×28 the model saw (``?return_input=true``)."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return any(value.lower() in TRUE for value in query.get("return_input", []))


async def read_uploads(scope: Scope, body: bytes) -> tuple[list[Upload], bool]:
    """The images in ``body`` and whether the 28×28 inputs are wanted back; ``RequestError`` when none can be read."""
    if not body:
        raise RequestError(400, f"empty request: {ACCEPTED}")
    kind = media_type(scope)
    return_input = wants_input(scope)
    if kind == "multipart/form-data":
        uploads = await _multipart(scope, body)
    elif kind == "application/json" or kind.endswith("+json"):
        uploads, asked = _json(body)
        return_input = return_input or asked
    elif kind.startswith("image/") or kind == "application/octet-stream":
        uploads = [Upload("image", body)]
    else:
        raise RequestError(415, f"unsupported Content-Type {kind or '(none)'!r}: {ACCEPTED}")
    if len(uploads) > MAX_IMAGES:
        raise RequestError(413, f"{len(uploads)} images in one request; at most {MAX_IMAGES}")
    return uploads, return_input


def decode(uploads: list[Upload]) -> list[Proposal]:
    """Each image's digit fields, found as ``lenet read`` and ``lenet predict`` find them (the reading
    pipeline's ``propose``); 400 for the first image that cannot be decoded. No digit is no error: its
    proposal has no fields and a note, answered as ``"text": ""``."""
    try:
        return [propose(read_grayscale(io.BytesIO(upload.data), upload.name), upload.name) for upload in uploads]
    except BadImage as error:
        raise RequestError(400, str(error)) from error


async def _multipart(scope: Scope, body: bytes) -> list[Upload]:
    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    receive: Receive = replay
    try:
        form = await Request(scope, receive).form(max_files=MAX_IMAGES + 1, max_fields=MAX_IMAGES + 16)
    except MultiPartException as error:
        raise RequestError(400, f"malformed multipart body: {error.message}") from error
    except HTTPException as error:  # Starlette's wrapping of MultiPartException inside an app
        raise RequestError(400, f"malformed multipart body: {error.detail}") from error
    fields = form.getlist("image")
    if not fields:
        raise RequestError(
            400, f"the multipart form has no field 'image' (it has: {', '.join(form.keys()) or 'none'}): {ACCEPTED}"
        )
    uploads = []
    for number, field in enumerate(fields, start=1):
        if isinstance(field, str):
            raise RequestError(400, "the form field 'image' must be a file upload (curl -F image=@digit.png), not text")
        default = "image" if len(fields) == 1 else f"image {number}"
        uploads.append(Upload(field.filename or default, await field.read()))
    await form.close()
    return uploads


def _json(body: bytes) -> tuple[list[Upload], bool]:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(400, f"malformed JSON: {error}") from error
    except RecursionError as error:  # [[[[...: json's C parser stops at Python's recursion limit
        raise RequestError(400, 'JSON nested too deeply: the request is {"image": "<base64>"}') from error
    if not isinstance(document, dict) or not ({"image", "images"} & document.keys()):
        raise RequestError(400, 'the JSON must be an object with "image": "<base64>" or "images": ["<base64>", ...]')
    if "image" in document:
        encoded, several = [document["image"]], False
    else:
        encoded, several = document["images"], True
        if not isinstance(encoded, list) or not encoded:
            raise RequestError(400, '"images" must be a non-empty list of base64 strings')
    if len(encoded) > MAX_IMAGES:
        raise RequestError(413, f"{len(encoded)} images in one request; at most {MAX_IMAGES}")
    uploads = []
    for number, text in enumerate(encoded, start=1):
        name = f"image {number}" if several else "image"
        if not isinstance(text, str):
            raise RequestError(400, f"{name}: must be a base64 string, not {type(text).__name__}")
        uploads.append(Upload(name, _base64(text, name)))
    return uploads, document.get("return_input") is True


def _base64(text: str, name: str) -> bytes:
    if text.startswith("data:"):  # a data URL, as a canvas's toDataURL() gives
        text = text.partition(",")[2]
    try:
        data = base64.b64decode("".join(text.split()), validate=True)  # line breaks, as base64(1) writes them
    except (binascii.Error, ValueError) as error:
        raise RequestError(400, f"{name}: not valid base64 ({error})") from error
    if not data:
        raise RequestError(400, f"{name}: empty image")
    return data
