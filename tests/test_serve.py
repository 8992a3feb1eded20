"""``lenet serve`` as a real server process on a free port, over HTTP: answers, bad requests, load, shutdown."""

from __future__ import annotations

import base64
import io
import json
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from lenet_cli.images import files
from tests.helpers import assert_one_line_error, png_claiming
from tests.serve_helpers import cielab_tiff, huge_png_header, photo_like, png, process_group_alive
from tests.test_errors import POSTSCRIPT


@pytest.fixture(scope="module")
def mnist_200(mnist_test) -> tuple[np.ndarray, np.ndarray]:
    """The first 200 MNIST test digits, uint8 (200, 28, 28), and their labels."""
    return mnist_test[0][:200].numpy(), mnist_test[1][:200].numpy()


@pytest.fixture
def client(digit_server) -> httpx.Client:
    with httpx.Client(base_url=digit_server.url, timeout=30) as client:
        yield client


def post_png(client: httpx.Client, image: np.ndarray, **params: str) -> httpx.Response:
    return client.post("/predict", content=png(image), headers={"Content-Type": "image/png"}, params=params)


def test_mnist_digits_are_answered_right(client, mnist_200):
    digits, labels = mnist_200
    # 64 images in one multipart request (the most one request may hold), the rest one by one.
    files = [("image", (f"{number}.png", png(digit), "image/png")) for number, digit in enumerate(digits[:64])]
    answer = client.post("/predict", files=files)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [prediction["name"] for prediction in predictions] == [f"{number}.png" for number in range(64)]
    predicted = [prediction["text"] for prediction in predictions]
    predicted += [post_png(client, digit).json()["text"] for digit in digits[64:]]
    accuracy = float(np.mean(np.array(predicted) == labels.astype(str)))
    assert accuracy >= 0.9, accuracy


def test_answer_has_text_confidence_digits_and_the_input_on_request(client, mnist_200):
    digit, label = mnist_200[0][0], int(mnist_200[1][0])
    answer = post_png(client, digit, return_input="true").json()
    assert answer["text"] == str(label) and "note" not in answer
    assert [entry["text"] for entry in answer["digits"]] == [str(label)]
    assert 0.5 < answer["confidence"] == answer["digits"][0]["confidence"] <= 1
    left, top, width, height = answer["digits"][0]["box"]  # in the 28×28 picture sent
    assert 0 <= left < 28 and 0 <= top < 28 and 4 <= width <= 28 and 10 <= height <= 28
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["input_png"]))))
    np.testing.assert_array_equal(seen, files.load_digit(io.BytesIO(png(digit)), "digit"))  # as `lenet predict` sees it
    assert "input_png" not in post_png(client, digit).json()


def test_no_digit_is_an_answer_with_a_note_not_an_error(client):
    answer = client.post(
        "/predict", content=png(np.full((28, 28), 255, np.uint8)), headers={"Content-Type": "image/png"}
    )
    assert answer.status_code == 200
    assert answer.json() == {"name": "image", "text": "", "confidence": 0.0, "digits": [],
                             "note": "the image is one flat colour"}  # fmt: skip


def test_every_way_of_sending_an_image_gives_the_same_answer(client, mnist_200):
    body = png(mnist_200[0][7])
    encoded = base64.b64encode(body).decode()
    answers = [
        client.post("/predict", content=body, headers={"Content-Type": "image/png"}),
        client.post("/predict", content=body, headers={"Content-Type": "application/octet-stream"}),
        client.post("/predict", files={"image": ("seven.png", body, "image/png")}),
        client.post("/predict", json={"image": encoded}),
        client.post("/predict", json={"image": f"data:image/png;base64,{encoded}"}),
        client.post("/predict", json={"images": [encoded, encoded]}),
    ]
    assert [answer.status_code for answer in answers] == [200] * len(answers)
    singles = [answer.json() for answer in answers[:-1]] + answers[-1].json()["predictions"]
    assert len({(single["text"], single["confidence"]) for single in singles}) == 1


def test_phone_style_photos_are_answered_right(client, mnist_200):
    digits, labels = mnist_200
    photos = [photo_like(digit, seed) for seed, digit in enumerate(digits[:30])]
    predicted = [
        client.post("/predict", content=photo, headers={"Content-Type": "image/jpeg"}).json()["text"]
        for photo in photos
    ]
    accuracy = float(np.mean(np.array(predicted) == labels[:30].astype(str)))
    assert accuracy >= 0.8, accuracy


def _bad_requests() -> list:
    digit = png(np.pad(np.full((10, 4), 255, np.uint8), 9))
    return [
        pytest.param(
            {"content": b"this is not an image", "headers": {"Content-Type": "image/png"}},
            400,
            "not an image",
            id="not-an-image",
        ),
        pytest.param({"content": b"", "headers": {"Content-Type": "image/png"}}, 400, "empty request", id="empty"),
        pytest.param(
            {"content": b"\0" * 1_100_000, "headers": {"Content-Type": "image/png"}},
            413,
            "over the limit",
            id="over-size-limit",
        ),
        pytest.param(
            {"content": png_claiming(), "headers": {"Content-Type": "image/png"}},
            400,
            "pixels",
            id="over-pixel-limit",
        ),
        pytest.param(
            {"content": huge_png_header(9000, 9000), "headers": {"Content-Type": "image/png"}},
            413,
            "decode to more than 25000000 pixels",
            id="over-pixels-per-request",
        ),
        pytest.param(
            {"content": b"[" * 100_000, "headers": {"Content-Type": "application/json"}},
            400,
            "JSON nested too deeply",
            id="deeply-nested-json",
        ),
        pytest.param(
            {"content": POSTSCRIPT, "headers": {"Content-Type": "image/png"}}, 400, "not an image", id="postscript"
        ),
        pytest.param(
            {"content": cielab_tiff(), "headers": {"Content-Type": "image/tiff"}},
            400,
            "cannot be made grayscale",
            id="cielab-tiff",
        ),
        pytest.param(
            {"content": digit, "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported Content-Type",
            id="wrong-content-type",
        ),
        pytest.param({"content": digit}, 415, "unsupported Content-Type", id="no-content-type"),
        pytest.param(
            {"content": b'{"image": ', "headers": {"Content-Type": "application/json"}},
            400,
            "malformed JSON",
            id="malformed-json",
        ),
        pytest.param({"json": {"picture": "abc"}}, 400, '"image"', id="json-without-image"),
        pytest.param({"json": {"image": 7}}, 400, "base64 string", id="json-image-not-a-string"),
        pytest.param({"json": {"image": "***"}}, 400, "not valid base64", id="bad-base64"),
        pytest.param({"json": {"images": []}}, 400, "non-empty list", id="json-no-images"),
        pytest.param(
            {"files": {"photo": ("a.png", digit, "image/png")}}, 400, "no field 'image'", id="multipart-without-image"
        ),
        pytest.param(
            {"data": {"image": "text"}, "files": {"other": ("a", b"x")}}, 400, "file upload", id="multipart-text-field"
        ),
        pytest.param(
            {
                "content": b'--x\r\nContent-Disposition: form-data; name="image"',
                "headers": {"Content-Type": "multipart/form-data; boundary=x"},
            },
            400,
            "",
            id="malformed-multipart",
        ),
        pytest.param(
            {"json": {"images": [base64.b64encode(digit).decode()] * 65}}, 413, "at most 64", id="too-many-images"
        ),
    ]


@pytest.mark.parametrize(("request_kwargs", "status", "message"), _bad_requests())
def test_bad_request_gets_a_4xx_with_a_json_message(client, mnist_200, request_kwargs, status, message):
    answer = client.post("/predict", **request_kwargs)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and message in detail and "\n" not in detail
    # The server goes on serving.
    assert post_png(client, mnist_200[0][0]).json()["text"] == str(mnist_200[1][0])


def test_wrong_method_and_unknown_path_are_4xx(client):
    assert client.get("/predict").status_code == 405
    assert client.get("/no-such-page").status_code == 404


def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(digit_server):
    # What curl does for large uploads: "Expect: 100-continue", then the body only if the server asks for it.
    with socket.create_connection(("127.0.0.1", digit_server.port), timeout=10) as connection:
        connection.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: 50000000\r\nExpect: 100-continue\r\n\r\n"
        )
        reply = b""
        while b"}" not in reply and (chunk := connection.recv(4096)):  # headers and the JSON may come apart
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413"), reply
    assert "over the limit" in reply.decode()


def test_concurrent_clients_all_get_their_own_answers(digit_server, mnist_200):
    digits, _ = mnist_200

    def one_client(number: int) -> list[tuple[int, int]]:
        with httpx.Client(base_url=digit_server.url, timeout=30) as client:
            return [(index, post_png(client, digits[index]).json()["text"]) for index in range(number, 160, 8)]

    with ThreadPoolExecutor(8) as pool:
        concurrent = dict(answer for answers in pool.map(one_client, range(8)) for answer in answers)
    with httpx.Client(base_url=digit_server.url, timeout=30) as client:
        alone = {index: post_png(client, digits[index]).json()["text"] for index in range(0, 160, 5)}
    assert len(concurrent) == 160
    assert all(concurrent[index] == answer for index, answer in alone.items())


def test_health_and_the_page_are_served_offline(client):
    assert client.get("/health").text == "ok"
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and "/static/app.js" in page.text
    for name in ("app.js", "style.css"):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200
        assert "://" not in asset.text  # nothing is fetched from another site: the page works offline
    assert "://" not in page.text


def test_sigterm_stops_every_process_cleanly(spare_server):
    with httpx.Client(base_url=spare_server.url, timeout=30) as client:
        assert (
            client.post(
                "/predict",
                content=png(np.pad(np.full((12, 3), 255, np.uint8), 8)),
                headers={"Content-Type": "image/png"},
            ).status_code
            == 200
        )
    assert len(process_group_alive(spare_server.process.pid)) >= 4  # main, manager, API servers, worker
    began = time.monotonic()
    spare_server.process.send_signal(signal.SIGTERM)
    assert spare_server.process.wait(timeout=15) == 0
    assert time.monotonic() - began < 10
    deadline = time.monotonic() + 5
    while process_group_alive(spare_server.process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process_group_alive(spare_server.process.pid) == []
    stderr = spare_server.stderr()
    assert "Traceback" not in stderr and "lenet serve: stopped" in stderr
    assert "ready" in spare_server.process.stdout.read().decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--ckpt_path", "untrained"], "lenet serve needs weights", id="untrained"),
        pytest.param(["--ckpt_path", "missing.ckpt"], "does not exist", id="missing-checkpoint"),
        pytest.param(["--ckpt_path", "CKPT", "--port", "80"], "--port 80", id="privileged-port"),
        pytest.param(
            ["--ckpt_path", "CKPT", "--host", "localhost"], "--host localhost", id="host-litserve-cannot-bind"
        ),
        pytest.param(["--ckpt_path", "CKPT", "--max_batch_size", "0"], "--max_batch_size 0", id="no-batch"),
    ],
)
def test_user_mistakes_end_in_one_line(args, message, trained_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [str(trained_run / "checkpoints" / "best.ckpt") if arg == "CKPT" else arg for arg in args]
    assert_one_line_error(["serve", "--trainer.accelerator=cpu", *args], message, capsys)


def test_a_port_in_use_is_one_line(trained_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--ckpt_path", str(trained_run / "checkpoints" / "best.ckpt"), "--port", str(port)]
        assert_one_line_error(["serve", "--trainer.accelerator=cpu", *args], f"--port {port}: cannot listen", capsys)


def test_without_litserve_one_line_says_how_to_install_it(trained_run, tmp_path, monkeypatch, capsys):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == "litserve" else real_find_spec(name, *rest)
    )
    monkeypatch.chdir(tmp_path)
    args = ["serve", "--trainer.accelerator=cpu", "--ckpt_path", str(trained_run / "checkpoints" / "best.ckpt")]
    assert_one_line_error(args, "pip install 'lenet-cli[serve]'", capsys)


def test_json_errors_are_json(client):
    answer = client.post("/predict", content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and json.loads(answer.text)["detail"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--port", "80"], "--port 80: choose a port from 1024 to 65535", id="privileged-port"),
        pytest.param(["--host=localhost"], "--host localhost", id="host"),
        pytest.param(["--model", "missing.onnx"], "--model missing.onnx: does not exist", id="missing-model"),
        pytest.param(["--model", "bad.onnx"], "--model bad.onnx: not an ONNX model", id="bad-model"),
        pytest.param(["--port", "eighty"], "argument --port: invalid int value", id="not-a-number"),
    ],
)
def test_torch_free_serve_mistakes_end_in_one_line(args, message, tmp_path, monkeypatch, capsys):
    """A plain ``lenet serve`` (no --ckpt_path, --config ...) is answered without the LightningCLI: same rule."""
    from lenet_cli.__main__ import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.onnx").write_text("not a model")
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", *args])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ") and message in error, error


def test_plain_serve_goes_to_the_torch_free_server_and_the_rest_to_the_lightning_cli():
    from lenet_cli.serving.cli import answers

    assert answers([]) and answers(["--port", "8001", "--model=x.onnx", "--max_batch_size", "4"])
    assert not answers(["--ckpt_path", "best"]) and not answers(["--config", "c.yaml"]) and not answers(["--help"])
    assert not answers(["--model.lr=0.1"]) and not answers(["--data.input_mode", "pad"])
