"""``lenet serve``'s two ways to a reading: the gateway answering by itself (the default) and LitServe's batching
worker (``--max_batch_size`` > 1); and keep-alive connections spread over the API processes. Both start servers
of their own: ``-m replicas`` runs them (.ci/run does), beside the replicas behind nginx."""

from __future__ import annotations

import io
import os
import socket
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests import writing
from tests.serve_helpers import ServerProcess, png, process_group_alive


def _served(tmp_path_factory: pytest.TempPathFactory, *options: str):
    server = ServerProcess(None, tmp_path_factory.mktemp("serve-paths"), *options)
    try:
        yield server.wait_ready()
    finally:
        server.kill()


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory):
    """A torch-free server of the bundled model, as ``lenet serve`` starts by default."""
    yield from _served(tmp_path_factory)


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory: pytest.TempPathFactory):
    """The same, classifying in LitServe's worker, up to 4 requests a call."""
    yield from _served(tmp_path_factory, "--max_batch_size", "4", "--batch_timeout", "0.01")


@pytest.mark.slow
@pytest.mark.replicas  # run by .ci/run with the other serve layouts (-m replicas): two servers, ~5 s
def test_the_batching_worker_answers_as_the_gateway(default_server, batching_server, mnist_test):
    digits = mnist_test[0][:40].numpy()
    flat = np.full((28, 28), 255, np.uint8)  # no digit: an answer with a note
    pairs = writing.touching(mnist_test[0].numpy(), mnist_test[1].numpy(), 4, seed=3)  # the row reader's

    def answers(server: ServerProcess) -> list:
        def one(index: int) -> dict:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                params = {"return_input": "true"} if index % 3 == 0 else {}
                return client.post("/predict", content=png(digits[index]), params=params,
                                   headers={"Content-Type": "image/png"}).json()  # fmt: skip

        with ThreadPoolExecutor(8) as pool:  # together, so that the worker batches them
            singles = list(pool.map(one, range(len(digits))))
        files = [("image", (f"{n}.png", png(image), "image/png")) for n, image in enumerate([*digits[:5], flat])]
        with httpx.Client(base_url=server.url, timeout=30) as client:
            several = client.post("/predict", files=files).json()
            numbers = [
                client.post(
                    "/predict", content=png(gray.astype(np.uint8)), headers={"Content-Type": "image/png"}
                ).json()
                for gray, _ in pairs
            ]
        return [*singles, several, *numbers]

    gateway, worker = (answers(server) for server in (default_server, batching_server))
    assert gateway == worker
    assert [answer["text"] for answer in gateway[-4:]] == [text for _, text in pairs]
    assert gateway[-5]["predictions"][-1]["note"] and "input_png" in gateway[0] and "input_png" not in gateway[1]


def _connections_by_process(pids: list[int], port: int) -> Counter:
    """Established TCP connections on the server's ``port``, by the pid that holds them (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # local port; ESTABLISHED
                inodes.add(fields[9])
    held: Counter = Counter()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held[pid] += 1
    return held


@pytest.mark.slow
@pytest.mark.replicas  # with the other serve layouts (-m replicas in .ci/run): a server of its own, ~3 s
def test_keep_alive_connections_are_spread_over_the_api_processes(default_server):
    server = default_server
    body = png(np.pad(np.full((12, 3), 255, np.uint8), 8))  # a drawn 1
    request = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(body)
    request += body
    # All 16 connect at once, as a load test's clients do: the kernel completes the handshakes before
    # either API process accepts, and the first one awake would take them all.
    connections: list[socket.socket | None] = [
        socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(16)
    ]

    def client(number: int) -> None:
        for _ in range(30):
            if connections[number] is None:
                connections[number] = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            connection = connections[number]
            connection.sendall(request)
            reply = io.BytesIO()
            while b"\r\n\r\n" not in reply.getvalue():
                reply.write(connection.recv(65536))
            head, _, rest = reply.getvalue().partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(rest) < length:
                rest += connection.recv(65536)
            assert head.startswith(b"HTTP/1.1 200"), head
            if b"connection: close" in head.lower():  # its API process holds more than its share: reconnect
                connection.close()
                connections[number] = None

    try:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(client, range(16)))
        held = _connections_by_process(process_group_alive(server.process.pid), server.port)
    finally:
        for connection in connections:
            if connection is not None:
                connection.close()
    assert len(held) == 2 and sum(held.values()) == 16 and max(held.values()) - min(held.values()) <= 2, held
