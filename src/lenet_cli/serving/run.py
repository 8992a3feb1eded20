"""``lenet serve`` through the LightningCLI: a checkpoint (``--ckpt_path``, ``--config``, ``--data.*``) served
on the same ONNX Runtime reader as ``lenet read``.

The bundled checkpoint is served from its ONNX file beside it; any other is exported first (``lenet
export --with_preprocessing``'s graph, into a temporary file, ~5 s), so that the worker, the gateway and
the page never need torch. ``lenet serve`` with only its own options (or ``--model FILE.onnx``) starts
without the LightningCLI at all: ``serving.cli``.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer

from lenet_cli import export
from lenet_cli.checkpoints import load, pretrained
from lenet_cli.errors import LenetError
from lenet_cli.serving import cli


def run(
    trainer: Trainer,
    model: LightningModule,
    datamodule: LightningDataModule | None,
    ckpt_path: str | None,
    **options: Any,
) -> None:
    """Serve ``model`` with the weights of ``ckpt_path`` until Ctrl-C or SIGTERM.

    ``options`` are :func:`lenet_cli.serving.server.serve`'s: ``host``, ``port``, ``max_batch_size``,
    ``batch_timeout``, ``max_request_bytes``. Their defaults are ``serving.cli``'s.
    """
    if not ckpt_path:  # `--ckpt_path untrained`: no checkpoint is the bundled model (runs/ckpt_path.py)
        raise LenetError("lenet serve needs weights: --ckpt_path best, last, pretrained or a checkpoint file")
    if load.sha256(ckpt_path) == pretrained.checksums().get(pretrained.FILE):  # the bundled model: its ONNX file
        cli.check(None, **options)
        _serve(None, options)
        return
    export.require_onnx_tools()
    with tempfile.TemporaryDirectory(prefix="lenet-serve-") as folder:
        onnx = Path(folder) / "served.onnx"
        _export(trainer, model, datamodule, ckpt_path, onnx)
        cli.check(onnx, **options)
        _serve(onnx, options)


def _export(
    trainer: Trainer, model: LightningModule, datamodule: LightningDataModule | None, ckpt_path: str, onnx: Path
) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # export's "wrote ..." line is not the server's news
        export.run(
            trainer, model, datamodule, ckpt_path=ckpt_path, format="onnx", output=str(onnx), with_preprocessing=True
        )


def _serve(model: Path | None, options: dict[str, Any]) -> None:
    from lenet_cli.serving import server  # noqa: PLC0415 - LitServe is imported only once it is known to be there

    server.serve(model, **options)
