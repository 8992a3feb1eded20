"""Fixtures shared by the test modules (plain helpers are in ``tests/helpers.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lenet_cli.cli.main import main
from lenet_cli.data import idx
from tests.helpers import QUICK, write_idx

LONG_RUN_TIMEOUT = 1800  # seconds: slow tests train for minutes, or fuzz thousands of inputs, on a 2-core CPU
# Shared fixtures that train or draw for tens of seconds, paid by whichever test uses one first (measured
# with five other jobs on the 2-core CPU: trained_run 83 s, ddp_runs 75 s, phone_photos 26 s).
SLOW_FIXTURES = {"trained_run", "ddp_runs", "phone_photos", "uninterrupted"}
SLOW_FIXTURE_TIMEOUT = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longer time limits than pyproject's 120 s, unless a test names its own: LONG_RUN_TIMEOUT for the
    slow and multinode tests, SLOW_FIXTURE_TIMEOUT for those that use a SLOW_FIXTURES fixture (directly
    or through another fixture)."""
    for item in items:
        if item.get_closest_marker("timeout") is not None:
            continue
        if item.get_closest_marker("slow") or item.get_closest_marker("multinode"):
            item.add_marker(pytest.mark.timeout(LONG_RUN_TIMEOUT))
        elif SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.timeout(SLOW_FIXTURE_TIMEOUT))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short real training shared by the tests that need a checkpoint: its run folder.

    300 steps of 64 images at lr 2e-3 reach ~96-97 % validation accuracy on the bundled MNIST.
    """
    workdir = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        main(["fit", *QUICK, "--trainer.limit_train_batches=300", "--seed_everything=7"])
    return workdir / "runs" / "quick" / "version_0"


@pytest.fixture(scope="session")
def mnist_test() -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST's 10 000 test digits, uint8 (N, 28, 28), and their labels (int64), from the bundled copy.

    Shared: slice or copy them, never change them in place.
    """
    arrays = idx.load(None, allow_download=False)
    return arrays["test_images"], arrays["test_labels"].long()


@pytest.fixture(scope="session")
def small_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain (not gzipped) IDX copy of the first 6000 training and 1000 test images.

    For tests of what happens around training: reading it takes a fraction of the bundled copy's time.
    """
    folder = tmp_path_factory.mktemp("small_mnist")
    arrays = idx.load(None)
    for key, stem in idx.FILES.items():
        write_idx(folder / stem, arrays[key][: 6000 if key.startswith("train") else 1000])
    return folder


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny batches on a busy 2-core machine run several times faster on one thread (no OpenMP waits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
