"""Good requests' latency on ``lenet serve``, alone and under a bounded attack of large-image requests.

    PYTHONPATH=$PWD/src:$PWD python tools/serve_attack.py [--good 300] [--attackers 4] [--rate 10]

Starts ``lenet serve --ckpt_path pretrained`` on a free port of 127.0.0.1 and sends ``--good`` requests
from one client, one after another, alternating a 28×28 MNIST digit (PNG) and a phone-style photo
(480×360 JPEG): first alone, then while ``--attackers`` threads send, until the good client is done and
at most ``--rate`` a second in all, large requests in turn: a 23 Mpx PNG (~25 KB; under the 25 Mpx a
request may decode), a PNG that declares 88 Mpx in 60 bytes, and 8 MB of multipart near-limit images.
Prints the good requests' p50 and p99 in both phases, their ratio, and every status seen.
Results: docs/hostile-inputs.md. (Not in benchmarks/: that folder is being merged down to a few scripts.)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from lenet_cli.data import idx
from tests.serve_helpers import free_port, huge_png_header, photo_like, png

ROOT = Path(__file__).resolve().parents[1]


def large_png() -> bytes:
    image = np.zeros((4800, 4800), np.uint8)  # 23 Mpx: the large lane
    image[1200:3600, 2200:2600] = 255
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def attack_requests(kinds: list[str]) -> list[dict]:
    near_limit = huge_png_header(9400, 9400)  # 88 Mpx each, as the probe sent: refused from the header
    # Encoded once: the attackers share this machine's 2 cores with the server, and httpx would spend a
    # core encoding 8 MB of multipart per request.
    files = [("image", (f"{index}.png", near_limit + b"\0" * 1_000_000, "image/png")) for index in range(8)]
    multipart = httpx.Request("POST", "http://x/", files=files)
    multipart.read()
    every = {
        "large": {"content": large_png(), "headers": {"Content-Type": "image/png"}},
        "header": {"content": near_limit, "headers": {"Content-Type": "image/png"}},
        "multipart": {"content": multipart.content, "headers": {"Content-Type": multipart.headers["Content-Type"]}},
    }
    return [every[kind] for kind in kinds]


def percentile(values: list[float], share: float) -> float:
    return float(np.percentile(np.array(values), share))


def good_run(url: str, requests: list[bytes], statuses: Counter) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for index, body in enumerate(requests):
            kind = "image/png" if index % 2 == 0 else "image/jpeg"
            start = time.perf_counter()
            answer = client.post("/predict", content=body, headers={"Content-Type": kind})
            latencies.append(time.perf_counter() - start)
            statuses[answer.status_code] += 1
    return latencies


def attacker(
    url: str, kinds: list[dict], offset: int, interval: float, stop: threading.Event, statuses: Counter
) -> None:
    """Attack requests, one every ``interval`` seconds at most (the next at once if one took longer)."""
    with httpx.Client(base_url=url, timeout=120) as client:
        turn, due = offset, time.monotonic()
        while not stop.is_set():
            try:
                statuses[client.post("/predict", **kinds[turn % len(kinds)]).status_code] += 1
            except httpx.HTTPError as error:
                statuses[type(error).__name__] += 1
            turn += 1
            due += interval
            stop.wait(max(0.0, due - time.monotonic()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--good", type=int, default=300, help="good requests in each phase")
    parser.add_argument("--attackers", type=int, default=4, help="threads sending large requests")
    parser.add_argument("--attack", default="large,header,multipart", help="kinds of attack request, in turn")
    parser.add_argument("--rate", type=float, default=10.0, help="attack requests per second at most, in all")
    options = parser.parse_args()

    digits = idx.load()["test_images"][: (options.good + 1) // 2].numpy()
    good = [png(digits[i // 2]) if i % 2 == 0 else photo_like(digits[i // 2], i) for i in range(options.good)]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    server = subprocess.Popen(
        [sys.executable, "-m", "lenet_cli", "serve", "--ckpt_path", "pretrained", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        good_run(url, good[:20], Counter())  # warm-up
        alone_statuses, attack_good_statuses, attack_statuses = Counter(), Counter(), Counter()
        alone = good_run(url, good, alone_statuses)
        kinds, stop = attack_requests(options.attack.split(",")), threading.Event()
        threads = [
            threading.Thread(
                target=attacker, args=(url, kinds, offset, options.attackers / options.rate, stop, attack_statuses)
            )
            for offset in range(options.attackers)
        ]
        for thread in threads:
            thread.start()
        time.sleep(1)  # the attack under way
        attacked = good_run(url, good, attack_good_statuses)
        stop.set()
        for thread in threads:
            thread.join()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    report = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "good_requests": options.good,
        "attackers": options.attackers,
        "attack": options.attack,
        "attack_rate_per_s": options.rate,
        "alone_p50_ms": round(1000 * percentile(alone, 50), 1),
        "alone_p99_ms": round(1000 * percentile(alone, 99), 1),
        "attacked_p50_ms": round(1000 * percentile(attacked, 50), 1),
        "attacked_p99_ms": round(1000 * percentile(attacked, 99), 1),
        "p99_ratio": round(percentile(attacked, 99) / percentile(alone, 99), 2),
        "digits_p99_ms_alone_attacked": [round(1000 * percentile(run[0::2], 99), 1) for run in (alone, attacked)],
        "photos_p99_ms_alone_attacked": [round(1000 * percentile(run[1::2], 99), 1) for run in (alone, attacked)],
        "good_statuses_alone": dict(alone_statuses),
        "good_statuses_attacked": dict(attack_good_statuses),
        "attack_statuses": {str(key): value for key, value in attack_statuses.items()},
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
