"""A real ``lenet serve`` process on a free port of 127.0.0.1, and images to send it."""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from tests.helpers import child_env, free_port

START_TIMEOUT = 120.0  # seconds: imports of Lightning and torch on a busy 2-core machine


class ServerProcess:
    """``python -m lenet_cli serve ...`` in its own session (so that its whole process group can be ended)."""

    def __init__(self, ckpt_path: Path | None, workdir: Path, *extra: str) -> None:
        """``ckpt_path`` None: the bundled model, served without torch (lenet_cli.serving.cli)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = workdir / f"serve-{self.port}.err"
        command = [
            sys.executable,
            "-m",
            "lenet_cli",
            "serve",
            *(["--ckpt_path", str(ckpt_path)] if ckpt_path is not None else []),
            "--port",
            str(self.port),
            *extra,
        ]
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                command, cwd=workdir, env=child_env(), stdout=subprocess.PIPE, stderr=stderr, start_new_session=True
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"lenet serve exited with {self.process.returncode}: {self.stderr()[-3000:]}")
            if health(self.port) == 200:
                return self
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"lenet serve gave no /health answer within {timeout} s: {self.stderr()[-3000:]}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def kill(self) -> None:
        """End every process of the server's group (always, even when the test failed)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # the group this test started, whatever is left of it
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def health(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def process_group_alive(pgid: int) -> list[int]:
    """Pids still in process group ``pgid``, from /proc."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(entry.name))
    return alive


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def photo_like(digit: np.ndarray, seed: int) -> bytes:
    """An MNIST digit as a phone might photograph one written on paper: a dark digit on light paper,
    larger, off-centre, with a lighting gradient, blur, noise and JPEG compression."""
    rng = np.random.default_rng(seed)
    size = int(rng.integers(140, 220))
    strokes = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32) / 255
    height, width = 360, 480
    top, left = int(rng.integers(40, height - size - 40)), int(rng.integers(40, width - size - 40))
    ink = np.zeros((height, width), np.float32)
    ink[top : top + size, left : left + size] = strokes
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    # Light falls off across the page by ~30 grey levels (stronger shadows are the photo preprocessing's job).
    gradient = (np.cos(angle) * columns / width + np.sin(angle) * rows / height) * 30
    paper = 215 + gradient - gradient.mean() + rng.normal(0, 4, (height, width))
    pen = rng.uniform(20, 60)
    gray = paper * (1 - ink) + pen * ink
    image = Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
    color = Image.merge("RGB", [image.point(lambda value, shift=shift: min(255, value + shift)) for shift in (8, 4, 0)])
    buffer = io.BytesIO()
    color.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def cielab_tiff() -> bytes:
    """A CIELab TIFF: Pillow decodes it but cannot make it grayscale."""
    buffer = io.BytesIO()
    Image.new("LAB", (40, 40), (50, 0, 0)).save(buffer, format="TIFF")
    return buffer.getvalue()


def huge_png_header(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG that declares ``width``×``height`` pixels (beyond Pillow's decompression-bomb limit) in a few bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
