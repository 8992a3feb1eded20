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
from lenet_cli.cli.main import main as run_cli
from lenet_cli.data import mnist
from lenet_cli.training.module import LeNet
from tests.helpers import CPU, NO_PROC, ROOT, assert_one_line_error, child_env

TOLERANCE = 1e-4  # max |Δ logit| against lenet's PyTorch model


@pytest.fixture(scope="module")
def exported(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The trained run exported through ``lenet export`` as ONNX, pt2 and ONNX with preprocessing."""
    folder = tmp_path_factory.mktemp("exported")
    checkpoint = str(trained_run / "checkpoints" / "best.ckpt")
    files = {"onnx": folder / "lenet.onnx", "pt2": folder / "lenet.pt2", "preprocessing": folder / "digits.onnx"}
    run_cli(["export", *CPU, "--ckpt_path", checkpoint, "--output", str(files["onnx"])])
    run_cli(["export", *CPU, "--ckpt_path", checkpoint, "--format", "pt2", "--output", str(files["pt2"])])
    run_cli(
        [
            "export",
            *CPU,
            "--ckpt_path",
            checkpoint,
            "--with_preprocessing",
            "true",
            "--output",
            str(files["preprocessing"]),
        ]
    )
    return files


@pytest.fixture(scope="module")
def reference(trained_run: Path, mnist_test: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
    """lenet's PyTorch model's logits (10 000, 10) on the MNIST test set."""
    model = LeNet.load_from_checkpoint(trained_run / "checkpoints" / "best.ckpt", map_location="cpu").eval()
    with torch.inference_mode():
        return model(mnist.to_model_input(mnist_test[0])).numpy()


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


def test_onnx_runtime_matches_pytorch_on_mnist_test(
    exported: dict[str, Path], reference: np.ndarray, mnist_test: Any
) -> None:
    images = mnist.to_model_input(mnist_test[0]).numpy()
    (logits,) = session(exported["onnx"]).run(["logits"], {"images": images})
    assert_same_predictions(logits, reference)
    assert (logits.argmax(axis=1) == mnist_test[1].numpy()).mean() > 0.95  # a trained model, not a random one


def test_pt2_program_matches_pytorch_on_mnist_test(
    exported: dict[str, Path], reference: np.ndarray, mnist_test: Any
) -> None:
    program = torch.export.load(exported["pt2"])
    with torch.inference_mode():
        logits = program.module()(mnist.to_model_input(mnist_test[0])).numpy()
    assert_same_predictions(logits, reference)


def test_preprocessing_model_takes_raw_digits(
    exported: dict[str, Path], reference: np.ndarray, mnist_test: Any
) -> None:
    onnx_session = session(exported["preprocessing"])
    (logits,) = onnx_session.run(["logits"], {"images": mnist_test[0].numpy()})
    assert_same_predictions(logits, reference)
    (one,) = onnx_session.run(["logits"], {"images": mnist_test[0][:1].numpy()})  # batch 1 too
    assert np.abs(one - reference[:1]).max() <= TOLERANCE
    assert onnx_session.get_inputs()[0].type == "tensor(uint8)"
    assert onnx_session.get_inputs()[0].shape == ["batch", 28, 28]


def test_onnx_file_is_self_contained_with_metadata(exported: dict[str, Path], trained_run: Path) -> None:
    path = exported["onnx"]
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "digits.onnx",
        "lenet.onnx",
        "lenet.pt2",
    ]  # no .data, no temporaries
    model = onnx.load(str(path), load_external_data=False)
    assert not any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in model.graph.initializer)
    meta = {prop.key: prop.value for prop in model.metadata_props}
    checkpoint = trained_run / "checkpoints" / "best.ckpt"
    assert meta["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert json.loads(meta["class_names"]) == [str(digit) for digit in range(10)]
    assert (int(meta["input_size"]), float(meta["mean"]), float(meta["std"])) == (
        mnist.INPUT_SIZE,
        mnist.MEAN,
        mnist.STD,
    )
    assert (meta["lenet_version"], meta["input_mode"], meta["with_preprocessing"]) == (
        lenet_cli.__version__,
        "resize",
        "false",
    )
    runtime = session(path)
    (images,), (logits,) = runtime.get_inputs(), runtime.get_outputs()
    assert (images.name, images.type, images.shape) == ("images", "tensor(float)", ["batch", 1, 32, 32])
    assert (logits.name, logits.shape) == ("logits", ["batch", 10])


def test_pt2_archive_carries_the_metadata(exported: dict[str, Path], trained_run: Path) -> None:
    extra = {"lenet.json": ""}
    program = torch.export.load(exported["pt2"], extra_files=extra)
    meta = json.loads(extra["lenet.json"])
    assert (
        meta["checkpoint_sha256"]
        == hashlib.sha256((trained_run / "checkpoints" / "best.ckpt").read_bytes()).hexdigest()
    )
    assert (meta["input_size"], meta["mean"], meta["std"], meta["class_names"][9]) == (32, mnist.MEAN, mnist.STD, "9")
    assert program.module()(torch.zeros(1, 1, 32, 32)).shape == (1, 10)  # batch 1 ...
    assert program.module()(torch.zeros(7, 1, 32, 32)).shape == (7, 10)  # ... and any other


def docs_example() -> str:
    """The ``predict_png.py`` code block of docs/export.md, as it stands there."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "export.md").read_text(), flags=re.DOTALL)
    (script,) = [block for block in blocks if block.startswith("# predict_png.py")]
    return script


WITHOUT_TORCH = """\
import runpy, sys
sys.modules["torch"] = None  # the example must run with numpy, Pillow and onnxruntime alone
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("kind", ["onnx", "preprocessing"])
def test_docs_example_predicts_a_png(kind: str, exported: dict[str, Path], mnist_test: Any, tmp_path: Path) -> None:
    script = tmp_path / "predict_png.py"
    script.write_text(docs_example())
    images, labels = mnist_test
    for index in (0, 1, 2):  # a 7, a 2 and a 1
        png = tmp_path / f"digit{index}.png"
        Image.fromarray(images[index].numpy()).save(png)
        result = subprocess.run(
            [sys.executable, "-c", WITHOUT_TORCH, str(script), str(exported[kind]), str(png)],
            capture_output=True, text=True, timeout=120, env=child_env(),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(rf"{labels[index]} \(\d+\.\d%\)\n", result.stdout), result.stdout


IMPORTS_OF_HELP = """\
import sys
from lenet_cli.cli.main import main
try:
    main(["--help"])
except SystemExit:
    pass
print(sorted(name for name in sys.modules if name.split(".")[0] in ("onnx", "onnxscript", "onnxruntime", "onnx_ir")))
"""


@pytest.mark.slow
@pytest.mark.processes
def test_help_does_not_import_the_onnx_tools() -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORTS_OF_HELP], capture_output=True, text=True, timeout=120, env=child_env()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


CHECKPOINT = ["--ckpt_path", "{checkpoint}"]
BAD_EXPORTS = [
    pytest.param(["--ckpt_path", "untrained"], "lenet export needs weights", id="untrained"),
    pytest.param(["--ckpt_path", "{tmp}/none.ckpt"], "does not exist", id="missing checkpoint"),
    pytest.param([*CHECKPOINT, "--format", "tflite"], "format", id="unknown format"),
    pytest.param([*CHECKPOINT, "--output", "{tmp}/a_file/lenet.onnx"], "is a file", id="output below a file"),
    pytest.param(
        [*CHECKPOINT, "--output", "/proc/lenet.onnx"], "cannot write into /proc", id="read-only", marks=NO_PROC
    ),
    pytest.param([*CHECKPOINT, "--output", "{tmp}"], "is a folder", id="output is a folder"),
    pytest.param([*CHECKPOINT, "--output", "lenet.pt2"], "is a .pt2 name but --format is onnx", id="other suffix"),
    pytest.param([*CHECKPOINT, "--data.input_mode", "pad"], "trained with --data.input_mode resize, not pad", id="pad"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_EXPORTS)
def test_bad_export_fails_in_one_line(
    args: list[str], expected: str, trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    checkpoint = trained_run / "checkpoints" / "best.ckpt"
    args = [arg.format(tmp=tmp_path, checkpoint=checkpoint) for arg in args]
    assert_one_line_error(["export", *CPU, *args], expected, capsys)


def test_missing_onnx_tools_fail_in_one_line(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` now raises ImportError
    args = ["export", *CPU, "--ckpt_path", str(trained_run / "checkpoints" / "best.ckpt")]
    assert_one_line_error(args, 'onnxscript is not installed: pip install "lenet-cli[export]"', capsys)
    run_cli([*args, "--format", "pt2", "--output", "lenet.pt2"])  # pt2 needs torch alone
    assert (tmp_path / "lenet.pt2").is_file()


def test_failed_export_keeps_the_earlier_file(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lenet.onnx").write_bytes(b"an earlier export")

    def exporter_fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter bug")

    monkeypatch.setattr(torch.onnx, "export", exporter_fails)
    with pytest.raises(RuntimeError, match="exporter bug"):  # not a user error: a traceback
        run_cli(
            ["export", *CPU, "--ckpt_path", str(trained_run / "checkpoints" / "best.ckpt"), "--output", "lenet.onnx"]
        )
    assert (tmp_path / "lenet.onnx").read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.onnx"]


def test_export_defaults_to_the_bundled_model_and_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --ckpt_path: the bundled model; no --output: lenet.onnx in the run folder, never the working folder."""
    monkeypatch.chdir(tmp_path)
    run_cli(["export", *CPU, "--with_preprocessing", "true"])
    run_cli(["export", *CPU, "--with_preprocessing", "true"])  # a second export: a new run folder
    out, err = capsys.readouterr()
    first, second = (tmp_path / "runs" / "lenet" / f"version_{n}" / "lenet.onnx" for n in (0, 1))
    assert "no --ckpt_path: using the robust LeNet bundled with lenet-cli" in err + out
    assert f"wrote {first.relative_to(tmp_path)} (onnx" in out and f"wrote {second.relative_to(tmp_path)} (onnx" in out
    assert sorted(path.name for path in tmp_path.iterdir()) == ["runs"]
    # The same network as the reader's bundled ONNX file (made by tools/make_pretrained.py this way).
    from lenet_cli.reading.model import bundled_path

    assert first.read_bytes() == second.read_bytes() == bundled_path().read_bytes()
