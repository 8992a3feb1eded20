"""What ``lenet predict`` leaves on disk: ``predictions.csv`` and the ``predictions.png`` grid."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from lenet_cli.atomic import write_text_atomically
from lenet_cli.checkpoints.pretrained import calibration_of
from lenet_cli.errors import escaped, print_safely
from lenet_cli.outputs.mosaic import save_image_grid
from lenet_cli.reading.batch import Proposals
from lenet_cli.reading.pipeline import Calibration, decide
from lenet_cli.reading.result import Reading
from lenet_cli.runs.paths import callback_output_folder

TOP = 3  # classes listed per input
MAX_LISTED = 10  # skipped files named in the closing summary; the rest are counted
MAX_SHOWN = 10  # up to this many files predicted: each one's answer printed on stdout
COLUMNS = [
    "index",
    "source",
    "predicted",
    "confidence",
    "top2",
    "top2_probability",
    "top3",
    "top3_probability",
    "true_label",
]


FILE_COLUMNS = ["index", "source", "predicted", "confidence", "digits", "note"]


class Row(NamedTuple):
    index: int  # type: ignore[assignment]  # a field named like tuple.index, as the CSV column  # position in the input (test-set index, or the file's place in sorted order)
    classes: list[int]  # the TOP most probable classes, most probable first
    probabilities: list[float]
    label: int  # the true class, -1 when unknown
    distribution: list[float]  # every class's probability (reading a file's digits needs them all)


class PredictionWriter(BasePredictionWriter):
    """At the end of ``predict``, write one CSV row per input and a grid of the inputs to one folder.

    Under DDP every rank predicts its own part; the rows are gathered and rank 0 writes the files.

    Args:
        output_dir: Folder for ``predictions.csv`` and ``predictions.png``; default: the run folder
            (``trainer.log_dir``).
        grid_size: The first this many inputs go into ``predictions.png`` (0: no grid).
    """

    def __init__(self, output_dir: str | None = None, grid_size: int = 100) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir, self.grid_size = output_dir, grid_size

    def write_on_epoch_end(
        self, trainer: Trainer, pl_module: LightningModule, predictions: Sequence[Any], batch_indices: Sequence[Any]
    ) -> None:
        folder = callback_output_folder(trainer, self.output_dir)  # every rank, before only rank 0 goes on
        rows = gather(local_rows(predictions))
        if rows is None:  # not rank 0
            return
        rows.sort(key=lambda row: row.index)
        datamodule = trainer.datamodule
        proposals = getattr(datamodule, "predict_proposals", None)
        if proposals is not None:  # the user's pictures: one row per picture, its digits read as text
            write_readings(folder, rows, proposals, calibration_of(trainer.ckpt_path), self.grid_size)
            report_skipped(datamodule)
            return
        sources = getattr(datamodule, "predict_sources", None)
        csv_path = write_text_atomically(folder / "predictions.csv", to_csv(rows, sources))
        written = [str(csv_path)]
        summary = f"{len(rows)} inputs"
        labelled = [row for row in rows if row.label >= 0]
        if labelled:
            accuracy = sum(row.classes[0] == row.label for row in labelled) / len(labelled)
            summary += f", accuracy {accuracy:.2%} against the true labels"
        inputs = _model_inputs(datamodule)
        if self.grid_size > 0 and rows and inputs is not None:
            shown = rows[: self.grid_size]
            title = (f"the first {len(shown)} of {summary}" if len(shown) < len(rows) else summary) + (
                "; mistakes in red (true class in brackets)" if labelled else ": predicted class and its probability"
            )
            written.append(str(save_grid(shown, inputs, sources, title, folder / "predictions.png")))
        if sources and len(rows) <= MAX_SHOWN:
            # The answer itself, on stdout (one line a file, to read or pipe); a folder of many files
            # has predictions.csv. A closed stdout must not end the command after its files are written.
            for row in rows:
                answer = f"{escaped(sources[row.index])}: {row.classes[0]} (confidence {row.probabilities[0]:.3f})"
                print_safely(answer, sys.stdout)
        print_safely(f"Predictions of {summary}: {', '.join(written)}")
        report_skipped(datamodule)


def report_skipped(datamodule: Any) -> None:
    """Warned about while the files were read, long before the summary: say it again at the end."""
    skipped = skipped_files(datamodule)
    if skipped:
        listed = ", ".join(skipped[:MAX_LISTED])
        listed += f" and {len(skipped) - MAX_LISTED} more" if len(skipped) > MAX_LISTED else ""
        print_safely(f"warning: skipped {len(skipped)} unreadable files (reasons above): {escaped(listed)}")


def read_pictures(rows: Sequence[Row], proposals: Proposals, calibration: Calibration) -> list[Reading]:
    """Each picture's text from its fields' rows (the predict inputs, in order): ``reading.pipeline.decide``."""
    distributions = np.array([row.distribution for row in rows], dtype=np.float64)
    readings = []
    for number, proposal in enumerate(proposals.proposals):
        start, stop = int(proposals.offsets[number]), int(proposals.offsets[number + 1])
        logits = np.log(np.maximum(distributions[start:stop], 1e-30))  # softmax of log p is p again
        readings.append(decide(proposal, logits, calibration))
    return readings


def write_readings(
    folder: Path, rows: Sequence[Row], proposals: Proposals, calibration: Calibration, grid: int
) -> None:
    """predictions.csv (one row per picture), predictions.png (what was read), one line per picture on stdout."""
    readings = read_pictures(rows, proposals, calibration)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FILE_COLUMNS)
    for index, (source, reading) in enumerate(zip(proposals.sources, readings, strict=True)):
        digits = [{"digit": d.text, "confidence": round(d.confidence, 4), "box": list(d.box)} for d in reading.digits]
        confidence = f"{reading.confidence:.4f}" if reading.found else ""
        writer.writerow([index, escaped(source), reading.text, confidence, json.dumps(digits), reading.note])
    written = [str(write_text_atomically(folder / "predictions.csv", buffer.getvalue()))]
    found = sum(reading.found for reading in readings)
    summary = f"{len(readings)} inputs, digits read in {found}"
    if grid > 0:
        shown = list(zip(proposals.sources, proposals.proposals, readings, strict=True))[:grid]
        tiles = torch.from_numpy(
            np.stack([_tile(proposal) for _, proposal, _ in shown]) if shown else np.zeros((0, 28, 28), np.uint8)
        )
        captions = [
            f"{_short(Path(source).name)}\n" + (f"{r.text}  {r.confidence:.0%}" if r.found else f"no digit: {r.note}")
            for source, _, r in shown
        ]
        title = f"{summary}: the text read (first digit's field shown)"
        marked = [not reading.found for _, _, reading in shown]
        written.append(str(save_image_grid(tiles, captions, folder / "predictions.png", marked=marked, title=title)))
    if len(readings) <= MAX_SHOWN:
        for source, reading in zip(proposals.sources, readings, strict=True):
            print_safely(f"{escaped(source)}: {_said(reading)}", sys.stdout)
    print_safely(f"Predictions of {summary}: {', '.join(written)}")


def _said(reading: Reading) -> str:
    if reading.found:
        return f"{reading.text} (confidence {reading.confidence:.2f})"
    return f"no digit ({reading.note})"


def _tile(proposal: Any) -> np.ndarray:
    return proposal.fields[0] if len(proposal.fields) else np.zeros((28, 28), np.uint8)


def _short(name: str) -> str:
    name = escaped(name)
    return name if len(name) <= 14 else name[:13] + "…"


def skipped_files(datamodule: Any) -> list[str]:
    """The files of ``--data.predict_path`` that were not predicted on (not readable digit images)."""
    proposals = getattr(datamodule, "predict_proposals", None)
    return list(proposals.skipped) if proposals is not None else []


def local_rows(predictions: Sequence[Any]) -> list[Row]:
    """This rank's rows from ``LeNet.predict_step``'s outputs (dicts of CPU tensors, one per batch)."""
    if predictions and isinstance(predictions[0], list):  # several predict loaders: one list each
        predictions = [batch for loader in predictions for batch in loader]
    rows = []
    for batch in predictions:
        probabilities, classes = batch["probabilities"].float().topk(min(TOP, batch["probabilities"].shape[1]), dim=1)
        for index, top_classes, top_probabilities, label, distribution in zip(
            batch["indices"].tolist(),
            classes.tolist(),
            probabilities.tolist(),
            batch["labels"].tolist(),
            batch["probabilities"].float().tolist(),
            strict=True,
        ):
            rows.append(Row(index, top_classes, top_probabilities, label, distribution))
    return rows


def gather(rows: list[Row]) -> list[Row] | None:
    """All ranks' rows on rank 0 (``None`` elsewhere); the rows themselves outside DDP.

    The datamodule shards prediction without padding, so every input is in exactly one rank's rows.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return rows
    everyone: list[list[Row] | None] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(everyone, rows)
    if torch.distributed.get_rank() != 0:
        return None
    return [row for part in everyone for row in part or []]


def to_csv(rows: Sequence[Row], sources: Sequence[str] | None) -> str:
    """The CSV text: ``source`` is the file when predicting on files, else the test-set index."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        ranked: list[int | str] = []
        for rank in range(1, TOP):
            known = rank < len(row.classes)
            ranked += [row.classes[rank], f"{row.probabilities[rank]:.4f}"] if known else ["", ""]
        writer.writerow(
            [
                row.index,
                escaped(sources[row.index]) if sources else row.index,  # a name that is not UTF-8 as \xNN
                row.classes[0],
                f"{row.probabilities[0]:.4f}",
                *ranked,
                row.label if row.label >= 0 else "",
            ]
        )
    return buffer.getvalue()


def save_grid(rows: Sequence[Row], inputs: torch.Tensor, sources: Sequence[str] | None, title: str, path: Path) -> Path:
    """The inputs of ``rows`` as the model saw them (32×32, normalised), captioned; mistakes in red."""
    images = inputs[torch.tensor([row.index for row in rows], device=inputs.device)].squeeze(1).cpu()
    captions, mistakes = [], []
    for row in rows:
        name = escaped(Path(sources[row.index]).name) if sources else f"#{row.index}"
        name = name if len(name) <= 14 else name[:13] + "…"
        predicted, known = row.classes[0], row.label >= 0
        wrong = known and predicted != row.label
        verdict = f"{predicted} (true {row.label})" if wrong else f"{predicted}  {row.probabilities[0]:.0%}"
        captions.append(f"{name}\n{verdict}")
        mistakes.append(wrong)
    return save_image_grid(images, captions, path, marked=mistakes, title=title)


def _model_inputs(datamodule: Any) -> torch.Tensor | None:
    return datamodule.model_inputs("predict")[0] if hasattr(datamodule, "model_inputs") else None
