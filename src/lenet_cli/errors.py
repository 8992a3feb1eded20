"""The one exception type the CLI turns into a single line on stderr and a non-zero exit."""

from __future__ import annotations


class LenetError(Exception):
    """A mistake the user can fix (bad path, corrupt file, wrong checkpoint).

    ``lenet_cli.cli.main`` prints ``error: <message>`` and exits with status 2 instead of a traceback;
    set ``LENET_DEBUG=1`` to get the traceback as well.
    """
