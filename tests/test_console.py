"""What a command prints: no Lightning warnings or tips, one start line, nothing twice under DDP;
and that a command reads its checkpoint file once."""

from __future__ import annotations

import gc
import logging
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lenet_cli.cli import console
from lenet_cli.cli.main import main
from lenet_cli.cli.main import main as run_cli
from lenet_cli.errors import DEBUG_VARIABLE
from tests.helpers import CONFIGS, CPU, child_env, lenet_subprocess

# What Lightning's warnings and tips look like on a console: Python's "file.py:LINE:" prefix, or words.
NOISE = re.compile(
    r"\.py:\d+: |Warning|warn|Tip|💡|deprecated|No seed found|Seed set to|available: |dirpath has changed"
    r"|Restoring states|Loaded model weights|EarlyStopping|LOCAL_RANK|Initializing distributed|litlogger"
)


def lenet_in_new_process(script: str, cwd: Path, extra_env: dict[str, str] | None = None) -> str:
    """stderr of a new Python process running ``script``: the console exactly as a user sees it."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=cwd,
        env=child_env(extra_env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


@pytest.mark.slow
@pytest.mark.processes
def test_plain_fit_test_predict_print_no_lightning_warning_or_tip(tmp_path: Path) -> None:
    # configs/mnist.yaml as a user runs it, made short: 50 steps (Lightning's logging interval, below
    # which it warns about the setting), a few evaluation batches.
    config = ["--config", str(CONFIGS / "mnist.yaml"), *CPU]
    short = [
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=50",
        "--trainer.limit_val_batches=2",
        "--data.batch_size=64",
    ]
    stderr = lenet_in_new_process(
        f"""
        from lenet_cli.cli.main import main
        main(["fit", *{config!r}, *{short!r}])
        main(["test", *{config!r}, "--ckpt_path", "best", "--trainer.limit_test_batches=2"])
        main(["predict", *{config!r}, "--ckpt_path", "best", "--trainer.limit_predict_batches=2"])
        """,
        tmp_path,
    )
    noise = [line for line in stderr.splitlines() if NOISE.search(line)]
    assert not noise, "\n".join(noise)
    starts = [line for line in stderr.splitlines() if line.startswith("lenet ")]
    runs, best = Path("runs/mnist"), Path("runs/mnist/version_0/checkpoints/best.ckpt")
    assert len(starts) == 3 and starts[0] == f"lenet fit → {runs / 'version_0'}; new model; seed 0; on cpu"
    for start, subcommand, version in zip(starts[1:], ("test", "predict"), (1, 2), strict=True):
        assert re.fullmatch(
            re.escape(f"lenet {subcommand} → {runs / f'version_{version}'}; --ckpt_path best: using {best} (val/loss ")
            + r"\d\.\d{4}"
            + re.escape(f", the lowest of 1 run in {runs}); on cpu"),
            start,
        ), start
    assert stderr.index(starts[0]) < stderr.index("Best checkpoint") < stderr.index(starts[1])
    assert "Evaluation report in" in stderr and "Predictions of 2000 inputs" in stderr


def test_harmless_messages_are_left_out_by_message_and_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEBUG_VARIABLE, raising=False)
    seed_logger = logging.getLogger("lightning.fabric.utilities.seed")
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    shown: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: shown.append(record.getMessage())  # type: ignore[method-assign]
    for logger in (seed_logger, rank_zero):
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with console.quiet():
                pytree = "lightning.pytorch.utilities._pytree"
                warnings.warn_explicit(
                    "`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, "x.py", 1, pytree
                )
                warnings.warn_explicit("something new about treespecs", FutureWarning, "x.py", 2, pytree)
                warnings.warn_explicit(
                    "`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, "y.py", 3, "mine"
                )
                seed_logger.info("[rank: 1] Seed set to 0")
                rank_zero.info("💡 Tip: For seamless cloud logging, try installing litlogger")
                rank_zero.info("Evaluation report in runs/x: report.json")
            rank_zero.info("GPU available: False, used: False")  # outside the block: shown again
    finally:
        for logger in (seed_logger, rank_zero):
            logger.removeHandler(handler)
    assert [(str(w.message), w.lineno) for w in caught] == [
        ("something new about treespecs", 2),  # another message of that module
        ("`isinstance(treespec, LeafSpec)` is deprecated", 3),  # that message from another module
    ]
    assert shown == ["Evaluation report in runs/x: report.json", "GPU available: False, used: False"]
    assert not seed_logger.filters and not rank_zero.filters  # removed again after the block


def test_debug_variable_shows_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with console.quiet():
            warnings.warn_explicit(
                "The dirpath has changed from a to b",
                UserWarning,
                "m.py",
                1,
                "lightning.pytorch.callbacks.model_checkpoint",
            )
            assert not logging.getLogger("lightning.fabric.utilities.seed").filters
    assert len(caught) == 1


def test_checkpoint_file_is_read_once(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    reads: list[str] = []
    load = torch.load

    def counting_load(path: object, *args: object, **kwargs: object) -> object:
        reads.append(str(path))
        return load(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "load", counting_load)
    best = trained_run / "checkpoints" / "best.ckpt"
    config = ["--config", str(CONFIGS / "quick.yaml"), *CPU, "--ckpt_path", str(best)]
    run_cli(["test", *config, "--trainer.limit_test_batches=1", "--sample_images.num_images=0"])
    assert reads == [str(best)]
    reads.clear()
    run_cli(["predict", *config, "--trainer.limit_predict_batches=1", "--sample_images.num_images=0"])
    assert reads == [str(best)]
    start = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("lenet predict"))
    assert start == f"lenet predict → {Path('runs/quick/version_1')}; checkpoint {best}; on cpu"


def test_skipped_files_are_named_again_after_the_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "digits"
    folder.mkdir()
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[6:22, 12:16] = 255
    for name in ("a.png", "c.png"):
        Image.fromarray(digit).save(folder / name)
    (folder / "b.png").write_text("not an image")
    run_cli(
        [
            "predict",
            "--config",
            str(CONFIGS / "quick.yaml"),
            *CPU,
            "--data.predict_path",
            str(folder),
            "--sample_images.num_images=0",
        ]
    )
    err = capsys.readouterr().err
    assert "warning: skipped 1 of 3 files" in err  # while reading, before the predictions
    tail = err[err.index("Predictions of 2 inputs") :]
    assert f"warning: skipped 1 unreadable files (reasons above): {folder / 'b.png'}" in tail


def test_only_the_command_lines_process_skips_the_final_garbage_collection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    frozen = gc.get_freeze_count()
    with pytest.raises(SystemExit):
        main(["runs"])  # from Python (tests, scripts): objects must stay collectable
    assert gc.get_freeze_count() == frozen
    monkeypatch.setattr(sys, "argv", ["lenet", "runs"])
    try:
        with pytest.raises(SystemExit):
            main()  # the command line: the process exits next
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()
    assert "error: no runs in runs" in capsys.readouterr().err


@pytest.mark.slow
def test_nothing_is_printed_twice_under_ddp(tmp_path: Path) -> None:
    # `python -m lenet_cli`: DDP's launcher starts rank 1 by running the same command line again.
    args = [
        "fit",
        "--config",
        str(CONFIGS / "quick.yaml"),
        "--trainer.accelerator=cpu",
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.enable_progress_bar=false",
        "--trainer.limit_train_batches=50",
        "--trainer.limit_val_batches=2",
    ]
    result = lenet_subprocess(args, tmp_path, env={"OMP_NUM_THREADS": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert not [line for line in lines if NOISE.search(line)], result.stderr
    assert [line for line in lines if line.startswith("lenet fit")] == [
        f"lenet fit → {Path('runs/quick/version_0')}; new model; seed 0; on cpu × 2 processes"
    ]
    for lenet_line in ("Best checkpoint", "Last checkpoint"):  # quick.yaml draws no curves
        assert len([line for line in lines if line.startswith(lenet_line)]) == 1, result.stderr
