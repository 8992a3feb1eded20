"""Reliability and safety: kills and resumes, Ctrl-C/SIGTERM, safe checkpoint loading, reproducible
seeds, and one clear line for every bad input.

Training here runs on a small plain-IDX copy of MNIST (6000 training, 1000 test images): the runs
test what happens around training, and reading it takes a fraction of the bundled copy's time.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shlex
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonargparse
import pytest
import torch
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer

from lenet_cli import checkpoints, idx
from lenet_cli.atomic import replace_atomically
from lenet_cli.errors import DEBUG_VARIABLE
from lenet_cli.data import to_model_input
from lenet_cli.errors import LenetError
from lenet_cli.model import LeNet
from tests.conftest import CONFIGS, CPU, ROOT, run_cli

STEPS_PER_EPOCH = 10
EPOCHS = 3


class CrashAt(Callback):
    """Test helper that kills or signals its own process during ``fit`` (given with --trainer.callbacks).

    Args:
        point: ``"batch"``: after the batch that reaches ``step``; ``"writing_last"``: half-way through
            writing ``last.ckpt`` once ``global_step >= step``; ``"before_last"``: once ``best.ckpt``
            of that epoch is written and ``last.ckpt`` is not.
        step: The global step to act at.
        signal_name: What ``"batch"`` sends: SIGKILL, SIGINT or SIGTERM.
    """

    def __init__(self, point: str, step: int, signal_name: str = "SIGKILL") -> None:
        self.point, self.step, self.signal = point, step, getattr(signal, signal_name)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if self.point == "batch" and trainer.global_step == self.step:
            os.kill(os.getpid(), self.signal)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        checkpoint_io = trainer.strategy.checkpoint_io
        save = checkpoint_io.save_checkpoint

        def save_then_crash(checkpoint: dict, path: str, storage_options: Any = None) -> None:
            if trainer.global_step >= self.step and str(path).endswith("last.ckpt"):
                if self.point == "before_last":
                    os.kill(os.getpid(), signal.SIGKILL)
                if self.point == "writing_last":
                    torch.save = write_half_then_die
            save(checkpoint, path, storage_options)

        checkpoint_io.save_checkpoint = save_then_crash


TORCH_SAVE = torch.save


def write_half_then_die(obj: Any, path: str | Path, *args: Any, **kwargs: Any) -> None:
    """Stands in for ``torch.save``: the process dies with half the bytes written."""
    buffer = io.BytesIO()
    TORCH_SAVE(obj, buffer)
    with open(path, "wb") as f:  # whatever file the checkpoint IO writes to: the checkpoint or a temporary
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def write_idx(path: Path, array: torch.Tensor) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.dim()) + b"".join(struct.pack(">I", n) for n in array.shape)
    path.write_bytes(header + array.contiguous().numpy().tobytes())


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """Tiny batches on a busy 2-core machine run several times faster on one thread (no OpenMP waits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def small_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain (not gzipped) IDX copy of the first 6000 training and 1000 test images."""
    folder = tmp_path_factory.mktemp("small_mnist")
    arrays = idx.load(None)
    for key, stem in idx.FILES.items():
        write_idx(folder / stem, arrays[key][: 6000 if key.startswith("train") else 1000])
    return folder


def fit_args(data_dir: Path, *extra: str) -> list[str]:
    """``lenet fit`` of EPOCHS short epochs with a one-cycle schedule and early stopping: every kind of
    state a resume must bring back (weights, Adam moments, scheduler, callback and loop state)."""
    early_stopping = {"class_path": "lightning.pytorch.callbacks.EarlyStopping", "init_args": {"monitor": "val/loss"}}
    return [
        "fit", "--config", str(CONFIGS / "quick.yaml"), *CPU,
        f"--data.data_dir={data_dir}", "--data.val_size=1000",
        f"--trainer.limit_train_batches={STEPS_PER_EPOCH}", f"--trainer.max_epochs={EPOCHS}",
        "--model.lr_schedule=onecycle", "--model.lr=0.005",  # peak rate: 30 steps reach ~80 % test accuracy
        "--seed_everything=3", f"--trainer.callbacks+={json.dumps(early_stopping)}",
        *extra,
    ]  # fmt: skip


def crash_at(point: str, step: int, signal_name: str = "SIGKILL") -> str:
    init_args = {"point": point, "step": step, "signal_name": signal_name}
    callback = {"class_path": "tests.test_reliability.CrashAt", "init_args": init_args}
    return f"--trainer.callbacks+={json.dumps(callback)}"


def lenet(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lenet ARGS`` in a new process (with this repository importable, for CrashAt)."""
    return subprocess.run(
        [sys.executable, "-m", "lenet_cli", *args], cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=300
    )


def child_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env["OMP_NUM_THREADS"] = "1"  # see one_thread
    env.pop(DEBUG_VARIABLE, None)
    return env


def error_line(err: str) -> str:
    """The one ``error:`` line main() printed, checked to be the last and only one, with no traceback.

    (Warnings and Lightning's log lines may come before it.)
    """
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err[-2000:]
    return errors[0]


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def read_metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def check_accuracy(checkpoint: Path, data_dir: Path, at_least: float) -> None:
    """The checkpoint loads (safely) into LeNet and classifies the test images well above chance."""
    model = LeNet.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True).eval()
    images = idx.read_idx(data_dir / idx.FILES["test_images"], dims=3)
    labels = idx.read_idx(data_dir / idx.FILES["test_labels"], dims=1).long()
    with torch.no_grad():
        accuracy = (model(to_model_input(images)).argmax(dim=1) == labels).float().mean().item()
    assert accuracy >= at_least, f"{checkpoint}: test accuracy {accuracy:.3f}"


# --- Killed runs resume -------------------------------------------------------------------------------


def test_sigkill_while_writing_last_checkpoint_then_resume(
    small_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed_at = 2 * STEPS_PER_EPOCH  # end of the second epoch, while its last.ckpt is being written
    killed = lenet(fit_args(small_mnist, crash_at("writing_last", killed_at)), tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    old_run = tmp_path / "runs" / "quick" / "version_0"
    # The kill left the previous last.ckpt complete; the half-written file is only a temporary.
    assert load(old_run / "checkpoints" / "last.ckpt")["global_step"] == STEPS_PER_EPOCH
    assert len(list((old_run / "checkpoints").glob(".last.ckpt.*.tmp"))) == 1

    resumed = lenet(fit_args(small_mnist, "--ckpt_path", "last"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    last = old_run / "checkpoints" / "last.ckpt"
    assert f"resuming {old_run.relative_to(tmp_path)} from {last.relative_to(tmp_path)}" in resumed.stderr
    new_run = tmp_path / "runs" / "quick" / "version_1"
    config_text = (new_run / "config.yaml").read_text()
    assert config_text.startswith("# resumed: continues runs/quick/version_0")
    assert yaml.safe_load(config_text)["ckpt_path"] == str(last.relative_to(tmp_path))
    final = load(new_run / "checkpoints" / "last.ckpt")
    assert final["global_step"] == EPOCHS * STEPS_PER_EPOCH and final["epoch"] == EPOCHS - 1
    # One best across the interruption: the best score is the lowest val/loss of both runs.
    val_losses = [float(row["val/loss"]) for run in (old_run, new_run) for row in read_metrics(run) if row["val/loss"]]
    best = next(state for key, state in final["callbacks"].items() if key.startswith("ModelCheckpoint"))
    assert float(best["best_model_score"]) == pytest.approx(min(val_losses))
    # The best checkpoint loads and predicts: `--ckpt_path best` in the CLI, and directly.
    monkeypatch.chdir(tmp_path)
    run_cli(["test", "--config", str(CONFIGS / "quick.yaml"), *CPU, f"--data.data_dir={small_mnist}", "--ckpt_path=best"])
    test_run = tmp_path / "runs" / "quick" / "version_2"
    assert yaml.safe_load((test_run / "config.yaml").read_text())["ckpt_path"] == best["best_model_path"]
    assert float([row for row in read_metrics(test_run) if row.get("test/acc")][-1]["test/acc"]) >= 0.6
    check_accuracy(tmp_path / best["best_model_path"], small_mnist, at_least=0.6)


@pytest.fixture(scope="module")
def uninterrupted(small_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The final last.ckpt of the same fit without any interruption, in a process of its own."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    result = lenet(fit_args(small_mnist), workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    return load(workdir / "runs" / "quick" / "version_0" / "checkpoints" / "last.ckpt")


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
    killed = lenet(fit_args(small_mnist, crash_at(point, step)), tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    for checkpoint in (tmp_path / "runs" / "quick" / "version_0" / "checkpoints").glob("*.ckpt"):
        checkpoints.load(checkpoint)  # every file under its final name is complete
    if point == "writing_last" and step == STEPS_PER_EPOCH:
        # No last.ckpt yet (nothing to resume: a new fit starts over): `--ckpt_path last` says so in one line.
        failed = lenet(fit_args(small_mnist, "--ckpt_path", "last"), tmp_path)
        assert failed.returncode == 2
        assert error_line(failed.stderr).startswith("error: --ckpt_path last: no run")
        return
    resumed = lenet(fit_args(small_mnist, "--ckpt_path", "last"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # SIGKILL leaves only end-of-epoch checkpoints, so the resumed run replays exactly what was lost.
    assert_same_training_state(load(tmp_path / "runs/quick/version_1/checkpoints/last.ckpt"), uninterrupted)


@pytest.mark.slow
def test_sigkill_from_outside_at_a_random_moment(
    small_mnist: Path, tmp_path: Path, uninterrupted: dict[str, Any]
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "lenet_cli", *fit_args(small_mnist)], cwd=tmp_path, env=child_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
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
    resumed = lenet(fit_args(small_mnist, "--ckpt_path", "last"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_training_state(load(tmp_path / "runs/quick/version_1/checkpoints/last.ckpt"), uninterrupted)


# --- Ctrl-C and SIGTERM -------------------------------------------------------------------------------


@pytest.mark.parametrize(("signal_name", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_stop_signal_saves_last_checkpoint_and_prints_resume_command(
    signal_name: str, status: int, small_mnist: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    # In this process: a real signal to a real handler, and main()'s exit status, without the start-up
    # time of a new process (the SIGKILL tests above need one).
    monkeypatch.chdir(tmp_path)
    stopped_at = STEPS_PER_EPOCH + 5  # mid-epoch: the checkpoint can only come from the signal
    handler_before = signal.getsignal(signal.SIGINT)  # Python's, or SIG_IGN in a backgrounded shell job
    with pytest.raises(SystemExit) as exit_info:
        run_cli(fit_args(small_mnist, crash_at("batch", stopped_at, signal_name)))
    assert exit_info.value.code == status
    assert signal.getsignal(signal.SIGINT) is handler_before  # Ctrl-C is handled as before the run again
    run = Path("runs", "quick", "version_0")
    assert load(run / "checkpoints" / "last.ckpt")["global_step"] == stopped_at
    command = capsys.readouterr().err.strip().splitlines()[-1].strip()
    assert command == f"lenet fit --config {run}/config.yaml --ckpt_path {run}/checkpoints/last.ckpt"
    if signal_name == "SIGTERM":
        return
    # The printed command, as printed, finishes the run.
    run_cli(shlex.split(command)[1:])
    final = load(tmp_path / "runs" / "quick" / "version_1" / "checkpoints" / "last.ckpt")
    assert final["global_step"] == EPOCHS * STEPS_PER_EPOCH


# --- Safe loading -------------------------------------------------------------------------------------


class Opaque:
    """Some object: pickled by reference to its class, so only a full unpickling can rebuild it."""


class CreatesFile:
    """Unpickling this calls ``open(path, "w")``: what a malicious checkpoint could do, harmlessly."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


@pytest.fixture
def malicious_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A checkpoint with LeNet's weight names whose full unpickling creates ``marker``."""
    marker, checkpoint = tmp_path / "pwned", tmp_path / "evil.ckpt"
    state_dict = LeNet().state_dict()
    torch.save({"state_dict": state_dict, "hyper_parameters": {"lr": CreatesFile(marker)}}, checkpoint)
    return checkpoint, marker


def test_malicious_checkpoint_is_real(malicious_checkpoint: tuple[Path, Path]) -> None:
    """The bait works: an unsafe load does create the file (so its absence below means something)."""
    checkpoint, marker = malicious_checkpoint
    torch.load(checkpoint, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
def test_malicious_checkpoint_is_refused(
    subcommand: str, malicious_checkpoint: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint, marker = malicious_checkpoint
    with pytest.raises(SystemExit) as exit_info:
        run_cli([subcommand, *CPU, "--ckpt_path", str(checkpoint)])
    assert exit_info.value.code == 2
    assert not marker.exists()
    assert error_line(capsys.readouterr().err) == (
        f"error: checkpoint {checkpoint} refused: loading it would need arbitrary unpickling, which can run code "
        f"from the file (it calls {open.__module__}.open); lenet loads only tensors and plain values"
    )


@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
def test_trainer_loads_weights_only_by_default(subcommand: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_cli([subcommand, "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["weights_only"] is True


def test_checkpoint_with_objects_is_not_written(tmp_path: Path) -> None:
    """A hyperparameter that is not a plain value fails at the first save, keeping the previous file."""
    path = tmp_path / "last.ckpt"
    io_plugin = checkpoints.AtomicCheckpointIO()
    io_plugin.save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(LenetError, match="refusing to write checkpoint .*tests.test_reliability.Opaque"):
        io_plugin.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": {"x": Opaque()}}, path)
    assert torch.equal(load(path)["state_dict"]["w"], torch.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_config_is_never_left_half_written(small_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while config.yaml is being written leaves no config.yaml rather than a truncated one."""

    def write_half_then_fail(parser: Any, namespace: Any, path: str | Path, **kwargs: Any) -> None:
        Path(path).write_text(parser.dump(namespace)[:100])
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(jsonargparse.ArgumentParser, "save", write_half_then_fail)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(fit_args(small_mnist))
    assert exit_info.value.code == 2
    # Nothing half-written anywhere; the run folder itself is gone, as the command failed before it ran.
    assert not list((tmp_path / "runs").rglob("*config.yaml*"))
    assert not (tmp_path / "runs" / "quick" / "version_0").exists()


def test_atomic_files_get_ordinary_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        with replace_atomically(tmp_path / "out.txt") as temporary:
            temporary.write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644


# --- Reproducibility ----------------------------------------------------------------------------------


def short_fit(workdir: Path, data_dir: Path, *extra: str) -> Path:
    workdir.mkdir(exist_ok=True)
    previous = Path.cwd()
    os.chdir(workdir)
    try:
        run_cli(["fit", "--config", str(CONFIGS / "quick.yaml"), *CPU, f"--data.data_dir={data_dir}", "--data.val_size=1000",
                 "--trainer.limit_train_batches=5", *extra])  # fmt: skip
    finally:
        os.chdir(previous)
    return workdir / "runs" / "quick" / "version_0"


def test_same_seed_same_metrics(small_mnist: Path, tmp_path: Path) -> None:
    seeds = {"first": 5, "again": 5, "other": 6}
    runs = [short_fit(tmp_path / name, small_mnist, f"--seed_everything={seed}") for name, seed in seeds.items()]
    first, again, other_seed = ((run / "metrics.csv").read_text() for run in runs)
    assert first == again
    assert first != other_seed  # the comparison can tell seeds apart
    assert yaml.safe_load((runs[0] / "config.yaml").read_text())["seed_everything"] == 5


def test_default_seed_is_recorded(small_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)  # set by earlier in-process runs
    run = short_fit(tmp_path, small_mnist, "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2")
    seed = yaml.safe_load((run / "config.yaml").read_text())["seed_everything"]
    assert isinstance(seed, int) and not isinstance(seed, bool)  # the number used, not `true`


# --- One clear line for every bad input ---------------------------------------------------------------


def other_model_checkpoint(folder: Path) -> list[str]:
    path = folder / "other.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3, 3)}}, path)
    return ["--ckpt_path", str(path)]


def five_class_checkpoint(folder: Path) -> list[str]:
    model, path = LeNet(num_classes=5), folder / "five.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return ["--ckpt_path", str(path)]


def not_a_checkpoint(folder: Path) -> list[str]:
    (folder / "notes.ckpt").write_text("not a checkpoint")
    return ["--ckpt_path", str(folder / "notes.ckpt")]


def corrupt_data(folder: Path, small_mnist: Path, gzip_file: bool) -> list[str]:
    data = folder / "data"
    data.mkdir()
    for stem in idx.FILES.values():
        (data / stem).write_bytes((small_mnist / stem).read_bytes())
    images = data / idx.FILES["train_images"]
    if gzip_file:
        images.unlink()
        (data / f"{images.name}.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    else:
        images.write_bytes(images.read_bytes()[:-100])
    return [f"--data.data_dir={data}", "--data.val_size=1000"]


def bad_yaml(folder: Path, text: str) -> list[str]:
    (folder / "bad.yaml").write_text(text)
    return ["--config", str(folder / "bad.yaml")]


def blocked_folder(folder: Path) -> Path:
    (folder / "blocked").mkdir()
    (folder / "blocked").chmod(0o500)
    return folder / "blocked"


def a_file(folder: Path) -> Path:
    (folder / "a_file").write_text("")
    return folder / "a_file"


NOT_ROOT = pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permissions do not bind root")
NO_PROC = pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
HAS_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")

# subcommand, arguments (given the tmp folder and the small MNIST), words the error line must have.
BAD_INPUTS = [
    pytest.param("fit", lambda t, m: [f"--data.data_dir={t}/nowhere", "--data.download=false"], "lacks the MNIST file", id="missing data folder"),
    pytest.param("fit", lambda t, m: [f"--data.data_dir={a_file(t)}"], "is not a folder", id="data folder is a file"),
    pytest.param("fit", lambda t, m: [f"--data.data_dir={blocked_folder(t)}/x", "--data.download=false"], "lacks", id="unreadable data folder", marks=NOT_ROOT),
    pytest.param("fit", lambda t, m: corrupt_data(t, m, gzip_file=False), "is truncated", id="truncated data file"),
    pytest.param("fit", lambda t, m: corrupt_data(t, m, gzip_file=True), "is corrupt or truncated", id="corrupt gzip data file"),
    pytest.param("fit", lambda t, m: ["--trainer.max_epoch=3"], "unrecognized arguments: --trainer.max_epoch=3", id="unknown option"),
    pytest.param("fitt", lambda t, m: [], "invalid choice: 'fitt'", id="unknown subcommand"),
    pytest.param("fit", lambda t, m: bad_yaml(t, "model:\n  lr: fast\n"), 'key "model.lr"', id="wrong type in YAML"),
    pytest.param("fit", lambda t, m: bad_yaml(t, "model:\n  lrr: 0.1\n"), "model.lrr", id="unknown key in YAML"),
    pytest.param("fit", lambda t, m: bad_yaml(t, "model: [lr\n"), "Problems parsing config", id="YAML that does not parse"),
    pytest.param("fit", lambda t, m: ["--config", f"{t}/nothere.yaml"], "does not exist", id="missing config file"),
    pytest.param("test", lambda t, m: ["--ckpt_path", f"{t}/none.ckpt"], "does not exist", id="missing checkpoint"),
    pytest.param("fit", lambda t, m: ["--ckpt_path", "last"], "no run in runs/lenet has checkpoints/last.ckpt", id="no run to resume"),
    pytest.param("validate", lambda t, m: not_a_checkpoint(t), "is not a readable checkpoint", id="not a checkpoint"),
    pytest.param("predict", lambda t, m: other_model_checkpoint(t), "not a LeNet checkpoint", id="checkpoint of another model"),
    pytest.param("test", lambda t, m: five_class_checkpoint(t), "trained for 5 classes, but the data has 10", id="checkpoint for 5 classes"),
    pytest.param("test", lambda t, m: ["--weights_only=false"], "--weights_only false is not supported", id="weights_only false"),
    pytest.param("fit", lambda t, m: [f"--trainer.logger.init_args.save_dir={a_file(t)}/runs"], "is a file", id="output folder below a file"),
    pytest.param("test", lambda t, m: ["--sample_images.output_dir=/proc/lenet"], "cannot write into /proc", id="read-only output folder", marks=NO_PROC),
    pytest.param("fit", lambda t, m: [f"--checkpoint.dirpath={blocked_folder(t)}/ckpt"], "cannot write into", id="output folder without permission", marks=NOT_ROOT),
    pytest.param("fit", lambda t, m: ["--trainer.accelerator=gpu"], "no usable CUDA GPU", id="GPU requested without one", marks=HAS_GPU),
    pytest.param("fit", lambda t, m: ["--data.batch_size=0"], "batch sizes must be positive", id="batch size 0"),
]  # fmt: skip


@pytest.mark.parametrize(("subcommand", "make_args", "expected"), BAD_INPUTS)
def test_bad_input_fails_in_one_line(
    subcommand: str, make_args: Any, expected: str, small_mnist: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    earlier = tmp_path / "runs" / "lenet" / "version_0"  # an earlier run: must survive untouched
    earlier.mkdir(parents=True)
    (earlier / "metrics.csv").write_text("epoch,step\n0,1\n")
    args = [subcommand, *CPU, *make_args(tmp_path, small_mnist)]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(args)
    assert exit_info.value.code == 2
    assert expected in error_line(capsys.readouterr().err)
    assert (earlier / "metrics.csv").read_text() == "epoch,step\n0,1\n"


@pytest.mark.parametrize(
    ("args", "error_type"),
    [(["test", "--ckpt_path", "none.ckpt"], LenetError), (["fit", "--trainer.max_epoch=3"], Exception)],
)
def test_debug_switch_shows_the_traceback(
    args: list[str], error_type: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    with pytest.raises(error_type):
        run_cli(args)
