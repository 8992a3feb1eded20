"""Answering users: ``lenet serve`` under load beside a plain FastAPI app, and how fast commands start.

    python benchmarks/serving.py load                     # 16 clients, 15 s a run, 2 rounds, 60 s soak
    python benchmarks/serving.py load --clients 4 --seconds 3 --rounds 1 --soak 0      # a smoke run
    python benchmarks/serving.py startup --rounds 5

``load``: each server alone, a subprocess on a free port of 127.0.0.1 (the bundled model; ``--ckpt_path``:
another); ``--clients`` keep-alive connections post one MNIST test digit as a PNG each, waiting for the
answer, for ``--seconds`` after ``--warmup``. Per run: good requests/s, p50/p95/p99 of the good ones, errors,
the bad requests' statuses (each a 4xx), CPU of all the server's processes a request answered, seconds to
``/health``. Runs, ``--rounds`` times: ``fastapi`` (one uvicorn process, same decoding and network, one torch
thread), ``litserve`` (defaults), ``litserve-batch`` (``--max_batch_size 16``: LitServe's worker),
``litserve-mixed`` (every ``--bad-every``-th request bad), ``reader`` (a plain ``lenet serve``: no torch) and,
with ``--before SRC``, ``before`` (that checkout's ``lenet serve --ckpt_path pretrained``). Then ``--soak`` s
on a fresh server, its memory every 10 s. Client and server share the CPU: compare runs of one invocation.

``startup``: everyday commands in new processes beside the import floor (``python -c "import torch,
lightning.pytorch"``) of the same round: ``lenet --help``, ``lenet fit --help``, ``lenet predict`` of one
PNG, ``lenet serve --ckpt_path pretrained`` and a plain ``lenet serve`` up to ``/health``; medians over
``--rounds`` (``lenet read``: benchmarks/reading.py speed).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: `benchmarks.common` importable

import argparse
import asyncio
import contextlib
import http.client
import io
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from fastapi import FastAPI, Request  # at module level: FastAPI resolves the handler's annotations here
from fastapi.responses import JSONResponse

from benchmarks.common import child_environment, header, write_results

HOST = "127.0.0.1"


def baseline_app(ckpt_path: str) -> FastAPI:
    """A minimal FastAPI app with lenet's decoding, input step and network: what LitServe is measured against."""
    import torch

    from lenet_cli.checkpoints import load, pretrained
    from lenet_cli.data.mnist import to_model_input
    from lenet_cli.images import decode, files
    from lenet_cli.training.network import LeNet5, network_weights

    torch.set_num_threads(1)
    checkpoint = load.load(pretrained.path() if ckpt_path == "pretrained" else ckpt_path)
    sizes = {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if k in ("in_channels", "num_classes")}
    network = LeNet5(**sizes).eval()
    network.load_state_dict(network_weights(checkpoint["state_dict"]))
    app = FastAPI()

    @app.get("/health")
    async def health() -> str:
        return "ok"

    @app.post("/predict", response_model=None)  # no response validation: the minimal path
    async def predict(request: Request) -> JSONResponse | dict:
        try:
            digit = files.load_digit(io.BytesIO(await request.body()), "image")
        except decode.BadImage as error:
            return JSONResponse({"detail": str(error)}, status_code=400)
        with torch.inference_mode():
            probabilities = torch.softmax(network(to_model_input(torch.from_numpy(digit[None]))), dim=1)[0]
        top, classes = probabilities.topk(3)
        top3 = [{"class": int(c), "probability": float(p)} for c, p in zip(classes, top, strict=True)]
        return {"class": int(classes[0]), "confidence": float(top[0]), "top3": top3}

    return app


def healthy(port: int, process: subprocess.Popen, timeout: float = 120.0) -> float:
    """Seconds until ``/health`` answers 200 (counted by the caller from the process's start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read()[-2000:] if process.stderr else b""
            raise RuntimeError(f"server exited with {process.returncode}: {stderr!r}")
        connection = http.client.HTTPConnection(HOST, port, timeout=1)
        with contextlib.suppress(OSError):
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return time.perf_counter()
        connection.close()
        time.sleep(0.05)
    raise RuntimeError(f"no /health answer on port {port} after {timeout} s")


@contextlib.contextmanager
def server(name: str, ckpt_path: str | None, *extra: str, src: Path | None = None) -> Iterator[tuple[int, float, int]]:
    """(port, seconds to healthy, pid) of a running ``fastapi`` baseline or ``lenet serve EXTRA`` (``ckpt_path``
    None: a plain ``lenet serve``; ``src``: another checkout's src/ first on the path); stopped after."""
    with socket.socket() as probe:  # a free port
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    checkpoint = ["--ckpt_path", ckpt_path] if ckpt_path is not None else []
    if name == "fastapi":
        command = [sys.executable, __file__, "baseline-server", *checkpoint, "--port", str(port)]
    else:
        command = [sys.executable, "-m", "lenet_cli", "serve", *checkpoint, "--port", str(port), *extra]
    environment = child_environment()
    if src is not None:
        environment["PYTHONPATH"] = os.pathsep.join([str(src), environment["PYTHONPATH"]])
    began = time.perf_counter()
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)  # fmt: skip
    try:
        yield port, healthy(port, process) - began, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the group this script started
            process.wait()


def usage(pid: int) -> tuple[float, float]:
    """Resident memory (MB) and CPU seconds (user and system) of ``pid`` and its descendants, summed, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    tree, total_kb, ticks = {pid}, 0, 0
    while grown := {child for child, parent in parents.items() if parent in tree} - tree:
        tree |= grown
    for member in tree:
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{member}/status").read_text()
            total_kb += sum(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            ticks += sum(map(int, Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()[11:13]))
    return total_kb / 1024, ticks / os.sysconf("SC_CLK_TCK")


def http_request(body: bytes, content_type: str | None, declared: int | None = None) -> bytes:
    lines = [
        "POST /predict HTTP/1.1",
        f"Host: {HOST}",
        f"Content-Length: {len(body) if declared is None else declared}",
    ]
    lines += [f"Content-Type: {content_type}"] if content_type else []
    lines += ["Expect: 100-continue"] if declared is not None else []
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def requests() -> tuple[list[bytes], list[tuple[str, bytes]]]:
    """100 good requests (MNIST test digits as PNGs) and (kind, request) of each kind of bad one."""
    from PIL import Image

    from lenet_cli.data import idx

    def png(image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    good = [http_request(png(Image.fromarray(digit)), "image/png") for digit in idx.load()["test_images"][:100].numpy()]
    bad = [
        ("not-an-image", http_request(b"this is not a PNG" * 4, "image/png")),
        ("empty", http_request(b"", "image/png")),
        ("wrong-content-type", http_request(b"hello", "text/plain")),
        ("malformed-json", http_request(b'{"image": ', "application/json")),
        ("bad-base64", http_request(b'{"image": "***"}', "application/json")),
        ("no-digit", http_request(png(Image.new("L", (28, 28), 255)), "image/png")),
        ("over-size-limit", http_request(b"", "image/png", declared=64 * 1024 * 1024)),
    ]
    return good, bad


async def response_status(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, connection kept alive) of one HTTP/1.1 response with a Content-Length body."""
    while True:
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionError("connection closed")
        status, length, keep_alive = int(status_line.split()[1]), 0, True
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            length = int(value) if name.lower() == "content-length" else length
            keep_alive = keep_alive and not (name.lower() == "connection" and value.strip().lower() == "close")
        if status != 100:  # "100 Continue": the final answer follows
            await reader.readexactly(length)
            return status, keep_alive


def run_load(port: int, options: argparse.Namespace, good: list[bytes], bad: list[tuple[str, bytes]],
             seconds: float) -> list[tuple[str, int, float]]:  # fmt: skip
    """(kind, status (0: no answer), seconds) of every request sent in ``seconds`` s."""
    results: list[tuple[str, int, float]] = []
    until = time.perf_counter() + seconds

    async def client(number: int) -> None:
        reader = writer = None
        sent = number * 7  # clients start at different digits
        while time.perf_counter() < until:
            sent += 1
            kind, request = bad[(sent // options.bad_every) % len(bad)] if bad and sent % options.bad_every == 0 else (
                "good", good[sent % len(good)])  # fmt: skip
            began = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(HOST, port)
                writer.write(request)
                status, keep_alive = await response_status(reader)  # type: ignore[arg-type]
                keep_alive = keep_alive and kind != "over-size-limit"  # its body was never sent
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
                status, keep_alive = 0, False
            results.append((kind, status, time.perf_counter() - began))
            if not keep_alive and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    async def clients() -> None:
        await asyncio.gather(*(client(number) for number in range(options.clients)))

    asyncio.run(clients())
    return results


def summary(results: list[tuple[str, int, float]], seconds: float) -> dict[str, Any]:
    latencies = np.array([spent for kind, status, spent in results if kind == "good" and status == 200]) * 1000
    bad = [status for kind, status, _ in results if kind != "good"]
    percentiles = np.percentile(latencies, [50, 95, 99]) if len(latencies) else [float("nan")] * 3
    return {
        "requests_per_s": round(len(latencies) / seconds, 1),
        **{f"p{q}_ms": round(float(value), 2) for q, value in zip((50, 95, 99), percentiles, strict=True)},
        "errors": sum(kind == "good" and status != 200 for kind, status, _ in results),
        "bad": len(bad),
        "bad_4xx": sum(400 <= status < 500 for status in bad),
        "bad_5xx": sum(status >= 500 for status in bad),
    }


def load(options: argparse.Namespace) -> None:
    record = header("cpu", options.rounds, ("litserve", "fastapi"))
    good, bad = requests()
    runs = {"fastapi": (), "litserve": (), "litserve-batch": ("--max_batch_size", "16"), "litserve-mixed": (),
            "reader": ()}  # fmt: skip
    runs |= {"before": ()} if options.before else {}
    results: dict[str, Any] = {"runs": []}
    print("| run | good req/s | p50 ms | p95 ms | p99 ms | errors | bad | bad 4xx | bad 5xx | CPU ms/req | start s |")
    for _ in range(options.rounds):
        for name, extra in runs.items():
            ckpt_path = None if name == "reader" else options.ckpt_path
            src = options.before if name == "before" else None
            with server(name, ckpt_path, *extra, src=src) as (port, started, pid):
                mixed = bad if name == "litserve-mixed" else []
                run_load(port, options, good, mixed, options.warmup)
                cpu = usage(pid)[1]  # every process of the server, up and warm
                answered = run_load(port, options, good, mixed, options.seconds)  # on new connections
                cpu = usage(pid)[1] - cpu
            numbers = summary(answered, options.seconds)  # and CPU of all its processes over requests answered:
            numbers["cpu_ms_per_request"] = round(1000 * cpu / max(1, sum(status > 0 for _, status, _ in answered)), 3)
            results["runs"].append({"name": name, **numbers, "start_s": round(started, 2)})
            print(f"| {name} | {' | '.join(str(value) for value in numbers.values())} | {started:.1f} |", flush=True)
    if options.soak > 0:
        with server("litserve", options.ckpt_path) as (port, _started, pid):
            # Warm-up: each API process touches the code pages it inherited (torch's, Pillow's) on its first
            # requests, +~60 MB of RSS apiece; the connections of a run land on any of them.
            run_load(port, options, good, [], 15.0)
            samples, loads = [usage(pid)[0]], []
            for _ in range(max(1, round(options.soak / 10))):  # a sample every 10 s shows growth or a plateau
                loads += run_load(port, options, good, [], 10.0)
                samples.append(usage(pid)[0])
        results["soak"] = {
            "rss_mb_every_10_s": [round(mb, 1) for mb in samples],
            **summary(loads, 10.0 * (len(samples) - 1)),
        }
        print(f"soak: {results['soak']}")
    write_results("serving-load", record, results, options.out)


def startup(options: argparse.Namespace) -> None:
    record = header("cpu", options.rounds)
    lenet = [sys.executable, "-m", "lenet_cli"]
    commands = {
        "floor": [sys.executable, "-c", "import torch, lightning.pytorch"],
        "help": [*lenet, "--help"],
        "fit_help": [*lenet, "fit", "--help"],
        "predict_one": [*lenet, "predict", "--data.predict_path=one.png", "--trainer.enable_progress_bar=false"],
    }
    samples: dict[str, list[float]] = {name: [] for name in [*commands, "serve_healthy", "serve_reader_healthy"]}
    with tempfile.TemporaryDirectory(prefix="lenet-startup-") as folder:
        from PIL import Image

        from lenet_cli.data import idx

        Image.fromarray(idx.load()["test_images"][0].numpy()).save(Path(folder) / "one.png")
        for _ in range(options.rounds):
            for name, command in commands.items():
                began = time.perf_counter()
                subprocess.run(command, cwd=folder, env=child_environment(), check=True, capture_output=True)
                samples[name].append(time.perf_counter() - began)
            with server("litserve", "pretrained") as (_port, started, _pid):
                samples["serve_healthy"].append(started)
            with server("reader", None) as (_port, started, _pid):
                samples["serve_reader_healthy"].append(started)
            print(", ".join(f"{name} {times[-1]:.2f} s" for name, times in samples.items()), flush=True)
    results = {}
    for name, times in samples.items():
        over = statistics.median(t - floor for t, floor in zip(times, samples["floor"], strict=True))
        results[name] = {"wall_s_median": round(statistics.median(times), 2), "over_floor_s_median": round(over, 2)}
        print(f"{name}: {statistics.median(times):.2f} s, {over:+.2f} s over the floor")
    write_results("serving-startup", record, results, options.out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)
    mode = modes.add_parser("load", help="lenet serve under load beside a plain FastAPI app")
    mode.add_argument("--ckpt_path", default="pretrained", help="checkpoint to serve (default: the bundled model)")
    mode.add_argument("--clients", type=int, default=16, help="concurrent clients")
    mode.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run")
    mode.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    mode.add_argument("--rounds", type=int, default=2, help="times each server is measured, interleaved")
    mode.add_argument("--bad-every", type=int, default=10, help="every Nth request of the mixed run is bad")
    mode.add_argument("--soak", type=float, default=60.0, help="seconds of the memory soak (0: none)")
    mode.add_argument("--before", type=Path, help="src/ of another checkout: also measure its lenet serve")
    mode = modes.add_parser("startup", help="wall time of everyday commands beside the import floor")
    mode.add_argument("--rounds", type=int, default=5, help="rounds of the floor and every command")
    for mode in modes.choices.values():
        mode.add_argument("--out", type=Path, help="the results file (default: benchmarks/results/serving-MODE.json)")
    mode = modes.add_parser("baseline-server")  # the FastAPI baseline's own process, started by `load`
    mode.add_argument("--ckpt_path", required=True)
    mode.add_argument("--port", type=int, required=True)
    options = parser.parse_args(argv)
    if options.mode == "baseline-server":
        import uvicorn

        app = baseline_app(options.ckpt_path)
        uvicorn.run(app, host=HOST, port=options.port, log_level="warning", access_log=False)
    else:
        {"load": load, "startup": startup}[options.mode](options)


if __name__ == "__main__":
    main()
