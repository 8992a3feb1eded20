"""The same seed gives the same run, and the seed a run used is recorded in its config.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lenet_cli.cli.main import main
from tests.helpers import QUICK

pytestmark = pytest.mark.usefixtures("one_thread")


def short_fit(workdir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> Path:
    """Five training steps in ``workdir``: its run folder."""
    workdir.mkdir(exist_ok=True)
    monkeypatch.chdir(workdir)
    main(
        [
            "fit",
            *QUICK,
            f"--data.data_dir={data_dir}",
            "--data.val_size=1000",
            "--trainer.limit_train_batches=5",
            *extra,
        ]
    )
    return workdir / "runs" / "quick" / "version_0"


def test_same_seed_same_metrics(small_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seeds = {"first": 5, "again": 5, "other": 6}
    runs = [
        short_fit(tmp_path / name, small_mnist, monkeypatch, f"--seed_everything={seed}")
        for name, seed in seeds.items()
    ]
    first, again, other_seed = ((run / "metrics.csv").read_text() for run in runs)
    assert first == again
    assert first != other_seed  # the comparison can tell seeds apart
    assert yaml.safe_load((runs[0] / "config.yaml").read_text())["seed_everything"] == 5


def test_default_seed_is_recorded(small_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)  # set by earlier in-process runs
    run = short_fit(
        tmp_path, small_mnist, monkeypatch, "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2"
    )
    seed = yaml.safe_load((run / "config.yaml").read_text())["seed_everything"]
    assert isinstance(seed, int) and not isinstance(seed, bool)  # the number used, not `true`
