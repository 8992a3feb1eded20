"""Lightning's own DDP on the CPU (gloo, 2 processes): shards, exact metrics, merged predictions.

Subprocesses, because DDP's launcher starts the other rank by re-running the command line.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers import CONFIGS, last_logged, lenet_subprocess, read_predictions

# Two gloo processes train on the CPU (~45 s): not in the default suite; .ci/run runs them with -m ddp.
pytestmark = [pytest.mark.slow, pytest.mark.ddp]

# CI runs these on the CPU (gloo); LENET_TEST_ACCELERATOR=gpu runs the same checks on 2 GPUs (NCCL).
ACCELERATOR = os.environ.get("LENET_TEST_ACCELERATOR", "cpu")
TWO = [f"--trainer.accelerator={ACCELERATOR}", "--trainer.devices=2", "--trainer.enable_progress_bar=false"]
DDP = [*TWO, "--trainer.strategy=ddp"]
SINGLE = [f"--trainer.accelerator={ACCELERATOR}", "--trainer.devices=1", "--trainer.enable_progress_bar=false"]
QUICK = ["--config", str(CONFIGS / "quick.yaml")]


def lenet(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lenet ARGS`` in a new process, checked to have succeeded on every rank."""
    result = lenet_subprocess(args, cwd, env={"OMP_NUM_THREADS": "1"})  # two ranks on a 2-core machine
    assert result.returncode == 0, result.stderr[-3000:]
    # Only rank 0's exit status reaches us; a rank aborted at exit (an undestroyed gloo group) shows here.
    assert "terminate called" not in result.stderr, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("ddp")
    lenet(["fit", *QUICK, *DDP, "--trainer.limit_train_batches=100", "--seed_everything=3"], workdir)
    best = workdir / "runs" / "quick" / "version_0" / "checkpoints" / "best.ckpt"
    for strategy in (DDP, SINGLE):  # version_1: test under DDP, version_2: test on one process
        lenet(["test", *QUICK, *strategy, "--ckpt_path", str(best)], workdir)
    for strategy in (DDP, SINGLE):  # version_3, version_4: predict
        lenet(["predict", *QUICK, *strategy, "--ckpt_path", str(best)], workdir)
    return workdir / "runs" / "quick"


def test_ddp_fit_trains_on_shards(ddp_runs: Path) -> None:
    # 100 steps a rank of 64 images each: the global batch is 128, so it must have learned.
    assert last_logged(ddp_runs / "version_0", "val/acc") >= 0.9
    assert (ddp_runs / "version_0" / "checkpoints" / "best.ckpt").is_file()


def test_ddp_test_accuracy_equals_single_process(ddp_runs: Path) -> None:
    ddp, single = ddp_runs / "version_1", ddp_runs / "version_2"
    # Each of the 10 000 images counted exactly once.
    assert last_logged(ddp, "test/acc") == pytest.approx(last_logged(single, "test/acc"), abs=1e-7)
    assert last_logged(ddp, "test/loss") == pytest.approx(last_logged(single, "test/loss"), rel=1e-5)


def test_ddp_predictions_merged_in_input_order(ddp_runs: Path) -> None:
    ddp, single = read_predictions(ddp_runs / "version_3"), read_predictions(ddp_runs / "version_4")
    assert [int(row["index"]) for row in ddp] == list(range(10_000))
    assert [row["predicted"] for row in ddp] == [row["predicted"] for row in single]
    correct = sum(row["predicted"] == row["true_label"] for row in ddp)
    assert correct / 10_000 == pytest.approx(last_logged(ddp_runs / "version_2", "test/acc"), abs=1e-7)


def test_ddp_config_trains_with_its_strategy_settings(tmp_path: Path) -> None:
    # configs/ddp.yaml's DDPStrategy with gradient_as_bucket_view and static_graph, on 2 processes.
    short = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=20", "--trainer.limit_val_batches=2"]
    lenet(["fit", "--config", str(CONFIGS / "ddp.yaml"), *TWO, *short, "--seed_everything=1"], tmp_path)
    run = tmp_path / "runs" / "ddp" / "version_0"
    saved = yaml.safe_load((run / "config.yaml").read_text())["trainer"]["strategy"]
    assert saved["class_path"] == "lightning.pytorch.strategies.DDPStrategy"
    settings = saved["init_args"]  # jsonargparse resolves dict_kwargs against DDP's own signature
    assert settings["gradient_as_bucket_view"] is True and settings["static_graph"] is True
    assert last_logged(run, "val/acc") > 0.5  # 2 epochs × 20 steps × 2 ranks × 512 images
    assert (run / "checkpoints" / "best.ckpt").is_file()


@pytest.mark.skipif(ACCELERATOR != "gpu", reason="CUDA graphs need GPUs: LENET_TEST_ACCELERATOR=gpu")
def test_ddp_cuda_graph_trains_like_eager_ddp(tmp_path: Path) -> None:
    # The graph holds DDP's all-reduce: replayed steps must average the ranks' gradients like eager DDP
    # does. 30 steps an epoch: 11 eager, the capture, then replays; 2 epochs.
    short = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=30", "--trainer.limit_val_batches=4"]
    common = ["--config", str(CONFIGS / "ddp.yaml"), *TWO, *short, "--seed_everything=1"]
    graphed = lenet(["fit", *common, "--model.cuda_graph=true"], tmp_path)
    assert "cuda_graph" not in graphed.stderr  # neither "is off for this run" nor a failed capture
    lenet(["fit", *common, "--model.cuda_graph=false"], tmp_path)
    runs = tmp_path / "runs" / "ddp"
    for key in ("train/loss", "val/loss", "val/acc"):
        assert last_logged(runs / "version_0", key) == pytest.approx(last_logged(runs / "version_1", key), rel=2e-3), (
            key
        )
    assert last_logged(runs / "version_0", "val/acc") > 0.9
