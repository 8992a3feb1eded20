from __future__ import annotations

import os
from pathlib import Path

import pytest

from lenet_cli.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
# Quiet, CPU-only, small: what every in-process CLI test adds to its arguments.
CPU = ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.enable_progress_bar=false"]


def run_cli(args: list[str]) -> None:
    """``lenet ARGS`` in this process (LightningCLI's run-from-Python pattern)."""
    main(args)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short real training shared by the tests that need a checkpoint: its run folder.

    300 steps of 64 images at lr 2e-3 reach ~96-97 % validation accuracy on the bundled MNIST.
    """
    workdir = tmp_path_factory.mktemp("trained")
    previous = Path.cwd()
    os.chdir(workdir)
    try:
        run_cli(
            ["fit", "--config", str(CONFIGS / "quick.yaml"), *CPU, "--trainer.limit_train_batches=300",
             "--seed_everything=7", "--trainer.logger.init_args.save_dir=runs"]
        )
    finally:
        os.chdir(previous)
    return workdir / "runs" / "quick" / "version_0"


@pytest.fixture(scope="session")
def serve_processes(trained_run: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two ``lenet serve`` processes of the trained checkpoint, started together (their start-ups overlap):
    ``digit_server`` for the tests that talk to it, ``spare_server`` for the one that stops it."""
    from tests.serve_helpers import ServerProcess

    workdir = tmp_path_factory.mktemp("serve")
    checkpoint = trained_run / "checkpoints" / "best.ckpt"
    # 1 MB request limit: the over-the-limit test then sends 1 MB, not 10.
    servers = [ServerProcess(checkpoint, workdir, "--max_request_bytes", "1000000"), ServerProcess(checkpoint, workdir)]
    try:
        yield [server.wait_ready() for server in servers]
    finally:
        for server in servers:
            server.kill()


@pytest.fixture(scope="session")
def digit_server(serve_processes):
    return serve_processes[0]


@pytest.fixture(scope="session")
def spare_server(serve_processes):
    return serve_processes[1]
