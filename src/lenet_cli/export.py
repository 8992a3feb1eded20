"""``lenet export``: a trained LeNet as one ONNX file or a ``torch.export`` program, for use without lenet.

The exported model takes what LeNet takes, normalised float32 ``images`` (N, 1, 32, 32), and gives
``logits`` (N, classes), for any N. With ``with_preprocessing`` lenet's own resize and normalisation
(:func:`lenet_cli.data.preprocess`) come first, and ``images`` are uint8 (N, 28, 28) MNIST-like digits.
Each file says how to use it (:func:`metadata`): class names, input size, mean and std, how 28×28
becomes 32×32, the lenet version that wrote it and the sha256 of the checkpoint it came from; ONNX
holds them as ``metadata_props``, a pt2 archive as its extra file ``lenet.json``.

ONNX goes through torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``), which needs
``onnx`` and ``onnxscript``; they are imported here only, so that the rest of ``lenet`` never loads them.
"""

from __future__ import annotations

import dataclasses
import io
import json
import stat
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch import Tensor, nn

from lenet_cli import __version__, atomic
from lenet_cli.checkpoints import load, pretrained
from lenet_cli.data import mnist
from lenet_cli.errors import LenetError, escaped
from lenet_cli.images.mnist_style import FIELD

Format = Literal["onnx", "pt2"]
InputMode = Literal["resize", "pad"]
FORMATS: tuple[Format, ...] = ("onnx", "pt2")
INPUT, OUTPUT = "images", "logits"  # the exported graph's input and output names
# The dynamo exporter's default on torch 2.11-2.14 (IR version 10), fixed so that every torch writes the same.
OPSET = 20
METADATA_FILE = "lenet.json"  # the pt2 archive's extra file holding metadata()
INSTALL = 'pip install "lenet-cli[export]"'
# torch.export specialises sizes 0 and 1 to constants: an example batch of 2 keeps N dynamic.
EXAMPLE_BATCH = 2


class Classifier(nn.Module):
    """What the exported file computes: LeNet's logits, after lenet's preprocessing when ``input_mode`` is set.

    Args:
        model: LeNet's network (:class:`~lenet_cli.training.network.LeNet5`) with its trained weights.
        input_mode: ``None``: the input is LeNet's own (normalised float32 (N, 1, 32, 32)). ``"resize"``
            or ``"pad"``: the input is uint8 (N, 28, 28) digits, made into LeNet's input as in training.
    """

    def __init__(self, model: nn.Module, input_mode: InputMode | None = None) -> None:
        super().__init__()
        self.model, self.input_mode = model, input_mode

    def forward(self, images: Tensor) -> Tensor:
        if self.input_mode is not None:
            images = mnist.preprocess(images, self.input_mode)
        return self.model(images)


def run(
    trainer: Trainer,
    model: LightningModule,
    datamodule: LightningDataModule | None,
    *,
    ckpt_path: str | None,
    format: str,
    output: str | None,
    with_preprocessing: bool,
) -> Path:
    """Write ``model`` with the weights of ``ckpt_path`` as ``output``.

    The options and their defaults are ``LenetTrainer.export``'s, the subcommand's, and only there.

    Everything the user can get wrong (no checkpoint, format, output, missing tools) fails in one line
    before the export starts. The export runs on the CPU whatever the trainer's accelerator is.
    """
    if format not in FORMATS:
        raise LenetError(f"--format {format}: unknown format; use one of {', '.join(FORMATS)}")
    if ckpt_path is None:  # `--ckpt_path untrained`: the bundled model is the default (runs/ckpt_path.py)
        raise LenetError(
            "lenet export needs weights: --ckpt_path best, last, pretrained or a checkpoint file (untrained has none)"
        )
    target = output_path(output, format, Path(trainer.log_dir or trainer.default_root_dir), ckpt_path)
    if format == "onnx":
        require_onnx_tools()
    pad = datamodule is not None and datamodule.hparams.get("input_mode") == "pad"
    input_mode: InputMode = "pad" if pad else "resize"

    checkpoint = load.load(ckpt_path)
    load.check_fits(checkpoint, model, ckpt_path)
    trained_mode = (checkpoint.get("datamodule_hyper_parameters") or {}).get("input_mode")
    if trained_mode is not None and trained_mode != input_mode:
        raise LenetError(
            f"checkpoint {ckpt_path} was trained with --data.input_mode {trained_mode}, not {input_mode}; "
            f"export it with --data.input_mode {trained_mode} (the file records that preprocessing, and may include it)"
        )
    model.load_state_dict(checkpoint["state_dict"])
    model.cpu().eval()
    network = getattr(model, "network", None)
    if not isinstance(network, nn.Module):
        raise LenetError(f"lenet export exports LeNet models; {type(model).__name__} has no network")
    classifier = Classifier(network, input_mode if with_preprocessing else None).eval()
    info = metadata(model, load.sha256(ckpt_path), input_mode, with_preprocessing)
    # How lenet read / serve turn its logits into confidences and refuse non-digits (the bundled model's).
    info["calibration"] = dataclasses.asdict(pretrained.calibration_of(ckpt_path))
    example = example_input(model, with_preprocessing)

    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replace_atomically(target) as temporary:
        if format == "onnx":
            write_onnx(classifier, example, temporary, info)
        else:
            write_pt2(classifier, example, temporary, info)
    size, classes = target.stat().st_size / 1024, model.hparams["num_classes"]
    shape = input_shape(model, with_preprocessing)
    print(
        f"wrote {escaped(target)} ({format}, {size:.0f} KiB): {INPUT} {shape} → {OUTPUT} (N, {classes}), "
        f"from {escaped(ckpt_path)}"
    )
    return target


def output_path(output: str | None, format: str, run_folder: Path, ckpt_path: str | None = None) -> Path:
    """The file to write, checked before any work: a writable folder, a suffix that matches ``format``,
    nothing there but a regular file (a device or FIFO would be replaced by a file), never the checkpoint.

    Without ``--output``, ``lenet.onnx`` / ``lenet.pt2`` in the command's run folder (runs/<name>/version_N/,
    made only once the export is about to be written): never into the working folder, where a second
    export would replace the first.
    """
    target = Path(output).expanduser() if output else run_folder / f"lenet.{format}"
    shown = escaped(output if output else target)
    if target.is_dir():
        raise LenetError(
            f"--output {shown}: is a folder; name the file to write (e.g. {escaped(target / f'lenet.{format}')})"
        )
    other = next((name for name in FORMATS if name != format and target.suffix == f".{name}"), None)
    if other is not None:
        raise LenetError(
            f"--output {shown} is a .{other} name but --format is {format}: add --format {other} or rename it"
        )
    try:
        mode = target.stat().st_mode
    except OSError:
        mode = None  # nothing there yet (or a dangling link, which the new file replaces)
    if mode is not None and not stat.S_ISREG(mode):
        raise LenetError(f"--output {shown}: is not a regular file (a device, FIFO or socket); name a file to write")
    if mode is not None and ckpt_path and Path(ckpt_path).exists() and target.samefile(ckpt_path):
        raise LenetError(f"--output {shown} is the checkpoint being exported; name another file")
    atomic.check_writable("output", target.parent)
    return target


def require_onnx_tools() -> None:
    """Fail in one line when the packages torch's ONNX exporter needs are missing."""
    try:
        import onnx  # noqa: F401, PLC0415 - only the ONNX export needs them
        import onnxscript  # noqa: F401, PLC0415
    except ImportError as error:
        missing = error.name or "onnx/onnxscript"
        raise LenetError(f"--format onnx needs the ONNX tools, and {missing} is not installed: {INSTALL}") from error


def input_shape(model: LightningModule, with_preprocessing: bool) -> str:
    if with_preprocessing:
        return f"uint8 (N, {FIELD}, {FIELD})"
    return f"float32 (N, {model.hparams['in_channels']}, {mnist.INPUT_SIZE}, {mnist.INPUT_SIZE})"


def metadata(model: LightningModule, checkpoint_sha256: str, input_mode: InputMode, with_preprocessing: bool) -> dict:
    """What a consumer of the file needs besides the graph; numbers and lists as JSON in ONNX's string map."""
    if with_preprocessing:
        expects = f"{input_shape(model, True)} digits, light on dark as in MNIST; resized and normalised inside"
    else:
        how = "bilinear resize" if input_mode == "resize" else "zero padding"
        expects = f"{input_shape(model, False)}: pixels / 255 ({how} from {FIELD}x{FIELD}), then (x - mean) / std"
    return {
        "class_names": [str(index) for index in range(model.hparams["num_classes"])],
        "input": expects,
        "input_size": mnist.INPUT_SIZE,
        "input_mode": input_mode,
        "mean": mnist.MEAN,
        "std": mnist.STD,
        "with_preprocessing": with_preprocessing,
        "lenet_version": __version__,
        "checkpoint_sha256": checkpoint_sha256,
    }


def example_input(model: LightningModule, with_preprocessing: bool) -> Tensor:
    if with_preprocessing:
        return torch.zeros(EXAMPLE_BATCH, FIELD, FIELD, dtype=torch.uint8)
    return torch.zeros(EXAMPLE_BATCH, model.hparams["in_channels"], mnist.INPUT_SIZE, mnist.INPUT_SIZE)


def dynamic_batch() -> dict[str, dict[int, Any]]:
    """``dynamic_shapes`` for ``torch.export``: dimension 0 of the input, named ``batch`` in the ONNX graph."""
    return {INPUT: {0: torch.export.Dim("batch")}}


def write_onnx(classifier: Classifier, example: Tensor, path: Path, info: dict[str, Any]) -> None:
    """One self-contained ONNX file (weights inside, no ``.onnx.data`` beside it) with ``info`` as metadata."""
    import onnx  # noqa: PLC0415 - see require_onnx_tools

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals: noise for a user
        program = torch.onnx.export(
            classifier,
            (example,),
            dynamo=True,
            verbose=False,  # its step-by-step progress lines
            opset_version=OPSET,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes=dynamic_batch(),
            external_data=False,
        )
    assert program is not None  # dynamo=True always returns the program
    proto = program.model_proto  # weights included: serialised whole below, so never an external file
    for node in proto.graph.node:
        # The exporter's notes per node (stack traces with this machine's source paths, FX names): the same
        # network exported from another folder or machine gives the same bytes without them.
        del node.metadata_props[:]
    as_strings = {key: value if isinstance(value, str) else json.dumps(value) for key, value in info.items()}
    onnx.helper.set_model_props(proto, as_strings)
    proto.doc_string = f"LeNet digit classifier exported by lenet-cli {__version__}"
    onnx.checker.check_model(proto)
    path.write_bytes(proto.SerializeToString())


def write_pt2(classifier: Classifier, example: Tensor, path: Path, info: dict[str, Any]) -> None:
    """A ``torch.export.save`` archive with ``info`` as its extra file :data:`METADATA_FILE`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(classifier, (example,), dynamic_shapes=dynamic_batch())
    # Into a buffer: torch.export.save warns about a file name that does not end in .pt2 (the temporary's).
    archive = io.BytesIO()
    torch.export.save(program, archive, extra_files={METADATA_FILE: json.dumps(info)})
    path.write_bytes(archive.getvalue())
