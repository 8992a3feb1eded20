"""Each run folder's ``run.json``, and a run folder read back as a :class:`RunSummary`.

``run.json`` is written when a command starts (subcommand, command line, config files, checkpoint,
time) and completed when it ends (how it ended, epochs, best ``val/loss``, test accuracy). A command
that fails before it made anything but that bookkeeping leaves no run folder behind. Runs older than
run.json are summarised from the files they hold.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lenet_cli import __version__, atomic

RUN_FILE = "run.json"


# What a command writes into its run folder before any work: a folder holding only these is empty.
BOOKKEEPING = frozenset({RUN_FILE, "config.yaml", "hparams.yaml"})


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_metrics(folder: Path) -> list[dict[str, str]]:
    """The rows of the run's ``metrics.csv`` (CSVLogger), or none."""
    try:
        with (folder / "metrics.csv").open(newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, csv.Error):
        return []


class RunRecord(Callback):
    """Keeps ``run.json`` of a run folder that this command made, and removes that folder when the
    command failed before it wrote anything but its bookkeeping (config.yaml, hparams.yaml, run.json).

    Args:
        record: What made the run: ``subcommand``, ``command``, ``configs``, ``checkpoint``.
        folder: The run folder this command will write (rank 0), or ``None`` where it does not own one
            (other ranks; no logger; a folder that existed before the command).
    """

    def __init__(self, record: dict[str, Any], folder: Path | None) -> None:
        self.record = {"lenet_cli": __version__} | record
        self.folder = folder

    def _write(self, **updates: Any) -> None:
        if self.folder is None:
            return
        self.record.update(updates)
        atomic.write_text_atomically(self.folder / RUN_FILE, json.dumps(self.record, indent=2) + "\n")

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.folder is not None and "started" not in self.record:
            self._write(started=now(), status="running")

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.folder is None or self.record.get("status") != "running":
            return
        results: dict[str, Any] = {}
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items() if value.numel() == 1}
        if stage == "fit":
            results["epochs"] = trainer.current_epoch
            callback = trainer.checkpoint_callback
            if isinstance(callback, ModelCheckpoint) and callback.best_model_path:
                score = callback.best_model_score
                results["best_checkpoint"] = callback.best_model_path
                results["best_score"] = {str(callback.monitor): float(score) if score is not None else None}
        for name in ("test/acc", "test/loss", "val/acc", "val/loss"):
            if name in metrics and (stage == "test") == name.startswith("test"):
                results[name.replace("/", "_").replace("acc", "accuracy")] = round(metrics[name], 6)
        self._write(finished=now(), status="finished", **results)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self.folder is None:
            return
        if self.folder.is_dir() and {entry.name for entry in self.folder.iterdir()} <= BOOKKEEPING:
            shutil.rmtree(self.folder, ignore_errors=True)  # nothing of the run in it
            self.folder = None
            return
        stopped = isinstance(exception, (SIGTERMException, KeyboardInterrupt))
        detail = " ".join(str(exception).split())[:300] or type(exception).__name__
        self._write(finished=now(), status="stopped" if stopped else "failed", error=detail)


def lowest(rows: Iterable[dict[str, str]], column: str) -> float | None:
    values = [float(row[column]) for row in rows if row.get(column)]
    values = [value for value in values if not math.isnan(value)]
    return min(values) if values else None


@dataclass
class RunSummary:
    """One run folder, as the listing shows it."""

    folder: Path
    subcommand: str | None = None
    status: str | None = None
    started: str | None = None
    epochs: int | None = None
    best_val_loss: float | None = None
    test_accuracy: float | None = None
    checkpoint: str | None = None
    configs: list[str] = field(default_factory=list)

    @property
    def best_checkpoint(self) -> Path:
        return self.folder / "checkpoints" / "best.ckpt"


def summarise(folder: Path) -> RunSummary:
    """A run folder's summary from its run.json, else from the files it holds (runs made before run.json)."""
    record = read_json(folder / RUN_FILE)
    rows = read_metrics(folder)
    summary = RunSummary(
        folder,
        subcommand=record.get("subcommand") or guess_subcommand(folder),
        status=record.get("status"),
        started=record.get("started") or modified(folder),
        checkpoint=record.get("checkpoint"),
        configs=list(record.get("configs") or []),
    )
    epochs = [int(row["epoch"]) for row in rows if row.get("epoch") and (row.get("train/loss") or row.get("val/loss"))]
    if summary.subcommand == "fit":
        summary.epochs = record.get("epochs", max(epochs) + 1 if epochs else None)
        summary.best_val_loss = lowest(rows, "val/loss")
    accuracy = record.get("test_accuracy")
    if accuracy is None and summary.subcommand == "test":
        accuracy = read_json(folder / "report.json").get("accuracy")
        test_rows = [float(row["test/acc"]) for row in rows if row.get("test/acc")]
        accuracy = accuracy if accuracy is not None else (test_rows[-1] if test_rows else None)
    summary.test_accuracy = accuracy
    return summary


def guess_subcommand(folder: Path) -> str | None:
    if (folder / "checkpoints").is_dir():
        return "fit"
    if (folder / "report.json").is_file():
        return "test"
    if (folder / "predictions.csv").is_file():
        return "predict"
    return None


def modified(folder: Path) -> str | None:
    for candidate in (folder / "config.yaml", folder):
        try:
            stamp = candidate.stat().st_mtime
        except OSError:
            continue
        return datetime.fromtimestamp(stamp).astimezone().isoformat(timespec="seconds")
    return None


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
