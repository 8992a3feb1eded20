"""Each run folder's ``run.json``, and a run folder read back as a :class:`RunSummary`.

``run.json`` is written when a command starts (subcommand, command line, config files, checkpoint,
time) and completed when it ends (how it ended, epochs, best ``val/loss``, test accuracy). A command
that fails before it made anything but that bookkeeping leaves no run folder behind. Runs older than
run.json are summarised from the files they hold.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lenet_cli import __version__, atomic
from lenet_cli.errors import LenetError, escaped, print_safely

RUN_FILE = "run.json"


# What a command writes into its run folder before any work: a folder holding only these is empty.
BOOKKEEPING = frozenset({RUN_FILE, "config.yaml", "hparams.yaml"})


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


# Larger than any run writes (run.json: ~1 KB; metrics.csv: ~100 bytes a logged step): a run folder's
# files are read whole, and a link to /dev/zero or a planted giant must not eat memory.
MAX_RUN_JSON_BYTES = 2**20
MAX_METRICS_BYTES = 64 * 2**20
# run.json's fields and the types lenet writes them with; anything else marks the folder broken.
FIELDS: dict[str, type | tuple[type, ...]] = {
    "subcommand": str,
    "status": str,
    "started": str,
    "finished": str,
    "checkpoint": str,
    "configs": list,
    "epochs": int,
    "test_accuracy": (int, float),
}


class BrokenRun(LenetError):
    """A run folder whose files cannot be trusted (not regular files, wrong types): skipped with one warning."""


def read_small_text(path: Path, limit: int) -> str | None:
    """The UTF-8 text of the regular file ``path`` of at most ``limit`` bytes, ``None`` when there is none;
    BrokenRun otherwise. Opened without blocking, so that a FIFO is refused rather than waited on."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise BrokenRun(f"{escaped(path)} cannot be read ({error.strerror or error})") from error
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise BrokenRun(f"{escaped(path)} is not a regular file")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise BrokenRun(f"{escaped(path)} is larger than the {limit} bytes a run writes there")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BrokenRun(f"{escaped(path)} is not UTF-8 text") from error


def read_json(path: Path) -> dict[str, Any]:
    """A run's JSON file as a mapping (empty when there is none); BrokenRun when it is not one."""
    text = read_small_text(path, MAX_RUN_JSON_BYTES)
    if text is None:
        return {}
    try:
        data = json.loads(text)
    except ValueError as error:
        raise BrokenRun(f"{escaped(path)} is not valid JSON") from error
    except RecursionError as error:
        raise BrokenRun(f"{escaped(path)} is nested too deeply") from error
    if not isinstance(data, dict):
        raise BrokenRun(f"{escaped(path)} holds {type(data).__name__}, not a mapping")
    return data


def read_record(folder: Path) -> dict[str, Any]:
    """``run.json`` of ``folder`` with every field lenet reads checked to have the type lenet writes."""
    record = read_json(folder / RUN_FILE)
    for key, expected in FIELDS.items():
        value = record.get(key)
        if value is None:
            continue
        wrong = isinstance(value, bool) or not isinstance(value, expected)
        if key == "configs" and not wrong:
            wrong = not all(isinstance(item, str) for item in value)
        if key == "test_accuracy" and not wrong:
            wrong = not math.isfinite(value)
        if wrong:
            raise BrokenRun(f"{escaped(folder / RUN_FILE)}: its {key} is {escaped(repr(value)[:40])}")
    return record


def read_metrics(folder: Path) -> list[dict[str, str]]:
    """The rows of the run's ``metrics.csv`` (CSVLogger), or none; BrokenRun when it cannot be read."""
    path = folder / "metrics.csv"
    text = read_small_text(path, MAX_METRICS_BYTES)
    if text is None:
        return []
    try:
        return list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise BrokenRun(f"{escaped(path)} is not a CSV file ({error})") from error


def number(path: Path, column: str, value: str) -> float:
    """``value`` of ``column`` in ``path`` as a number; BrokenRun when it is none."""
    try:
        return float(value)
    except ValueError as error:
        raise BrokenRun(f"{escaped(path)}: {column} {escaped(repr(value)[:40])} is not a number") from error


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


def lowest(rows: Iterable[dict[str, str]], column: str, path: Path) -> float | None:
    values = [number(path, column, row[column]) for row in rows if row.get(column)]
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
    """A run folder's summary from its run.json, else from the files it holds (runs made before run.json).

    BrokenRun when a file of it is not a regular file, too large, or holds a value of the wrong type.
    """
    record = read_record(folder)
    rows = read_metrics(folder)
    metrics = folder / "metrics.csv"
    summary = RunSummary(
        folder,
        subcommand=record.get("subcommand") or guess_subcommand(folder),
        status=record.get("status"),
        started=record.get("started") or modified(folder),
        checkpoint=record.get("checkpoint"),
        configs=list(record.get("configs") or []),
    )
    epochs = [
        int(number(metrics, "epoch", row["epoch"]))
        for row in rows
        if row.get("epoch") and (row.get("train/loss") or row.get("val/loss"))
    ]
    if summary.subcommand == "fit":
        summary.epochs = record.get("epochs", max(epochs) + 1 if epochs else None)
        summary.best_val_loss = lowest(rows, "val/loss", metrics)
    accuracy = record.get("test_accuracy")
    if accuracy is None and summary.subcommand == "test":
        report = read_json(folder / "report.json").get("accuracy")
        accuracy = report if isinstance(report, (int, float)) and not isinstance(report, bool) else None
        test_rows = [number(metrics, "test/acc", row["test/acc"]) for row in rows if row.get("test/acc")]
        accuracy = accuracy if accuracy is not None else (test_rows[-1] if test_rows else None)
    summary.test_accuracy = accuracy
    return summary


def summaries(folders: Iterable[Path]) -> list[RunSummary]:
    """The summaries of ``folders``; a broken one is left out, with one warning a command that names it and why."""
    found = []
    for folder in folders:
        try:
            found.append(summarise(folder))
        except BrokenRun as error:
            if folder.absolute() not in _warned:  # `lenet runs` reads a folder for its table and for best
                _warned.add(folder.absolute())
                print_safely(f"warning: skipped the run folder {escaped(folder)}: {error}")
    return found


_warned: set[Path] = set()


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
