"""The draw-a-number page in a real browser (Debian's chromium and chromium-driver, driven by selenium),
served from the bundled model as a plain ``lenet serve`` serves it (ONNX Runtime, no torch).

Draws digits and numbers on the canvas with pointer events, waits for the reading the page shows and saves a
screenshot: to ``docs/images/serve.png`` when ``LENET_SERVE_SCREENSHOT=1``, otherwise to the test's
temporary folder. Skips, saying why, where chromium, chromium-driver or selenium cannot be had
(``.ci/run`` installs them with apt-get when they are missing).
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.serve_helpers import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT_VARIABLE = "LENET_SERVE_SCREENSHOT"


def _missing() -> str | None:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        return f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): apt-get install them"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium: pip install '.[test]'"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture(scope="module")
def bundled_server(tmp_path_factory: pytest.TempPathFactory):
    server = ServerProcess(None, tmp_path_factory.mktemp("serve-bundled"))
    try:
        yield server.wait_ready()
    finally:
        server.kill()


@pytest.fixture
def browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=900,700",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def _draw(browser, strokes: list[list[tuple[float, float]]]) -> None:
    """Pointer strokes on the canvas; points are fractions of its width and height from its top-left corner."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = browser.find_element(By.ID, "canvas")
    width, height = canvas.size["width"], canvas.size["height"]
    actions = ActionChains(browser, duration=10)
    for stroke in strokes:
        # Offsets are from the element's centre.
        x, y = stroke[0]
        actions.move_to_element_with_offset(canvas, int((x - 0.5) * width), int((y - 0.5) * height)).click_and_hold()
        for (x0, y0), (x1, y1) in itertools.pairwise(stroke):
            steps = 8
            for _ in range(steps):  # small moves, as a hand makes them
                actions.move_by_offset(int((x1 - x0) * width / steps), int((y1 - y0) * height / steps))
        actions.release()
    actions.perform()


def _wait_for_prediction(browser) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def predicted(driver) -> str | bool:
        element = driver.find_element(By.ID, "prediction")
        return element.text if element.get_attribute("data-state") in ("predicted", "none") else False

    return WebDriverWait(browser, 20).until(predicted)


def test_drawing_a_digit_shows_its_reading(browser, bundled_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(bundled_server.url + "/")
    assert browser.find_element(By.ID, "prediction").text == "–"
    # A "7" in the middle of the 2:1 box: the bar, then the stem down to the left.
    _draw(browser, [[(0.40, 0.2), (0.60, 0.2), (0.47, 0.82)]])
    # The page reads while the stroke is drawn; wait for the answer to the finished drawing.
    WebDriverWait(browser, 20).until(lambda driver: _wait_for_prediction(driver) == "7")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#digits li")) == 1
    assert browser.find_element(By.ID, "seen").get_attribute("src").startswith("data:image/png;base64,")
    confidence = browser.find_element(By.ID, "confidence").text
    assert confidence.endswith("%") and float(confidence.rstrip(" %")) > 50
    _screenshot(browser, tmp_path)

    browser.find_element(By.ID, "clear").click()
    assert browser.find_element(By.ID, "prediction").get_attribute("data-state") == "empty"
    # A "1" after clearing: one stroke down the middle.
    _draw(browser, [[(0.51, 0.18), (0.49, 0.84)]])
    WebDriverWait(browser, 20).until(lambda driver: _wait_for_prediction(driver) == "1")


def _screenshot(browser, tmp_path: Path) -> Path:
    target = (
        ROOT / "docs" / "images" / "serve.png" if os.environ.get(SCREENSHOT_VARIABLE) == "1" else tmp_path / "serve.png"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(target))
    assert target.stat().st_size > 10_000
    return target


def test_drawing_a_number_shows_the_number(browser, bundled_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(bundled_server.url + "/")
    # "4": down, across, then the stem; "2": the arc, the diagonal, the base.
    four = [[(0.30, 0.2), (0.24, 0.58), (0.42, 0.58)], [(0.38, 0.3), (0.38, 0.85)]]
    two = [[(0.56, 0.3), (0.62, 0.2), (0.70, 0.3), (0.56, 0.8), (0.72, 0.8)]]
    _draw(browser, four + two)
    WebDriverWait(browser, 20).until(lambda driver: _wait_for_prediction(driver) == "42")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#digits li")) == 2
    _screenshot(browser, tmp_path)


def test_a_digit_touching_the_canvas_edge_reads(browser, bundled_server):
    browser.get(bundled_server.url + "/")
    _draw(browser, [[(0.5, 0.0), (0.5, 1.0)]])  # a "1" from the top edge to the bottom edge
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 20).until(lambda driver: _wait_for_prediction(driver) == "1")


def test_a_photo_without_a_digit_shows_no_digit(browser, bundled_server, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(bundled_server.url + "/")
    camera = browser.find_element(By.ID, "camera")
    assert camera.get_attribute("capture") == "environment" and camera.get_attribute("accept") == "image/*"
    blank = tmp_path / "paper.png"
    Image.new("RGB", (300, 200), (238, 236, 230)).save(blank)
    browser.find_element(By.ID, "upload").send_keys(str(blank))
    WebDriverWait(browser, 20).until(lambda driver: _wait_for_prediction(driver) == "no digit")
    assert browser.find_element(By.ID, "prediction").get_attribute("data-state") == "none"
    assert browser.find_element(By.ID, "confidence").text == "the image is one flat colour"
    assert browser.find_elements(By.CSS_SELECTOR, "#digits li") == []
    assert "No digit in paper.png" in browser.find_element(By.ID, "status").text
