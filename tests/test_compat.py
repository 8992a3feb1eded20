"""What users of lenet-cli 0.2 have keeps working for one release: its class paths in configs and its checkpoints."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

from lenet_cli.checkpoints import load, pretrained
from lenet_cli.cli.main import main
from lenet_cli.data.mnist import to_model_input
from lenet_cli.training.module import LeNet
from lenet_cli.training.network import LeNet5, network_weights
from tests.helpers import CPU

OLD_PATHS = [
    ("lenet_cli.curves", "TrainingCurves", "lenet_cli.outputs.curves"),
    ("lenet_cli.report", "EvaluationReport", "lenet_cli.outputs.report"),
    ("lenet_cli.model", "LeNet", "lenet_cli.training.module"),
    ("lenet_cli.data", "MNISTDataModule", "lenet_cli.data.mnist"),
]


@pytest.mark.parametrize(("old", "name", "new"), OLD_PATHS, ids=[old for old, _, _ in OLD_PATHS])
def test_old_class_paths_name_the_same_classes_with_a_deprecation_warning(old: str, name: str, new: str) -> None:
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=r"since 0\.3"):
        importlib.reload(module) if old != "lenet_cli.data" else getattr(module, name)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_a_config_with_the_old_class_paths_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.yaml").write_text(
        "trainer:\n  callbacks:\n    - class_path: lenet_cli.report.EvaluationReport\n"
        "      init_args:\n        output_dir: report\n"
    )
    main(["test", "--config", "old.yaml", *CPU, "--ckpt_path", "pretrained", "--trainer.limit_test_batches=2"])
    assert (tmp_path / "report" / "report.json").is_file()


def test_a_0_2_checkpoint_loads_into_the_0_3_module_and_network(
    tmp_path: Path, mnist_test: tuple[torch.Tensor, torch.Tensor]
) -> None:
    # 0.2 named the weights features.* / classifier.* on the module (the bundled model was such a file
    # until it was retrained with outlier exposure): the bundled weights written that way.
    raw = torch.load(pretrained.path(), map_location="cpu", weights_only=True)
    raw["state_dict"] = {key.removeprefix("network."): value for key, value in raw["state_dict"].items()}
    assert any(key.startswith("features.0.") for key in raw["state_dict"])
    torch.save(raw, tmp_path / "old.ckpt")
    checkpoint = load.load(tmp_path / "old.ckpt")  # upgraded on load
    model = LeNet()
    model.load_state_dict(checkpoint["state_dict"])
    network = LeNet5()
    network.load_state_dict(network_weights(raw["state_dict"]))
    images, labels = to_model_input(mnist_test[0][:1000]), mnist_test[1][:1000]
    with torch.no_grad():
        logits = model.eval()(images)
        assert torch.equal(logits, network.eval()(images))
    # Each weight in its place: the model reads as its card says (99.45 % of the whole test set).
    assert (logits.argmax(dim=1) == labels).float().mean() >= 0.99
