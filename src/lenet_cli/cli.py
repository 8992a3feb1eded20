"""The ``lenet`` command: Lightning's CLI over LeNet and the MNIST datamodule."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lenet_cli import checkpoints, distributed, paths, resume
from lenet_cli.curves import TrainingCurves
from lenet_cli.data import MNISTDataModule
from lenet_cli.errors import DEBUG_VARIABLE, USER_ERRORS, LenetError, describe, escaped, print_safely
from lenet_cli.lightning_internals import subcommand_parsers
from lenet_cli.model import LeNet
from lenet_cli.preflight import check_config_sources, check_fresh_run, preflight
from lenet_cli.report import EvaluationReport
from lenet_cli.run_config import SaveRunConfig
from lenet_cli.sample_images import SampleImages
from lenet_cli.trainer import LenetTrainer
from lenet_cli.writers import PredictionWriter

TRAINER_DEFAULTS = {
    "max_epochs": 10,  # Lightning's own default (1000) is far past where LeNet stops improving
    "logger": paths.DEFAULT_LOGGER,
}


# Lightning's default progress bar redraws after every batch: ~0.17 ms a step on the 2-core CPU, a sixth
# of a CUDA-graph training step; redrawn every 10th batch, ~0.04 ms (benchmarks/progress_bar.py).
PROGRESS_BAR_REFRESH_RATE = 10

# Callbacks that act in some subcommands only. Lightning calls every hook of every callback on every
# step (~20 µs each on a 2-core CPU, docs/benchmarks.md), so elsewhere they are left out of the trainer.
SUBCOMMANDS_OF_CALLBACK = {
    SampleImages: ("test", "predict"),
    PredictionWriter: ("predict",),
    EvaluationReport: ("test",),
    TrainingCurves: ("fit",),
}


class LenetCLI(LightningCLI):
    """LightningCLI over LeNet and the MNIST datamodule, with lenet's trainer, run folders and checks."""

    def __init__(
        self,
        model_class: type[LightningModule] = LeNet,
        datamodule_class: type[LightningDataModule] = MNISTDataModule,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trainer_class", LenetTrainer)
        kwargs.setdefault("save_config_callback", SaveRunConfig)
        kwargs.setdefault("trainer_defaults", TRAINER_DEFAULTS)
        kwargs.setdefault("auto_configure_optimizers", True)
        super().__init__(model_class, datamodule_class, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # lenet's own subcommands are methods of LenetTrainer; model and datamodule come from the CLI.
        return LightningCLI.subcommands() | {"export": {"model", "datamodule"}, "serve": {"model", "datamodule"}}

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        # argparse would take --trainer.max_epoch for --trainer.max_epochs: typos must fail instead.
        kwargs.setdefault("allow_abbrev", False)
        # Parse errors raise ArgumentError for main() to print as one line, not usage text + exit.
        kwargs.setdefault("exit_on_error", False)
        return super().init_parser(**kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.in_channels", apply_on="instantiate")
        # Always present so that best.ckpt and last.ckpt sit at stable paths of every run.
        parser.add_lightning_class_args(resume.RunCheckpoint, "checkpoint")
        parser.set_defaults(paths.CHECKPOINT_DEFAULTS)
        parser.add_lightning_class_args(SampleImages, "sample_images")
        # Always present: predict writes predictions.csv and predictions.png to the run folder.
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        # The trainer loads checkpoints with torch.load(weights_only=True) too: no code runs from a file.
        # (Set here: the subcommand parsers get --weights_only after add_arguments_to_parser.)
        for name, subcommand_parser in subcommand_parsers(self).items():
            if name in LightningCLI.subcommands():  # Trainer's own methods take weights_only
                subcommand_parser.set_defaults(weights_only=True)
        self.checked_checkpoint = None
        check_config_sources(args if isinstance(args, list) else sys.argv[1:] if args is None else [])
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand is None:
            return
        config = self.config[subcommand]
        if config.get("weights_only") is False:
            raise LenetError("--weights_only false is not supported: lenet never runs code from a checkpoint")
        if "weights_only" in config:  # Lightning's subcommands; lenet's own (export, serve) load weights-only anyway
            config["weights_only"] = True
        preflight(config)
        ckpt_path = config.get("ckpt_path")
        if ckpt_path in paths.CHECKPOINT_ALIASES:
            resolved = paths.newest_checkpoint(ckpt_path, paths.config_runs_folder(config))
            print_safely(f"--ckpt_path {ckpt_path}: using {resolved}")
            config["ckpt_path"] = str(resolved)
        if config.get("ckpt_path"):
            # Fails in one line before Lightning touches it; kept for check_fits once the model exists.
            self.checked_checkpoint = checkpoints.load(config["ckpt_path"])
            if subcommand == "fit":
                defaults = subcommand_parsers(self)[subcommand].get_defaults()
                resume.refuse_changed_options(self.checked_checkpoint, config, defaults, config["ckpt_path"])

    def _parse_ckpt_path(self) -> None:
        # LightningCLI turns the checkpoint's hyperparameters into --model options: a bad one fails there
        # as an option error that does not say where the value came from.
        try:
            super()._parse_ckpt_path()
        except (ArgumentError, SystemExit) as error:
            path = escaped(self.config[self.config.subcommand].get("ckpt_path"))
            detail = " ".join(str(error).split()) if isinstance(error, ArgumentError) else "see above"
            raise LenetError(
                f"checkpoint {path}: its hyperparameters are not options of this lenet ({escaped(detail)}); "
                "use a checkpoint that lenet fit wrote"
            ) from error

    def after_instantiate_classes(self) -> None:
        check_fresh_run(self.trainer, fitting=self.subcommand == "fit")
        if self.checked_checkpoint is not None:
            config = self.config[self.subcommand]
            checkpoints.check_fits(self.checked_checkpoint, self.model, config["ckpt_path"])
            if self.subcommand == "fit":
                resume.check_resumable(self.checked_checkpoint, self.model, config, config["ckpt_path"])
            self.checked_checkpoint = None
        checkpoints.use_atomic_saves(self.trainer)
        distributed.throttle_sigterm_broadcast(self.trainer)
        subcommand = self.subcommand
        if subcommand is not None:  # with run=False the caller may fit, then test: keep them all
            self.trainer.callbacks[:] = [
                callback
                for callback in self.trainer.callbacks
                if subcommand in SUBCOMMANDS_OF_CALLBACK.get(type(callback), (subcommand,))
            ]
        if subcommand in (None, "fit"):
            self.trainer.callbacks.extend([resume.ResumedRun(), resume.StopOnSignal()])
        self._throttle_default_progress_bar()

    def _throttle_default_progress_bar(self) -> None:
        """Replace the progress bar Lightning adds by itself with one that redraws less often.

        A progress bar given in the config is kept as it is (and ``enable_progress_bar: false`` has none).
        """
        bar = self.trainer.progress_bar_callback
        config = self.config[self.subcommand] if self.subcommand else self.config
        configured = config["trainer"].get("callbacks") or []
        configured = configured if isinstance(configured, list) else [configured]
        if type(bar) is TQDMProgressBar and not any(_is_progress_bar(callback.class_path) for callback in configured):
            self.trainer.callbacks[self.trainer.callbacks.index(bar)] = TQDMProgressBar(PROGRESS_BAR_REFRESH_RATE)

    def after_fit(self) -> None:
        callback = self.trainer.checkpoint_callback
        if isinstance(callback, ModelCheckpoint) and callback.best_model_path and callback.dirpath:
            score = f"{callback.monitor}={float(callback.best_model_score or 'nan'):.4f}"
            rank_zero_info(f"Best checkpoint ({score}): {callback.best_model_path}")
            rank_zero_info(f"Last checkpoint: {Path(callback.dirpath) / 'last.ckpt'}")


def _is_progress_bar(class_path: str) -> bool:
    module, _, name = class_path.rpartition(".")
    return isinstance(cls := getattr(importlib.import_module(module), name, None), type) and issubclass(
        cls, ProgressBar
    )


def main(args: ArgsType = None) -> None:
    """``lenet``: parse ``args`` (default: the command line), run the subcommand, word user errors in one line."""
    try:
        LenetCLI(args=args)
    except SIGTERMException as stop:  # Ctrl-C or SIGTERM stopped fit; resume.StopOnSignal printed how to resume
        sys.exit(resume.exit_status(stop))
    except resume.StoppedAtOnce:  # a second Ctrl-C
        sys.exit(130)
    except RuntimeError as error:  # a dead rank of a distributed run, or a bug (which keeps its traceback)
        if os.environ.get(DEBUG_VARIABLE) or (line := distributed.peer_failure(error)) is None:
            raise
        print_safely(f"error: {escaped(line)}")
        sys.exit(2)
    except (KeyboardInterrupt, *USER_ERRORS) as error:
        if os.environ.get(DEBUG_VARIABLE):
            raise
        if isinstance(error, KeyboardInterrupt):  # outside the trainer, which handles its own
            print_safely("interrupted")
            sys.exit(130)
        words = args if isinstance(args, list) else sys.argv[1:]
        subcommand = next((word for word in words if word in LenetCLI.subcommands()), None)
        print_safely(f"error: {describe(error, subcommand)}")
        sys.exit(2)
