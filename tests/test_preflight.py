"""Every refusal comes before anything is written or deleted: no file of an existing run changes (their
sha256 sums are compared before and after: ``helpers.assert_one_line_error``) and no new file appears.

The existing run is a real one (``fit`` on the small IDX copy of MNIST, one short epoch), copied into
each test's folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lenet_cli.cli.main import main
from tests.helpers import assert_one_line_error, small_run

pytestmark = pytest.mark.usefixtures("one_thread")
RUN = "runs/quick/version_0"
BEST, LAST = f"{RUN}/checkpoints/best.ckpt", f"{RUN}/checkpoints/last.ckpt"


@pytest.fixture(scope="module")
def existing_run(small_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder holding one finished ``fit`` (1 epoch) in runs/quick/version_0."""
    workdir = tmp_path_factory.mktemp("existing")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        main(small_run("fit", small_mnist, "--trainer.max_epochs=1"))
    return workdir


def without(*keys: str) -> Callable[[Path], str]:
    """A copy of the run's last.ckpt outside any run, without ``keys`` (a weights-only save has none of these)."""

    def make(folder: Path) -> str:
        checkpoint = torch.load(folder / LAST, weights_only=True)
        for key in keys:
            checkpoint.pop(key)
        torch.save(checkpoint, folder / "other.ckpt")
        return "other.ckpt"

    return make


def broken_optimizer(folder: Path) -> str:
    checkpoint = torch.load(folder / LAST, weights_only=True)
    checkpoint["optimizer_states"][0]["state"][0]["exp_avg"] = torch.zeros(3)  # not the first weight's shape
    torch.save(checkpoint, folder / "other.ckpt")
    return "other.ckpt"


VERSION_0 = "--trainer.logger.init_args.version=0"
REFUSALS = [
    pytest.param(
        "fit", [VERSION_0], "already holds a run (config.yaml, metrics.csv, hparams.yaml)", id="fit, version 0"
    ),
    pytest.param("test", [VERSION_0, f"--ckpt_path={BEST}"], "a run folder is never reused", id="test, version 0"),
    pytest.param(
        "validate", [VERSION_0, f"--ckpt_path={BEST}"], "a run folder is never reused", id="validate, version 0"
    ),
    pytest.param(
        "predict",
        ["--trainer.logger.init_args.version=version_0", f"--ckpt_path={BEST}"],
        "a run folder is never reused",
        id="predict, version named",
    ),
    pytest.param(
        "fit",
        ["--trainer.logger=false", f"--trainer.default_root_dir={RUN}"],
        "the run folder is --trainer.default_root_dir: give each run its own",
        id="no logger, root dir of a run",
    ),
    pytest.param(
        "fit",
        [f"--checkpoint.dirpath={RUN}/checkpoints"],
        "holds checkpoints of another run (best.ckpt, last.ckpt), which this fit would overwrite",
        id="checkpoint dirpath of another run",
    ),
    pytest.param(
        "fit",
        ["--trainer.max_epochs=1", f"--ckpt_path={LAST}"],
        "has already trained 1 epochs, and --trainer.max_epochs is 1: nothing is left to resume",
        id="resume a finished run",
    ),
    pytest.param(
        "fit",
        ["--trainer.max_epochs=2", f"--ckpt_path={LAST}", "--model.lr=0.1"],
        "--model.lr 0.1 differs from the 0.002 that checkpoint",
        id="resume with another lr",
    ),
    pytest.param(
        "fit",
        ["--trainer.max_epochs=2", without("optimizer_states", "lr_schedulers", "callbacks")],
        "checkpoint other.ckpt holds weights only (no optimizer or loop state), so fit cannot resume it",
        id="resume a weights-only checkpoint",
    ),
    pytest.param(
        "fit",
        ["--trainer.max_epochs=2", broken_optimizer],
        "checkpoint other.ckpt: its optimizer state does not fit this model's 10 parameters",
        id="resume a broken optimizer state",
    ),
]


@pytest.mark.parametrize(("subcommand", "args", "fragment"), REFUSALS)
def test_refusal_changes_no_file(
    subcommand: str,
    args: list[str | Callable[[Path], str]],
    fragment: str,
    existing_run: Path,
    small_mnist: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shutil.copytree(existing_run, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    options = [arg if isinstance(arg, str) else f"--ckpt_path={arg(tmp_path)}" for arg in args]
    assert_one_line_error(small_run(subcommand, small_mnist, *options), fragment, capsys)
