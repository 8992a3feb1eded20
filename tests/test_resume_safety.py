"""Resuming trusts nothing from the checkpoint it continues, and every epoch leaves a ``last.ckpt``.

In this process, on the small IDX copy of MNIST: a few steps an epoch are enough.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from lenet_cli.cli.main import main
from tests.helpers import read_checkpoint, read_metrics, small_run

pytestmark = pytest.mark.usefixtures("one_thread")


def short_fit(data_dir: Path, *extra: str) -> list[str]:
    """``fit`` of 2 steps an epoch, validated on one batch."""
    return small_run("fit", data_dir, "--seed_everything=1", *extra)


def checkpoint_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    return next(state for key, state in checkpoint["callbacks"].items() if key.startswith("ModelCheckpoint"))


def test_hostile_paths_in_a_checkpoint_delete_nothing_on_resume(
    small_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    main(short_fit(small_mnist, "--trainer.max_epochs=1"))
    # Files outside any run, named through the folder the resumed run will write: a textual check
    # "is it inside the checkpoint folder?" says yes to both.
    (tmp_path / "precious.txt").write_text("keep me")
    (tmp_path / "precious_folder").mkdir()
    (tmp_path / "precious_folder" / "inside.txt").write_text("keep me too")
    new_folder = "runs/quick/version_1/checkpoints"
    precious_file, precious_folder = (
        f"{new_folder}/../../../../precious.txt",
        f"{new_folder}/../../../../precious_folder",
    )
    checkpoint = read_checkpoint(tmp_path / "runs/quick/version_0/checkpoints/last.ckpt")
    state = checkpoint_state(checkpoint)
    state.update(
        dirpath=new_folder,  # as Lightning would write it there: its own check for a moved folder passes
        last_model_path=precious_file,  # "the previous last.ckpt", removed after the next one is written
        best_model_path=precious_folder,
        kth_best_model_path=precious_folder,  # "the worst of the top k", removed when a better one comes
        best_k_models={precious_folder: torch.tensor(1e9)},  # any epoch beats it
        kth_value=torch.tensor(1e9),
    )
    (tmp_path / "downloads").mkdir()
    torch.save(checkpoint, tmp_path / "downloads" / "hostile.ckpt")
    capsys.readouterr()

    main(short_fit(small_mnist, "--trainer.max_epochs=3", "--ckpt_path=downloads/hostile.ckpt"))

    assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert (tmp_path / "precious_folder" / "inside.txt").read_text() == "keep me too"
    err = capsys.readouterr().err
    assert (
        "warning: downloads/hostile.ckpt: ignoring the file names in its checkpoint state that are not files beside it"
        in err
    )
    assert precious_file in err and precious_folder in err
    # The resumed run trained on, and its own checkpoints are where they belong.
    new_run = tmp_path / new_folder
    final = read_checkpoint(new_run / "last.ckpt")
    assert final["epoch"] == 2
    assert checkpoint_state(final)["best_model_path"] == f"{new_folder}/best.ckpt"
    assert (new_run / "best.ckpt").is_file()
    assert sorted(p.name for p in (tmp_path / "runs/quick/version_0/checkpoints").iterdir()) == [
        "best.ckpt",
        "last.ckpt",
    ]


def test_last_checkpoint_is_written_after_every_epoch(
    small_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With lr 0 no epoch after the first improves val/loss: best.ckpt stays at epoch 0, last.ckpt moves on."""
    monkeypatch.chdir(tmp_path)
    main(short_fit(small_mnist, "--trainer.max_epochs=3", "--model.lr=0"))
    folder = tmp_path / "runs" / "quick" / "version_0" / "checkpoints"
    assert read_checkpoint(folder / "best.ckpt")["epoch"] == 0
    last = read_checkpoint(folder / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (2, 6)
    assert checkpoint_state(last)["last_model_path"] == str(folder.relative_to(tmp_path) / "last.ckpt")
    # It resumes like any other: the next epoch, validated once; a finished run is refused.
    main(short_fit(small_mnist, "--trainer.max_epochs=4", "--model.lr=0", "--ckpt_path=last"))
    resumed = tmp_path / "runs" / "quick" / "version_1"
    final = read_checkpoint(resumed / "checkpoints" / "last.ckpt")
    assert (final["epoch"], final["global_step"]) == (3, 8)
    assert [row["epoch"] for row in read_metrics(resumed) if row["val/loss"]] == ["3"]
