"""``lenet runs``: the run folders under a folder, one line each, and which checkpoint ``--ckpt_path best`` picks."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from lenet_cli.errors import LenetError, escaped
from lenet_cli.runs.ckpt_path import best_checkpoint
from lenet_cli.runs.paths import versions_newest_first
from lenet_cli.runs.record import RUN_FILE, RunSummary, summaries


def runs_folders(root: Path) -> list[Path]:
    """The folders of ``version_N`` runs at or under ``root``: ``runs/`` holds ``runs/mnist/``, ``runs/quick/``..."""
    if versions_newest_first(root):
        return [root]
    if not root.is_dir():
        return []
    return sorted(child for child in root.iterdir() if child.is_dir() and versions_newest_first(child))


def describe_checkpoint(checkpoint: str | None, runs_folder: Path) -> str:
    """``checkpoint`` relative to the runs folder when it is inside it (``version_0/checkpoints/best.ckpt``)."""
    if not checkpoint:
        return ""
    path = Path(checkpoint)
    try:
        return str(path.absolute().relative_to(runs_folder.absolute()))
    except ValueError:
        return str(path)


def table(summaries: Sequence[RunSummary]) -> list[str]:
    header = ("run", "subcommand", "started", "epochs", "best val/loss", "test acc", "from")
    rows = [header]
    for run in summaries:
        what = run.subcommand or "?"
        if run.status and run.status not in ("finished",):
            what += f" ({run.status})"
        started = run.started.replace("T", " ")[:16] if run.started else "-"
        origin = describe_checkpoint(run.checkpoint, run.folder.parent) or ", ".join(run.configs) or "-"
        rows.append(
            (
                escaped(run.folder),  # names reach the terminal escaped: a newline would forge a line
                escaped(what),
                escaped(started),
                str(run.epochs) if run.epochs is not None else "-",
                f"{run.best_val_loss:.4f}" if run.best_val_loss is not None else "-",
                f"{run.test_accuracy:.2%}" if run.test_accuracy is not None else "-",
                escaped(origin),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    right = {3, 4, 5}  # numbers
    return [
        "  ".join(
            cell.rjust(width) if column in right else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def print_runs(roots: Sequence[str | Path]) -> None:
    """Print the runs found at or under each of ``roots``, oldest first, and what ``best`` picks there."""
    found = False
    for root in map(Path, roots):
        if (root / RUN_FILE).is_file() or (root / "config.yaml").is_file():
            folders = [root]  # one run folder
        else:
            folders = []
            for group in runs_folders(root):
                folders += reversed(versions_newest_first(group))
        if not folders:
            continue
        found = True
        for line in table(summaries(folders)):
            print(line)
        for group in sorted({folder.parent for folder in folders}):
            try:
                best, note = best_checkpoint(group)
            except LenetError:
                continue
            print(f"--ckpt_path best in {escaped(group)}: {escaped(best)} ({escaped(note)})")
    if not found:
        raise LenetError(f"no runs in {', '.join(map(str, roots))} (each `lenet fit|test|predict` makes one)")


def main(words: Sequence[str]) -> None:
    """``lenet runs [FOLDER ...]``: answered without building Lightning's parser, model or trainer."""
    parser = argparse.ArgumentParser(
        prog="lenet runs",
        description="List the run folders: subcommand, when it started, epochs, best val/loss, test accuracy, "
        "and which checkpoint `--ckpt_path best` picks in each runs folder.",
        exit_on_error=False,
    )
    parser.add_argument(
        "folders",
        nargs="*",
        default=["runs"],
        metavar="FOLDER",
        help="folders of runs (runs/, runs/mnist/) or run folders; default: runs",
    )
    try:
        options = parser.parse_args(list(words))
    except argparse.ArgumentError as error:
        raise LenetError(f"{error} (`lenet runs --help` lists the options)") from error
    print_runs(options.folders)
