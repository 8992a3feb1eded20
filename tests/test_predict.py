"""``lenet predict``: the best checkpoint in a new process, the user's own images, what it writes.

Bad images and paths are rows of ``test_errors.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lenet_cli.cli.main import main
from lenet_cli.data import idx
from lenet_cli.data.mnist import to_model_input
from lenet_cli.training.module import LeNet
from tests.helpers import (
    CPU,
    QUICK,
    last_logged,
    lenet_subprocess,
    make_user_images,
    read_predictions,
    truncated_png,
)


def accuracy_on_mnist(checkpoint: Path, indices: list[int]) -> float:
    """The checkpoint's accuracy on these MNIST test digits as MNIST gives them."""
    arrays = idx.load(None, allow_download=False, splits=("test",))
    model = LeNet.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    with torch.no_grad():
        predicted = model(to_model_input(arrays["test_images"][indices])).argmax(dim=1)
    return (predicted == arrays["test_labels"][indices].long()).float().mean().item()


def user_image_accuracy(run: Path, chosen: list[int], labels: torch.Tensor, folder: Path) -> float:
    rows = read_predictions(run)
    assert [Path(row["source"]).name for row in rows] == sorted(p.name for p in folder.iterdir())
    assert [int(row["index"]) for row in rows] == list(range(len(chosen)))
    assert all(row["predicted"] or row["note"] for row in rows)  # a text read, or why there is none
    return float(np.mean([row["predicted"] == str(label) for row, label in zip(rows, labels.tolist(), strict=True)]))


@pytest.mark.slow
@pytest.mark.processes
def test_predict_best_in_new_process_matches_test(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The folder where `lenet fit --config configs/quick.yaml` ran, copied so that this test's runs
    # do not land in the shared fixture's.
    shutil.copytree(trained_run.parents[2] / "runs", tmp_path / "runs")
    result = lenet_subprocess(["predict", *QUICK, "--ckpt_path", "best"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    best = Path("runs") / "quick" / "version_0" / "checkpoints" / "best.ckpt"
    assert f"--ckpt_path best: using {best}" in result.stderr
    predict_run = tmp_path / "runs" / "quick" / "version_1"
    assert "Predictions of 10000 inputs" in result.stderr and str(predict_run.relative_to(tmp_path)) in result.stderr

    rows = read_predictions(predict_run)
    assert len(rows) == 10_000
    assert [int(row["index"]) for row in rows] == list(range(10_000))
    assert [row["source"] for row in rows[:3]] == ["0", "1", "2"]  # the test-set index
    first = rows[0]
    assert first["true_label"] == "7" and first["predicted"] in "0123456789"
    probabilities = [float(first[name]) for name in ("confidence", "top2_probability", "top3_probability")]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
    assert len({first["predicted"], first["top2"], first["top3"]}) == 3
    correct = sum(row["predicted"] == row["true_label"] for row in rows)
    assert (predict_run / "predictions.png").stat().st_size > 10_000
    assert len(list(predict_run.glob("*_predicted_*.png"))) == 10  # the tutorial's files stay

    monkeypatch.chdir(tmp_path)
    main(["test", *QUICK, "--ckpt_path", "best"])
    test_accuracy = last_logged(tmp_path / "runs" / "quick" / "version_2", "test/acc")
    assert correct == round(test_accuracy * 10_000)  # the same images, the same predictions
    assert correct >= 9_400  # and a model that learnt something


def test_predict_on_user_style_images(trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "my digits"
    chosen, labels = make_user_images(folder, 1000)
    monkeypatch.chdir(tmp_path)
    checkpoint = trained_run / "checkpoints" / "best.ckpt"
    main(["predict", *CPU, "--ckpt_path", str(checkpoint), "--data.predict_path", str(folder)])
    run = tmp_path / "runs" / "lenet" / "version_0"
    accuracy = user_image_accuracy(run, chosen, labels, folder)
    # The bar is relative to the model: redrawn as a user would and made MNIST-like again, digits
    # must be read nearly as well as straight from MNIST. Measured with this 300-step model: 96.0 %
    # on these images vs 95.9 % from MNIST (a full epoch: 98.1 % vs 98.5 %, next test). 1.5
    # points is ~3.5 standard deviations of that difference on 1000 images, and 94 % lies 3 standard
    # errors below the 96 % measured.
    assert accuracy >= accuracy_on_mnist(checkpoint, chosen) - 0.015
    assert accuracy >= 0.94
    assert (run / "predictions.png").is_file()
    assert len(list(run.glob("*_predicted_*.png"))) == 10


@pytest.mark.parametrize("model", ["bundled", pytest.param("one epoch", marks=pytest.mark.slow)])
def test_well_trained_model_reads_user_images(model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's bar: a well-trained model reads ≥ 97 % of user-style images.

    ``bundled``: the model shipped with lenet (``--ckpt_path pretrained``, 99.47 % on MNIST's test set):
    99.3 % of 1 000 of these images (2026-12-06; 2 000 took ~6 s of the default suite's 3 minutes), 97 %
    ~4 standard errors below. ``one epoch`` (slow: its training was ~30 % of the default suite's CPU): a
    model that ``lenet fit`` trains for one epoch, 98.1-98.45 % of 2 000 images (98.5 % of the same digits
    from MNIST; 97.9 % validation accuracy); 97 % is 3.5 standard errors below.
    """
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "digits"
    chosen, labels = make_user_images(folder, 1000 if model == "bundled" else 2000, seed=1)
    if model == "bundled":
        main(["predict", *CPU, "--ckpt_path", "pretrained", "--data.predict_path", str(folder)])
        run = tmp_path / "runs" / "lenet" / "version_0"
    else:  # one full epoch at lr 2e-3: ~98 % validation accuracy
        main(["fit", *QUICK, "--trainer.limit_train_batches=null", "--seed_everything=7"])
        main(["predict", *QUICK, "--ckpt_path", "best", "--data.predict_path", str(folder)])
        run = tmp_path / "runs" / "quick" / "version_1"
    accuracy = user_image_accuracy(run, chosen, labels, folder)
    assert accuracy >= 0.97


def test_mixed_folder_predicts_good_files_and_lists_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mixed"
    make_user_images(folder, 3)
    (folder / "notes.png").write_text("shopping list")
    truncated_png(folder / "broken.png", np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    monkeypatch.chdir(tmp_path)
    main(["predict", *CPU, "--data.predict_path", str(folder)])  # no SystemExit: status 0
    out, err = capsys.readouterr()
    assert "skipped 2 of 5 files" in err and "broken.png: corrupt" in err and "notes.png: not an image" in err
    rows = read_predictions(tmp_path / "runs" / "lenet" / "version_0")
    assert [Path(row["source"]).name for row in rows] == ["digit0000.png", "digit0001.jpg", "digit0002.png"]
    # A few files: each one's answer on stdout too, as in predictions.csv.
    shown = [f"{row['source']}: {row['predicted']} (confidence {float(row['confidence']):.2f})" for row in rows]
    assert out.splitlines() == shown
