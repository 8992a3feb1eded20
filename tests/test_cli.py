"""The ``lenet`` command end to end, in-process (and in a new process where that is the point)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import ProgressBar

from lenet_cli.cli import PROGRESS_BAR_REFRESH_RATE, TRAINER_DEFAULTS, LenetCLI
from lenet_cli.data import MNISTDataModule
from lenet_cli.model import LeNet
from tests.conftest import CONFIGS, CPU, run_cli

CONFIG_FILES = sorted(CONFIGS.glob("*.yaml"))


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for subcommand in ("fit", "validate", "test", "predict"):
        assert subcommand in out


def test_fit_help_shows_model_and_data_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_cli(["fit", "--help"])
    out = capsys.readouterr().out
    assert "--model.lr" in out and "--data.batch_size" in out and "--data.data_dir" in out


def test_print_config_applies_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--config", str(CONFIGS / "mnist.yaml"), "--trainer.max_epochs=3", "--print_config"])
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["max_epochs"] == 3
    assert config["model"]["lr"] == 0.005
    assert config["data"]["batch_size"] == 512


def test_stacked_configs_later_wins(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_cli(["fit", "--config", str(CONFIGS / "mnist.yaml"), "--config", str(CONFIGS / "quick.yaml"), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["max_epochs"] == 1
    assert config["trainer"]["logger"]["init_args"]["name"] == "quick"


def test_unknown_option_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--trainer.max_epoch=3"])
    assert exit_info.value.code != 0
    assert "max_epoch" in capsys.readouterr().err


def test_yaml_typo_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("model:\n  lrr: 0.1\n")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--config", str(config)])
    assert exit_info.value.code != 0
    assert "lrr" in capsys.readouterr().err


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


def test_fit_without_config_uses_code_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_cli(["fit", "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["data"]["data_dir"] is None  # the bundled MNIST
    assert config["trainer"]["accelerator"] == "auto"
    assert config["trainer"]["max_epochs"] == 10


def read_metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_short_training_learns(trained_run: Path) -> None:
    rows = [row for row in read_metrics(trained_run) if row.get("val/acc")]
    # 10 classes: chance is 10 %; 300 steps must reach 95 % only by learning.
    assert float(rows[-1]["val/acc"]) >= 0.95
    assert (trained_run / "checkpoints" / "best.ckpt").is_file()
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    saved = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert saved["trainer"]["limit_train_batches"] == 300
    assert saved["seed_everything"] == 7


def test_runs_do_not_overwrite_each_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        run_cli(["fit", "--config", str(CONFIGS / "quick.yaml"), *CPU, "--trainer.limit_train_batches=2",
                 "--trainer.limit_val_batches=1"])
    runs = sorted(p.name for p in (tmp_path / "runs" / "quick").iterdir())
    assert runs == ["version_0", "version_1"]
    for run in runs:
        assert (tmp_path / "runs" / "quick" / run / "config.yaml").is_file()


def test_test_writes_tutorial_sample_images(trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_cli(["test", *CPU, "--ckpt_path", str(trained_run / "checkpoints" / "best.ckpt")])
    run = tmp_path / "runs" / "lenet" / "version_0"
    samples = sorted(run.glob("*_predicted_*.png"))
    assert len(samples) == 10
    accuracy = float([r for r in read_metrics(run) if r.get("test/acc")][-1]["test/acc"])
    assert accuracy >= 0.95


def test_predict_in_new_process_loads_hyperparameters(trained_run: Path, tmp_path: Path) -> None:
    checkpoint = trained_run / "checkpoints" / "best.ckpt"
    result = subprocess.run(
        [sys.executable, "-m", "lenet_cli", "predict", "--ckpt_path", str(checkpoint)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "runs" / "lenet" / "version_0"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["lr"] == 0.002  # quick.yaml's, read back from the checkpoint
    assert len(list(run.glob("*_predicted_*.png"))) == 10


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

    Capture(LeNet, MNISTDataModule, args=[subcommand, "--config", str(CONFIGS / "mnist.yaml"), *CPU],
            trainer_defaults=TRAINER_DEFAULTS)
    assert present <= captured["names"] and not absent & captured["names"]


def test_optimizer_and_scheduler_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.chdir(tmp_path)
    run_cli(["fit", "--config", str(CONFIGS / "quick.yaml"), *CPU, "--trainer.limit_train_batches=2",
             "--trainer.limit_val_batches=1", "--optimizer=SGD", "--optimizer.lr=0.05",
             "--lr_scheduler=StepLR", "--lr_scheduler.step_size=1"])
    checkpoint = torch.load(tmp_path / "runs/quick/version_0/checkpoints/last.ckpt", weights_only=True)
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
    cli = LenetCLI(LeNet, MNISTDataModule, run=False, trainer_defaults=TRAINER_DEFAULTS,
                   args=["--config", str(CONFIGS / "mnist.yaml"), *CPU[:2], *extra])
    bars = [callback for callback in cli.trainer.callbacks if isinstance(callback, ProgressBar)]
    assert [bar.refresh_rate for bar in bars] == ([refresh_rate] if refresh_rate else [])
