"""lenet-reader's build: the torch-free modules of ../src/lenet_cli only (the rest needs torch or Lightning).

tests/test_layout.py keeps ``images/`` and ``reading/`` free of torch; the top-level modules listed here
are the ones they import. tests/test_reader_install.py builds this wheel and checks what it holds.
"""

from __future__ import annotations

from setuptools import setup
from setuptools.command.build_py import build_py

# Per package, the modules kept; a package not named here keeps all of its modules.
KEPT = {
    "lenet_cli": {"__init__", "__main__", "errors", "atomic"},
    "lenet_cli.checkpoints": {"__init__"},  # a folder for the bundled ONNX file; its modules load torch
    # not run.py (the LightningCLI's way in)
    "lenet_cli.serving": {"__init__", "cli", "gateway", "limits", "requests", "server", "worker", "processes"},
}


class ReaderOnly(build_py):
    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        modules = super().find_package_modules(package, package_dir)
        kept = KEPT.get(package)
        return [module for module in modules if kept is None or module[1] in kept]


setup(cmdclass={"build_py": ReaderOnly})
