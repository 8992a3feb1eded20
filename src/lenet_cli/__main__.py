"""``lenet``: ``lenet read`` (and a plain ``lenet serve``) answered without torch; the rest by the LightningCLI.

``read`` is dispatched before anything heavy is imported: torch, Lightning and jsonargparse take ~3 s
of a 2-core CPU to import, the reader ~0.2 s. The reader-only install (``reader/``) has no
``lenet_cli.cli``: there, the other subcommands say what to install.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

# `python -m` puts the working folder first on sys.path, so a config's `class_path: evilmod.X` would import
# ./evilmod.py (or a ./yaml.py shadow a dependency); the `lenet` script does not. Dropped here, before any
# other import. To import from the working folder, ask for it: PYTHONPATH=. python -m lenet_cli ...
if __name__ == "__main__" and not sys.flags.safe_path:
    del sys.path[0]

FULL_INSTALL = "pip install lenet-cli (in a checkout: pip install .)"


def main(args: Sequence[str] | None = None) -> None:
    """``lenet``'s entry point: the console script and ``python -m lenet_cli``."""
    words = list(sys.argv[1:] if args is None else args)
    if words[:1] == ["read"]:
        from lenet_cli.reading.cli import main as read  # noqa: PLC0415 - torch-free: see the module docstring

        status = read(words[1:])
        if args is None or status:
            sys.exit(status)
        return
    if words[:1] == ["serve"] and _torch_free_serve(words[1:]):
        from lenet_cli.serving.cli import main as serve  # noqa: PLC0415 - LitServe and ONNX Runtime, no torch

        status = serve(words[1:])
        if args is None or status:
            sys.exit(status)
        return
    try:
        from lenet_cli.cli.main import main as lightning_cli  # noqa: PLC0415
    except ImportError as error:  # the reader-only install, or a broken torch
        if words[:1] in ([], ["-h"], ["--help"]):
            from lenet_cli.reading.cli import READ_FIRST  # noqa: PLC0415

            print(f"usage: lenet read PATH... [--json] [--model FILE.onnx]\n\n{READ_FIRST}")
            print(f"\nThis is the reader-only install; training and the other subcommands need {FULL_INSTALL}.")
            return
        print(
            f"error: lenet {words[0]} needs the full install ({error.name or error} is missing): {FULL_INSTALL}",
            file=sys.stderr,
        )
        sys.exit(2)
    lightning_cli(None if args is None else list(args))


def _torch_free_serve(words: list[str]) -> bool:
    """``lenet serve`` with only its own options (no ``--ckpt_path``, ``--config``, ``--help`` ...): the bundled
    model or ``--model FILE.onnx``, served without the LightningCLI (lenet_cli.serving.cli)."""
    from lenet_cli.serving.cli import answers  # noqa: PLC0415 - argparse and socket only

    return answers(words)


if __name__ == "__main__":
    main()
