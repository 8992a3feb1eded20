"""Checkpoints: nothing read from one can run code, and none is written that a safe load cannot read.

Bad checkpoints that only need their one-line error (missing, not a checkpoint, another model's, the
wrong number of classes) are rows of ``test_errors.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from lenet_cli.checkpoints import save
from lenet_cli.cli.main import main
from lenet_cli.errors import LenetError
from lenet_cli.training.module import LeNet
from tests.helpers import CPU, assert_one_line_error, read_checkpoint


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
    subcommand: str,
    malicious_checkpoint: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    checkpoint, marker = malicious_checkpoint
    monkeypatch.chdir(tmp_path)
    line = assert_one_line_error([subcommand, *CPU, "--ckpt_path", str(checkpoint)], "refused", capsys)
    assert not marker.exists()
    assert line == (
        f"error: checkpoint {checkpoint} refused: loading it would need arbitrary unpickling, which can run code "
        f"from the file (it calls {open.__module__}.open); lenet loads only tensors and plain values"
    )


@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
def test_trainer_loads_weights_only_by_default(subcommand: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([subcommand, "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["weights_only"] is True


def test_checkpoint_with_objects_is_not_written(tmp_path: Path) -> None:
    """A hyperparameter that is not a plain value fails at the first save, keeping the previous file."""
    path = tmp_path / "last.ckpt"
    io_plugin = save.AtomicCheckpointIO()
    io_plugin.save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(LenetError, match=r"refusing to write checkpoint .*tests\.test_checkpoints\.Opaque"):
        io_plugin.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": {"x": Opaque()}}, path)
    assert torch.equal(read_checkpoint(path)["state_dict"]["w"], torch.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
