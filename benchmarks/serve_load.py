"""Load on ``lenet serve`` (LitServe) beside a minimal plain FastAPI app serving the same model, on 127.0.0.1.

    python benchmarks/serve_load.py --ckpt_path runs/quick/version_0/checkpoints/best.ckpt

Every server runs alone (the others stopped), as a subprocess on a free port of 127.0.0.1; the load
comes from this process: ``--clients`` concurrent keep-alive connections, each posting one MNIST test
digit as a PNG (``Content-Type: image/png``) and waiting for the answer before the next, for
``--seconds`` after ``--warmup`` seconds. Reported per run: good requests/s, p50/p95/p99 latency of
the good requests, errors (a good request not answered 200), and for the mixed load the bad
requests' statuses (each must be a 4xx; any 5xx is counted). Runs, in order, ``--rounds`` times:

- ``fastapi``: the baseline, one uvicorn process, the same decoding (``files.load_digit``), input
  step (``data.to_model_input``) and network, one torch thread;
- ``litserve``: ``lenet serve`` without batching; ``litserve-batch``: ``--max_batch_size 16
  --batch_timeout 0.002`` (``--batch-size``, ``--batch-timeout``);
- ``litserve-mixed``: ``lenet serve`` with its defaults (batching) and every 10th request bad
  (``--bad-every``), cycling through: not an image, an empty body, a wrong Content-Type, malformed
  JSON, bad base64, an image with no digit, and a body declared over the size limit.

Then a soak: a fresh ``lenet serve``, 15 s of warm-up load, then ``--soak`` seconds of the same load,
the resident memory of all its processes summed every 10 s (growth: last sample minus first). And a
``kill -9`` of the server's main process followed by a restart on the same port: seconds from the kill
to the first answered prediction, and whether any old process was left.
The CPU is shared and noisy: compare runs of one invocation, and read the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tools.make_pretrained import cpu_name

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
START_TIMEOUT = 120.0


# --- the baseline: a minimal FastAPI app serving the same model ----------------------------------------


def baseline_app(ckpt_path: str) -> FastAPI:
    import torch

    from lenet_cli.checkpoints import load
    from lenet_cli.data.mnist import to_model_input
    from lenet_cli.images import decode, files
    from lenet_cli.serving import run
    from lenet_cli.training.module import LeNet

    torch.set_num_threads(1)
    checkpoint = load.load(ckpt_path)
    model = LeNet(
        **{k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if k in ("in_channels", "num_classes")}
    )
    model.load_state_dict(checkpoint["state_dict"])
    network = run.network(model)
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
            probabilities = torch.softmax(network(to_model_input(torch.from_numpy(digit[None]))), dim=1)
        top_probabilities, top_classes = probabilities[0].topk(3)
        return {
            "class": int(top_classes[0]),
            "confidence": float(top_probabilities[0]),
            "top3": [
                {"class": int(c), "probability": float(p)} for c, p in zip(top_classes, top_probabilities, strict=True)
            ],
        }

    return app


def run_baseline(ckpt_path: str, port: int) -> None:
    import uvicorn

    uvicorn.run(baseline_app(ckpt_path), host=HOST, port=port, log_level="warning", access_log=False)


# --- servers as subprocesses ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    process: subprocess.Popen | None = None
    started_s: float = 0.0

    def start(self) -> Server:
        env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        began = time.perf_counter()
        self.process = subprocess.Popen(
            self.command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        wait_healthy(self.port, self.process)
        self.started_s = time.perf_counter() - began
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # the group this script started
            self.process.wait()


def lenet_serve(port: int, ckpt_path: str, *extra: str) -> Server:
    command = [sys.executable, "-m", "lenet_cli", "serve", "--ckpt_path", ckpt_path, "--port", str(port), *extra]
    return Server("litserve", command, port)


def baseline(port: int, ckpt_path: str) -> Server:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--baseline-server",
        "--ckpt_path",
        ckpt_path,
        "--port",
        str(port),
    ]
    return Server("fastapi", command, port)


def wait_healthy(port: int, process: subprocess.Popen | None = None, timeout: float = START_TIMEOUT) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"server exited with {process.returncode}: {stderr[-2000:]}")
        connection = http.client.HTTPConnection(HOST, port, timeout=1)
        try:
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.05)
    raise RuntimeError(f"no /health answer on port {port} after {timeout} s")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    tree, stack = [], [pid]
    while stack:
        current = stack.pop()
        tree.append(current)
        stack.extend(children.get(current, []))
    return tree


def resident_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, summed (MB)."""
    total_kb = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


# --- requests -----------------------------------------------------------------------------------------------


def digit_pngs(count: int) -> list[bytes]:
    from PIL import Image

    from lenet_cli.data import idx

    test_images = idx.load()["test_images"][:count].numpy()
    pngs = []
    for digit in test_images:
        buffer = io.BytesIO()
        Image.fromarray(digit).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


def http_request(body: bytes, content_type: str | None, declared: int | None = None) -> bytes:
    headers = [
        "POST /predict HTTP/1.1",
        f"Host: {HOST}",
        f"Content-Length: {declared if declared is not None else len(body)}",
    ]
    if content_type:
        headers.append(f"Content-Type: {content_type}")
    if declared is not None:
        headers.append("Expect: 100-continue")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def bad_requests() -> list[tuple[str, bytes]]:
    """(kind, raw HTTP request) for each kind of bad request; each must be answered with a 4xx."""
    from PIL import Image

    flat = io.BytesIO()
    Image.new("L", (28, 28), 255).save(flat, format="PNG")
    return [
        ("not-an-image", http_request(b"this is not a PNG" * 4, "image/png")),
        ("empty", http_request(b"", "image/png")),
        ("wrong-content-type", http_request(b"hello", "text/plain")),
        ("malformed-json", http_request(b'{"image": ', "application/json")),
        ("bad-base64", http_request(b'{"image": "***"}', "application/json")),
        ("no-digit", http_request(flat.getvalue(), "image/png")),
        ("over-size-limit", http_request(b"", "image/png", declared=64 * 1024 * 1024)),
    ]


# --- the load -----------------------------------------------------------------------------------------------


@dataclass
class Result:
    kind: str  # "good" or the bad request's kind
    status: int  # 0: no answer (connection error)
    seconds: float


@dataclass
class Load:
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0

    def good(self) -> list[Result]:
        return [result for result in self.results if result.kind == "good"]

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        good = self.good()
        latencies = np.array([result.seconds for result in good if result.status == 200]) * 1000
        bad = [result for result in self.results if result.kind != "good"]
        statuses: dict[str, int] = {}
        for result in bad:
            statuses[str(result.status)] = statuses.get(str(result.status), 0) + 1
        return {
            "requests_per_s": round(len(latencies) / self.seconds, 1),
            "p50_ms": round(float(np.percentile(latencies, 50)), 2) if len(latencies) else float("nan"),
            "p95_ms": round(float(np.percentile(latencies, 95)), 2) if len(latencies) else float("nan"),
            "p99_ms": round(float(np.percentile(latencies, 99)), 2) if len(latencies) else float("nan"),
            "errors": sum(result.status != 200 for result in good),
            "bad": len(bad),
            "bad_4xx": sum(400 <= result.status < 500 for result in bad),
            "bad_5xx": sum(result.status >= 500 for result in bad),
            "bad_statuses": statuses,
        }


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, connection kept alive) of one HTTP/1.1 response with a Content-Length body."""
    while True:
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionError("connection closed")
        status = int(status_line.split()[1])
        length, keep_alive = 0, True
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                keep_alive = False
        if status == 100:  # "100 Continue": the final answer follows
            continue
        await reader.readexactly(length)
        return status, keep_alive


async def _client(
    port: int,
    number: int,
    good: list[bytes],
    bad: list[tuple[str, bytes]],
    bad_every: int,
    until: float,
    load: Load,
    record_after: float,
) -> None:
    reader = writer = None
    sent = number * 7  # clients start at different digits
    while time.perf_counter() < until:
        sent += 1
        if bad and sent % bad_every == 0:
            kind, request = bad[(sent // bad_every) % len(bad)]
        else:
            kind, request = "good", good[sent % len(good)]
        began = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(request)
            assert reader is not None
            status, keep_alive = await _read_response(reader)
            if kind == "over-size-limit":  # its body was never sent: this connection cannot go on
                keep_alive = False
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            status, keep_alive = 0, False
        if began >= record_after:
            load.results.append(Result(kind, status, time.perf_counter() - began))
        if not keep_alive and writer is not None:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def run_load(
    port: int, clients: int, seconds: float, warmup: float, good: list[bytes], bad=(), bad_every: int = 10
) -> Load:
    load = Load()

    async def main() -> None:
        start = time.perf_counter()
        record_after, until = start + warmup, start + warmup + seconds
        await asyncio.gather(
            *(_client(port, i, good, list(bad), bad_every, until, load, record_after) for i in range(clients))
        )

    asyncio.run(main())
    load.seconds = seconds
    return load


# --- the report ---------------------------------------------------------------------------------------------


def header() -> dict[str, str]:
    import fastapi
    import lightning
    import litserve
    import torch

    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": f"{cpu_name()}, {os.cpu_count()} logical cores",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "litserve": litserve.__version__,
        "fastapi": fastapi.__version__,
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }


def print_row(name: str, summary: dict, started_s: float) -> None:
    print(
        f"| {name} | {summary['requests_per_s']} | {summary['p50_ms']} | {summary['p95_ms']} | {summary['p99_ms']} | "
        f"{summary['errors']} | {summary['bad']} | {summary['bad_4xx']} | {summary['bad_5xx']} | {started_s:.1f} |",
        flush=True,
    )


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server.start()
    finally:
        server.stop()


def train_checkpoint(folder: Path) -> str:
    """A short CPU training (~30 s) when no --ckpt_path is given."""
    command = [
        sys.executable,
        "-m",
        "lenet_cli",
        "fit",
        "--config",
        str(ROOT / "configs" / "quick.yaml"),
        "--trainer.enable_progress_bar=false",
        "--trainer.logger.init_args.save_dir=runs",
    ]
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    subprocess.run(command, cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return str(folder / "runs" / "quick" / "version_0" / "checkpoints" / "best.ckpt")


def kill_and_restart(ckpt_path: str, good: list[bytes]) -> dict[str, float]:
    """Seconds from a ``kill -9`` of the server's main process to the next answered prediction on the same port."""
    import http.client

    port = free_port()
    first = lenet_serve(port, ckpt_path).start()
    assert first.process is not None
    tree = process_tree(first.process.pid)
    killed = time.perf_counter()
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait()
    second = lenet_serve(port, ckpt_path)
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    second.process = subprocess.Popen(
        second.command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_healthy(port, second.process)
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        connection.request("POST", "/predict", body=good[0], headers={"Content-Type": "image/png"})
        status = connection.getresponse().status
        answered = time.perf_counter() - killed
        left = [pid for pid in tree if Path(f"/proc/{pid}").exists() and pid not in process_tree(second.process.pid)]
        return {"restart_to_answer_s": round(answered, 2), "status": status, "old_processes_left": len(left)}
    finally:
        second.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", help="checkpoint to serve (default: train one for ~30 s in a temporary folder)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run (default 15)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="times each server is measured, interleaved (default 2)")
    parser.add_argument("--batch-size", type=int, default=16, help="--max_batch_size of the batching run (default 16)")
    parser.add_argument(
        "--batch-timeout", type=float, default=0.002, help="--batch_timeout of the batching run (default 0.002)"
    )
    parser.add_argument(
        "--bad-every", type=int, default=10, help="every Nth request of the mixed run is bad (default 10)"
    )
    parser.add_argument("--soak", type=float, default=60.0, help="seconds of the memory soak (0: none; default 60)")
    parser.add_argument("--which", default="fastapi,litserve,litserve-batch,litserve-mixed", help="runs of each round")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        run_baseline(args.ckpt_path, args.port)
        return

    record: dict[str, object] = {"header": header(), "runs": []}
    for key, value in record["header"].items():  # type: ignore[union-attr]
        print(f"{key}: {value}")
    with tempfile.TemporaryDirectory() as folder:
        ckpt_path = args.ckpt_path or train_checkpoint(Path(folder))
        good = [http_request(png, "image/png") for png in digit_pngs(100)]
        bad = bad_requests()
        servers = {
            "fastapi": lambda: baseline(free_port(), ckpt_path),
            "litserve": lambda: lenet_serve(free_port(), ckpt_path, "--max_batch_size", "1"),
            "litserve-batch": lambda: lenet_serve(
                free_port(),
                ckpt_path,
                "--max_batch_size",
                str(args.batch_size),
                "--batch_timeout",
                str(args.batch_timeout),
            ),
            "litserve-mixed": lambda: lenet_serve(free_port(), ckpt_path),  # the defaults: batching
        }
        print(
            f"\n{args.clients} clients, {args.seconds:g} s measured after {args.warmup:g} s warm-up, "
            "one digit PNG a request\n"
        )
        print("| run | good req/s | p50 ms | p95 ms | p99 ms | errors | bad | bad 4xx | bad 5xx | start s |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for _ in range(args.rounds):
            for name in args.which.split(","):
                with running(servers[name]()) as server:
                    mixed = bad if name == "litserve-mixed" else ()
                    load = run_load(server.port, args.clients, args.seconds, args.warmup, good, mixed, args.bad_every)
                summary = load.summary()
                print_row(name, summary, server.started_s)
                record["runs"].append({"name": name, **summary, "start_s": round(server.started_s, 2)})  # type: ignore[union-attr]

        if args.soak > 0:
            with running(lenet_serve(free_port(), ckpt_path)) as server:
                assert server.process is not None
                # Warm-up: each API server touches the code pages it inherited (torch's, Pillow's) on its
                # first requests, +~60 MB of RSS apiece; the connections of a run land on either of them.
                for _ in range(3):
                    run_load(server.port, args.clients, 5.0, 0.0, good)
                samples = [resident_mb(server.process.pid)]
                loads = []
                for _ in range(max(1, round(args.soak / 10))):  # a sample every 10 s shows growth or a plateau
                    loads.append(
                        run_load(server.port, args.clients, args.soak / max(1, round(args.soak / 10)), 0.0, good)
                    )
                    samples.append(resident_mb(server.process.pid))
            load = Load([result for each in loads for result in each.results], sum(each.seconds for each in loads))
            soak = {
                "seconds": args.soak,
                "rss_mb_every_10_s": [round(sample, 1) for sample in samples],
                "rss_growth_mb": round(samples[-1] - samples[0], 1),
                **load.summary(),
            }
            print(f"\nsoak: {json.dumps(soak)}")
            record["soak"] = soak
        restart = kill_and_restart(ckpt_path, [png for png in digit_pngs(1)])
        print(f"kill -9 and restart: {json.dumps(restart)}")
        record["restart"] = restart
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
