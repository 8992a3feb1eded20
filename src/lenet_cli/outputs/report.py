"""The evaluation report of ``lenet test``: per-class metrics, confusion matrix, misclassified images."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torch import Tensor
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from lenet_cli.atomic import write_text_atomically
from lenet_cli.outputs import mosaic, plots
from lenet_cli.runs.paths import callback_output_folder
from lenet_cli.training.metrics import SamplePredictions

REPORT_FILE, CONFUSION_FILE, MISCLASSIFIED_FILE = "report.json", "confusion_matrix.png", "misclassified.png"


def summarise(labels: Tensor, predictions: Tensor, num_classes: int, top_confused: int = 10) -> dict[str, Any]:
    """The numbers of ``report.json`` for true and predicted classes (N,).

    Per-class ``accuracy`` is torchmetrics' (the share of that class's images classified correctly,
    which for one label per image is the class's recall). Metric values are rounded to 6 decimals:
    they are float32 computations, with no more digits worth reading.
    """
    classes = [str(c) for c in range(num_classes)]
    confusion = multiclass_confusion_matrix(predictions, labels, num_classes)  # rows: true, columns: predicted
    per_class_metrics = {
        "precision": multiclass_precision(predictions, labels, num_classes, average=None),
        "recall": multiclass_recall(predictions, labels, num_classes, average=None),
        "f1": multiclass_f1_score(predictions, labels, num_classes, average=None),
        "accuracy": multiclass_accuracy(predictions, labels, num_classes, average=None),
    }
    support = confusion.sum(dim=1)
    per_class = {
        name: {key: round(float(values[c]), 6) for key, values in per_class_metrics.items()}
        | {"support": int(support[c])}
        for c, name in enumerate(classes)
    }
    errors = confusion.clone().fill_diagonal_(0)
    counts, flat = errors.flatten().sort(descending=True, stable=True)
    most_confused = [
        {"true": classes[i // num_classes], "predicted": classes[i % num_classes], "count": int(n)}
        for n, i in zip(counts[:top_confused].tolist(), flat[:top_confused].tolist(), strict=True)
        if n > 0
    ]
    correct = int(confusion.trace())
    return {
        "num_images": len(labels),
        "correct": correct,
        "accuracy": round(correct / max(len(labels), 1), 6),
        "classes": classes,
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "most_confused": most_confused,
    }


def to_json(report: dict[str, Any]) -> str:
    """Indented JSON with each list of numbers or names on one line (a confusion matrix row per line)."""
    text = json.dumps(report, indent=2)
    # A JSON string holds no raw newline, so only the layout between list items is touched.
    flat_list = re.compile(r"\[\n\s*([^\[\]{}]*?)\n\s*\]")
    return flat_list.sub(lambda match: "[" + re.sub(r",\n\s*", ", ", match.group(1)) + "]", text) + "\n"


class EvaluationReport(Callback):
    """At the end of ``test``, write ``report.json``, ``confusion_matrix.png`` and ``misclassified.png``.

    ``report.json`` holds the overall accuracy, per-class precision/recall/F1/accuracy/support, the
    confusion matrix (rows: true class, columns: predicted) and the most confused (true, predicted)
    pairs. Needs ``test_step`` to return ``{"predictions": (B,) classes}`` and batches
    ``(images, labels, indices)``; the misclassified images come from the datamodule's
    ``digits("test")``.

    Args:
        output_dir: Folder for the report files; default: the run folder (``trainer.log_dir``).
        max_misclassified: At most this many misclassified images in the grid (0: no grid).
        top_confused: How many of the most confused class pairs to list.
    """

    def __init__(self, output_dir: str | None = None, max_misclassified: int = 100, top_confused: int = 10) -> None:
        self.output_dir, self.max_misclassified, self.top_confused = output_dir, max_misclassified, top_confused
        self.outcomes = SamplePredictions()

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.outcomes.reset()
        self.outcomes.to(pl_module.device)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not isinstance(outputs, dict) or "predictions" not in outputs:
            raise TypeError(
                f"{type(self).__name__} needs test_step to return {{'predictions': (B,) classes}}, "
                f"got {type(outputs).__name__}"
            )
        _, labels, indices = batch
        self.outcomes.update(indices, labels, outputs["predictions"])

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        indices, labels, predictions = self.outcomes.compute()  # collective under DDP: every rank calls it
        folder = callback_output_folder(trainer, self.output_dir)  # on every rank, as the compute above
        self._write(trainer, pl_module, folder, indices.cpu(), labels.cpu(), predictions.cpu())
        self.outcomes.reset()

    @rank_zero_only
    def _write(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        folder: Path,
        indices: Tensor,
        labels: Tensor,
        predictions: Tensor,
    ) -> None:
        report = {"checkpoint": trainer.ckpt_path} | summarise(
            labels, predictions, pl_module.hparams.num_classes, self.top_confused
        )
        wrong = (predictions != labels).nonzero().flatten()
        wrong = wrong[indices[wrong].argsort()]  # in test-set order, so reruns show the same images
        report["misclassified_indices"] = indices[wrong].tolist()
        write_text_atomically(folder / REPORT_FILE, to_json(report))
        plots.save_confusion_matrix(
            report["confusion_matrix"],
            report["classes"],
            folder / CONFUSION_FILE,
            title=f"Test accuracy {report['accuracy']:.2%} ({report['correct']} of {report['num_images']})",
        )
        written = [REPORT_FILE, CONFUSION_FILE]
        datamodule = trainer.datamodule
        raw_images = datamodule.digits("test") if hasattr(datamodule, "digits") else None
        shown = wrong[: self.max_misclassified]
        if len(shown) and raw_images is not None:
            classes = report["classes"]
            outcomes = zip(indices[shown].tolist(), labels[shown].tolist(), predictions[shown].tolist(), strict=True)
            mosaic.save_image_grid(
                raw_images[indices[shown]],
                [f"#{index}: {classes[true]} → {classes[predicted]}" for index, true, predicted in outcomes],
                folder / MISCLASSIFIED_FILE,
                title=f"Misclassified test images, true → predicted ({len(shown)} of {len(wrong)})",
            )
            written.append(MISCLASSIFIED_FILE)
        pairs = ", ".join(f"{p['true']}→{p['predicted']} ({p['count']})" for p in report["most_confused"][:3])
        rank_zero_info(
            f"Evaluation report in {folder}: {', '.join(written)}\n"
            f"  test accuracy {report['accuracy']:.2%} ({report['correct']}/{report['num_images']})"
            + (f", most confused (true→predicted): {pairs}" if pairs else "")
        )
