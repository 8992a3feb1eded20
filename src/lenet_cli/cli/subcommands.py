"""Lightning's Trainer with lenet's own subcommands, ``export``, ``serve`` and ``runs``, as methods.

LightningCLI makes one subcommand of each Trainer method that ``LenetCLI.subcommands`` names, with
its arguments as options (``--ckpt_path``, ``--format``, ...), beside ``--config``, ``--model.*`` and
``--data.*``: the same conventions as ``fit``/``test``/``predict``. The work itself lives in its own
module, imported only when the subcommand runs.

The docstrings are the help texts: ``fit``/``validate``/``test``/``predict`` are Lightning's methods,
described for lenet (what ``--ckpt_path best`` means, that ``--weights_only`` stays true), and the
class docstring rewrites the ``--trainer.*`` texts whose Lightning defaults lenet changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import LightningDataModule, LightningModule, Trainer

from lenet_cli.runs.ckpt_path import help_text as ckpt_path_help
from lenet_cli.serving import cli as serve_options


def _documented(method: Any) -> Any:
    """Put the one ``--ckpt_path`` help text (``lenet_cli.runs.ckpt_path.help_text``) into the docstring."""
    method.__doc__ = method.__doc__.replace("{ckpt_path}", ckpt_path_help(method.__name__))
    return method


def _evaluation(stage: Literal["validate", "test"], summary: str) -> Any:
    """``Trainer.validate`` or ``Trainer.test`` with lenet's help text (the two differ only in these)."""

    def evaluate(
        self: Trainer,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        ckpt_path: str | Path | None = None,
        verbose: bool = True,
        datamodule: LightningDataModule | None = None,
        weights_only: bool | None = None,
    ) -> Any:
        return getattr(Trainer, stage)(self, model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    evaluate.__name__ = evaluate.__qualname__ = stage
    evaluate.__doc__ = f"""{summary}

        Args:
            model: The model to evaluate (``--model.*``).
            dataloaders: Unused: the images come from ``--data.*``.
            ckpt_path: {{ckpt_path}}
            verbose: Print the table of metrics.
            datamodule: The images (``--data.*``).
            weights_only: Always true: lenet loads only tensors and plain values from a checkpoint.
        """
    return _documented(evaluate)


class LenetTrainer(Trainer):
    """Lightning's Trainer, with lenet's defaults.

    Args:
        max_epochs: Stop training after this many epochs (lenet's default: 10; -1: no limit). An
            EarlyStopping callback in the config may stop it sooner.
        logger: Where each run's folder goes. lenet's default: a CSVLogger writing
            runs/lenet/version_N/ (configs name their own, such as runs/mnist/); false: no logger,
            and the run folder is --trainer.default_root_dir.
        enable_checkpointing: Keep true: lenet always adds its ModelCheckpoint (--checkpoint.*);
            ``--checkpoint.save_top_k 0 --checkpoint.save_last false`` keeps no checkpoint.
        default_root_dir: The run folder when --trainer.logger is false (default: the working folder).
    """

    @_documented
    def fit(
        self,
        model: LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | Path | None = None,
        weights_only: bool | None = None,
    ) -> None:
        """Train the model; its run folder keeps checkpoints/best.ckpt and last.ckpt, metrics and curves.

        Args:
            model: The model to train (``--model.*``).
            train_dataloaders: Unused: the images come from ``--data.*``.
            val_dataloaders: Unused: the images come from ``--data.*``.
            datamodule: The images (``--data.*``).
            ckpt_path: {ckpt_path}
            weights_only: Always true: lenet loads only tensors and plain values from a checkpoint.
        """
        super().fit(model, train_dataloaders, val_dataloaders, datamodule, ckpt_path, weights_only)

    validate = _evaluation(
        "validate",
        "Evaluate a checkpoint on the validation images (val/loss, val/acc).",
    )
    test = _evaluation(
        "test",
        "Evaluate a checkpoint on the test images; the report callback adds report.json and figures.",
    )

    @_documented
    def predict(
        self,
        model: LightningModule | None = None,
        dataloaders: Any = None,
        datamodule: LightningDataModule | None = None,
        return_predictions: bool | None = None,
        ckpt_path: str | Path | None = None,
        weights_only: bool | None = None,
    ) -> Any:
        """Classify images (--data.predict_path, else the test set) into predictions.csv and predictions.png.

        Args:
            model: The model to predict with (``--model.*``).
            dataloaders: Unused: the images come from ``--data.*``.
            datamodule: The images (``--data.*``).
            return_predictions: Also keep the predictions in memory (for use from Python).
            ckpt_path: {ckpt_path}
            weights_only: Always true: lenet loads only tensors and plain values from a checkpoint.
        """
        return super().predict(model, dataloaders, datamodule, return_predictions, ckpt_path, weights_only)

    def runs(
        self, model: LightningModule | None = None, datamodule: LightningDataModule | None = None, folder: str = "runs"
    ) -> None:
        """List the run folders: subcommand, when, epochs, best val/loss, test accuracy.

        ``lenet runs`` is answered before any model, data or trainer exists (``lenet_cli.cli.main``);
        this method is what LightningCLI runs when it is used from Python.

        Args:
            model: Unused.
            datamodule: Unused.
            folder: A folder of runs (runs/, runs/mnist/) or one run folder.
        """
        from lenet_cli.runs import listing  # noqa: PLC0415 - only this subcommand lists runs

        listing.print_runs([folder])

    @_documented
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
            ckpt_path: {ckpt_path}
            format: ``onnx`` (one self-contained file) or ``pt2`` (``torch.export.save``).
            output: The file to write; default ``lenet.onnx`` / ``lenet.pt2`` in the run folder
                (runs/<name>/version_N/).
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

    @_documented
    def serve(
        self,
        model: LightningModule,
        datamodule: LightningDataModule | None = None,
        ckpt_path: str | None = None,
        host: str = serve_options.HOST,
        port: int = serve_options.PORT,
        max_batch_size: int = serve_options.MAX_BATCH_SIZE,
        batch_timeout: float = serve_options.BATCH_TIMEOUT,
        max_request_bytes: int = serve_options.MAX_REQUEST_BYTES,
    ) -> None:
        """Serve readings over HTTP (LitServe, ONNX Runtime) with a draw-a-digit page.

        ``lenet serve`` with only the options below but ``ckpt_path`` (or ``--model FILE.onnx``) starts
        without torch in ~1 s; a checkpoint of your own is exported to ONNX first (~5 s).

        Args:
            model: The LeNet to serve (its weights come from ``ckpt_path``).
            datamodule: Gives ``--data.input_mode``, the 28→32 step that ``lenet predict`` applies too.
            ckpt_path: {ckpt_path}
            host: Address to listen on: ``127.0.0.1`` (this machine only), ``0.0.0.0`` or ``::`` (all).
            port: TCP port to listen on.
            max_batch_size: 1 (default): each API process classifies its own requests; more: LitServe
                batches up to this many requests into one call of its inference worker.
            batch_timeout: Seconds LitServe waits to fill a batch (what a lone request waits more).
            max_request_bytes: Largest request body accepted; larger ones get a 413.
        """
        from lenet_cli.serving import run  # noqa: PLC0415 - only this subcommand needs LitServe

        run.run(
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
