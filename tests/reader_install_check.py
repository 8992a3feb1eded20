"""Run by .ci/run inside a fresh venv that holds only ``pip install ./reader`` (no pytest, no torch):
the reader-alone install reads MNIST test digits with ``lenet read`` and ``lenet_cli.read()``, without torch,
and stays under 0.5 GB.

    python tests/reader_install_check.py            # after pip install ./reader
    python tests/reader_install_check.py --serve    # after pip install './reader[serve]': lenet serve too
"""

from __future__ import annotations

import gzip
import http.client
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

MNIST = Path(__file__).resolve().parents[1] / "src" / "lenet_cli" / "data" / "datasets" / "mnist"
COUNT = 50
LIMIT = 0.5e9  # bytes: the bound for the reader's install


def size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def main() -> None:
    assert importlib.util.find_spec("torch") is None, "torch is installed: this is not the reader-alone install"
    import lenet_cli

    assert not str(Path(lenet_cli.__file__)).startswith(str(MNIST.parents[3])), f"{lenet_cli.__file__}: the checkout"
    images = np.frombuffer(gzip.decompress((MNIST / "t10k-images-idx3-ubyte.gz").read_bytes()), np.uint8, offset=16)
    labels = np.frombuffer(gzip.decompress((MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes()), np.uint8, offset=8)
    with tempfile.TemporaryDirectory() as folder:
        for index, digit in enumerate(images.reshape(-1, 28, 28)[:COUNT]):
            Image.fromarray(255 - digit).resize((84, 84), Image.Resampling.BICUBIC).save(f"{folder}/{index:03d}.png")
        result = subprocess.run(["lenet", "read", "--json", folder], capture_output=True, text=True, check=False)
        assert result.returncode in (0, 1), result.stderr
        texts = [json.loads(line)["text"] for line in result.stdout.splitlines()]
        from_python = lenet_cli.read(f"{folder}/000.png").text
    correct = sum(text == str(label) for text, label in zip(texts, labels[:COUNT], strict=True))
    assert correct >= COUNT - 1, f"lenet read: {correct} of {COUNT} right"
    assert from_python == str(labels[0])
    assert "torch" not in sys.modules
    installed = size(Path(sysconfig.get_paths()["purelib"]))
    assert installed <= LIMIT, f"the reader's install is {installed / 1e9:.2f} GB"
    print(f"reader alone: {correct}/{COUNT} MNIST test digits read, {installed / 1e6:.0f} MB installed, no torch")


def serve() -> None:
    """``lenet serve`` from the reader-alone install: up, and reading a posted PNG, without torch."""
    assert importlib.util.find_spec("torch") is None, "torch is installed: this is not the reader-alone install"
    digit = np.frombuffer(gzip.decompress((MNIST / "t10k-images-idx3-ubyte.gz").read_bytes()), np.uint8, offset=16)
    label = np.frombuffer(gzip.decompress((MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes()), np.uint8, offset=8)[0]
    with tempfile.TemporaryDirectory() as folder:
        png = Path(folder) / "digit.png"
        Image.fromarray(255 - digit[: 28 * 28].reshape(28, 28)).resize((84, 84)).save(png)
        server = subprocess.Popen(["lenet", "serve", "--port", "8765"], stdout=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while "ready" not in (server.stdout.readline() if server.stdout else ""):
                assert server.poll() is None and time.monotonic() < deadline, "lenet serve did not come up"
            connection = http.client.HTTPConnection("127.0.0.1", 8765, timeout=10)
            connection.request("POST", "/predict", png.read_bytes(), {"Content-Type": "image/png"})
            answer = json.loads(connection.getresponse().read())
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert answer["text"] == str(label), answer
    print(f"reader alone: lenet serve read {answer['text']} (confidence {answer['confidence']:.2f}), no torch")


if __name__ == "__main__":
    os.chdir(tempfile.gettempdir())  # not the checkout: lenet_cli must come from the install
    serve() if sys.argv[1:] == ["--serve"] else main()
