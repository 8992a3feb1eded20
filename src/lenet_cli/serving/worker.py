"""LitServe's inference worker: the reader's classifier (ONNX Runtime) and ``decide`` over the digit fields
that ``serving.gateway`` found, the same reading as ``lenet read`` and ``lenet predict``; and :func:`answer`,
the JSON answer the gateway gives when it classifies by itself (``--max_batch_size 1``, the default: then
LitServe's route, and this worker, see no request).

The worker is a fresh (spawned) process. It imports NumPy, ONNX Runtime and LitServe only (no torch, no
Lightning: it starts in ~0.5 s and runs from the reader-only install). Everything it receives was checked by
the gateway, so an exception here is a bug (a 500), never a user's mistake.
"""

from __future__ import annotations

import base64
import signal
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np

from lenet_cli.reading.model import OnnxClassifier
from lenet_cli.reading.pipeline import Calibration, Proposal, decide
from lenet_cli.reading.reader import as_json
from lenet_cli.reading.rows import Row
from lenet_cli.serving import processes

FIELD = 28


def _tuples(value: Any) -> Any:
    """JSON's lists back into the tuples the pipeline uses: a list of numbers (a box, a cut) becomes a tuple."""
    if isinstance(value, list):
        if value and all(isinstance(item, int) for item in value):
            return tuple(value)
        return [_tuples(item) for item in value]
    return value


class DigitAPI(ls.LitAPI):
    """Each image's text, confidence and digits (with boxes), or "no digit" and why.

    Args:
        model: An ONNX file from ``lenet export`` (``None``: the bundled model).
        max_batch_size: Requests LitServe gathers into one classifier call.
        batch_timeout: Seconds LitServe waits for a batch to fill.
        threads: ONNX Runtime's intra-op threads (LeNet on a few fields gains nothing from more).
    """

    def __init__(self, model: Path | None, *, max_batch_size: int, batch_timeout: float, threads: int = 1) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/predict")
        self.model, self.threads = model, threads

    def setup(self, device: str) -> None:
        processes.die_with_parent()
        # Ctrl-C in a terminal reaches every process of the group: the server stops this worker itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.classifier = OnnxClassifier(self.model, threads=self.threads)
        self.classifier(np.zeros((1, FIELD, FIELD), np.uint8))  # the first run allocates; not on a user's time

    # LitServe reads the body by this annotation: ``dict`` makes FastAPI parse the gateway's JSON body.
    def decode_request(self, request: dict) -> dict[str, Any]:
        fields = np.frombuffer(base64.b64decode(request["fields"]), dtype=np.uint8).reshape(-1, FIELD, FIELD)
        return dict(request, fields=fields)

    def predict(self, x: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any] | list[dict[str, Any]]:
        # Batched (max_batch_size > 1): a list of requests, each with one or more images; else one request.
        requests = x if isinstance(x, list) else [x]
        proposals = [self._proposals(request) for request in requests]
        # The fields come as cut and their views (Proposal.inputs) are made again here (~20 µs a field):
        # sending the gateway's would triple the request's bytes.
        logits = self.classifier(np.concatenate([proposal.inputs for each in proposals for proposal in each]))
        answers, start = [], 0
        for request, each in zip(requests, proposals, strict=True):
            count = sum(len(proposal.inputs) for proposal in each)
            logits_here, start = logits[start : start + count], start + count
            answers.append(answer(request["names"], each, logits_here, self.classifier.calibration, request["seen"]))
        return answers if isinstance(x, list) else answers[0]

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return output

    def _proposals(self, request: dict[str, Any]) -> list[Proposal]:
        proposals, start = [], 0
        for count, members in zip(request["counts"], request["proposals"], strict=True):
            fields = request["fields"][start : start + count]
            row = Row.from_json(members.pop("row", None))
            proposals.append(
                Proposal(fields=fields, row=row, **{name: _tuples(value) for name, value in members.items()})
            )
            start += count
        return proposals


def answer(
    names: list[str],
    proposals: list[Proposal],
    logits: np.ndarray,
    calibration: Calibration,
    seen: list[str | None] | None,
) -> dict[str, Any]:
    """One request's answer: a reading for one image, ``{"predictions": [...]}`` for several. ``logits``: of
    every proposal's inputs in order; ``seen``: each image's fields as a base64 PNG, when asked for."""
    predictions, start = [], 0
    for index, (name, proposal) in enumerate(zip(names, proposals, strict=True)):
        count = len(proposal.inputs)
        reading = decide(proposal, logits[start : start + count], calibration)
        start += count
        prediction = {"name": name, **as_json(reading)}
        if seen is not None:
            prediction["input_png"] = seen[index]
        predictions.append(prediction)
    return predictions[0] if len(predictions) == 1 else {"predictions": predictions}
