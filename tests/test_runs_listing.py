"""Run folders: run.json, no empty folders from failed commands, `lenet runs`, and `--ckpt_path best`."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from lenet_cli.cli import lightning_cli, main
from lenet_cli.cli.main import main as run_cli
from lenet_cli.errors import LenetError
from lenet_cli.runs import ckpt_path, record
from tests.helpers import CONFIGS, QUICK, assert_one_line_error

REPORT = "--trainer.callbacks+=lenet_cli.outputs.report.EvaluationReport"  # configs/mnist.yaml has it; quick.yaml not


def fake_run(folder: Path, val_losses: list[float] | None = None, record: dict | None = None) -> Path:
    """A run folder as lenet leaves it: metrics.csv with one val/loss per epoch, checkpoints/best.ckpt, run.json."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("{}\n")
    if val_losses is not None:
        with (folder / "metrics.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["epoch", "step", "train/loss", "val/loss"])
            for epoch, loss in enumerate(val_losses):
                writer.writerow([epoch, 10 * epoch, "", loss])
                writer.writerow([epoch, 10 * epoch, loss + 0.1, ""])
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "best.ckpt").write_bytes(b"not read by the choice")
    if record is not None:
        (folder / "run.json").write_text(json.dumps(record))
    return folder


def test_best_is_the_lowest_val_loss_among_the_runs_not_the_newest(tmp_path: Path) -> None:
    runs = tmp_path / "runs" / "mnist"
    fake_run(runs / "version_0", [0.5, 0.2, 0.08, 0.09])  # the 10-epoch fit of the issue, shortened
    fake_run(runs / "version_1", [0.6, 0.3, 0.25])  # a later, shorter one
    fake_run(runs / "version_2")  # a test run: no checkpoint
    best, note = ckpt_path.best_checkpoint(runs)
    assert best == runs / "version_0" / "checkpoints" / "best.ckpt"
    assert note == f"val/loss 0.0800, the lowest of 2 runs in {runs}; the newest, version_1, has 0.2500"


def test_best_ties_go_to_the_newest_and_unscored_runs_to_the_newest(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    fake_run(runs / "version_0", [0.1])
    fake_run(runs / "version_3", [0.1])
    assert ckpt_path.best_checkpoint(runs)[0] == runs / "version_3" / "checkpoints" / "best.ckpt"
    unscored = tmp_path / "unscored"
    for version in (0, 1):
        fake_run(unscored / f"version_{version}", [])
    best, note = ckpt_path.best_checkpoint(unscored)
    assert best == unscored / "version_1" / "checkpoints" / "best.ckpt" and "no val/loss recorded" in note
    with pytest.raises(LenetError, match=r"no run in .* has checkpoints/best\.ckpt"):
        ckpt_path.best_checkpoint(tmp_path / "empty")


def test_ckpt_path_best_in_a_command_states_the_run_it_picked(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    runs = Path("runs") / "quick"
    shutil.copytree(trained_run, runs / "version_0")
    newer = shutil.copytree(trained_run, runs / "version_1")  # the newer run, made worse on paper
    rows = list(csv.DictReader((newer / "metrics.csv").open()))
    with (newer / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "val/loss": float(row["val/loss"]) + 1 if row.get("val/loss") else ""} for row in rows)
    run_cli(
        [
            "test",
            *QUICK,
            "--ckpt_path",
            "best",
            REPORT,
            "--trainer.limit_test_batches=1",
            "--sample_images.num_images=0",
        ]
    )
    chosen = runs / "version_0" / "checkpoints" / "best.ckpt"
    start = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("lenet test"))
    val_loss = record.summarise(runs / "version_0").best_val_loss
    assert start == (
        f"lenet test → {runs / 'version_2'}; --ckpt_path best: using {chosen} (val/loss {val_loss:.4f}, the lowest "
        f"of 2 runs in {runs}; the newest, version_1, has {val_loss + 1:.4f}); on cpu"
    )
    assert json.loads((runs / "version_2" / "report.json").read_text())["checkpoint"] == str(chosen)
    assert json.loads((runs / "version_2" / "run.json").read_text())["checkpoint"] == str(chosen)


def test_run_json_says_what_made_each_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_cli(["fit", *QUICK, "--trainer.limit_train_batches=5", "--trainer.limit_val_batches=2"])
    fit = json.loads(Path("runs/quick/version_0/run.json").read_text())
    assert fit["subcommand"] == "fit" and fit["status"] == "finished" and fit["epochs"] == 1
    assert fit["configs"] == [str(CONFIGS / "quick.yaml")] and fit["checkpoint"] is None
    assert fit["command"].startswith(f"lenet fit --config {CONFIGS / 'quick.yaml'} ")
    assert fit["best_checkpoint"] == str(Path("runs/quick/version_0/checkpoints/best.ckpt"))
    assert fit["started"] <= fit["finished"]
    run_cli(
        [
            "test",
            *QUICK,
            "--ckpt_path",
            "last",
            REPORT,
            "--trainer.limit_test_batches=2",
            "--sample_images.num_images=0",
        ]
    )
    test = json.loads(Path("runs/quick/version_1/run.json").read_text())
    report = json.loads(Path("runs/quick/version_1/report.json").read_text())
    assert test["subcommand"] == "test" and test["checkpoint"] == str(
        Path("runs/quick/version_0/checkpoints/last.ckpt")
    )
    assert test["test_accuracy"] == pytest.approx(report["accuracy"], abs=1e-5)


@pytest.mark.parametrize(
    ("failing", "message"),
    [
        pytest.param(
            ["predict", "--data.predict_path", "unreadable"],
            "none of the 1 files of unreadable is a readable digit image",
            id="no readable image",
        ),
        pytest.param(["fit", "--data.val_size=0"], "val_size must be between 1 and", id="bad data setting"),
        pytest.param(["test", "--ckpt_path", "missing.ckpt"], "missing.ckpt does not exist", id="missing checkpoint"),
    ],
)
def test_a_command_that_fails_before_it_ran_leaves_no_run_folder(
    failing: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("unreadable").mkdir()
    Path("unreadable/x.png").write_text("not an image")
    assert_one_line_error([failing[0], *QUICK, *failing[1:]], message, capsys)  # and no file or folder added
    assert not list(Path("runs").glob("*/version_*"))


def test_a_run_folder_that_was_there_is_never_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    old = fake_run(Path("runs/quick/version_5"))
    # Refused, the folder is taken; every file of the old run as it was (the harness compares them).
    assert_one_line_error(["fit", *QUICK, "--trainer.logger.init_args.version=5"], "already holds a run", capsys)
    assert (old / "config.yaml").read_text() == "{}\n" and not (old / "run.json").exists()


def test_lenet_runs_lists_runs_without_building_lightning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)

    def no_lightning(*args: object, **kwargs: object) -> None:
        raise AssertionError("`lenet runs` built the LightningCLI")

    monkeypatch.setattr(lightning_cli.LenetCLI, "__init__", no_lightning)
    runs = Path("runs") / "mnist"
    fake_run(
        runs / "version_0",
        [0.3, 0.1],
        {
            "subcommand": "fit",
            "started": "2026-12-01T08:40:00+00:00",
            "status": "finished",
            "epochs": 2,
            "configs": ["configs/mnist.yaml"],
        },
    )
    fake_run(
        runs / "version_1",
        [0.4],
        {
            "subcommand": "fit",
            "started": "2026-12-01T09:00:00+00:00",
            "status": "stopped",
            "configs": ["configs/mnist.yaml"],
        },
    )
    old_test = fake_run(runs / "version_2")  # made before run.json: told by its report
    (old_test / "report.json").write_text(json.dumps({"accuracy": 0.9921}))
    main.main(["runs"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "subcommand", "started", "epochs", "best", "val/loss", "test", "acc", "from"]
    assert lines[1].split() == [
        str(runs / "version_0"),
        "fit",
        "2026-12-01",
        "08:40",
        "2",
        "0.1000",
        "-",
        "configs/mnist.yaml",
    ]
    assert lines[2].split()[:3] == [str(runs / "version_1"), "fit", "(stopped)"]
    assert lines[3].split()[:2] == [str(runs / "version_2"), "test"] and "99.21%" in lines[3]
    assert lines[4] == f"--ckpt_path best in {runs}: {runs / 'version_0/checkpoints/best.ckpt'} " + (
        f"(val/loss 0.1000, the lowest of 2 runs in {runs}; the newest, version_1, has 0.4000)"
    )
    assert_one_line_error(["runs", "elsewhere"], "error: no runs in elsewhere", capsys)
    with pytest.raises(SystemExit) as exit_info:
        main.main(["runs", "--help"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("usage: lenet runs")
