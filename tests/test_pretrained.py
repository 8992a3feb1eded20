"""The LeNet bundled with the package: weights-only, checksummed, what test/predict use by default."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from lenet_cli.checkpoints import load, pretrained
from lenet_cli.cli.main import main
from lenet_cli.errors import LenetError
from lenet_cli.runs import ckpt_path
from tests.helpers import CPU, ROOT, assert_one_line_error, last_logged, make_user_images

CARD = ROOT / "docs" / "model-card.md"


def card_accuracy() -> float:
    """The MNIST test accuracy the model card states, as a fraction."""
    found = re.search(r"MNIST test accuracy: \*\*(\d+\.\d+) %\*\*", CARD.read_text())
    assert found, "docs/model-card.md states no 'MNIST test accuracy: **NN.NN %**'"
    return float(found.group(1)) / 100


def test_the_checkpoint_is_small_weights_only_and_plain() -> None:
    path = pretrained.path()
    assert path.stat().st_size <= 300_000
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert set(checkpoint) == {"state_dict", "hyper_parameters", "pytorch-lightning_version"}  # no optimizer state
    assert all(isinstance(value, torch.Tensor) for value in checkpoint["state_dict"].values())
    assert all(
        value is None or isinstance(value, (bool, int, float, str)) for value in checkpoint["hyper_parameters"].values()
    )
    assert checkpoint["hyper_parameters"]["num_classes"] == 10 and checkpoint["hyper_parameters"]["in_channels"] == 1


def test_the_record_beside_it_says_how_it_was_made() -> None:
    record = pretrained.record()
    assert record["sha256"] == pretrained.checksums()[pretrained.FILE] == load.sha256(pretrained.path())
    assert record["command"] == "python tools/make_pretrained.py --config configs/robust.yaml --seed 1"
    assert 0.5 < record["calibration"]["temperature"] < 2 and 0 < record["calibration"]["reject_below"] < 1
    assert record["config"] == "robust.yaml" and record["seed"] == 1
    assert record["torch"] and record["lightning"] and record["cpu"]
    assert record["test_accuracy"] == pytest.approx(card_accuracy(), abs=5e-5)  # the card quotes the record


def test_a_damaged_copy_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged = tmp_path / "pretrained"
    shutil.copytree(pretrained.folder(), damaged)
    data = bytearray((damaged / pretrained.FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    (damaged / pretrained.FILE).write_bytes(bytes(data))
    monkeypatch.setattr(pretrained, "folder", lambda: damaged)
    with pytest.raises(LenetError, match="does not match its checksum in SHA256SUMS"):
        pretrained.path()
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(
        ["test", *CPU, "--ckpt_path", "pretrained"], "does not match its checksum in SHA256SUMS", capsys
    )


def test_test_without_ckpt_path_uses_it_and_reads_as_the_card_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    main(["test", *CPU])
    said = [line for line in capsys.readouterr().err.splitlines() if "no --ckpt_path" in line]
    assert len(said) == 1 and "robust LeNet bundled with lenet-cli" in said[0]
    assert last_logged(tmp_path / "runs" / "lenet" / "version_0", "test/acc") == pytest.approx(
        card_accuracy(), abs=5e-4
    )


def test_predict_without_ckpt_path_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_user_images(tmp_path / "digits", 3)
    monkeypatch.chdir(tmp_path)
    main(["predict", *CPU, "--data.predict_path", "digits"])
    err = capsys.readouterr().err
    assert sum("no --ckpt_path: using the robust LeNet" in line for line in err.splitlines()) == 1
    assert (tmp_path / "runs" / "lenet" / "version_0" / "predictions.csv").is_file()


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict", "export", "serve"])
def test_the_alias_names_it_for_every_subcommand_that_loads_weights(subcommand: str) -> None:
    chosen, note = ckpt_path.resolve(subcommand, "pretrained", Path("runs"))
    assert chosen == str(pretrained.path())
    assert note is not None and note.startswith("--ckpt_path pretrained: using the robust LeNet bundled with lenet-cli")


def test_validate_runs_no_untrained_network_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(["validate", *CPU], "lenet validate needs --ckpt_path", capsys)
    main(["validate", *CPU, "--ckpt_path", "untrained", "--trainer.limit_val_batches=1"])
    assert "--ckpt_path untrained: a freshly initialised network" in capsys.readouterr().err
    main(["validate", *CPU, "--ckpt_path", "pretrained"])
    assert last_logged(tmp_path / "runs" / "lenet" / "version_1", "val/acc") > 0.99


def test_fit_cannot_resume_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    message = "fit resumes a run from its training state"
    assert_one_line_error(["fit", *CPU, "--ckpt_path", "pretrained"], message, capsys)


def test_export_takes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxscript")
    monkeypatch.chdir(tmp_path)
    main(["export", "--ckpt_path", "pretrained", "--output", "bundled.onnx"])
    assert (tmp_path / "bundled.onnx").stat().st_size > 200_000


def test_the_built_wheel_contains_it(tmp_path: Path) -> None:
    """A wheel built from this checkout (offline: no build isolation; ~5 s) ships the model and its record."""
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    subprocess.run([*build, str(ROOT)], check=True, capture_output=True, timeout=600)
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    assert f"lenet_cli/checkpoints/bundled/{pretrained.FILE}" in names
    assert f"lenet_cli/checkpoints/bundled/{pretrained.RECORD}" in names


@pytest.mark.parametrize("name", [pretrained.RECORD, pretrained.SUMS])
def test_an_edited_record_or_missing_checksums_are_refused(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record is checked as the weights are: a claimed accuracy cannot be edited in place."""
    damaged = tmp_path / "pretrained"
    shutil.copytree(pretrained.folder(), damaged)
    monkeypatch.setattr(pretrained, "folder", lambda: damaged)
    if name == pretrained.RECORD:
        (damaged / name).write_text((damaged / name).read_text().replace('"test_accuracy": 0.', '"test_accuracy": 1.'))
        expected = "lenet-robust.json does not match its checksum in SHA256SUMS"
    else:
        (damaged / name).unlink()
        expected = "SHA256SUMS cannot be read"
    with pytest.raises(LenetError, match=expected):
        pretrained.path()
    with pytest.raises(LenetError, match=expected):
        pretrained.record()
