"""LitServe's inference worker: LeNet's forward pass over the inputs ``serving.gateway`` prepared.

The worker is a fresh (spawned) process. It imports only torch, numpy and LitServe (no Lightning:
~3 s and ~300 MB less per start), so the LitAPI holds LeNet's layers as a plain ``nn.Module``.
Everything it receives was checked by the gateway, so an exception here is a bug (a 500), never a
user's mistake.
"""

from __future__ import annotations

import base64
import signal
from typing import Any

import litserve as ls
import numpy as np
import torch
from torch import nn

from lenet_cli.serving import processes

TOP_K = 3


class DigitAPI(ls.LitAPI):
    """Probabilities, the predicted class and the top 3 for each image of a request.

    Args:
        network: LeNet's layers with the checkpoint's weights (logits for (N, C, 32, 32) inputs).
        max_batch_size: Requests LitServe gathers into one forward pass.
        batch_timeout: Seconds LitServe waits for a batch to fill.
        threads: torch intra-op threads of the worker (LeNet on a few images gains nothing from more).
    """

    def __init__(
        self, network: nn.Module, max_batch_size: int = 1, batch_timeout: float = 0.0, threads: int = 1
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/predict")
        self.network = network
        self.threads = threads

    def setup(self, device: str) -> None:
        processes.die_with_parent()
        # Ctrl-C in a terminal reaches every process of the group: the server stops this worker itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        torch.set_num_threads(self.threads)
        self.network = self.network.to(device).eval()
        with torch.inference_mode():  # the first call allocates oneDNN's buffers; not on a user's time
            self.network(torch.zeros(1, *self._input_shape(), device=device))

    def _input_shape(self) -> tuple[int, int, int]:
        first = next(module for module in self.network.modules() if isinstance(module, nn.Conv2d))
        return (first.in_channels, 32, 32)

    # LitServe reads the body by this annotation: ``dict`` makes FastAPI parse the gateway's JSON body.
    def decode_request(self, request: dict) -> dict[str, Any]:
        shape = request["shape"]
        inputs = np.frombuffer(base64.b64decode(request["inputs"]), dtype=np.float32).reshape(shape)
        return {"inputs": torch.from_numpy(inputs.copy()), "names": request["names"], "seen": request["seen"]}

    def predict(self, x: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any] | list[dict[str, Any]]:
        # Batched (max_batch_size > 1): a list of requests, each with one or more images; else one request.
        requests = x if isinstance(x, list) else [x]
        inputs = torch.cat([request["inputs"] for request in requests]).to(self.device or "cpu")
        with torch.inference_mode():
            probabilities = torch.softmax(self.network(inputs).float(), dim=1).cpu()
        top_probabilities, top_classes = probabilities.topk(min(TOP_K, probabilities.shape[1]), dim=1)
        answers, start = [], 0
        for request in requests:
            count = len(request["names"])
            answers.append(
                _answer(
                    request,
                    top_classes[start : start + count].tolist(),
                    top_probabilities[start : start + count].tolist(),
                )
            )
            start += count
        return answers if isinstance(x, list) else answers[0]

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return output


def _answer(request: dict[str, Any], classes: list[list[int]], probabilities: list[list[float]]) -> dict[str, Any]:
    """One request's answer: a prediction object for one image, ``{"predictions": [...]}`` for several."""
    predictions = []
    for index, name in enumerate(request["names"]):
        prediction: dict[str, Any] = {
            "name": name,
            "class": classes[index][0],
            "confidence": round(probabilities[index][0], 6),
            "top3": [
                {"class": label, "probability": round(probability, 6)}
                for label, probability in zip(classes[index], probabilities[index], strict=True)
            ],
        }
        if request["seen"] is not None:
            prediction["input_png"] = request["seen"][index]
        predictions.append(prediction)
    return predictions[0] if len(predictions) == 1 else {"predictions": predictions}
