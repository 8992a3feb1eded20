"""One reading, three front doors: ``lenet read`` (ONNX Runtime), ``lenet predict`` (torch, the checkpoint)
and the page's ``POST /predict`` (``lenet serve``) give the same text for the same pictures: digits, and
touching pairs that the row reader reads (``reading.rows``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from lenet_cli.cli.main import main
from lenet_cli.reading import cli
from tests import writing
from tests.helpers import CPU, make_user_images
from tests.serve_helpers import ServerProcess


def test_read_predict_and_serve_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "pictures"
    _, labels = make_user_images(folder, 24, seed=3)
    files = sorted(folder.iterdir())
    pairs = writing.touching(*writing.mnist_test(), 4, seed=3)  # "24" and "13": segmentation reads 2 and 0
    for number, (gray, _) in enumerate(pairs):
        Image.fromarray(gray.astype(np.uint8)).save(folder / f"pair{number}.png")
    status = cli.main(["--json", str(folder)])
    read = {Path(line["path"]).name: line["text"] for line in map(json.loads, capsys.readouterr().out.splitlines())}
    assert status == (1 if "" in read.values() else 0)  # 1: a picture read as no digit (an odd 2 here)

    monkeypatch.chdir(tmp_path)
    main(["predict", *CPU, "--data.predict_path", str(folder)])  # the bundled model by default
    with (tmp_path / "runs" / "lenet" / "version_0" / "predictions.csv").open(newline="") as table:
        predicted = {Path(row["source"]).name: row["predicted"] for row in csv.DictReader(table)}

    server = ServerProcess(None, tmp_path).wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            served = {
                file.name: client.post("/predict", files={"image": (file.name, file.read_bytes())}).json()["text"]
                for file in sorted(folder.iterdir())
            }
    finally:
        server.kill()

    assert read == predicted == served
    assert [read[f"pair{number}.png"] for number in range(4)] == [text for _, text in pairs]
    assert sum(read[file.name] == str(int(label)) for file, label in zip(files, labels, strict=True)) >= 22
