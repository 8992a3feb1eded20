"""A kill at any moment (SIGKILL: no handler runs) leaves only complete files, and ``--ckpt_path last``
continues the run to the result it would have had without the kill.

The runs train on the small IDX copy of MNIST (``small_mnist``), each in a new process: the process is
what gets killed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import jsonargparse
import pytest
import torch
import yaml

from lenet_cli.atomic import replace_atomically
from lenet_cli.checkpoints import load
from lenet_cli.cli.main import main
from lenet_cli.data import idx
from lenet_cli.data.mnist import to_model_input
from lenet_cli.training.module import LeNet
from tests.helpers import (
    EPOCHS,
    QUICK,
    STEPS_PER_EPOCH,
    assert_one_line_error,
    assert_user_error,
    child_env,
    crash_at,
    last_logged,
    lenet_command,
    lenet_subprocess,
    read_checkpoint,
    read_metrics,
    resumable_fit_args,
)

pytestmark = pytest.mark.usefixtures("one_thread")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # the children too: see the one_thread fixture


def lenet(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return lenet_subprocess(args, cwd, env=ONE_THREAD)


def check_accuracy(checkpoint: Path, data_dir: Path, at_least: float) -> None:
    """The checkpoint loads (safely) into LeNet and classifies the test images well above chance."""
    model = LeNet.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True).eval()
    images = idx.read_idx(data_dir / idx.FILES["test_images"], dims=3)
    labels = idx.read_idx(data_dir / idx.FILES["test_labels"], dims=1).long()
    with torch.no_grad():
        accuracy = (model(to_model_input(images)).argmax(dim=1) == labels).float().mean().item()
    assert accuracy >= at_least, f"{checkpoint}: test accuracy {accuracy:.3f}"


@pytest.mark.slow
@pytest.mark.processes
def test_sigkill_while_writing_last_checkpoint_then_resume(
    small_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed_at = 2 * STEPS_PER_EPOCH  # end of the second epoch, while its last.ckpt is being written
    killed = lenet(resumable_fit_args(small_mnist, crash_at("writing_last", killed_at)), tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    old_run = tmp_path / "runs" / "quick" / "version_0"
    # The kill left the previous last.ckpt complete; the half-written file is only a temporary.
    assert read_checkpoint(old_run / "checkpoints" / "last.ckpt")["global_step"] == STEPS_PER_EPOCH
    assert len(list((old_run / "checkpoints").glob(".last.ckpt.*.tmp"))) == 1

    resumed = lenet(resumable_fit_args(small_mnist, "--ckpt_path", "last"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    last = old_run / "checkpoints" / "last.ckpt"
    assert f"resuming {old_run.relative_to(tmp_path)} from {last.relative_to(tmp_path)}" in resumed.stderr
    new_run = tmp_path / "runs" / "quick" / "version_1"
    config_text = (new_run / "config.yaml").read_text()
    assert config_text.startswith("# resumed: continues runs/quick/version_0")
    assert yaml.safe_load(config_text)["ckpt_path"] == str(last.relative_to(tmp_path))
    final = read_checkpoint(new_run / "checkpoints" / "last.ckpt")
    assert final["global_step"] == EPOCHS * STEPS_PER_EPOCH and final["epoch"] == EPOCHS - 1
    # One best across the interruption: the best score is the lowest val/loss of both runs.
    val_losses = [float(row["val/loss"]) for run in (old_run, new_run) for row in read_metrics(run) if row["val/loss"]]
    best = next(state for key, state in final["callbacks"].items() if key.startswith("ModelCheckpoint"))
    assert float(best["best_model_score"]) == pytest.approx(min(val_losses))
    # The best checkpoint loads and predicts: `--ckpt_path best` in the CLI, and directly.
    monkeypatch.chdir(tmp_path)
    main(["test", *QUICK, f"--data.data_dir={small_mnist}", "--ckpt_path=best"])
    test_run = tmp_path / "runs" / "quick" / "version_2"
    assert yaml.safe_load((test_run / "config.yaml").read_text())["ckpt_path"] == best["best_model_path"]
    assert last_logged(test_run, "test/acc") >= 0.6
    check_accuracy(tmp_path / best["best_model_path"], small_mnist, at_least=0.6)


@pytest.fixture(scope="module")
def uninterrupted(small_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The final last.ckpt of the same fit without any interruption, in a process of its own."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    result = lenet(resumable_fit_args(small_mnist), workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    return read_checkpoint(workdir / "runs" / "quick" / "version_0" / "checkpoints" / "last.ckpt")


def assert_same_training_state(resumed: dict[str, Any], reference: dict[str, Any]) -> None:
    assert resumed["global_step"] == reference["global_step"] and resumed["epoch"] == reference["epoch"]
    for name, tensor in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], tensor), name
    adam, reference_adam = resumed["optimizer_states"][0]["state"], reference["optimizer_states"][0]["state"]
    for parameter, moments in reference_adam.items():
        assert all(torch.equal(adam[parameter][name], tensor) for name, tensor in moments.items()), parameter
    assert resumed["lr_schedulers"] == reference["lr_schedulers"]
    early_stopping = next(key for key in reference["callbacks"] if key.startswith("EarlyStopping"))
    assert resumed["callbacks"][early_stopping] == reference["callbacks"][early_stopping]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "step"),
    [
        ("batch", STEPS_PER_EPOCH + 7),  # in the middle of the second epoch
        ("before_last", 2 * STEPS_PER_EPOCH),  # best.ckpt of the second epoch written, last.ckpt not
        ("writing_last", STEPS_PER_EPOCH),  # half-way through the first last.ckpt...
        ("writing_last", 2 * STEPS_PER_EPOCH),  # ...and through one that replaces an older one
    ],
)
def test_sigkill_anywhere_resumes_to_the_uninterrupted_result(
    point: str, step: int, small_mnist: Path, tmp_path: Path, uninterrupted: dict[str, Any]
) -> None:
    killed = lenet(resumable_fit_args(small_mnist, crash_at(point, step)), tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    for checkpoint in (tmp_path / "runs" / "quick" / "version_0" / "checkpoints").glob("*.ckpt"):
        load.load(checkpoint)  # every file under its final name is complete
    if point == "writing_last" and step == STEPS_PER_EPOCH:
        # No last.ckpt yet (nothing to resume: a new fit starts over): `--ckpt_path last` says so in one line.
        failed = lenet(resumable_fit_args(small_mnist, "--ckpt_path", "last"), tmp_path)
        assert_user_error(failed.returncode, failed.stderr, "error: --ckpt_path last: no run")
        return
    resumed = lenet(resumable_fit_args(small_mnist, "--ckpt_path", "last"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # SIGKILL leaves only end-of-epoch checkpoints, so the resumed run replays exactly what was lost.
    assert_same_training_state(read_checkpoint(tmp_path / "runs/quick/version_1/checkpoints/last.ckpt"), uninterrupted)


@pytest.mark.slow
def test_sigkill_from_outside_at_a_random_moment(
    small_mnist: Path, tmp_path: Path, uninterrupted: dict[str, Any]
) -> None:
    process = subprocess.Popen(
        lenet_command(resumable_fit_args(small_mnist)),
        cwd=tmp_path,
        env=child_env(ONE_THREAD),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = tmp_path / "runs" / "quick" / "version_0" / "checkpoints" / "last.ckpt"
    delay = random.uniform(0, 0.05)  # the rest of the run takes longer, even on a fast machine
    try:
        while not last.exists() and process.poll() is None:
            time.sleep(0.002)
        time.sleep(delay)
        os.kill(process.pid, signal.SIGKILL)  # somewhere after the first epoch: a batch, a validation, a save
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, f"the run ended before the kill ({delay=:.3f} s)"
    resumed = lenet(resumable_fit_args(small_mnist, "--ckpt_path", "last"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_training_state(read_checkpoint(tmp_path / "runs/quick/version_1/checkpoints/last.ckpt"), uninterrupted)


def test_config_is_never_left_half_written(
    small_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failure while config.yaml is being written leaves no config.yaml rather than a truncated one."""

    def write_half_then_fail(parser: Any, namespace: Any, path: str | Path, **kwargs: Any) -> None:
        Path(path).write_text(parser.dump(namespace)[:100])
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(jsonargparse.ArgumentParser, "save", write_half_then_fail)
    monkeypatch.chdir(tmp_path)
    # Nothing half-written anywhere (no file at all); the run folder itself is gone, as the command failed
    # before it ran.
    assert_one_line_error(resumable_fit_args(small_mnist), "No space left on device", capsys)
    assert not (tmp_path / "runs" / "quick" / "version_0").exists()


def test_atomic_files_get_ordinary_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        with replace_atomically(tmp_path / "out.txt") as temporary:
            temporary.write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644
