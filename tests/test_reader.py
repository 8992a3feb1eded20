"""``lenet read`` and ``lenet_cli.read()``: the torch-free reader (ONNX Runtime), its inputs, output, exit
codes and one-line errors, its parity with the bundled checkpoint, and that it never imports torch."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lenet_cli
from lenet_cli.checkpoints import load, pretrained
from lenet_cli.data import idx
from lenet_cli.data.mnist import preprocess, to_model_input
from lenet_cli.images.decode import BadImage
from lenet_cli.reading import cli, model
from lenet_cli.reading.reader import Reader
from lenet_cli.training.network import LeNet5, network_weights
from tests.helpers import child_env, dark_on_light_rgb, on_canvas

TEST_DIGITS = (0, 1, 2, 3, 4)  # MNIST test indices: 7, 2, 1, 0, 4


@pytest.fixture(scope="module")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    arrays = idx.load(None, allow_download=False, splits=("test",))
    return arrays["test_images"].numpy(), arrays["test_labels"].numpy()


@pytest.fixture(scope="module")
def reader() -> Reader:
    return Reader()


def photo(digit: np.ndarray) -> np.ndarray:
    """An MNIST digit as blue ink on cream paper, 3× larger, off-centre: uint8 (H, W, 3)."""
    picture = dark_on_light_rgb(digit, scale=3)
    return on_canvas(picture, (120, 130), 20, 30)


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory: pytest.TempPathFactory, mnist_test: tuple[np.ndarray, np.ndarray]) -> Path:
    folder = tmp_path_factory.mktemp("digits")
    for index in TEST_DIGITS:
        Image.fromarray(photo(mnist_test[0][index])).save(folder / f"d{index}.png")
    Image.new("L", (60, 60), 250).save(folder / "blank.png")
    return folder


def expected(mnist_test: tuple[np.ndarray, np.ndarray], index: int) -> str:
    return str(int(mnist_test[1][index]))


# --- read() and Reader --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["str", "path", "bytes", "pil", "rgb array", "gray array", "gray float"])
def test_read_takes_each_kind_of_image(kind: str, digit_files: Path, mnist_test: tuple[np.ndarray, np.ndarray]) -> None:
    file = digit_files / "d0.png"
    pixels = np.asarray(Image.open(file))
    image = {
        "str": str(file),
        "path": file,
        "bytes": file.read_bytes(),
        "pil": Image.open(file),
        "rgb array": pixels,
        "gray array": np.asarray(Image.open(file).convert("L")),
        "gray float": np.asarray(Image.open(file).convert("L"), dtype=np.float64),
    }[kind]
    reading = lenet_cli.read(image)
    assert reading.text == expected(mnist_test, 0) == "7"
    assert 0.9 < reading.confidence <= 1 and len(reading.digits) == 1
    # The box: the ink of the 28×28 digit, 3× larger, at (30, 20) in the picture; to a few pixels.
    rows, columns = np.nonzero(mnist_test[0][0] > 64)
    ink = (30 + 3 * columns.min(), 20 + 3 * rows.min(), 3 * np.ptp(columns) + 3, 3 * np.ptp(rows) + 3)
    assert np.abs(np.subtract(reading.digits[0].box, ink)).max() <= 6, (reading.digits[0].box, ink)


def test_read_many_matches_read_one_by_one(digit_files: Path, reader: Reader) -> None:
    files = sorted(digit_files.glob("*.png"))
    together = reader.read_many(files)
    assert together == [reader.read(file) for file in files]
    assert [reading.text for reading in together] == ["", "7", "2", "1", "0", "4"]  # blank first
    assert together[0].note and together[0].confidence == 0 and not together[0].found


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"not an image", "bytes: not an image file that can be read"),
        (np.zeros((2, 3, 7)), "pixels of shape (2, 3, 7)"),
        (np.full((9, 9), np.nan), "holds NaN"),
        (42, "cannot read a int"),
        ("/no/such/file.png", "/no/such/file.png: does not exist"),
    ],
)
def test_read_refuses_what_is_no_image_in_one_line(image: object, message: str, reader: Reader) -> None:
    with pytest.raises(BadImage, match=r"^[^\n]*$") as caught:
        reader.read(image)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_numpy_preprocessing_equals_torch() -> None:
    """A model exported without preprocessing gets its 28→32 step from NumPy/OpenCV: torch's, to 1e-5."""
    fields = np.random.default_rng(0).integers(0, 256, (16, 28, 28), dtype=np.uint8)
    classifier = model.OnnxClassifier.__new__(model.OnnxClassifier)
    classifier.mean, classifier.std, classifier.input_size = 0.1307, 0.3081, 32
    for mode in ("resize", "pad"):
        classifier.input_mode = mode
        ours = classifier.model_input(fields)
        theirs = preprocess(torch.from_numpy(fields), mode).numpy()  # type: ignore[arg-type]
        assert ours.shape == theirs.shape == (16, 1, 32, 32)
        assert np.abs(ours - theirs).max() < 1e-5, mode


def test_bundled_onnx_equals_the_checkpoint_on_every_mnist_test_image(
    mnist_test: tuple[np.ndarray, np.ndarray], reader: Reader
) -> None:
    """The parity the issue asks: every test image the same class, max |Δ logit| ≤ 1e-4 (measured 2e-6)."""
    network = LeNet5()
    network.load_state_dict(network_weights(load.load(pretrained.path())["state_dict"]))
    images = mnist_test[0]
    with torch.inference_mode():
        expected_logits = network.eval()(to_model_input(torch.from_numpy(images))).numpy()
    logits = reader.classify(images)
    assert logits.shape == expected_logits.shape == (10_000, 10)
    assert np.abs(logits - expected_logits).max() <= 1e-4
    assert (logits.argmax(1) == expected_logits.argmax(1)).all()
    assert (logits.argmax(1) == mnist_test[1]).mean() >= 0.994  # the model card's 99.45 %


def test_bundled_onnx_is_checked_against_its_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    damaged = tmp_path / model.BUNDLED_FILE
    damaged.write_bytes(model.bundled_path().read_bytes()[:-1] + b"\0")
    monkeypatch.setattr(model, "bundled_folder", lambda: tmp_path)
    with pytest.raises(lenet_cli.errors.LenetError, match="does not match its verified checksum"):
        Reader()
    assert pretrained.ONNX_FILE == model.BUNDLED_FILE  # one name, where make_pretrained.py writes it


def test_reader_reads_a_model_from_lenet_export(tmp_path: Path, digit_files: Path) -> None:
    copy = shutil.copy(model.bundled_path(), tmp_path / "mine.onnx")
    assert Reader(copy).read(digit_files / "d1.png").text == "2"


# --- lenet read --------------------------------------------------------------------------------------


def run_read(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(args)
    out, err = capsys.readouterr()
    return status, out, err


def test_lenet_read_prints_one_line_per_image(digit_files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_read([str(digit_files / "d0.png"), str(digit_files / "d4.png")], capsys)
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{digit_files / 'd0.png'}: 7 (confidence ") and lines[0].endswith(")")
    assert lines[1].startswith(f"{digit_files / 'd4.png'}: 4 (confidence ")
    assert 0.9 <= float(lines[0].rsplit(" ", 1)[1].rstrip(")")) <= 1


def test_lenet_read_folder_glob_and_no_digit(digit_files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_read([str(digit_files)], capsys)
    assert status == 1  # the blank page has no digit
    assert out.splitlines()[0] == f"{digit_files / 'blank.png'}: no digit (the image is one flat colour)"
    assert [line.split(": ")[1].split(" ")[0] for line in out.splitlines()[1:]] == ["7", "2", "1", "0", "4"]
    status, out, _ = run_read([str(digit_files / "d[01].png")], capsys)
    assert status == 0 and len(out.splitlines()) == 2


def test_lenet_read_json(digit_files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_read(["--json", str(digit_files / "d2.png"), str(digit_files / "blank.png")], capsys)
    first, second = (json.loads(line) for line in out.splitlines())
    assert status == 1
    assert first["path"] == str(digit_files / "d2.png") and first["text"] == "1" and "note" not in first
    assert first["digits"][0]["text"] == "1" and len(first["digits"][0]["box"]) == 4
    assert first["confidence"] == first["digits"][0]["confidence"] > 0.9
    assert second == {"path": str(digit_files / "blank.png"), "text": "", "confidence": 0.0, "digits": [],
                      "note": "the image is one flat colour"}  # fmt: skip


def test_lenet_read_stdin(
    digit_files: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO((digit_files / "d3.png").read_bytes()))
    monkeypatch.setattr(sys, "stdin", stdin)
    status, out, _ = run_read(["-"], capsys)
    assert status == 0 and out.startswith("-: 0 (confidence ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param([], "the following arguments are required: PATH", id="no path"),
        pytest.param(["--colour", "x.png"], "unrecognized arguments: --colour", id="unknown option"),
        pytest.param(["{tmp}/none.png"], "{tmp}/none.png does not exist", id="missing file"),
        pytest.param(["{tmp}/empty"], "the folder {tmp}/empty holds no files", id="empty folder"),
        pytest.param(["{tmp}/*.gif"], "no files match {tmp}/*.gif", id="glob matching nothing"),
        pytest.param(
            ["--model", "{tmp}/bad.onnx", "{tmp}/bad.png"], "--model {tmp}/bad.onnx: not an ONNX model", id="bad model"
        ),
        pytest.param(
            ["--model", "{tmp}/no.onnx", "{tmp}/bad.png"], "--model {tmp}/no.onnx: does not exist", id="no model"
        ),
        pytest.param(["{tmp}/bad.png"], "{tmp}/bad.png: not an image file that can be read", id="not an image"),
    ],
)  # fmt: skip
def test_lenet_read_errors_are_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.onnx").write_text("no model")
    (tmp_path / "bad.png").write_text("no picture")
    status, out, err = run_read([arg.format(tmp=tmp_path) for arg in args], capsys)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message.format(tmp=tmp_path) in err


def test_a_bad_file_among_good_ones_is_one_line_and_the_rest_are_read(
    digit_files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    status, out, err = run_read([str(digit_files / "d0.png"), str(tmp_path / "bad.png")], capsys)
    assert status == 2 and out.startswith(f"{digit_files / 'd0.png'}: 7 ")
    expected = "not an image file that can be read (lenet reads PNG, JPEG, BMP, TIFF, GIF)"
    assert err == f"error: {tmp_path / 'bad.png'}: {expected}\n"


# --- The process: no torch, the console script ---------------------------------------------------------


def test_lenet_read_imports_neither_torch_nor_lightning(digit_files: Path) -> None:
    """In a new process (the point is what it imports): ``lenet read``, then ``lenet_cli.read`` from Python."""
    code = (
        "import sys, lenet_cli\n"
        "assert 'numpy' not in sys.modules, 'import lenet_cli is not cheap'\n"
        "from lenet_cli.__main__ import main\n"
        f"main(['read', {str(digit_files / 'd0.png')!r}])\n"
        f"print(lenet_cli.read({str(digit_files / 'd1.png')!r}).text)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning', 'jsonargparse'))\n"
        "print('heavy:', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{digit_files / 'd0.png'}: 7 (confidence") and lines[1] == "2"
    assert lines[2] == "heavy: []"


def test_python_dash_m_lenet_read_exit_status(digit_files: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lenet_cli", "read", str(digit_files / "blank.png")],
        capture_output=True, text=True, env=child_env(), timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and result.stdout.endswith("no digit (the image is one flat colour)\n")


def test_the_reader_distribution_has_the_packages_version() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    from tests.helpers import ROOT

    reader = tomllib.loads((ROOT / "reader" / "pyproject.toml").read_text())["project"]
    assert reader["version"] == lenet_cli.__version__
    assert not [name for name in reader["dependencies"] if name.split(">")[0] in ("torch", "lightning")]


def test_many_pictures_are_read_in_processes_as_in_threads(
    tmp_path: Path,
    mnist_test: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    images, _ = mnist_test
    count = cli.PROCESSES_FROM + 6  # enough pictures for forked processes
    for index in range(count):
        Image.fromarray(255 - images[index]).resize((56, 56)).save(tmp_path / f"{index:03d}.png")
    (tmp_path / "zz-bad.png").write_bytes(b"not a picture")
    in_processes = cli.main([str(tmp_path)]), capsys.readouterr()
    monkeypatch.setattr(cli, "PROCESSES_FROM", 10**9)
    in_threads = cli.main([str(tmp_path)]), capsys.readouterr()
    assert in_processes == in_threads
    status, (out, err) = in_processes
    assert status == 2 and len(out.splitlines()) == count
    assert err.count("\n") == 1 and "zz-bad.png: not an image file" in err
