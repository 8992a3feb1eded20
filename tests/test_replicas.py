"""Several ``lenet serve`` replicas behind nginx (deploy/nginx/lenet.conf): one killed under load, no request fails.

Marked ``replicas`` (and slow): CI installs Debian's nginx and runs ``pytest -m replicas`` (``.ci/run``).
Two replicas and nginx on 127.0.0.1 ports of their own; the repository's config with those ports, inside a
minimal main config whose files (pid, logs, temporary bodies) lie in the test's folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.helpers import ROOT
from tests.serve_helpers import ServerProcess, free_port, png

pytestmark = [pytest.mark.slow, pytest.mark.replicas]

NGINX = shutil.which("nginx") or next((path for path in ("/usr/sbin/nginx",) if os.path.exists(path)), None)
REQUESTS = 240  # in all, by CLIENTS threads; the kill comes after a third of them
CLIENTS = 4


def nginx_config(folder: Path, port: int, replicas: list[int]) -> Path:
    """deploy/nginx/lenet.conf with these ports, in a main config that keeps every file in ``folder``."""
    site = (ROOT / "deploy" / "nginx" / "lenet.conf").read_text()
    for default, replica in zip((8001, 8002), replicas, strict=True):
        site = site.replace(f"127.0.0.1:{default}", f"127.0.0.1:{replica}")
    site = site.replace("listen 127.0.0.1:8000;", f"listen 127.0.0.1:{port};")
    (folder / "lenet.conf").write_text(site)
    temporaries = "\n".join(
        f"    {kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = f"""
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    log_format upstreams '$request_method|$status|$upstream_addr|$upstream_status';
    access_log {folder / "access.log"} upstreams;
{temporaries}
    include {folder / "lenet.conf"};
}}
"""
    (folder / "nginx.conf").write_text(main)
    return folder / "nginx.conf"


@pytest.fixture
def nginx_with_two_replicas(tmp_path: Path):
    if NGINX is None:
        pytest.fail("nginx is not installed: apt-get install nginx (as .ci/run does)")
    replicas = [ServerProcess(Path("pretrained"), tmp_path) for _ in range(2)]
    process = None
    try:
        for replica in replicas:
            replica.wait_ready()
        port = free_port()
        config = nginx_config(tmp_path, port, [replica.port for replica in replicas])
        process = subprocess.Popen(
            [NGINX, "-p", str(tmp_path), "-c", str(config), "-g", "daemon off;"],
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            time.sleep(0.1)
        yield url, replicas, tmp_path
    finally:
        if process is not None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for replica in replicas:
            replica.kill()


def test_killing_one_replica_under_load_fails_no_request(nginx_with_two_replicas) -> None:
    url, (victim, survivor), folder = nginx_with_two_replicas
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255  # a 1
    body = png(digit)
    failures: list[str] = []
    answered = 0
    lock = threading.Lock()
    killed = threading.Event()

    def client(count: int) -> None:
        nonlocal answered
        with httpx.Client(base_url=url, timeout=60) as session:
            for _ in range(count):
                try:
                    answer = session.post("/predict", content=body, headers={"Content-Type": "image/png"})
                    ok = answer.status_code == 200 and answer.json()["text"] == "1"
                    problem = "" if ok else f"{answer.status_code} {answer.text[:200]}"
                except httpx.HTTPError as error:
                    problem = repr(error)
                with lock:
                    answered += 1
                    if problem:
                        failures.append(problem)
                    if answered == REQUESTS // 3 and not killed.is_set():
                        killed.set()
                        os.killpg(victim.process.pid, signal.SIGKILL)  # the whole replica, as the OOM killer would

    threads = [threading.Thread(target=client, args=(REQUESTS // CLIENTS,)) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert killed.is_set() and answered == REQUESTS
    assert failures == []
    victim.process.wait(timeout=30)
    # Both replicas answered before the kill; after it, every answer came from the survivor.
    lines = (folder / "access.log").read_text().splitlines()
    served = [line.split("|")[2].split(",")[-1].strip() for line in lines if line.startswith("POST|")]
    assert len(served) == REQUESTS and all(line.split("|")[1] == "200" for line in lines if line.startswith("POST|"))
    victim_address, survivor_address = f"127.0.0.1:{victim.port}", f"127.0.0.1:{survivor.port}"
    assert victim_address in served[: REQUESTS // 3] and survivor_address in served
    assert served[-REQUESTS // 3 :] == [survivor_address] * (REQUESTS // 3)
