"""``lenet export``: ONNX and pt2 files that compute what lenet computes, the docs example, one-line errors."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image

import lenet_cli
from lenet_cli import data, idx
from lenet_cli.model import LeNet
from tests.conftest import CPU, ROOT, run_cli
from tests.test_reliability import NO_PROC, child_env, error_line

TOLERANCE = 1e-4  # max |Δ logit| against lenet's PyTorch model


@pytest.fixture(scope="module")
def mnist_test() -> tuple[torch.Tensor, torch.Tensor]:
    """The 10 000 MNIST test digits, uint8 (N, 28, 28), and their labels."""
    arrays = idx.load(None, allow_download=False)
    return arrays["test_images"], arrays["test_labels"].long()


@pytest.fixture(scope="module")
def exported(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The trained run exported through ``lenet export`` as ONNX, pt2 and ONNX with preprocessing."""
    folder = tmp_path_factory.mktemp("exported")
    checkpoint = str(trained_run / "checkpoints" / "best.ckpt")
    files = {"onnx": folder / "lenet.onnx", "pt2": folder / "lenet.pt2", "preprocessing": folder / "digits.onnx"}
    run_cli(["export", *CPU, "--ckpt_path", checkpoint, "--output", str(files["onnx"])])
    run_cli(["export", *CPU, "--ckpt_path", checkpoint, "--format", "pt2", "--output", str(files["pt2"])])
    run_cli(["export", *CPU, "--ckpt_path", checkpoint, "--with_preprocessing", "true", "--output", str(files["preprocessing"])])
    return files


@pytest.fixture(scope="module")
def reference(trained_run: Path, mnist_test: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
    """lenet's PyTorch model's logits (10 000, 10) on the MNIST test set."""
    model = LeNet.load_from_checkpoint(trained_run / "checkpoints" / "best.ckpt", map_location="cpu").eval()
    with torch.inference_mode():
        return model(data.to_model_input(mnist_test[0])).numpy()


def session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def assert_same_predictions(logits: np.ndarray, reference: np.ndarray) -> None:
    """Within TOLERANCE of ``reference`` and the same argmax, but where two logits of the reference tie.

    For an image whose two best logits lie within TOLERANCE of each other, either is a correct argmax
    (torch alone can pick another at another batch size); the one chosen must be one of those.
    """
    assert logits.shape == reference.shape
    difference = float(np.abs(logits - reference).max())
    assert difference <= TOLERANCE, difference
    predicted, expected = logits.argmax(axis=1), reference.argmax(axis=1)
    rows = np.arange(len(reference))
    ties = reference[rows, expected] - reference[rows, predicted] <= TOLERANCE
    assert np.all((predicted == expected) | ties), np.nonzero(predicted != expected)


def test_onnx_runtime_matches_pytorch_on_mnist_test(exported: dict[str, Path], reference: np.ndarray, mnist_test: Any) -> None:
    images = data.to_model_input(mnist_test[0]).numpy()
    (logits,) = session(exported["onnx"]).run(["logits"], {"images": images})
    assert_same_predictions(logits, reference)
    assert (logits.argmax(axis=1) == mnist_test[1].numpy()).mean() > 0.95  # a trained model, not a random one


def test_pt2_program_matches_pytorch_on_mnist_test(exported: dict[str, Path], reference: np.ndarray, mnist_test: Any) -> None:
    program = torch.export.load(exported["pt2"])
    with torch.inference_mode():
        logits = program.module()(data.to_model_input(mnist_test[0])).numpy()
    assert_same_predictions(logits, reference)


def test_preprocessing_model_takes_raw_digits(exported: dict[str, Path], reference: np.ndarray, mnist_test: Any) -> None:
    onnx_session = session(exported["preprocessing"])
    (logits,) = onnx_session.run(["logits"], {"images": mnist_test[0].numpy()})
    assert_same_predictions(logits, reference)
    (one,) = onnx_session.run(["logits"], {"images": mnist_test[0][:1].numpy()})  # batch 1 too
    assert np.abs(one - reference[:1]).max() <= TOLERANCE
    assert onnx_session.get_inputs()[0].type == "tensor(uint8)"
    assert onnx_session.get_inputs()[0].shape == ["batch", 28, 28]


def test_onnx_file_is_self_contained_with_metadata(exported: dict[str, Path], trained_run: Path) -> None:
    path = exported["onnx"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["digits.onnx", "lenet.onnx", "lenet.pt2"]  # no .data, no temporaries
    model = onnx.load(str(path), load_external_data=False)
    assert not any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in model.graph.initializer)
    meta = {prop.key: prop.value for prop in model.metadata_props}
    checkpoint = trained_run / "checkpoints" / "best.ckpt"
    assert meta["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert json.loads(meta["class_names"]) == [str(digit) for digit in range(10)]
    assert (int(meta["input_size"]), float(meta["mean"]), float(meta["std"])) == (data.INPUT_SIZE, data.MEAN, data.STD)
    assert (meta["lenet_version"], meta["input_mode"], meta["with_preprocessing"]) == (lenet_cli.__version__, "resize", "false")
    runtime = session(path)
    (images,), (logits,) = runtime.get_inputs(), runtime.get_outputs()
    assert (images.name, images.type, images.shape) == ("images", "tensor(float)", ["batch", 1, 32, 32])
    assert (logits.name, logits.shape) == ("logits", ["batch", 10])


def test_pt2_archive_carries_the_metadata(exported: dict[str, Path], trained_run: Path) -> None:
    extra = {"lenet.json": ""}
    program = torch.export.load(exported["pt2"], extra_files=extra)
    meta = json.loads(extra["lenet.json"])
    assert meta["checkpoint_sha256"] == hashlib.sha256((trained_run / "checkpoints" / "best.ckpt").read_bytes()).hexdigest()
    assert (meta["input_size"], meta["mean"], meta["std"], meta["class_names"][9]) == (32, data.MEAN, data.STD, "9")
    assert program.module()(torch.zeros(1, 1, 32, 32)).shape == (1, 10)  # batch 1 ...
    assert program.module()(torch.zeros(7, 1, 32, 32)).shape == (7, 10)  # ... and any other


def docs_example() -> str:
    """The ``predict_png.py`` code block of docs/export.md, as it stands there."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "export.md").read_text(), flags=re.DOTALL)
    (script,) = [block for block in blocks if block.startswith("# predict_png.py")]
    return script


@pytest.mark.parametrize("kind", ["onnx", "preprocessing"])
def test_docs_example_predicts_a_png(kind: str, exported: dict[str, Path], mnist_test: Any, tmp_path: Path) -> None:
    script = tmp_path / "predict_png.py"
    script.write_text(docs_example())
    images, labels = mnist_test
    for index in (0, 1, 2):  # a 7, a 2 and a 1
        png = tmp_path / f"digit{index}.png"
        Image.fromarray(images[index].numpy()).save(png)
        # No torch in the child: the example must run with numpy, Pillow and onnxruntime alone.
        blocker = "import sys; sys.modules['torch'] = None; import runpy; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
        result = subprocess.run(
            [sys.executable, "-c", blocker, str(script), str(exported[kind]), str(png)],
            capture_output=True, text=True, timeout=120, env=child_env(), check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(rf"{labels[index]} \(\d+\.\d%\)\n", result.stdout), result.stdout


def test_help_does_not_import_the_onnx_tools() -> None:
    code = "import sys; from lenet_cli.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxscript', 'onnxruntime', 'onnx_ir')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=child_env(), check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def a_file(folder: Path) -> Path:
    (folder / "a_file").write_text("not a folder")
    return folder / "a_file"


def without_onnxscript(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now raises ImportError


BAD_EXPORTS = [
    pytest.param(lambda t, c: [], None, "needs --ckpt_path", id="no checkpoint"),
    pytest.param(lambda t, c: ["--ckpt_path", f"{t}/none.ckpt"], None, "does not exist", id="missing checkpoint"),
    pytest.param(lambda t, c: ["--ckpt_path", c, "--format", "tflite"], None, "format", id="unknown format"),
    pytest.param(lambda t, c: ["--ckpt_path", c, "--output", f"{a_file(t)}/lenet.onnx"], None, "is a file", id="output below a file"),
    pytest.param(lambda t, c: ["--ckpt_path", c, "--output", "/proc/lenet.onnx"], None, "cannot write into /proc", id="read-only output folder", marks=NO_PROC),
    pytest.param(lambda t, c: ["--ckpt_path", c, "--output", str(t)], None, "is a folder", id="output is a folder"),
    pytest.param(lambda t, c: ["--ckpt_path", c, "--output", "lenet.pt2"], None, "names a .pt2 file but --format is onnx", id="suffix of the other format"),
    pytest.param(lambda t, c: ["--ckpt_path", c], without_onnxscript, 'onnxscript is not installed: pip install "lenet-cli[export]"', id="missing extra"),
    pytest.param(lambda t, c: ["--ckpt_path", c, "--data.input_mode", "pad"], None, "trained with --data.input_mode resize, not pad", id="other input mode"),
]  # fmt: skip


@pytest.mark.parametrize(("make_args", "setup", "expected"), BAD_EXPORTS)
def test_bad_export_fails_in_one_line(
    make_args: Any, setup: Any, expected: str, trained_run: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    args = ["export", *CPU, *make_args(tmp_path, str(trained_run / "checkpoints" / "best.ckpt"))]
    if setup is not None:
        setup(monkeypatch)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(args)
    assert exit_info.value.code == 2
    assert expected in error_line(capsys.readouterr().err)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("*.pt2")) and not list(tmp_path.glob(".*.tmp"))


def test_failed_export_keeps_the_earlier_file(trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lenet.onnx").write_bytes(b"an earlier export")

    def exporter_fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter bug")

    monkeypatch.setattr(torch.onnx, "export", exporter_fails)
    with pytest.raises(RuntimeError, match="exporter bug"):  # not a user error: a traceback
        run_cli(["export", *CPU, "--ckpt_path", str(trained_run / "checkpoints" / "best.ckpt")])
    assert (tmp_path / "lenet.onnx").read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.onnx"]
