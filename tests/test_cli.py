"""The ``lenet`` command end to end, in-process: subcommands and their options, configs, run folders,
the callbacks each subcommand gets. Bad input is ``test_errors.py``'s."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import ProgressBar

from lenet_cli.cli.lightning_cli import PROGRESS_BAR_REFRESH_RATE, SUBCOMMANDS_OF_CALLBACK, TRAINER_DEFAULTS, LenetCLI
from lenet_cli.cli.main import main
from lenet_cli.data.mnist import MNISTDataModule
from lenet_cli.training.module import LeNet
from tests.helpers import CONFIGS, CPU, QUICK, assert_unchanged, folder_state, last_logged, read_checkpoint

CONFIG_FILES = sorted(CONFIGS.glob("*.yaml"))


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    # Lightning's four, LenetTrainer's export and serve, and lenet's own listing of runs.
    assert "{fit,validate,test,predict,export,serve,runs}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("subcommand", "options"),
    [
        pytest.param("fit", ["--model.lr", "--data.batch_size", "--data.data_dir", "--ckpt_path"], id="fit"),
        pytest.param("export", ["--ckpt_path", "--format {onnx,pt2}", "--output", "--with_preprocessing"], id="export"),
        pytest.param("serve", ["--ckpt_path", "--host", "--port", "--max_batch_size", "--batch_timeout"], id="serve"),
    ],
)
def test_subcommand_help_lists_its_options(
    subcommand: str, options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([subcommand, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert [option for option in options if option not in out] == []


def test_print_config_applies_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS / "mnist.yaml"), "--trainer.max_epochs=3", "--print_config"])
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["max_epochs"] == 3
    assert config["model"]["lr"] == 0.005
    assert config["data"]["batch_size"] == 512


def test_stacked_configs_later_wins(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(
            ["fit", "--config", str(CONFIGS / "mnist.yaml"), "--config", str(CONFIGS / "quick.yaml"), "--print_config"]
        )
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["max_epochs"] == 1
    assert config["trainer"]["logger"]["init_args"]["name"] == "quick"


def test_fit_without_config_uses_code_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["data"]["data_dir"] is None  # the bundled MNIST
    assert config["trainer"]["accelerator"] == "auto"
    assert config["trainer"]["max_epochs"] == 10


@pytest.mark.parametrize("config", CONFIG_FILES, ids=[c.name for c in CONFIG_FILES])
def test_every_config_instantiates(config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # GPU/DDP configs are checked for what they parse to, then built on the CPU of this machine.
    cli = LenetCLI(
        LeNet,
        MNISTDataModule,
        run=False,
        args=["--config", str(config), "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto"],
        trainer_defaults=TRAINER_DEFAULTS,
    )
    assert isinstance(cli.model, LeNet) and isinstance(cli.datamodule, MNISTDataModule)
    assert cli.trainer.checkpoint_callback is not None
    assert cli.model.hparams.num_classes == 10  # linked from the datamodule


def test_short_training_learns(trained_run: Path) -> None:
    # 10 classes: chance is 10 %; 300 steps must reach 95 % only by learning.
    assert last_logged(trained_run, "val/acc") >= 0.95
    assert (trained_run / "checkpoints" / "best.ckpt").is_file()
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    saved = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert saved["trainer"]["limit_train_batches"] == 300
    assert saved["seed_everything"] == 7


def test_runs_do_not_overwrite_each_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    short = ["fit", *QUICK, "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    main(short)
    first = tmp_path / "runs" / "quick" / "version_0"
    written = folder_state(first)
    main(short)
    runs = sorted(p.name for p in (tmp_path / "runs" / "quick").iterdir())
    assert runs == ["version_0", "version_1"]
    assert_unchanged(first, written)  # every file of the first run as it was
    assert {"config.yaml", "metrics.csv", "checkpoints/last.ckpt"} <= set(
        folder_state(tmp_path / "runs/quick/version_1")
    )


def test_test_takes_the_model_from_the_checkpoint_and_writes_sample_images(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    checkpoint = str(trained_run / "checkpoints" / "best.ckpt")
    main(["test", *CPU, "--ckpt_path", checkpoint, "--model.channels_last", "false"])
    run = tmp_path / "runs" / "lenet" / "version_0"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["lr"] == 0.002  # quick.yaml's, read back from the checkpoint (the default is 2e-4)
    # How the step runs is this command's: the checkpoint's channels_last (None) does not replace it.
    assert saved["model"]["channels_last"] is False
    assert len(sorted(run.glob("*_predicted_*.png"))) == 10
    assert last_logged(run, "test/acc") >= 0.95


@pytest.mark.parametrize(
    ("subcommand", "present", "absent"),
    [
        ("fit", {"TrainingCurves", "StopOnSignal"}, {"PredictionWriter", "SampleImages", "EvaluationReport"}),
        ("test", {"EvaluationReport", "SampleImages"}, {"PredictionWriter", "TrainingCurves", "StopOnSignal"}),
        ("predict", {"PredictionWriter", "SampleImages"}, {"EvaluationReport", "TrainingCurves"}),
    ],
)
def test_callbacks_only_where_they_act(
    subcommand: str, present: set[str], absent: set[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    captured = {}

    class Capture(LenetCLI):  # stop before running the subcommand
        def _run_subcommand(self, subcommand: str) -> None:
            captured["names"] = {type(c).__name__ for c in self.trainer.callbacks}

    Capture(
        LeNet,
        MNISTDataModule,
        args=[subcommand, "--config", str(CONFIGS / "mnist.yaml"), *CPU],
        trainer_defaults=TRAINER_DEFAULTS,
    )
    assert present <= captured["names"] and not absent & captured["names"]


def test_without_a_subcommand_every_callback_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With run=False the caller may fit, then test: the trainer keeps the callbacks of every subcommand.
    monkeypatch.chdir(tmp_path)
    cli = LenetCLI(
        LeNet,
        MNISTDataModule,
        run=False,
        trainer_defaults=TRAINER_DEFAULTS,
        args=["--config", str(CONFIGS / "mnist.yaml"), *CPU],
    )
    assert set(SUBCOMMANDS_OF_CALLBACK) <= {type(callback) for callback in cli.trainer.callbacks}


def test_optimizer_and_scheduler_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            *QUICK,
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1",
            "--optimizer=SGD",
            "--optimizer.lr=0.05",
            "--lr_scheduler=StepLR",
            "--lr_scheduler.step_size=1",
        ]
    )
    checkpoint = read_checkpoint(tmp_path / "runs/quick/version_0/checkpoints/last.ckpt")
    group = checkpoint["optimizer_states"][0]["param_groups"][0]
    assert "momentum" in group and group["initial_lr"] == 0.05  # SGD, not the built-in Adam
    assert checkpoint["lr_schedulers"][0]["step_size"] == 1


@pytest.mark.parametrize(
    ("extra", "refresh_rate"),
    [
        ([], PROGRESS_BAR_REFRESH_RATE),  # the bar Lightning adds itself: redrawn less often
        (["--trainer.callbacks+=lightning.pytorch.callbacks.TQDMProgressBar", "--trainer.callbacks.refresh_rate=1"], 1),
        (["--trainer.enable_progress_bar=false"], None),
    ],
)
def test_default_progress_bar_redraws_every_few_batches(extra: list[str], refresh_rate: int | None) -> None:
    cli = LenetCLI(
        LeNet,
        MNISTDataModule,
        run=False,
        trainer_defaults=TRAINER_DEFAULTS,
        args=["--config", str(CONFIGS / "mnist.yaml"), *CPU[:2], *extra],
    )
    bars = [callback for callback in cli.trainer.callbacks if isinstance(callback, ProgressBar)]
    assert [bar.refresh_rate for bar in bars] == ([refresh_rate] if refresh_rate else [])
