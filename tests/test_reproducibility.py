"""The same seed gives the same run, and the seed a run used is recorded in its config.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lenet_cli.cli.main import main
from tests.helpers import small_run

pytestmark = pytest.mark.usefixtures("one_thread")


def short_fit(workdir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> Path:
    """Five training steps in ``workdir``: its run folder."""
    workdir.mkdir(exist_ok=True)
    monkeypatch.chdir(workdir)
    main(small_run("fit", data_dir, *extra, steps=5, val_batches=None))
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


def test_default_seed_is_0_recorded_and_used(
    small_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lightning's own default (`true`) would seed from $PL_GLOBAL_SEED, which an earlier run sets: lenet's is 0.
    monkeypatch.setenv("PL_GLOBAL_SEED", "5")
    short = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2"]
    default = short_fit(tmp_path / "default", small_mnist, monkeypatch, *short)
    seed = yaml.safe_load((default / "config.yaml").read_text())["seed_everything"]
    assert type(seed) is int and seed == 0  # the number used, not `true` (nor `false`, which == 0)
    zero = short_fit(tmp_path / "zero", small_mnist, monkeypatch, *short, "--seed_everything=0")
    five = short_fit(tmp_path / "five", small_mnist, monkeypatch, *short, "--seed_everything=5")
    assert (default / "metrics.csv").read_text() == (zero / "metrics.csv").read_text()
    assert (default / "metrics.csv").read_text() != (five / "metrics.csv").read_text()
