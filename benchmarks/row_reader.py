"""A segmentation-free reader of whole numbers, measured against lenet's segmentation (issue #23: "if a
sequence model reads touching digits better than segmentation, measure both and say why you chose").

A CTC head (Graves et al. 2006) on LeNet's own convolutions: a row of writing scaled to 32 pixels high,
LeNet's two conv+pool stages (initialised from the bundled model) slide along it, each of the 45 columns
of 16 × 5 features goes through a bidirectional GRU to 11 outputs (the ten digits and CTC's blank);
greedy decoding. Trained on rows written from MNIST's *training* digits by ``tests/writing.write_number``
(1–6 digits, the benchmark's gaps and slant, and as many rows again with every neighbour touching),
put on paper as ``tests/writing._paper`` puts them; measured on ``tests/writing.numbers`` and
``touching`` of the *test* split (seed 0, 500 each), the sets ``benchmarks/reading.py`` reads:

    PYTHONPATH=$PWD/src:$PWD python benchmarks/row_reader.py --rows 200000 --epochs 12

The row reader gets each picture through lenet's own front end (the lighting flattened, the components
kept as digits), so the two differ only in what comes after: segmentation and LeNet on each field, or
the row read whole.
Results go to ``benchmarks/results/row-reader.json``. Not part of the package.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from benchmarks.common import cpu_model
from benchmarks.reading import classifier, logits_of
from lenet_cli.data import idx
from lenet_cli.images.decode import BadImage
from lenet_cli.images.mnist_style import preprocess
from lenet_cli.reading.pipeline import read_gray
from lenet_cli.training.network import LeNet5
from tests import writing

HEIGHT, WIDTH, INK_HEIGHT = 32, 192, 24
BLANK = 10
RESULTS = Path(__file__).parent / "results" / "row-reader.json"


def to_row(gray: np.ndarray) -> np.ndarray:
    """A picture of writing (float 0…255, as ``images.decode`` gives) → uint8 (HEIGHT, WIDTH), light on
    dark: lenet's own front end (the lighting flattened, the components kept as digits: ``preprocess``),
    then the kept ink's box scaled to INK_HEIGHT px high. A picture with no digit gives an empty row."""
    row = np.zeros((HEIGHT, WIDTH), np.float32)
    try:
        steps = preprocess(gray)
    except BadImage:
        return row.astype(np.uint8)
    darkness = 1 - steps.flattened
    kept = cv2.dilate(steps.chosen.view(np.uint8), np.ones((3, 3), np.uint8)) > 0
    level = float(np.percentile(darkness[steps.chosen], 95)) if steps.chosen.any() else 1.0
    ink = np.where(kept, np.clip(darkness / max(level, 1e-3), 0, 1), 0).astype(np.float32)
    rows, columns = np.nonzero(ink.max(axis=1) > 0.3)[0], np.nonzero(ink.max(axis=0) > 0.3)[0]
    if len(rows) == 0:
        return row.astype(np.uint8)
    box = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    scale = INK_HEIGHT / box.shape[0]
    width = min(WIDTH - 8, max(1, round(box.shape[1] * scale)))
    resized = cv2.resize(box, (width, INK_HEIGHT), interpolation=cv2.INTER_AREA)
    top = (HEIGHT - INK_HEIGHT) // 2
    row[top : top + INK_HEIGHT, 4 : 4 + width] = resized
    return np.rint(row * 255).astype(np.uint8)


def _training_rows(job: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    seed, count = job
    arrays = idx.load(None, allow_download=False, splits=("train",))
    images, labels = arrays["train_images"].numpy(), arrays["train_labels"].numpy()
    rng = np.random.default_rng([seed, 31])
    rows, texts = [], []
    for number in range(count):
        touching = 1.0 if number % 2 else 0.1
        gap = (2, 9) if number % 3 else (4, 16)
        ink, text = writing.write_number(images, labels, rng, 1 + number % 6, touching=touching, gap=gap)
        rows.append(to_row(writing._paper(ink, rng)))
        texts.append(text)
    return np.stack(rows), texts


class RowReader(nn.Module):
    """LeNet's conv stages along a 32-pixel-high row → per-column logits (T, B, 11) for CTC."""

    def __init__(self) -> None:
        super().__init__()
        self.features = LeNet5().features  # (B, 16, 5, W/4 - 3)
        self.rnn = nn.GRU(16 * 5, 64, bidirectional=True, batch_first=True)
        self.out = nn.Linear(128, 11)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        x = (rows.float().div(255) - 0.1307) / 0.3081
        features = self.features(x[:, None])  # (B, 16, 5, T)
        columns = features.flatten(1, 2).transpose(1, 2)  # (B, T, 80)
        return self.out(self.rnn(columns)[0]).transpose(0, 1)  # (T, B, 11)


def decode(logits: torch.Tensor) -> tuple[list[str], list[float]]:
    """Greedy CTC decoding: the best class per column, repeats merged, blanks dropped; and each text's
    confidence, the lowest probability of the columns that emitted a digit (1 for an empty text)."""
    probabilities, best = logits.softmax(dim=2).max(dim=2)
    texts, confidences = [], []
    for sequence, sure in zip(best.T.cpu().numpy(), probabilities.T.cpu().numpy(), strict=True):
        emitted = [i for i, c in enumerate(sequence) if c != BLANK and (i == 0 or c != sequence[i - 1])]
        texts.append("".join(str(int(sequence[i])) for i in emitted))
        confidences.append(float(min((sure[i] for i in emitted), default=1.0)))
    return texts, confidences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--per-set", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0, help="of the training rows and the network's initialisation")
    arguments = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    jobs = [(arguments.seed * 32 + part, arguments.rows // 32) for part in range(32)]
    with ProcessPoolExecutor() as pool:
        made = list(pool.map(_training_rows, jobs))
    rows = torch.from_numpy(np.concatenate([r for r, _ in made]))
    texts = [t for _, ts in made for t in ts]
    made_s = time.perf_counter() - started
    lengths = torch.tensor([len(t) for t in texts])
    targets = torch.zeros((len(texts), 6), dtype=torch.long)  # padded; CTCLoss reads each row's length
    for i, text in enumerate(texts):
        targets[i, : len(text)] = torch.tensor([int(c) for c in text])

    network, calibration = classifier()  # the bundled LeNet: the row reader's first layers, and the baseline
    torch.manual_seed(arguments.seed)
    model = RowReader()
    model.features.load_state_dict(network.features.state_dict())
    model.to(device)
    rows_device = rows.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps = arguments.epochs * (len(rows) // 256)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    losses = []
    for epoch in range(arguments.epochs):
        order = torch.randperm(len(rows))
        for start in range(0, len(rows) - 255, 256):
            batch = order[start : start + 256]
            logits = model(rows_device[batch.to(device)]).log_softmax(2)
            loss = ctc(logits, targets[batch].to(device), torch.full((len(batch),), logits.shape[0]), lengths[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        losses.append(round(loss.item(), 4))
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}", flush=True)
    trained_s = time.perf_counter() - started - made_s

    model.eval()
    images, labels = writing.mnist_test()
    classify = logits_of(network)

    results: dict[str, dict[str, float]] = {}
    each: dict[str, list[list[object]]] = {}
    sets = (
        ("numbers of 2-6 digits", writing.numbers),
        ("touching pairs", writing.touching),
        ("numbers on photographed paper (held out)", writing.held_out_numbers),
        ("non-digits", lambda _images, _labels, count: writing.negatives(count)),
    )
    for name, make in sets:
        samples = make(images, labels, arguments.per_set)
        with ProcessPoolExecutor() as pool:
            test_rows = torch.from_numpy(np.stack(list(pool.map(to_row, [gray for gray, _ in samples], chunksize=16))))
        test_rows = test_rows.to(device)
        with torch.no_grad():
            read, sure = decode(model(test_rows))
        exact = float(np.mean([r == t for r, (_, t) in zip(read, samples, strict=True)]))
        readings = [read_gray(gray, classify, calibration) for gray, _ in samples]
        segmented = float(np.mean([reading.text == t for reading, (_, t) in zip(readings, samples, strict=True)]))
        # Each picture: truth, the row reader's text and confidence, segmentation's text and confidence.
        each[name] = [
            [t, r, round(c, 4), reading.text, round(reading.confidence, 4)]
            for (_, t), r, c, reading in zip(samples, read, sure, readings, strict=True)
        ]
        by_length = {
            str(n): float(np.mean([r == t for r, (_, t) in zip(read, samples, strict=True) if len(t) == n]))
            for n in sorted({len(t) for _, t in samples})
        }
        results[name] = {"exact": exact, "segmentation": segmented, **{f"length {n}": v for n, v in by_length.items()}}
        print(f"{name}: {exact:.2%} exact (segmentation {segmented:.2%}) {by_length}", flush=True)
    record = {
        "command": f"python benchmarks/row_reader.py --rows {arguments.rows} --epochs {arguments.epochs} "
        f"--seed {arguments.seed}",
        "device": torch.cuda.get_device_name() if device.type == "cuda" else cpu_model(),
        "torch": torch.__version__,
        "rows": len(rows),
        "made_s": round(made_s, 1),
        "trained_s": round(trained_s, 1),
        "losses": losses,
        "sets": results,
        "each": each,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
