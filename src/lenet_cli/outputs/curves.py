"""Training curves: train/validation loss and accuracy per epoch, drawn from the run's metrics.csv."""

from __future__ import annotations

import csv
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from lenet_cli.outputs import plots

CURVES_FILE = "curves.png"
PLOTTED = ("train/loss", "val/loss", "train/acc", "val/acc")


def read_history(metrics_csv: str | Path) -> dict[str, dict[int, float]]:
    """``{metric: {epoch: value}}`` of the epoch-level metrics in a CSVLogger ``metrics.csv``.

    Train and validation values of an epoch are on separate rows; where a metric was logged several
    times in one epoch (``val_check_interval`` < 1), the last value stands for the epoch.
    """
    history: dict[str, dict[int, float]] = {name: {} for name in PLOTTED}
    with Path(metrics_csv).open(newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            for name in PLOTTED:
                if row.get(name):
                    history[name][int(row["epoch"])] = float(row[name])
    return {name: values for name, values in history.items() if values}


class TrainingCurves(Callback):
    """At the end of ``fit``, plot ``curves.png`` from the metrics the CSV logger wrote.

    Needs a ``CSVLogger`` among the trainer's loggers (the default one); with TensorBoard alone,
    TensorBoard draws the curves.

    Args:
        output_dir: Folder for ``curves.png``; default: the CSV logger's run folder.
    """

    def __init__(self, output_dir: str | None = None) -> None:
        self.output_dir = output_dir

    @rank_zero_only
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = next((logger for logger in trainer.loggers if isinstance(logger, CSVLogger)), None)
        if logger is None:
            rank_zero_info("Training curves: skipped, as there is no CSVLogger (they are drawn from its metrics.csv)")
            return
        # self.log values reach the file at once (the trainer saves its loggers after each logging
        # call), but rows given to the logger directly (LearningRateMonitor, user code) wait for its
        # flush_logs_every_n_steps or for finalize, which comes after on_fit_end: write them now.
        logger.save()
        metrics_csv = Path(logger.experiment.metrics_file_path)
        history = read_history(metrics_csv) if metrics_csv.is_file() else {}
        if not history:
            rank_zero_info(f"Training curves: skipped, no epoch metrics in {metrics_csv}")
            return
        path = Path(self.output_dir or logger.log_dir) / CURVES_FILE
        plots.save_training_curves(history, path, title=str(Path(logger.log_dir)))
        rank_zero_info(f"Training curves: {path}")
