"""What a ``lenet`` command prints: its own start line and results, not Lightning's known-harmless noise.

Each message left out is named here by its text and by the module that emits it, with the reason,
so that any other warning (a new one, one about the user's settings) still shows.
``LENET_DEBUG=1`` leaves everything in.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from lenet_cli.errors import DEBUG_VARIABLE, print_safely

# (module that warns, start of the message, why it says nothing a lenet user needs).
HARMLESS_WARNINGS = (
    (
        "lightning.pytorch.utilities._pytree",
        "`isinstance(treespec, LeafSpec)` is deprecated",
        "Lightning 2.6's own use of a torch API that torch ≥ 2.10 deprecates; nothing the user can change",
    ),
    (
        "lightning.pytorch.callbacks.model_checkpoint",
        "The dirpath has changed from",
        "test/predict/validate from another run's checkpoint save nothing; a resumed fit keeps its best "
        "score through resume.ResumedRun",
    ),
    (
        "lightning.pytorch.loops.prediction_loop",
        "Couldn't infer the batch indices fetched from your dataloader",
        "LeNet.predict_step returns each input's index itself",
    ),
    (
        "lightning.pytorch.cli",
        "LightningCLI's args parameter is intended to run from within Python",
        "lenet_cli.cli.main.main(args) is that use, from tests or a script",
    ),
)

# Logger name → starts of its INFO lines that lenet's start line replaces or that advertise.
# (Lightning's own rank_zero_info of every module logs through "lightning.pytorch.utilities.rank_zero".)
HARMLESS_LOG_LINES = {
    "lightning.pytorch.utilities.rank_zero": (
        "GPU available:",  # the device: in lenet's start line
        "TPU available:",
        "HPU available:",
        "💡 Tip:",  # advertisements for Lightning's cloud products
        "Loading `train_dataloader` to estimate number of stepping batches",  # the one-cycle schedule asks
        "Restoring states from the checkpoint path at",  # the checkpoint: in lenet's start line
        "Loaded model weights from the checkpoint at",
        "Restored all states from the checkpoint at",  # resume.ResumedRun says what a resumed fit continues
        "You are using a CUDA device",  # the TF32 tip: LeNet's matrices are too small for it to matter
        "distributed_backend=",  # DDP's banner (between lines of dashes): lenet's start line has the count
    ),
    "lightning.fabric.utilities.rank_zero": ("You are using a CUDA device",),
    "lightning.fabric.utilities.seed": ("Seed set to",),  # every rank says it; the seed is in config.yaml
    "lightning.pytorch.accelerators.cuda": ("LOCAL_RANK:",),  # every rank says it: twice under DDP
    "lightning.fabric.utilities.distributed": ("Initializing distributed:",),  # every rank says it
}


class HarmlessLines(logging.Filter):
    """Drops the records of :data:`HARMLESS_LOG_LINES`, after a ``[rank: 1]`` prefix or a line of dashes."""

    def filter(self, record: logging.LogRecord) -> bool:
        starts = HARMLESS_LOG_LINES.get(record.name, ())
        message = re.sub(r"^\[rank: \d+\] ", "", record.getMessage()).lstrip("-\n")
        return not message.startswith(starts)


@contextmanager
def quiet() -> Iterator[None]:
    """Leave Lightning's known-harmless warnings and info lines out while the block runs (not with LENET_DEBUG)."""
    if os.environ.get(DEBUG_VARIABLE):
        yield
        return
    harmless = HarmlessLines()
    loggers = [logging.getLogger(name) for name in HARMLESS_LOG_LINES]
    with warnings.catch_warnings():
        for module, message, _ in HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=re.escape(message), module=re.escape(module) + r"\Z")
        for logger in loggers:
            logger.addFilter(harmless)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(harmless)


def say(message: str) -> None:
    """One line of lenet's own on stderr, where Lightning's messages and the progress bar go too.

    Best-effort (``errors.print_safely``): a stderr that cannot be written must not stop the command.
    """
    print_safely(message)
