"""Lightning's Trainer with lenet's own subcommands, ``export`` and ``serve``, as methods.

LightningCLI makes one subcommand of each Trainer method that ``LenetCLI.subcommands`` names, with
its arguments as options (``--ckpt_path``, ``--format``, ...), beside ``--config``, ``--model.*`` and
``--data.*``: the same conventions as ``fit``/``test``/``predict``. The work itself lives in its own
module, imported only when the subcommand runs.
"""

from __future__ import annotations

from typing import Literal

from lightning.pytorch import LightningDataModule, LightningModule, Trainer


class LenetTrainer(Trainer):
    def export(
        self,
        model: LightningModule,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | None = None,
        format: Literal["onnx", "pt2"] = "onnx",
        output: str | None = None,
        with_preprocessing: bool = False,
    ) -> None:
        """Write the model as an ONNX or torch.export (pt2) file for other runtimes.

        Args:
            model: The LeNet to export (its weights come from ``ckpt_path``).
            datamodule: Its ``input_mode`` is the preprocessing recorded in the file (and included with
                ``with_preprocessing``).
            ckpt_path: ``best``, ``last``, ``pretrained`` or a checkpoint file.
            format: ``onnx`` (one self-contained file) or ``pt2`` (``torch.export.save``).
            output: The file to write; default ``lenet.onnx`` / ``lenet.pt2`` in the working folder.
            with_preprocessing: Export a model that takes uint8 (N, 28, 28) digits and resizes and
                normalises them itself.
        """
        from lenet_cli import export  # noqa: PLC0415 - only this subcommand needs the exporters

        export.run(
            self,
            model,
            datamodule,
            ckpt_path=ckpt_path,
            format=format,
            output=output,
            with_preprocessing=with_preprocessing,
        )

    def serve(
        self,
        model: LightningModule,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | None = None,
        host: str = "127.0.0.1",
        port: int = 8000,
        max_batch_size: int = 8,
        batch_timeout: float = 0.002,
        max_request_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        """Serve predictions over HTTP (LitServe) with a draw-a-digit page.

        Args:
            model: The LeNet to serve (its weights come from ``ckpt_path``).
            datamodule: Gives ``--data.input_mode``, the 28→32 step that ``lenet predict`` applies too.
            ckpt_path: ``best``, ``last``, ``pretrained`` or a checkpoint file.
            host: Address to listen on: ``127.0.0.1`` (this machine only), ``0.0.0.0`` or ``::`` (all).
            port: TCP port to listen on.
            max_batch_size: Requests LitServe batches into one forward pass (1: no batching, which
                costs ~30 % of the throughput on a 2-core CPU: docs/serve.md).
            batch_timeout: Seconds LitServe waits to fill a batch.
            max_request_bytes: Largest request body accepted; larger ones get a 413.
        """
        from lenet_cli import serve  # noqa: PLC0415 - only this subcommand needs LitServe

        serve.run(
            self,
            model,
            datamodule,
            ckpt_path=ckpt_path,
            host=host,
            port=port,
            max_batch_size=max_batch_size,
            batch_timeout=batch_timeout,
            max_request_bytes=max_request_bytes,
        )
