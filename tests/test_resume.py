"""Ctrl-C and SIGTERM during ``fit``: the batch finishes, ``last.ckpt`` is written, and the printed
command continues the run.

In this process: a real signal to a real handler, and ``main()``'s exit status, without the start-up
time of a new process (the SIGKILL tests of ``test_crash_safety.py`` need one).
"""

from __future__ import annotations

import shlex
import signal
from pathlib import Path

import pytest

from lenet_cli.cli.main import main
from tests.helpers import EPOCHS, STEPS_PER_EPOCH, crash_at, read_checkpoint, resumable_fit_args

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("signal_name", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_stop_signal_saves_last_checkpoint_and_prints_resume_command(
    signal_name: str,
    status: int,
    small_mnist: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    stopped_at = STEPS_PER_EPOCH + 5  # mid-epoch: the checkpoint can only come from the signal
    handler_before = signal.getsignal(signal.SIGINT)  # Python's, or SIG_IGN in a backgrounded shell job
    with pytest.raises(SystemExit) as exit_info:
        main(resumable_fit_args(small_mnist, crash_at("batch", stopped_at, signal_name)))
    assert exit_info.value.code == status
    assert signal.getsignal(signal.SIGINT) is handler_before  # Ctrl-C is handled as before the run again
    run = Path("runs", "quick", "version_0")
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == stopped_at
    command = capsys.readouterr().err.strip().splitlines()[-1].strip()
    assert command == f"lenet fit --config {run}/config.yaml --ckpt_path {run}/checkpoints/last.ckpt"
    if signal_name == "SIGTERM":
        return
    # The printed command, as printed, finishes the run.
    main(shlex.split(command)[1:])
    final = read_checkpoint(tmp_path / "runs" / "quick" / "version_1" / "checkpoints" / "last.ckpt")
    assert final["global_step"] == EPOCHS * STEPS_PER_EPOCH


def test_second_ctrl_c_stops_at_once_with_status_130(
    small_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(resumable_fit_args(small_mnist, crash_at("batch_twice", STEPS_PER_EPOCH + 5, "SIGINT")))
    assert exit_info.value.code == 130  # Lightning's own KeyboardInterrupt handling exits with 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Ctrl-C again stops at once" in err
    # Stopped without saving the interrupted state: last.ckpt is the first epoch's.
    assert read_checkpoint(Path("runs/quick/version_0/checkpoints/last.ckpt"))["global_step"] == STEPS_PER_EPOCH
