"""Each use of Lightning's private API (``lenet_cli.lightning_internals``) finds its attribute on the
installed Lightning, so the feature behind it is on.

A Lightning release that renames one fails here; where lenet would then turn a feature off, it warns
once (the last tests), and ``filterwarnings`` in pyproject.toml makes that warning fail any other test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lightning.pytorch import Trainer
from lightning.pytorch.strategies import DDPStrategy

from lenet_cli import _lightning
from lenet_cli.cli.lightning_cli import LenetCLI
from lenet_cli.data.mnist import MNISTDataModule
from lenet_cli.training.distributed import throttle_sigterm_broadcast
from lenet_cli.training.module import LeNet
from tests.helpers import CPU, quiet_trainer

OFF = r"lenet: .* is off: this Lightning version has no"


@pytest.fixture
def fresh_warnings() -> Iterator[None]:
    """``warn_once`` forgets what it warned about, before and after the test."""
    _lightning.warn_once.cache_clear()
    yield
    _lightning.warn_once.cache_clear()


def lenet_warnings(recorded: pytest.WarningsRecorder) -> list[str]:
    return [str(warning.message) for warning in recorded if str(warning.message).startswith("lenet:")]


def test_sigterm_flag_stops_the_loops_like_sigterm(recwarn: pytest.WarningsRecorder) -> None:
    trainer = quiet_trainer()
    stop_at_next_batch = _lightning.sigterm_flag(trainer)
    assert stop_at_next_batch is not None
    assert trainer._signal_connector.received_sigterm is False
    stop_at_next_batch()
    assert trainer._signal_connector.received_sigterm is True  # what Lightning's loops check after each batch
    assert not lenet_warnings(recwarn)


def test_sigterm_broadcast_runs_every_n_steps(
    monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    """Lightning's per-step DDP SIGTERM broadcast (a host sync) is thinned out to every 50th step."""
    trainer = quiet_trainer()
    loop = trainer.fit_loop.epoch_loop
    calls = []
    # Fails unless this Lightning's training loop has the method lenet wraps.
    monkeypatch.setattr(type(loop), "_broadcast_sigterm_tensor", lambda self: calls.append(trainer.global_step))
    throttle_sigterm_broadcast(trainer, every_n_steps=50)
    for step in range(120):
        loop.manual_optimization.optim_step_progress.total.completed = step
        loop.automatic_optimization.optim_progress.optimizer.step.total.completed = step
        loop._broadcast_sigterm_tensor()
    assert calls == [0, 50, 100]
    assert not lenet_warnings(recwarn)


def test_ddp_comm_hook_is_the_strategys() -> None:
    def hook(state: object, bucket: object) -> None:
        raise AssertionError("never called: no training here")

    assert _lightning.ddp_comm_hook(quiet_trainer(strategy=DDPStrategy(ddp_comm_hook=hook))) is hook
    assert _lightning.ddp_comm_hook(quiet_trainer(strategy=DDPStrategy())) is None


def test_attached_trainer() -> None:
    model = LeNet()
    assert _lightning.attached_trainer(model) is None  # where model.trainer would raise
    trainer = quiet_trainer()
    model.trainer = trainer
    assert _lightning.attached_trainer(model) is trainer


def test_subcommand_parsers_of_lenet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    class Parsed(LenetCLI):  # stop before running the subcommand
        def _run_subcommand(self, subcommand: str) -> None:
            pass

    cli = Parsed(LeNet, MNISTDataModule, args=["fit", *CPU])
    parsers = _lightning.subcommand_parsers(cli)
    assert set(parsers) == {"fit"}  # only the named subcommand's parser is built
    assert parsers["fit"].get_defaults()["weights_only"] is True  # what lenet sets through it


def without_signal_connector(trainer: Trainer, monkeypatch: pytest.MonkeyPatch) -> Callable[[], object]:
    monkeypatch.delattr(trainer, "_signal_connector")
    return lambda: _lightning.sigterm_flag(trainer)


def without_sigterm_broadcast(trainer: Trainer, monkeypatch: pytest.MonkeyPatch) -> Callable[[], object]:
    monkeypatch.delattr(type(trainer.fit_loop.epoch_loop), "_broadcast_sigterm_tensor")
    return lambda: _lightning.thin_sigterm_broadcast(trainer, every_n_steps=50)


@pytest.mark.usefixtures("fresh_warnings")
@pytest.mark.parametrize(
    ("remove", "feature"),
    [
        pytest.param(without_signal_connector, "a checkpoint on the first Ctrl-C", id="sigterm_flag"),
        pytest.param(without_sigterm_broadcast, "thinning the per-step DDP SIGTERM", id="thin_sigterm_broadcast"),
    ],
)
def test_a_missing_attribute_warns_once(
    remove: Callable[[Trainer, pytest.MonkeyPatch], Callable[[], object]],
    feature: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    call = remove(quiet_trainer(), monkeypatch)
    with pytest.warns(UserWarning, match=OFF) as recorded:
        assert call() is None
        assert call() is None
    assert len(lenet_warnings(recorded)) == 1
    assert lenet_warnings(recorded)[0].startswith(f"lenet: {feature}")


def test_save_last_checkpoint_finds_modelcheckpoints_methods() -> None:
    """``resume.RunCheckpoint`` writes last.ckpt every epoch through these (tests/test_resume_safety.py runs it)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    callback = ModelCheckpoint()
    for name in ("_should_skip_saving_checkpoint", "_save_last_checkpoint", "_monitor_candidates"):
        assert callable(getattr(callback, name, None)), name
