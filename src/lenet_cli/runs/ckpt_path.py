"""What ``--ckpt_path`` means, decided here only: ``best``, ``last``, ``pretrained``, ``untrained``, none,
or a checkpoint file.

- ``best``: ``checkpoints/best.ckpt`` of the run with the lowest ``val/loss`` among the runs of the
  config's runs folder (``runs/<name>/``), read from each run's ``metrics.csv`` (best.ckpt is that
  run's epoch of lowest ``val/loss``, lenet's ``--checkpoint.monitor``); ties go to the newest run.
- ``last``: ``checkpoints/last.ckpt`` of the newest run that has one.
- ``pretrained``: the model bundled with lenet-cli; ``test``, ``predict``, ``serve`` and ``export`` take
  it when no ``--ckpt_path`` is given. ``validate`` without one fails: it would report an untrained
  network's numbers.
- ``untrained``: a freshly initialised network, asked for on purpose.
"""

from __future__ import annotations

from pathlib import Path

from lenet_cli.checkpoints import pretrained
from lenet_cli.errors import LenetError
from lenet_cli.runs.paths import versions_newest_first
from lenet_cli.runs.record import plural, summaries

RUN_ALIASES = ("best", "last")
PRETRAINED = "pretrained"
UNTRAINED = "untrained"
# Subcommands that use the bundled model when no --ckpt_path is given.
PRETRAINED_BY_DEFAULT = ("test", "predict", "export", "serve")


def help_text(subcommand: str) -> str:
    """The ``--ckpt_path`` help of ``subcommand``: one text, its default sentence per subcommand."""
    runs = (
        "``best`` (the best.ckpt with the lowest val/loss among the runs of the config's runs folder, "
        "runs/<name>/), ``last`` (the last.ckpt of the newest run there)"
    )
    if subcommand == "fit":
        return f"Continue from this checkpoint, in a new run folder: {runs} or a checkpoint file."
    if subcommand in PRETRAINED_BY_DEFAULT:
        default = "none: the bundled model"
    else:
        default = "none: fails (validate must name the weights it reports on)"
    return (
        f"The weights: {runs}, ``{PRETRAINED}`` (the model bundled with lenet-cli), ``{UNTRAINED}`` "
        f"(random weights, on purpose) or a checkpoint file; {default}."
    )


def resolve(subcommand: str, ckpt_path: str | None, runs_folder: Path) -> tuple[str | None, str | None]:
    """The checkpoint file ``--ckpt_path`` names for ``subcommand`` (None: no checkpoint), and the line
    that says which one was chosen and why (None: nothing to say)."""
    if ckpt_path == "best":
        best, why = best_checkpoint(runs_folder)
        return str(best), f"--ckpt_path best: using {best} ({why})"
    if ckpt_path == "last":
        last = newest_checkpoint("last", runs_folder)
        return str(last), f"--ckpt_path last: using {last} (the newest run in {runs_folder})"
    if ckpt_path == UNTRAINED:
        note = f"--ckpt_path {UNTRAINED}: a freshly initialised network (random weights), as asked"
        return None, None if subcommand == "fit" else note
    if ckpt_path == PRETRAINED:
        if subcommand == "fit":
            raise LenetError(
                "--ckpt_path pretrained: fit resumes a run from its training state, which the pretrained model "
                "does not keep; give --ckpt_path last (or a checkpoint file) of your own run"
            )
        chosen = pretrained.path()
        return str(chosen), f"--ckpt_path {PRETRAINED}: using {pretrained.describe()}: {chosen}"
    if ckpt_path is None and subcommand in PRETRAINED_BY_DEFAULT:
        return str(pretrained.path()), (
            f"no --ckpt_path: using {pretrained.describe()} (--ckpt_path best, last or a file for your own)"
        )
    if ckpt_path is None and subcommand == "validate":
        raise LenetError(
            "lenet validate needs --ckpt_path: best, last, pretrained or a checkpoint file "
            "(or untrained, to validate a freshly initialised network)"
        )
    return ckpt_path, None


def best_checkpoint(runs_folder: Path) -> tuple[Path, str]:
    """``checkpoints/best.ckpt`` of the run with the lowest val/loss in ``runs_folder``, and why that one."""
    candidates = summaries(versions_newest_first(runs_folder))
    candidates = [run for run in candidates if run.best_checkpoint.is_file()]
    if not candidates:
        raise LenetError(
            f"--ckpt_path best: no run in {runs_folder} has checkpoints/best.ckpt; train one with `lenet fit` first"
        )
    scored = [run for run in candidates if run.best_val_loss is not None]
    if not scored:
        return candidates[0].best_checkpoint, f"the newest run in {runs_folder} with a best.ckpt; no val/loss recorded"
    chosen = min(scored, key=lambda run: run.best_val_loss or 0.0)  # newest first: a tie goes to the newest
    note = f"val/loss {chosen.best_val_loss:.4f}, the lowest of {plural(len(scored), 'run')} in {runs_folder}"
    newest = candidates[0]
    if newest is not chosen and newest.best_val_loss is not None:
        note += f"; the newest, {newest.folder.name}, has {newest.best_val_loss:.4f}"
    return chosen.best_checkpoint, note


def newest_checkpoint(alias: str, runs_folder: Path) -> Path:
    """``checkpoints/{alias}.ckpt`` (``best`` or ``last``) of the newest run in ``runs_folder`` that has one."""
    for folder in versions_newest_first(runs_folder):
        candidate = folder / "checkpoints" / f"{alias}.ckpt"
        if candidate.is_file():
            return candidate
    raise LenetError(
        f"--ckpt_path {alias}: no run in {runs_folder} has checkpoints/{alias}.ckpt; train one with `lenet fit` first"
    )
