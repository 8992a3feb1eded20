"""``lenet serve`` on the reader (ONNX Runtime, no torch) beside the server it replaces (torch worker, through
the LightningCLI), side by side in one run on 127.0.0.1:

    python benchmarks/serving_reader.py --baseline-src /path/to/old/checkout/src

- start-up: seconds from the command to the first 200 of ``/health`` (``--starts`` each, interleaved):
  ``reader`` is a plain ``lenet serve`` (the bundled model), ``baseline`` is the old checkout's
  ``lenet serve --ckpt_path pretrained`` (the same weights);
- load: ``--clients`` keep-alive clients posting MNIST test PNGs for ``--seconds`` (after ``--warmup``),
  ``--rounds`` times interleaved: requests/s and p50/p95/p99 latency (benchmarks/serve_load.py's client).

Both servers run with their defaults (batching 16, 2 ms). Results as JSON in benchmarks/results/serving-reader.json.
The CPU is shared: compare the two of one run, and read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.serve_load import Server, digit_pngs, free_port, header, http_request, run_load, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "serving-reader.json"


def server(name: str, src: Path, *extra: str) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "lenet_cli", "serve", "--port", str(port), *extra]
    started = Server(name, command, port)
    started.source = src  # type: ignore[attr-defined]
    return started


def start(one: Server) -> Server:
    """Server.start, with ``one.source`` (not this checkout's src) first on PYTHONPATH."""
    env = dict(os.environ, PYTHONPATH=f"{one.source}{os.pathsep}{ROOT}")  # type: ignore[attr-defined]
    began = time.perf_counter()
    one.process = subprocess.Popen(
        one.command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    wait_healthy(one.port, one.process)
    one.started_s = time.perf_counter() - began
    return one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-src", type=Path, required=True, help="the src/ of a checkout before the reader")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--starts", type=int, default=3)
    arguments = parser.parse_args()
    good = [http_request(body, "image/png") for body in digit_pngs(200)]
    kinds = {
        "reader": lambda: server("reader", ROOT / "src"),
        "baseline": lambda: server("baseline", arguments.baseline_src, "--ckpt_path", "pretrained"),
    }
    starts: dict[str, list[float]] = {name: [] for name in kinds}
    loads: dict[str, list[dict]] = {name: [] for name in kinds}
    for round_number in range(max(arguments.starts, arguments.rounds)):
        for name, make in kinds.items():
            running = start(make())
            try:
                starts[name].append(round(running.started_s, 2))
                if round_number < arguments.rounds:
                    load = run_load(running.port, arguments.clients, arguments.seconds, arguments.warmup, good)
                    loads[name].append(load.summary())
                    summary = loads[name][-1]
                    print(f"{name}: start {running.started_s:.2f} s, {summary['requests_per_s']} req/s, "
                          f"p99 {summary['p99_ms']} ms, errors {summary['errors']}", flush=True)  # fmt: skip
                else:
                    print(f"{name}: start {running.started_s:.2f} s", flush=True)
            finally:
                running.stop()
    result = {
        **header(),
        "clients": arguments.clients,
        "seconds": arguments.seconds,
        "start_s": {name: {"runs": values, "median": statistics.median(values)} for name, values in starts.items()},
        "load": loads,
        "throughput_ratio": round(
            statistics.median(run["requests_per_s"] for run in loads["reader"])
            / statistics.median(run["requests_per_s"] for run in loads["baseline"]),
            2,
        ),
        "measured_at": time.strftime("%Y-%m-%d"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({key: result[key] for key in ("start_s", "throughput_ratio")}))


if __name__ == "__main__":
    main()
