"""Several machines, proven on one: two "nodes" of one CPU process each on 127.0.0.1 (gloo), started the
two ways a cluster starts them: ``torchrun --nnodes 2 --node-rank 0|1`` and SLURM's variables (as
``srun`` sets them, which Lightning's SLURMEnvironment reads). A rank killed mid-fit stops the other.

Marked ``multinode`` (and slow): CI runs them with ``pytest -m multinode`` (``.ci/run``); ~1.5 min
on a 2-core CPU.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from lenet_cli.cli.main import main
from tests.helpers import CONFIGS, child_env, crash_at, free_port, last_logged

pytestmark = [pytest.mark.slow, pytest.mark.multinode]
TWO_NODES = [
    "--trainer.num_nodes=2",
    "--trainer.devices=1",
    "--trainer.accelerator=cpu",
    "--trainer.strategy=ddp",
    "--trainer.enable_progress_bar=false",
]
# Lightning's "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2", which shows the second node joined,
# is one of the lines lenet's console leaves out (lenet_cli.console) unless LENET_DEBUG is set.
SHOW_LIGHTNING = {"LENET_DEBUG": "1"}
TIMEOUT_S = 180  # for each launch: a hang fails the test instead of holding CI


def launch(commands: list[list[str]], envs: list[Mapping[str, str]], cwd: Path) -> list[tuple[int, str, float]]:
    """Start one process per command at once; ``(exit status, stderr + stdout, seconds to exit)`` of each."""
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            command,
            cwd=cwd,
            env=child_env({"OMP_NUM_THREADS": "1", **env}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for command, env in zip(commands, envs, strict=True)
    ]
    results = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=max(1.0, TIMEOUT_S - (time.monotonic() - started)))
            results.append((process.returncode, output, time.monotonic() - started))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


def torchrun(args: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> list[tuple[int, str, float]]:
    """``lenet ARGS`` as two torchrun "nodes" (``--node-rank 0`` and ``1``) of one process each."""
    port = free_port()
    node = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1"]
    rendezvous = ["--master-addr=127.0.0.1", f"--master-port={port}", "--max-restarts=0"]
    commands = [[*node, f"--node-rank={rank}", *rendezvous, "-m", "lenet_cli", *args, *TWO_NODES] for rank in (0, 1)]
    return launch(commands, [dict(env or {}), dict(env or {})], cwd)


def srun(args: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> list[tuple[int, str, float]]:
    """``lenet ARGS`` as two SLURM tasks on two nodes, with the variables ``srun`` sets for each."""
    port = free_port()
    envs = [
        {
            "SLURM_NTASKS": "2",
            "SLURM_NTASKS_PER_NODE": "1",
            "SLURM_NNODES": "2",
            "SLURM_PROCID": str(rank),
            "SLURM_LOCALID": "0",
            "SLURM_NODEID": str(rank),
            "SLURM_JOB_NAME": "lenet",
            "SLURM_JOB_ID": "4242",
            "SLURM_NODELIST": "127.0.0.1",
            "MASTER_PORT": str(port),  # else Lightning derives it from SLURM_JOB_ID
            **(env or {}),
        }
        for rank in (0, 1)
    ]
    command = [sys.executable, "-m", "lenet_cli", *args, *TWO_NODES]
    return launch([command, command], envs, cwd)


def succeeded(results: list[tuple[int, str, float]]) -> None:
    for rank, (status, output, _) in enumerate(results):
        assert status == 0, f"node {rank}: {output[-3000:]}"
        assert "terminate called" not in output, output[-3000:]


def quick(data_dir: Path) -> list[str]:
    return ["--config", str(CONFIGS / "quick.yaml"), f"--data.data_dir={data_dir}", "--data.val_size=1000"]


@pytest.fixture(scope="module")
def two_node_fit(small_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fit on two torchrun nodes (20 steps of 2 × 64 images): the working folder."""
    workdir = tmp_path_factory.mktemp("multinode")
    fit = ["fit", *quick(small_mnist), "--trainer.limit_train_batches=20", "--seed_everything=5"]
    results = torchrun(fit, workdir, SHOW_LIGHTNING)
    succeeded(results)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in results[1][1]
    return workdir


def single_process_test(workdir: Path, data_dir: Path, checkpoint: Path) -> Path:
    """``lenet test`` of ``checkpoint`` in this process, on the CPU: the folder of its run."""
    before = set((workdir / "runs" / "quick").iterdir())
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        main(
            ["test", *quick(data_dir), "--trainer.accelerator=cpu", "--trainer.devices=1", f"--ckpt_path={checkpoint}"]
        )
    (run,) = set((workdir / "runs" / "quick").iterdir()) - before
    return run


def newest_run(workdir: Path) -> Path:
    return max((workdir / "runs" / "quick").iterdir(), key=lambda path: int(path.name.split("_")[1]))


@pytest.mark.parametrize("launcher", [torchrun, srun], ids=["torchrun", "SLURM variables"])
def test_two_nodes_test_exactly_like_one_process(
    launcher: Callable[..., list[tuple[int, str, float]]], two_node_fit: Path, small_mnist: Path
) -> None:
    run = two_node_fit / "runs" / "quick" / "version_0"
    assert last_logged(run, "val/acc") >= 0.6  # 20 steps of 2 × 64 images: it has learned
    best = run / "checkpoints" / "best.ckpt"
    results = launcher(["test", *quick(small_mnist), f"--ckpt_path={best}"], two_node_fit, SHOW_LIGHTNING)
    succeeded(results)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in results[1][1]  # the second node joined as rank 1
    two_nodes = newest_run(two_node_fit)
    one = single_process_test(two_node_fit, small_mnist, best)
    # Each of the 1000 test images counted exactly once, on one node or the other.
    assert last_logged(two_nodes, "test/acc") == pytest.approx(last_logged(one, "test/acc"), abs=1e-7)
    assert last_logged(two_nodes, "test/loss") == pytest.approx(last_logged(one, "test/loss"), rel=1e-5)


def test_a_rank_killed_mid_fit_stops_the_other_in_one_line(small_mnist: Path, tmp_path: Path) -> None:
    kill_rank_1 = crash_at("batch", 5, "SIGKILL", rank=1)
    args = ["fit", *quick(small_mnist), "--trainer.limit_train_batches=200", kill_rank_1]
    (status_0, output_0, ended_0), (status_1, _, ended_1) = torchrun(args, tmp_path)
    assert status_1 != 0 and status_0 != 0
    assert ended_0 - ended_1 < 60, f"node 0 went on for {ended_0 - ended_1:.0f} s after node 1 died"
    lenet_errors = [line for line in output_0.splitlines() if line.split("]: ")[-1].startswith("error: ")]
    assert len(lenet_errors) == 1, output_0[-3000:]
    assert "rank 0 of 2: another process of this distributed run failed or disappeared" in lenet_errors[0]
    assert "[rank0]: Traceback" not in output_0  # lenet's own traceback; torchrun's summary may follow
