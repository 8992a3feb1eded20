"""Keeping LitServe's processes tied to the ``lenet serve`` process that started them.

LitServe forks its API servers and a process manager, and spawns its inference workers. A
``kill -9`` of the main process runs none of its shutdown, so without this the children would live
on, holding the port: a restarted server could not bind it, or old processes would answer.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; elsewhere nothing).

    SIGKILL rather than SIGTERM: an API server shutting down gracefully would wait for requests that
    can no longer be answered. The death signal is tied to the parent *thread*; LitServe starts its
    processes from the main thread, or from its monitor thread, which lives as long as the server.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl: the signal will never come
        os._exit(1)


def after_fork_in_child() -> None:
    """For forked children (API servers, the manager): die with the server, and drop its SIGTERM handler.

    ``lenet serve`` turns SIGTERM into a graceful stop of the whole server; a forked child inherits
    that handler but must simply end when the server terminates it.
    """
    die_with_parent()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
