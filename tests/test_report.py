"""Results to look at: the evaluation report of ``lenet test`` and the training curves of ``lenet fit``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from PIL import Image

from lenet_cli.cli.main import main
from lenet_cli.data import idx
from lenet_cli.data.mnist import to_model_input
from lenet_cli.outputs import plots
from lenet_cli.outputs.curves import read_history
from lenet_cli.outputs.report import summarise, to_json
from lenet_cli.training.module import LeNet
from tests.helpers import CONFIGS, CPU, read_metrics

# The callbacks come from configs/mnist.yaml; quick.yaml stacked on it keeps the runs short.
CONFIG_ARGS = ["--config", str(CONFIGS / "mnist.yaml"), "--config", str(CONFIGS / "quick.yaml")]


@contextmanager
def console_messages() -> Iterator[list[str]]:
    """What Lightning's ``rank_zero_info`` prints meanwhile (its logger may not reach pytest's capture)."""
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("lightning.pytorch")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def tested_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """``lenet test`` of the shared short training, with the report on: its run folder and console."""
    workdir = tmp_path_factory.mktemp("report")
    checkpoint = trained_run / "checkpoints" / "best.ckpt"
    with pytest.MonkeyPatch.context() as patch, console_messages() as messages:
        patch.chdir(workdir)
        main(["test", *CONFIG_ARGS, *CPU, "--ckpt_path", str(checkpoint), "--sample_images.num_images=0"])
    return workdir / "runs" / "quick" / "version_0", messages


@pytest.fixture(scope="module")
def report(tested_run: tuple[Path, list[str]]) -> dict:
    return json.loads((tested_run[0] / "report.json").read_text())


def independent_predictions(checkpoint: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Test labels and the checkpoint's predicted classes, computed here without Lightning's loops."""
    model = LeNet.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    arrays = idx.load(None)
    images = to_model_input(arrays["test_images"])
    with torch.no_grad():
        predictions = torch.cat([model(chunk).argmax(dim=1) for chunk in images.split(1000)])
    return arrays["test_labels"].long(), predictions


def test_report_files_written_and_announced(tested_run: tuple[Path, list[str]]) -> None:
    run, messages = tested_run
    for name, min_size in (("confusion_matrix.png", (400, 400)), ("misclassified.png", (600, 600))):
        with Image.open(run / name) as image:
            image.verify()  # a complete, valid PNG
        with Image.open(run / name) as image:
            assert image.format == "PNG"
            assert min_size[0] <= image.width <= 3000 and min_size[1] <= image.height <= 3000, image.size
    assert not list(run.glob(".*.tmp"))  # atomic writes left no temporary files
    announced = [m for m in messages if m.startswith("Evaluation report in")]
    assert announced and announced[0].startswith(
        f"Evaluation report in {Path('runs', 'quick', 'version_0')}: report.json"
    )


def test_report_accuracy_is_the_logged_test_accuracy(tested_run: tuple[Path, list[str]], report: dict) -> None:
    logged = [float(row["test/acc"]) for row in read_metrics(tested_run[0]) if row.get("test/acc")]
    assert len(logged) == 1
    assert report["accuracy"] == pytest.approx(logged[0], abs=1e-6)  # float32 in the CSV, rounded in the report
    assert report["accuracy"] == report["correct"] / report["num_images"]
    assert report["accuracy"] >= 0.95  # the shared training learnt; chance is 0.10


def test_confusion_matrix_counts_every_test_image_once(trained_run: Path, report: dict) -> None:
    confusion = torch.tensor(report["confusion_matrix"])
    assert confusion.shape == (10, 10)
    assert int(confusion.sum()) == report["num_images"] == 10_000
    labels, predictions = independent_predictions(trained_run / "checkpoints" / "best.ckpt")
    correct = int((predictions == labels).sum())
    assert int(confusion.trace()) == report["correct"] == correct
    assert confusion.sum(dim=1).tolist() == torch.bincount(labels, minlength=10).tolist()
    wrong = (predictions != labels).nonzero().flatten().tolist()
    assert report["misclassified_indices"] == wrong


def test_per_class_metrics_follow_the_confusion_matrix(report: dict) -> None:
    confusion = torch.tensor(report["confusion_matrix"], dtype=torch.float64)
    diagonal = confusion.diagonal()
    for c, name in enumerate(report["classes"]):
        metrics = report["per_class"][name]
        assert metrics["support"] == int(confusion[c].sum())
        assert metrics["recall"] == pytest.approx(float(diagonal[c] / confusion[c].sum()), abs=1e-6)
        assert metrics["precision"] == pytest.approx(float(diagonal[c] / confusion[:, c].sum()), abs=1e-6)
        assert metrics["accuracy"] == metrics["recall"]
    pairs = report["most_confused"]
    counts = [pair["count"] for pair in pairs]
    assert counts == sorted(counts, reverse=True) and len(pairs) == 10
    for pair in pairs:
        assert pair["true"] != pair["predicted"]
        assert report["confusion_matrix"][int(pair["true"])][int(pair["predicted"])] == pair["count"]
    off_diagonal = confusion - torch.diag(diagonal)
    assert counts[0] == int(off_diagonal.max())


def test_summarise_small_example() -> None:
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predictions = torch.tensor([0, 1, 1, 1, 1, 2])
    summary = summarise(labels, predictions, num_classes=3, top_confused=5)
    assert summary["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 2, 1]]
    assert summary["correct"] == 3 and summary["accuracy"] == 0.5
    assert summary["most_confused"] == [
        {"true": "2", "predicted": "1", "count": 2},
        {"true": "0", "predicted": "1", "count": 1},
    ]
    assert summary["per_class"]["1"] == {"precision": 0.25, "recall": 1.0, "f1": 0.4, "accuracy": 1.0, "support": 1}
    assert summary["per_class"]["2"]["recall"] == pytest.approx(1 / 3, abs=1e-6)
    assert json.loads(to_json(summary)) == summary


def test_fit_draws_training_curves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    plotted: list[dict] = []
    draw = plots.save_training_curves

    def record_and_draw(history: dict, *args: object, **kwargs: object) -> Path:
        plotted.append(history)
        return draw(history, *args, **kwargs)

    monkeypatch.setattr(plots, "save_training_curves", record_and_draw)
    with console_messages() as messages:
        short = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=5", "--trainer.limit_val_batches=2"]
        main(["fit", *CONFIG_ARGS, *CPU, *short])
    run = Path("runs") / "quick" / "version_0"
    # At on_fit_end, both epochs of all four curves were already in metrics.csv and were plotted.
    assert [{name: sorted(values) for name, values in history.items()} for history in plotted] == [
        {"train/loss": [0, 1], "val/loss": [0, 1], "train/acc": [0, 1], "val/acc": [0, 1]}
    ]
    assert plotted[0] == read_history(run / "metrics.csv")
    with Image.open(run / "curves.png") as image:
        assert image.format == "PNG" and image.width >= 600 and image.height >= 250
    assert f"Training curves: {run / 'curves.png'}" in messages
