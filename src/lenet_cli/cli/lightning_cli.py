"""The ``lenet`` command: Lightning's CLI over LeNet and the MNIST datamodule."""

from __future__ import annotations

import importlib
import shlex
import sys
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from lenet_cli._lightning import apply_checkpoint_hyperparameters, subcommand_parsers
from lenet_cli.checkpoints import load, save
from lenet_cli.cli import console, help
from lenet_cli.cli.preflight import check_config_sources, check_fresh_run, every_config_file_checked, preflight
from lenet_cli.cli.subcommands import LenetTrainer
from lenet_cli.data.mnist import MNISTDataModule
from lenet_cli.errors import LenetError, escaped
from lenet_cli.outputs.curves import TrainingCurves
from lenet_cli.outputs.predictions import PredictionWriter
from lenet_cli.outputs.report import EvaluationReport
from lenet_cli.outputs.samples import SampleImages
from lenet_cli.runs import paths, record, resume
from lenet_cli.runs.ckpt_path import resolve as resolve_ckpt_path
from lenet_cli.runs.config import SaveRunConfig
from lenet_cli.training import distributed
from lenet_cli.training.module import LeNet

TRAINER_DEFAULTS = {
    "max_epochs": 10,  # Lightning's own default (1000) is far past where LeNet stops improving
    "logger": paths.DEFAULT_LOGGER,
}


# Lightning's default progress bar redraws after every batch: ~0.17 ms a step on the 2-core CPU, a sixth
# of a CUDA-graph training step; redrawn every 10th batch, ~0.04 ms (benchmarks/profile_step.py progress-bar).
PROGRESS_BAR_REFRESH_RATE = 10

# Callbacks that act in some subcommands only. Lightning calls every hook of every callback on every
# step (~20 µs each on a 2-core CPU, docs/benchmarks.md), so elsewhere they are left out of the trainer.
SUBCOMMANDS_OF_CALLBACK = {
    SampleImages: ("test", "predict"),
    PredictionWriter: ("predict",),
    EvaluationReport: ("test",),
    TrainingCurves: ("fit",),
}


# Subcommands that run the trainer on data and so make a run folder (export and serve only load weights).
RUN_SUBCOMMANDS = ("fit", "validate", "test", "predict")


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
        # Lightning's default, True, seeds with 0 too, after warning "No seed found"; 0 says so.
        kwargs.setdefault("seed_everything_default", 0)
        self.command_words = command_words(kwargs.get("args"))
        self.help_only = False
        if kwargs.get("run", True) and self.command_words is not None:
            # Each subcommand's parser (Trainer, model, data, callbacks) takes ~70 ms to build, and
            # LightningCLI builds all of them: only the one the command names is built. A bare
            # `lenet --help` lists the subcommands from parsers without options.
            named = help.named_subcommand(self.command_words, LenetCLI.subcommands())
            if named is not None:
                self.subcommands = lambda: {named: LenetCLI.subcommands()[named]}  # type: ignore[method-assign]
            elif {"-h", "--help"} & set(self.command_words) and not {"-c", "--config"} & set(self.command_words):
                self.help_only = True
                kwargs["auto_configure_optimizers"] = False
        kwargs["parser_kwargs"] = help.parser_kwargs(kwargs.get("parser_kwargs"), self.subcommands())
        self.checked_checkpoint: dict[str, Any] | None = None
        self.checkpoint_note: str | None = None
        super().__init__(model_class, datamodule_class, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # lenet's own subcommands are methods of LenetTrainer; model and datamodule come from the CLI.
        own = {"export": {"model", "datamodule"}, "serve": {"model", "datamodule"}, "runs": {"model", "datamodule"}}
        return LightningCLI.subcommands() | own

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        # argparse would take --trainer.max_epoch for --trainer.max_epochs: typos must fail instead.
        kwargs.setdefault("allow_abbrev", False)
        # Parse errors raise ArgumentError for main() to print as one line, not usage text + exit.
        kwargs.setdefault("exit_on_error", False)
        return super().init_parser(**kwargs)

    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]
    ) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        for name, subcommand_parser in subcommand_parsers(self).items():
            help.arrange(subcommand_parser, name)

    def add_default_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        if self.help_only:
            return
        parser.add_argument(
            "--seed_everything", type=bool | int, default=self.seed_everything_default, help=help.SEED_HELP
        )

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        if not self.help_only:
            super().add_core_arguments_to_parser(parser)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        if self.help_only:
            return
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
        check_config_sources(command_words(args) or [])
        with every_config_file_checked():  # also those given to --model, --data, ... or named in a config
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
        if "ckpt_path" in config:
            runs_folder = paths.config_runs_folder(config)
            config["ckpt_path"], self.checkpoint_note = resolve_ckpt_path(subcommand, config["ckpt_path"], runs_folder)
            if self.checkpoint_note and subcommand not in RUN_SUBCOMMANDS:  # no start line of its own: say it now
                rank_zero_only(console.say)(self.checkpoint_note)
        if config.get("ckpt_path"):
            # The one read of the file: fails in one line before Lightning touches it, then serves
            # the hyperparameters (_parse_ckpt_path), check_fits and the trainer's restore.
            self.checked_checkpoint = load.load(config["ckpt_path"])
            if subcommand == "fit":
                defaults = subcommand_parsers(self)[subcommand].get_defaults()
                resume.refuse_changed_options(self.checked_checkpoint, config, defaults, config["ckpt_path"])

    def _parse_ckpt_path(self) -> None:
        # LightningCLI's own reads the file again (lightning_internals.apply_checkpoint_hyperparameters).
        # The checkpoint's hyperparameters become --model options: a bad one fails there as an option
        # error that does not say where the value came from.
        if self.checked_checkpoint is None:
            return
        # How the step runs is this command's choice, not the checkpoint's: a --model.compile or
        # --model.cuda_graph given now must not be replaced by the value the checkpoint was trained with.
        hparams = self.checked_checkpoint.get("hyper_parameters")
        if isinstance(hparams, dict):
            hparams = {key: value for key, value in hparams.items() if key not in LeNet.RUNTIME_OPTIONS}
        try:
            apply_checkpoint_hyperparameters(self, {**self.checked_checkpoint, "hyper_parameters": hparams})
        except (ArgumentError, SystemExit) as error:
            path = escaped(self.config[self.config.subcommand].get("ckpt_path"))
            detail = " ".join(str(error).split()) if isinstance(error, ArgumentError) else "see above"
            raise LenetError(
                f"checkpoint {path}: its hyperparameters are not options of this lenet ({escaped(detail)}); "
                "use a checkpoint that lenet fit wrote"
            ) from error

    def after_instantiate_classes(self) -> None:
        check_fresh_run(self.trainer, fitting=self.subcommand == "fit")
        preloaded = None
        if self.checked_checkpoint is not None:
            config = self.config[self.subcommand]
            ckpt_path = config["ckpt_path"]
            load.check_fits(self.checked_checkpoint, self.model, ckpt_path)
            if self.subcommand == "fit":
                resume.check_resumable(self.checked_checkpoint, self.model, config, ckpt_path)
            preloaded, self.checked_checkpoint = (ckpt_path, self.checked_checkpoint), None
        save.use_atomic_saves(self.trainer, preloaded)
        distributed.throttle_sigterm_broadcast(self.trainer)
        subcommand = self.subcommand
        if subcommand in RUN_SUBCOMMANDS:
            self.trainer.callbacks.append(self._run_record(subcommand))
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
        # Lightning's own is a RichProgressBar where rich is installed, else a TQDMProgressBar.
        if type(bar) not in (TQDMProgressBar, RichProgressBar) or any(
            _is_progress_bar(callback.class_path) for callback in configured
        ):
            return
        throttled = (TQDMProgressBar if type(bar) is TQDMProgressBar else RichProgressBar)(PROGRESS_BAR_REFRESH_RATE)
        self.trainer.callbacks[self.trainer.callbacks.index(bar)] = throttled

    def _run_record(self, subcommand: str) -> record.RunRecord:
        config = self.config[subcommand]
        configs = [str(path) for key in (self.config.get("config"), config.get("config")) for path in key or []]
        started = {
            "subcommand": subcommand,
            "command": shlex.join(["lenet", *self.command_words]) if self.command_words is not None else None,
            "configs": configs,
            "checkpoint": config.get("ckpt_path"),
        }
        # The folder this command will write, fixed now (the logger picks its version_N on first use);
        # a folder that already exists (--trainer.logger false, a given version) is not this run's own.
        folder = planned_run_folder(self.trainer) if rank_zero_only.rank == 0 else None
        return record.RunRecord(started, folder if folder is not None and not folder.exists() else None)

    def _announce(self) -> None:
        """lenet's start line: the run folder, the checkpoint and the device (rank 0, before any work)."""
        if rank_zero_only.rank != 0 or self.subcommand is None:
            return
        folder = planned_run_folder(self.trainer) or Path(self.trainer.default_root_dir)
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        if self.checkpoint_note:
            weights = self.checkpoint_note
        elif ckpt_path:
            weights = f"{'resumes' if self.subcommand == 'fit' else 'checkpoint'} {ckpt_path}"
        else:
            weights = "new model" if self.subcommand == "fit" else "no checkpoint: the model's initial weights"
        seed = self.config[self.subcommand].get("seed_everything")
        seeded = f"seed {seed}" if seed is not False and self.subcommand == "fit" else None
        processes = self.trainer.num_devices * self.trainer.num_nodes  # world_size is set only at launch
        device = str(self.trainer.strategy.root_device) + (f" × {processes} processes" if processes > 1 else "")
        details = "; ".join(part for part in (weights, seeded, f"on {device}") if part)
        console.say(f"lenet {self.subcommand} → {folder}; {details}")

    before_fit = before_validate = before_test = before_predict = _announce

    def after_fit(self) -> None:
        callback = self.trainer.checkpoint_callback
        if isinstance(callback, ModelCheckpoint) and callback.best_model_path and callback.dirpath:
            score = f"{callback.monitor}={float(callback.best_model_score or 'nan'):.4f}"
            rank_zero_info(f"Best checkpoint ({score}): {callback.best_model_path}")
            rank_zero_info(f"Last checkpoint: {Path(callback.dirpath) / 'last.ckpt'}")


def command_words(args: ArgsType) -> list[str] | None:
    """The words of the command line: ``args`` as a list, else ``sys.argv``'s; None for a dict or Namespace."""
    if args is None:
        return sys.argv[1:]
    return [str(word) for word in args] if isinstance(args, list) else None


def planned_run_folder(trainer: Trainer) -> Path | None:
    """The run folder of the trainer's logger (``trainer.log_dir`` without its DDP broadcast), if any."""
    logger = trainer.logger
    if logger is None:
        return None
    folder = getattr(logger, "log_dir", None) or logger.save_dir
    return Path(folder) if folder and "://" not in str(folder) else None


def _is_progress_bar(class_path: str) -> bool:
    module, _, name = class_path.rpartition(".")
    return isinstance(cls := getattr(importlib.import_module(module), name, None), type) and issubclass(
        cls, ProgressBar
    )
