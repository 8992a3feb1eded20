"""Build the bundled row reader (``lenet_cli/checkpoints/bundled/row-reader.onnx``, ``lenet_cli.reading.rows``):
a CTC head (Graves et al. 2006) on LeNet's own convolutions that reads a picture's kept ink as one row.

A row of writing scaled to 32 pixels high goes through LeNet's two conv+pool stages (initialised from the
bundled LeNet); each of the 45 columns of 16 × 5 features goes through a bidirectional GRU to 11 outputs
(the ten digits and CTC's blank). Trained on rows written from MNIST's *training* digits by
``tests/writing.write_number`` (1–6 digits, the benchmark's gaps and slant, and as many rows again with
every neighbour touching), put on paper as ``tests/writing._paper`` does, and on ``--negatives`` of rows
holding one of ``lenet_cli.data.negatives``' pictures of no digit (letters, strokes, shapes: read as
nothing). Each picture goes through lenet's own front end (``images.mnist_style.preprocess``, then
``reading.rows.row_of``), so the row reader sees what it will be given. On a GPU (one H100: making the
rows ~180 s on 16 cores, training ~200 s):

    PYTHONPATH=$PWD/src:$PWD python tools/make_row_reader.py --rows 360000 --epochs 15 --negatives 0.2 \
        --save row-reader.pt

then, here, export those weights into the package and paste the sha256 it prints into
``lenet_cli.reading.rows.BUNDLED_SHA256``:

    PYTHONPATH=$PWD/src:$PWD python tools/make_row_reader.py --weights row-reader.pt --export

Deterministic algorithms are asked for (cuBLAS's fixed workspace for cuDNN's GRU; CTC's loss on the CPU,
its CUDA backward having no deterministic kernel). Not part of the package; needs torch and onnx.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from lenet_cli.checkpoints.pretrained import folder
from lenet_cli.data import idx
from lenet_cli.data import negatives as made_negatives
from lenet_cli.images.decode import BadImage
from lenet_cli.images.mnist_style import preprocess
from lenet_cli.reading import rows as row_reading
from lenet_cli.training.network import LeNet5
from tests import writing

RECORD = "row-reader.json"


def to_row(gray: np.ndarray) -> np.ndarray:
    """A picture of writing (float 0…255, as ``images.decode`` gives) → uint8 (32, 192), light on dark, as
    the reading gives it to the row reader; a picture with no digit gives an empty row."""
    try:
        row = row_reading.row_of(row_reading.ink_of(preprocess(gray)))
    except BadImage:
        row = None
    return row.pixels if row is not None else np.zeros((row_reading.HEIGHT, row_reading.WIDTH), np.uint8)


def _negative(rng: np.random.Generator) -> np.ndarray:
    """One of ``lenet_cli.data.negatives``' pictures of no digit (the bundled LeNet's outlier exposure), as
    ink 0…1 at a random size: the row reader learns to read it as nothing (all blanks)."""
    makers = (made_negatives._letters, made_negatives._strokes, made_negatives._shape)
    ink = makers[int(rng.integers(len(makers)))](rng).astype(np.float32) / 255
    return writing._enlarged(ink, rng.uniform(0.4, 1.5))


def _crisp(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The number's ink as a drawing program's pen gives it: flat, solid strokes with hard edges, some
    thicker (lenet serve's page). The negatives' strokes are drawn so; with MNIST's soft strokes alone the
    row reader learned flat strokes as "no digit" and read the page's "10", "00" and "17" as nothing."""
    solid = (ink > rng.uniform(0.25, 0.6)).astype(np.uint8)
    if rng.random() < 0.5:
        solid = cv2.dilate(solid, np.ones((3, 3), np.uint8), iterations=int(rng.integers(1, 4)))
    return solid.astype(np.float32)


def _training_rows(job: tuple[int, int, float, float]) -> tuple[np.ndarray, list[str]]:
    seed, count, negatives, crisp = job
    arrays = idx.load(None, allow_download=False, splits=("train",))
    images, labels = arrays["train_images"].numpy(), arrays["train_labels"].numpy()
    rng = np.random.default_rng([seed, 31])
    rows, texts = [], []
    for number in range(count):
        if rng.random() < negatives:
            gray = writing._paper(_negative(rng), rng)
            try:
                rows.append(to_row(gray))
            except Exception as error:  # noqa: BLE001 - a bug of the front end: say so, keep the run
                print(f"to_row failed on a negative (seed {seed}, row {number}): {error!r}", flush=True)
                continue
            texts.append("")
            continue
        touching = 1.0 if number % 2 else 0.1
        gap = (2, 9) if number % 3 else (4, 16)
        ink, text = writing.write_number(images, labels, rng, 1 + number % 6, touching=touching, gap=gap)
        if crisp and rng.random() < crisp:  # no draw at 0: the rows of the bundled build stay as they were
            ink = _crisp(ink, rng)
        rows.append(to_row(writing._paper(ink, rng)))
        texts.append(text)
    return np.stack(rows), texts


class RowReader(nn.Module):
    """LeNet's conv stages along a 32-pixel-high uint8 row → per-column log-probabilities (B, T, 11)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = LeNet5().features  # (B, 16, 5, W/4 - 3)
        self.rnn = nn.GRU(16 * 5, 64, bidirectional=True, batch_first=True)
        self.out = nn.Linear(128, 11)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        x = (rows.float().div(255) - 0.1307) / 0.3081
        features = self.features(x[:, None])  # (B, 16, 5, T)
        columns = features.flatten(1, 2).transpose(1, 2)  # (B, T, 80)
        return self.out(self.rnn(columns)[0]).log_softmax(2)  # (B, T, 11)


def train(arguments: argparse.Namespace) -> tuple[RowReader, dict[str, object]]:
    # Deterministic on a GPU: cuDNN's GRU needs cuBLAS's fixed workspace; CTC's CUDA backward has no
    # deterministic kernel, so the loss is taken on the CPU (the log-probabilities are small).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    jobs = [
        (arguments.seed * 32 + part, arguments.rows // 32, arguments.negatives, arguments.crisp) for part in range(32)
    ]
    with ProcessPoolExecutor() as pool:
        made = list(pool.map(_training_rows, jobs))
    rows = torch.from_numpy(np.concatenate([r for r, _ in made]))
    texts = [t for _, ts in made for t in ts]
    made_s = time.perf_counter() - started
    lengths = torch.tensor([len(t) for t in texts])
    targets = torch.zeros((len(texts), 6), dtype=torch.long)  # padded; CTCLoss reads each row's length
    for i, text in enumerate(texts):
        targets[i, : len(text)] = torch.tensor([int(c) for c in text])

    torch.manual_seed(arguments.seed)
    model = RowReader()
    init = torch.load(arguments.init, weights_only=True) if arguments.init else None  # weights and record
    if init is not None:  # go on from a reader built before (its weights from --save): a shorter run
        model.load_state_dict(init["state_dict"])
    else:
        bundled = torch.load(folder() / "lenet-robust.ckpt", weights_only=True)["state_dict"]
        model.features.load_state_dict(
            {k.removeprefix("network.features."): v for k, v in bundled.items() if k.startswith("network.features.")}
        )
    model.to(device)
    rows_device = rows.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=arguments.lr)
    steps = arguments.epochs * (len(rows) // 256)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=arguments.lr, total_steps=steps)
    ctc = nn.CTCLoss(blank=row_reading.BLANK, zero_infinity=True)
    losses = []
    for epoch in range(arguments.epochs):
        order = torch.randperm(len(rows))
        for start in range(0, len(rows) - 255, 256):
            batch = order[start : start + 256]
            log_probabilities = model(rows_device[batch.to(device)]).transpose(0, 1).cpu()  # (T, B, 11)
            columns = torch.full((len(batch),), log_probabilities.shape[0])
            loss = ctc(log_probabilities, targets[batch], columns, lengths[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        losses.append(round(loss.item(), 4))
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}", flush=True)
    record = {
        "command": f"python tools/make_row_reader.py --rows {arguments.rows} --epochs {arguments.epochs} "
        f"--negatives {arguments.negatives} --crisp {arguments.crisp} --lr {arguments.lr} --seed {arguments.seed}"
        + (f" --init {arguments.init.name}" if arguments.init else ""),
        "init_record": init["record"] if init is not None else None,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
        "torch": str(torch.__version__),  # a plain string: the saved weights load with weights_only=True
        "rows": len(rows),
        "made_s": round(made_s, 1),
        "trained_s": round(time.perf_counter() - started - made_s, 1),
        "losses": losses,
    }
    return model.cpu().eval(), record


def export(model: RowReader, record: dict[str, object]) -> str:
    """The bundled ``row-reader.onnx`` (uint8 (N, 32, 192) → log-probabilities (N, 45, 11)) and its record;
    the file's sha256."""
    import onnx  # noqa: PLC0415

    target = folder() / row_reading.BUNDLED_FILE
    example = torch.zeros(2, row_reading.HEIGHT, row_reading.WIDTH, dtype=torch.uint8)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            str(target),
            dynamo=False,
            input_names=["rows"],
            output_names=["log_probabilities"],
            dynamic_axes={"rows": {0: "batch"}, "log_probabilities": {0: "batch"}},
            opset_version=18,
        )
    proto = onnx.load(str(target))
    proto.doc_string = "lenet-cli's row reader: a CTC head on LeNet's convolutions (tools/make_row_reader.py)"
    onnx.checker.check_model(proto)
    target.write_bytes(proto.SerializeToString())
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    (folder() / RECORD).write_text(json.dumps(record | {"onnx_sha256": digest}, indent=1) + "\n")
    return digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=360_000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--negatives", type=float, default=0.2, help="share of training rows that hold no digit")
    parser.add_argument("--crisp", type=float, default=0.0, help="share of numbers drawn with flat, solid strokes")
    parser.add_argument("--lr", type=float, default=2e-3, help="the one-cycle schedule's peak")
    parser.add_argument(
        "--init", type=Path, help="start from these weights (from --save), not from the bundled LeNet's"
    )
    parser.add_argument("--seed", type=int, default=0, help="of the training rows and the network's initialisation")
    parser.add_argument("--save", type=Path, help="write the trained weights (a state_dict) and their record here")
    parser.add_argument("--weights", type=Path, help="export these weights (from --save) instead of training")
    parser.add_argument("--export", action="store_true", help="write the ONNX file and its record into the package")
    arguments = parser.parse_args()
    if arguments.weights:
        saved = torch.load(arguments.weights, weights_only=True)
        model = RowReader()
        model.load_state_dict(saved["state_dict"])
        record = saved["record"]
    else:
        model, record = train(arguments)
        if arguments.save:
            torch.save({"state_dict": model.state_dict(), "record": record}, arguments.save)
    if arguments.export:
        print(json.dumps({"onnx_sha256": export(model.eval(), record)}))


if __name__ == "__main__":
    main()
