"""Files made to exhaust memory are refused before they do: the peak memory of a ``lenet`` process stays
under 1 GB for each, while torch, gzip or jsonargparse would take several GB (5.0 GB for the first two
before lenet checked them; the YAML one 8.9 GB after 142 s).

One new process runs a plain failing command and then the three bombs (``main()`` in-process, so that
the imports are paid once), and reports its peak RSS after each: no bomb may raise it by more than
:data:`MARGIN_KB`. The peak anonymous memory over the whole process stays under 1 GB. Each bomb is a
few MB or less on disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from lenet_cli.data import idx
from tests.helpers import (
    CPU,
    alias_bomb,
    assert_unchanged,
    assert_user_error,
    checkpoint_bomb,
    child_env,
    folder_state,
    gzip_bomb,
    write_idx,
)

BOMB_BYTES = 2**31 - 2**24  # ~2 GiB inflated; read twice (lenet's check, LightningCLI's) before the fix
LIMIT_KB = 1_000_000  # 1 GB (ru_maxrss and /proc count KiB)
# What a bomb may add to the peak of the same process after a plain failing command: torch and
# Lightning alone take ~0.8 GB of RSS (their libraries' pages), the bombs would add 2-8 GB.
MARGIN_KB = 150_000

CHILD = """
import contextlib, io, json, resource, sys
from lenet_cli.cli.main import main

report = {}
for name, args in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            main(args)
            status = 0
        except SystemExit as stop:
            status = stop.code
    report[name] = [status, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, err.getvalue()]
print(json.dumps(report))
"""


@pytest.mark.timeout(300)  # the child may take 240 s (below) on a busy machine
def test_bombs_are_refused_in_bounded_memory(tmp_path: Path) -> None:
    checkpoint_bomb(tmp_path / "bomb.ckpt", BOMB_BYTES)
    data = tmp_path / "data"  # training images whose gzip stream inflates ~2 GiB past the 20 images its header declares
    data.mkdir()
    for key, stem in idx.FILES.items():
        write_idx(data / stem, torch.zeros((20, 28, 28) if key.endswith("images") else (20,), dtype=torch.uint8))
    images = data / idx.FILES["train_images"]
    gzip_bomb(images.with_name(images.name + ".gz"), images.read_bytes(), BOMB_BYTES)
    images.unlink()
    (tmp_path / "laughs.yaml").write_text(alias_bomb(levels=9, width=9))  # 9**9 = 387 million values
    assert max(path.stat().st_size for path in tmp_path.rglob("*") if path.is_file()) < 4 * 2**20
    bombs = {
        "baseline": ["test", *CPU, "--ckpt_path", "none.ckpt"],  # the imports, and one error line
        "checkpoint": ["test", *CPU, "--ckpt_path", "bomb.ckpt"],
        "gzip IDX": ["fit", *CPU, "--data.data_dir", "data", "--data.val_size", "10"],
        "YAML aliases": ["fit", *CPU, "--config", "laughs.yaml"],
    }
    before = folder_state(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(bombs)],
        cwd=tmp_path,
        env=child_env({"OMP_NUM_THREADS": "1"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak_anonymous_kb = [0]
    watcher = threading.Thread(target=watch_anonymous_memory, args=(process, peak_anonymous_kb), daemon=True)
    watcher.start()
    try:
        stdout, stderr = process.communicate(timeout=240)
    finally:
        process.kill()
        watcher.join(timeout=5)
    assert process.returncode == 0, stderr[-3000:]
    report = json.loads(stdout.strip().splitlines()[-1])
    expected = {
        "baseline": "error: checkpoint none.ckpt does not exist",
        "checkpoint": "error: checkpoint bomb.ckpt refused: it has compressed entries",
        "gzip IDX": "is longer than its header says",
        "YAML aliases": "error: config file laughs.yaml refused: its YAML aliases expand it to more than",
    }
    baseline_kb = report["baseline"][1]
    for name, (status, peak_kb, stderr) in report.items():
        assert_user_error(status, stderr, expected[name])
        assert peak_kb - baseline_kb < MARGIN_KB, f"{name}: peak RSS {peak_kb - baseline_kb} KB above the baseline"
    assert_unchanged(tmp_path, before)  # nothing written beside the bombs, none of them changed
    assert peak_anonymous_kb[0] < LIMIT_KB, f"peak anonymous RSS {peak_anonymous_kb[0] / 1e6:.2f} GB"
    print({name: f"{peak_kb / 1e6:.3f} GB" for name, (_, peak_kb, _) in report.items()}, peak_anonymous_kb)


def watch_anonymous_memory(process: subprocess.Popen[str], peak_kb: list[int]) -> None:
    """The largest RssAnon of ``process`` (Linux), sampled every 5 ms until it ends.

    RSS also counts the pages of torch's libraries that the process has touched, which vary with what
    the page cache holds (the kernel maps pages around each fault when they are cached): 0.8-1.1 GB here
    before any bomb. Anonymous memory is what a bomb would take.
    """
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            line = next(line for line in status.read_text().splitlines() if line.startswith("RssAnon:"))
            peak_kb[0] = max(peak_kb[0], int(line.split()[1]))
        except (OSError, StopIteration):
            pass
        time.sleep(0.005)
