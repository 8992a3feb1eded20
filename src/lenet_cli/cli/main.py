"""``lenet``'s entry: build the LightningCLI, word user errors in one line."""

from __future__ import annotations

import gc
import os
import sys

from lightning.pytorch.cli import ArgsType
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lenet_cli.cli import console
from lenet_cli.cli.lightning_cli import LenetCLI, command_words
from lenet_cli.errors import DEBUG_VARIABLE, describe, escaped, print_safely, user_errors
from lenet_cli.runs import listing, resume
from lenet_cli.training import distributed


def main(args: ArgsType = None) -> None:
    """``lenet``: parse ``args`` (default: the command line), run the subcommand, word user errors in one line."""
    words = command_words(args) or []
    try:
        if words[:1] == ["runs"]:  # lists folders: no parser, model, data or trainer to build
            listing.main(words[1:])
            return
        with console.quiet():
            LenetCLI(args=args)
    except SIGTERMException as stop:  # Ctrl-C or SIGTERM stopped fit; resume.StopOnSignal printed how to resume
        sys.exit(resume.exit_status(stop))
    except resume.StoppedAtOnce:  # a second Ctrl-C
        sys.exit(130)
    except RuntimeError as error:  # a dead rank of a distributed run, or a bug (which keeps its traceback)
        if os.environ.get(DEBUG_VARIABLE) or (line := distributed.peer_failure(error)) is None:
            raise
        print_safely(f"error: {escaped(line)}")
        sys.exit(2)
    except (*user_errors(), KeyboardInterrupt) as error:  # type: ignore[misc]  # a tuple of classes, unpacked
        if os.environ.get(DEBUG_VARIABLE):
            raise
        if isinstance(error, KeyboardInterrupt):  # outside the trainer, which handles its own
            print_safely("interrupted")
            sys.exit(130)
        subcommand = next((word for word in words if word in LenetCLI.subcommands()), None)
        print_safely(f"error: {describe(error, subcommand)}")
        sys.exit(2)
    finally:
        if args is None:  # the command line's process, about to exit (not a call from Python)
            exit_quickly()


def exit_quickly() -> None:
    """Spare the process the garbage collection that Python's exit runs over every object still alive.

    For what torch and Lightning import that collection takes ~2 s on a 2-core CPU (a bare
    ``import torch, lightning.pytorch`` pays it too); all of those objects live until the exit anyway.
    ``gc.freeze`` moves them out of the collector's sight (public since Python 3.7): the exit then takes
    ~0.3 s. atexit handlers still run, and everything not in a reference cycle is freed as before.
    """
    gc.freeze()
