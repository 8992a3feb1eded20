"""``lenet serve``: predictions over HTTP (LitServe) and a draw-a-digit page, from a trained checkpoint.

Checks what the user gave (one line for each mistake), loads the checkpoint's weights into the model
that LightningCLI built from ``--model.*``/``--data.*``, and hands its layers to ``serving.server``.
LitServe is an optional extra: ``pip install 'lenet-cli[serve]'``.
"""

from __future__ import annotations

import copy
import importlib.util
import socket
from typing import Any, Literal

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch import nn

from lenet_cli.checkpoints import load
from lenet_cli.errors import LenetError

HOSTS = ("127.0.0.1", "0.0.0.0", "::")  # the addresses LitServe binds
INSTALL = (
    "lenet serve needs LitServe, an optional extra: pip install 'lenet-cli[serve]' "
    "(in a checkout: pip install '.[serve]')"
)


def run(
    trainer: Trainer,
    model: LightningModule,
    datamodule: LightningDataModule | None,
    ckpt_path: str | None,
    **options: Any,
) -> None:
    """Serve ``model`` with the weights of ``ckpt_path`` until Ctrl-C or SIGTERM.

    ``options`` are :func:`lenet_cli.serving.server.serve`'s: ``host``, ``port``, ``max_batch_size``,
    ``batch_timeout``, ``max_request_bytes``. Their defaults are ``LenetTrainer.serve``'s, the
    subcommand's, and only there.
    """
    for module in ("litserve", "python_multipart"):
        if importlib.util.find_spec(module) is None:
            raise LenetError(INSTALL)
    check_options(**options)
    if not ckpt_path:
        raise LenetError(
            "lenet serve needs --ckpt_path (best, last, pretrained or a checkpoint file): "
            "without one the network's weights are random"
        )
    checkpoint = load.load(ckpt_path)
    load.check_fits(checkpoint, model, ckpt_path)
    model.load_state_dict(checkpoint["state_dict"])
    check_port_free(options["host"], options["port"])
    # --data.input_mode: the 28→32 step of `lenet predict`, which the checkpoint was trained with
    mode = datamodule.hparams.get("input_mode", "resize") if datamodule is not None else "resize"
    if mode not in ("resize", "pad"):
        raise LenetError(f"--data.input_mode {mode}: lenet serve knows resize and pad")
    input_mode: Literal["resize", "pad"] = "pad" if mode == "pad" else "resize"

    from lenet_cli.serving import server  # noqa: PLC0415 - LitServe is imported only once it is known to be there

    server.serve(network(model), input_mode=input_mode, **options)


def network(model: LightningModule) -> nn.Module:
    """The LightningModule's plain network (``LeNet5``), for a worker without Lightning."""
    network = getattr(model, "network", None)
    if not isinstance(network, nn.Module):
        raise LenetError(f"lenet serve serves LeNet models; {type(model).__name__} has no network")
    return copy.deepcopy(network).cpu().eval()


def check_options(host: str, port: int, max_batch_size: int, batch_timeout: float, max_request_bytes: int) -> None:
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
