"""Files made to exhaust memory are refused before they do: the peak memory (RSS) of a ``lenet`` process
stays under 1 GB for each, while torch, gzip or jsonargparse would take several GB.

One new process runs the three bombs one after another (``main()`` in-process, so that the imports are
paid once) and reports its peak RSS after each: the peak only grows, so each value bounds the bombs so far.
Each bomb is a few MB or less on disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from lenet_cli import idx
from tests.helpers import CPU, alias_bomb, checkpoint_bomb, child_env, gzip_bomb, write_idx

BOMB_BYTES = 2**31 - 2**24  # ~2 GiB inflated; read twice (lenet's check, LightningCLI's) before the fix
LIMIT_KB = 1_000_000  # 1 GB, as ru_maxrss counts it on Linux (KiB)
# What a bomb may add to the peak of the same process after a plain failing command: torch and
# Lightning alone take ~0.8 GB of RSS (their libraries' pages), the bombs would add 2-8 GB.
MARGIN_KB = 150_000

CHILD = """
import contextlib, io, json, resource, sys
from lenet_cli.cli import main

report = {}
for name, args in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            main(args)
            status = 0
        except SystemExit as stop:
            status = stop.code
    lines = err.getvalue().strip().splitlines()
    report[name] = [status, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, lines[-1] if lines else ""]
print(json.dumps(report))
"""


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
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(bombs)],
        cwd=tmp_path,
        env=child_env({"OMP_NUM_THREADS": "1"}),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    expected = {
        "baseline": "error: checkpoint none.ckpt does not exist",
        "checkpoint": "error: checkpoint bomb.ckpt refused: it has compressed entries",
        "gzip IDX": "is longer than its header says",
        "YAML aliases": "error: config file laughs.yaml refused: its YAML aliases expand it to more than",
    }
    baseline_kb = report["baseline"][1]
    for name, (status, peak_kb, line) in report.items():
        assert status == 2 and expected[name] in line, (name, line)
        # The imports' own RSS varies with how much of torch's libraries the page cache maps in (0.8 GB
        # alone, 1.5 GB once in a full suite run beside a pip install): the bound is 1 GB, or a plain
        # failing command's own peak where that is higher, and each bomb may add at most MARGIN_KB.
        assert peak_kb < max(LIMIT_KB, baseline_kb + MARGIN_KB), f"{name}: peak RSS {peak_kb / 1e6:.2f} GB"
        assert peak_kb - baseline_kb < MARGIN_KB, f"{name}: {peak_kb - baseline_kb} KB above the baseline"
    print({name: f"{peak_kb / 1e6:.3f} GB" for name, (_, peak_kb, _) in report.items()})
