"""The ``lenet`` command: Lightning's CLI over LeNet and the MNIST datamodule."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from lenet_cli import checkpoints
from lenet_cli.data import MNISTDataModule
from lenet_cli.errors import LenetError
from lenet_cli.model import LeNet
from lenet_cli.sample_images import SampleImages

DEBUG_VARIABLE = "LENET_DEBUG"  # set to 1 for full tracebacks instead of one-line errors

# Runs land in runs/<name>/version_N/ (config.yaml, metrics.csv, checkpoints/best.ckpt, last.ckpt).
TRAINER_DEFAULTS = {
    "max_epochs": 10,  # Lightning's own default (1000) is far past where LeNet stops improving
    "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "runs", "name": "lenet"}},
}


class LenetCLI(LightningCLI):
    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        # argparse would take --trainer.max_epoch for --trainer.max_epochs: typos must fail instead.
        kwargs.setdefault("allow_abbrev", False)
        return super().init_parser(**kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.in_channels", apply_on="instantiate")
        # Always present so that best.ckpt and last.ckpt sit at stable paths of every run.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/loss",
                "checkpoint.mode": "min",
                "checkpoint.filename": "best",
                "checkpoint.save_last": True,
                "checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(SampleImages, "sample_images")

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand is None:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        if ckpt_path in checkpoints.ALIASES:
            resolved = checkpoints.resolve(ckpt_path, runs_dir(config))
            print(f"--ckpt_path {ckpt_path}: using {resolved}", file=sys.stderr)
            config["ckpt_path"] = str(resolved)
        if config.get("ckpt_path"):
            checkpoints.load(config["ckpt_path"])  # fails in one line before Lightning touches it

    def after_fit(self) -> None:
        callback = self.trainer.checkpoint_callback
        if callback is not None and callback.best_model_path:
            rank_zero_info(f"Best checkpoint ({callback.monitor}={float(callback.best_model_score):.4f}): {callback.best_model_path}")
            rank_zero_info(f"Last checkpoint: {Path(callback.dirpath) / 'last.ckpt'}")


def runs_dir(config) -> Path:
    """The folder holding the version_N runs of this config's logger."""
    trainer = config.get("trainer") or {}
    logger = trainer.get("logger")
    if isinstance(logger, list):
        logger = logger[0] if logger else None
    init_args = getattr(logger, "init_args", None) or {}
    save_dir = init_args.get("save_dir") or trainer.get("default_root_dir") or "."
    name = init_args.get("name", "lightning_logs")
    return Path(save_dir) / name if name else Path(save_dir)


def main(args: ArgsType = None) -> None:
    try:
        LenetCLI(LeNet, MNISTDataModule, args=args, trainer_defaults=TRAINER_DEFAULTS, auto_configure_optimizers=True)
    except LenetError as error:
        if os.environ.get(DEBUG_VARIABLE):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
