"""What ``lenet --help`` and ``lenet SUBCOMMAND --help`` say, and in which order.

LightningCLI lists Lightning's ~40 ``--trainer.*`` options (about 370 lines) before the model's and
data's, under a usage block of 90 lines. Here the usage is one line and a subcommand's help reads:
its own options (``--ckpt_path``), then lenet's (``--model.*``, ``--data.*``, ``--checkpoint.*``,
the output callbacks), then Lightning's Trainer, optimizer and scheduler options. Inherited texts that
say something else than lenet does are rewritten where they come from: ``LenetTrainer``'s docstrings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from lenet_cli.reading.cli import READ_FIRST

PROG = "lenet"  # also under `python -m lenet_cli`, where argparse would say `__main__.py`

# `lenet read` first: the way to read a digit (answered by lenet_cli.__main__ before this parser exists).
DESCRIPTION = (
    f"{READ_FIRST} Beyond reading, lenet trains, evaluates and runs a LeNet-5 digit classifier on MNIST-style "
    "images (28×28 digits) with Lightning. Each command writes its own run folder, runs/<config name>/version_N/, "
    "with config.yaml, run.json and what the command made (checkpoints, metrics, report, predictions)."
)

EPILOG = (
    "Start with `lenet fit --config configs/mnist.yaml`, then `lenet test --config configs/mnist.yaml "
    "--ckpt_path best`. `lenet SUBCOMMAND --help` lists that subcommand's options: lenet's own first "
    "(--ckpt_path, --model.*, --data.*, --checkpoint.*, outputs), Lightning's --trainer.* after them. "
    "LENET_DEBUG=1 shows tracebacks and every Lightning message."
)

USAGE = (
    "%(prog)s [-h] [-c CONFIG] [--print_config[=flags]] [--ckpt_path CKPT_PATH] "
    "[--model.* ...] [--data.* ...] [--checkpoint.* ...] [--trainer.* ...]"
)

# Argument groups by their key in the parser (the subcommand's own group has the subcommand's name);
# groups not named here (Lightning's "Linked arguments") go between lenet's and Lightning's.
LENET_GROUPS = ("model", "data", "checkpoint", "sample_images", "prediction_writer")
LIGHTNING_GROUPS = ("trainer", "optimizer", "lr_scheduler")

GROUP_TITLES = {
    "model": "--model.*: the network",
    "data": "--data.*: the images",
    "checkpoint": (
        "--checkpoint.*: what fit keeps in checkpoints/ of its run folder (best.ckpt: lowest val/loss; last.ckpt)"
    ),
    "sample_images": "--sample_images.*: a few test/predict inputs saved as {index}_predicted_{class}.png",
    "prediction_writer": "--prediction_writer.*: predict's predictions.csv and predictions.png",
    "trainer": "--trainer.*: Lightning's Trainer, with lenet's defaults",
    "optimizer": "--optimizer: replaces LeNet's Adam (--model.lr, --model.weight_decay)",
    "lr_scheduler": "--lr_scheduler: replaces --model.lr_schedule",
}

# Inherited option texts that say otherwise than lenet does (ModelCheckpoint's describe its own
# defaults, which lenet changes: paths.CHECKPOINT_DEFAULTS). The Trainer's are LenetTrainer's docstring.
OPTION_HELP = {
    "--checkpoint.dirpath": "Folder for the checkpoints; default: checkpoints/ in the run folder.",
    "--checkpoint.filename": (
        "File name of the monitored checkpoint, without .ckpt; may hold formatting fields such as "
        "'{epoch}-{val/loss:.3f}' (then set --checkpoint.auto_insert_metric_name false). lenet's "
        "default: best, so --ckpt_path best finds it."
    ),
    "--checkpoint.monitor": "The logged metric that decides which checkpoint is best (lenet's default: val/loss).",
    "--checkpoint.mode": "min or max: whether a lower or higher --checkpoint.monitor is better (lenet's: min).",
    "--checkpoint.save_last": "Also keep last.ckpt, the end of the newest epoch, for resuming (lenet's default: true).",
    "--checkpoint.enable_version_counter": (
        "Append -v1, -v2 ... to a file name that is taken instead of replacing the file (lenet's default: "
        "false: best.ckpt is replaced by a better one)."
    ),
}

SEED_HELP = (
    "Seed of every random choice (initial weights, shuffling): the same seed repeats a run. "
    "An int, or false for no seeding."
)


def parser_kwargs(given: dict[str, Any] | None, subcommands: Iterable[str]) -> dict[str, Any]:
    """LightningCLI's ``parser_kwargs`` with lenet's program name, description and usage lines.

    What the caller gave wins; per-subcommand entries are dicts keyed by the subcommand's name.
    """
    kwargs: dict[str, Any] = {"prog": PROG, "description": DESCRIPTION, "epilog": EPILOG} | dict(given or {})
    for name in subcommands:
        kwargs[name] = {"usage": USAGE} | dict(kwargs.get(name) or {})
    return kwargs


def named_subcommand(words: Sequence[str], subcommands: Iterable[str]) -> str | None:
    """The subcommand ``words`` (a command line without the program) names, if it names a known one.

    The words before a subcommand can only be ``-h``, ``-c/--config FILE`` and ``--print_config[=...]``.
    """
    known = set(subcommands)
    skip_value = False
    for word in words:
        if skip_value:
            skip_value = False
        elif word in ("-c", "--config"):
            skip_value = True
        elif not word.startswith("-"):
            return word if word in known else None
    return None


def arrange(parser: Any, subcommand: str) -> None:
    """Put the groups of a subcommand's parser in lenet's order and give them lenet's titles."""
    groups = getattr(parser, "groups", None) or {}
    for key, title in {**GROUP_TITLES, subcommand: f"lenet {subcommand}'s own options"}.items():
        if key in groups:
            groups[key].title = title
    actions = parser._option_string_actions  # argparse's index of options, as jsonargparse uses it
    for option, text in OPTION_HELP.items():
        if option in actions:
            actions[option].help = text
    rank = {id(groups[key]): position for position, key in enumerate((subcommand, *LENET_GROUPS)) if key in groups}
    last = {id(groups[key]) for key in LIGHTNING_GROUPS if key in groups}
    # argparse prints its groups in list order; "positional arguments" and "options" stay first.
    action_groups = parser._action_groups
    first, rest = action_groups[:2], action_groups[2:]
    rest.sort(key=lambda group: rank.get(id(group), len(rank) + (1 if id(group) in last else 0)))
    action_groups[:] = first + rest
