"""End to end: the real dashboard (``streamlit run dashboard/app.py``) in headless Chromium.

Types a review, uploads an image, and saves a screenshot of each; checks that they are not blank,
that the page shows the comparison, and that the browser made no request beyond the local server.
Then moves the ratio slider away from the trained ratio (out-of-range warning) and to its lowest
value (an empty selection: no prediction, mask IoU undefined), uploads a latin-1 review (decoded,
its encoding named), and switches the task with the Ratios tab's dataset field in view.
Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the ``playwright`` Python package
(driven with that Chromium: no browser download); skipped when either is missing. Set
``REKD_E2E_SCREENSHOTS=DIR`` to keep the screenshots.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest_plugins = ["tests.dashboard_fixtures"]

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
REVIEW = ("fillerab splendid fillerac fillerad marvellousword fillerae dreadful fillerba fillerbb, "
          "fillerbc fillerbd splendid fillerbe.")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Debian's chromium is not installed (apt-get install -y chromium)"),
]
playwright_sync = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tiny_checkpoints, tmp_path):
    """``streamlit run dashboard/app.py`` on a free port, on the tiny checkpoints; its base URL."""
    port = free_port()
    env = dict(os.environ, REKD_CHECKPOINTS=str(tiny_checkpoints.root), REKD_RESULTS=str(tiny_checkpoints.results),
               PYTHONUNBUFFERED="1")
    log = open(tmp_path / "streamlit.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
         "--server.headless", "true", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    deadline = time.time() + 90
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail("streamlit did not start:\n" + (tmp_path / "streamlit.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    output = (tmp_path / "streamlit.log").read_text()
    assert "Traceback" not in output, output[-3000:]
    assert "Email" not in output  # no first-run prompt
    assert "External URL" not in output  # no external IP lookup


def check_not_blank(path: Path) -> np.ndarray:
    pixels = np.asarray(Image.open(path).convert("RGB"))
    grey = pixels.mean(axis=2)
    assert pixels.shape[0] > 600 and pixels.shape[1] >= 1200
    assert grey.std() > 20, "the screenshot is (nearly) one colour"
    assert len(np.unique(grey.astype(np.uint8))) > 100
    return pixels


def colour_pixels(pixels: np.ndarray, hex_colour: str, tolerance: int = 12) -> int:
    target = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels.astype(int) - target).max(axis=2) <= tolerance).sum())


@contextlib.contextmanager
def chromium():
    """Debian's Chromium, headless, with its own network features off."""
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


def open_dashboard(browser, url: str, requests: list[str]):
    """A new browser context (a session of its own: its own cookies and websocket) on the dashboard at
    ``url``, once its first comparison is drawn; every URL the page requests is appended to ``requests``."""
    page = browser.new_context(viewport={"width": 1500, "height": 2300}).new_page()
    page.on("request", lambda request: requests.append(request.url))
    page.set_default_timeout(90_000)
    page.goto(url)
    page.get_by_text("Teacher vs student rationales").first.wait_for()
    # A fresh page compares the models on a bundled review.
    page.get_by_text("Both explanations took").first.wait_for()
    return page


@contextlib.contextmanager
def dashboard_page(url: str, requests: list[str]):
    """The dashboard at ``url`` in headless Chromium (no network beyond it), once its first comparison is
    drawn; every URL the page requests is appended to ``requests``."""
    with chromium() as browser:
        yield open_dashboard(browser, url, requests)


def assert_stayed_local(requests: list[str], url: str) -> None:
    """No request left this machine: only the local server (and data:/blob: URLs)."""
    outside = [u for u in requests if not u.startswith((url, "data:", "blob:", "about:"))]
    assert not outside, outside[:10]


def test_dashboard_in_headless_chromium(server, tmp_path):
    out = Path(os.environ.get("REKD_E2E_SCREENSHOTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    image_path = tmp_path / "upload.png"
    rng = np.random.default_rng(1)
    pixels = rng.integers(60, 140, (64, 64, 3), dtype=np.uint8)
    pixels[16:32, 32:48] = (230, 30, 30)
    Image.fromarray(pixels).save(image_path)

    requests: list[str] = []
    with dashboard_page(server, requests) as page:
        # Type a review.
        page.get_by_text("Type or paste", exact=True).click()
        area = page.locator("textarea").first
        area.wait_for()
        area.fill(REVIEW)
        area.press("Control+Enter")
        page.locator("span", has_text="marvellousword").first.wait_for()
        page.get_by_test_id("stMetric").filter(has_text="Mask IoU").first.wait_for()
        # the bundled example's comparison may still be on the page while the typed one is drawn
        playwright_sync.expect(page.get_by_role("button", name="Download comparison (PNG)")).to_have_count(
            1, timeout=60_000)
        page.wait_for_timeout(1500)
        text_shot = out / "dashboard_text.png"
        page.screenshot(path=str(text_shot), full_page=True)
        body = page.inner_text("body")
        assert "Teacher" in body and "Student" in body and "Agreement" in body
        assert "selected by both" in body
        with page.expect_download() as download:
            page.get_by_role("button", name="Download comparison (PNG)").click()
        png_path = out / "comparison_text.png"
        download.value.save_as(str(png_path))

        # Upload an image.
        page.get_by_text("Images (vision)", exact=True).click()
        page.get_by_text("Upload images", exact=True).click()
        page.locator("input[type=file]").first.set_input_files(str(image_path))
        page.get_by_text("it read (unselected dimmed)").first.wait_for()
        page.get_by_text("teacher's patches on the original").first.wait_for()  # the cells mapped back onto it
        page.get_by_test_id("stMetric").filter(has_text="Mask IoU").first.wait_for()
        page.get_by_role("button", name="Download comparison (HTML)").wait_for()
        page.wait_for_timeout(2000)
        image_shot = out / "dashboard_image.png"
        page.screenshot(path=str(image_shot), full_page=True)
        assert "original (64x64)" in page.inner_text("body")
        with page.expect_download() as download:
            page.get_by_role("button", name="Download comparison (HTML)").click()
        html_path = out / "comparison_image.html"
        download.value.save_as(str(html_path))

    exported = Image.open(png_path)
    assert exported.format == "PNG" and exported.width == 1400
    page_html = html_path.read_text()
    assert page_html.startswith("<!DOCTYPE html>") and page_html.count("<img") == 5 and "upload.png" in page_html
    text_pixels = check_not_blank(text_shot)
    image_pixels = check_not_blank(image_shot)
    # The highlights and overlays are drawn in the teacher's and student's colours.
    assert colour_pixels(text_pixels, "#0072B2") > 50  # teacher underlines, legend
    assert colour_pixels(image_pixels, "#0072B2") > 200  # teacher patch outlines
    assert colour_pixels(image_pixels, "#E69F00") > 200  # student patch outlines
    assert_stayed_local(requests, server)


def test_ratio_warnings_encodings_and_task_switch_in_headless_chromium(server, tiny_checkpoints, tmp_path):
    out = Path(os.environ.get("REKD_E2E_SCREENSHOTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    trained = json.loads((tiny_checkpoints.text_teacher / "config.json").read_text())["ratio"]
    review = "Tr\xe8s \xe9mouvant, fillerab splendid, g\xe9nial."
    latin1 = tmp_path / "critique.txt"
    latin1.write_bytes(review.encode("latin-1"))

    requests: list[str] = []
    with dashboard_page(server, requests) as page:
        page.get_by_role("button", name="Download comparison (PNG)").wait_for()  # the first run has ended
        slider = page.get_by_test_id("stSlider").first.locator("input[type=range]")
        assert float(slider.input_value()) == pytest.approx(trained)
        body = page.inner_text("body")
        assert f"teacher trained at {trained:g}" in body and "Out of range" not in body

        # Far from the trained ratio: the predictions are shown with a warning.
        slider.focus()
        slider.press("End")
        page.get_by_text(f"the teacher was trained at {trained:g}, not at 1").first.wait_for()
        page.get_by_text("the student was trained at").first.wait_for()
        assert page.locator("text=p = ").count() >= 2

        # Nothing selected (a review of 40 word pieces at 0.01): no prediction, and the mask IoU is undefined.
        slider.press("Home")
        page.get_by_text("No prediction", exact=True).first.wait_for()
        assert page.get_by_text("No prediction", exact=True).count() == 2 and page.locator("text=p = ").count() == 0
        iou = page.get_by_test_id("stMetric").filter(has_text="Mask IoU")
        assert "—" in iou.inner_text() and "1.000" not in iou.inner_text()
        iou.get_by_test_id("stTooltipHoverTarget").hover()
        page.get_by_text("nothing to overlap").first.wait_for()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out / "dashboard_empty_selection.png"), full_page=True)

        # A latin-1 review: decoded, and the page names the encoding it used.
        slider.focus()
        slider.press("PageUp")  # back among ratios that select something
        page.get_by_text("Upload .txt / .csv files", exact=True).click()
        page.locator("input[type=file]").first.set_input_files(str(latin1))
        notice = page.get_by_text("critique.txt: not UTF-8 text; decoded as").first
        notice.wait_for()
        encoding = notice.inner_text().split("decoded as ")[1].split()[0]
        assert review.encode("latin-1").decode(encoding) == review
        page.locator("span", has_text="mouvant").first.wait_for()
        assert "émouvant" in page.inner_text("body")

        # The Ratios tab's dataset field follows the task.
        page.get_by_role("tab", name="Ratios").click()
        field = page.get_by_label("Dataset (csv:DIR", exact=False).first
        assert field.input_value() == f"csv:{tiny_checkpoints.text_data}"
        page.get_by_text("Images (vision)", exact=True).click()
        page.wait_for_function("([want]) => [...document.querySelectorAll('input')].some(i => i.value === want)",
                               arg=[f"imagefolder:{tiny_checkpoints.image_data}"])
        field = page.get_by_label("Dataset (csv:DIR", exact=False).first
        assert field.input_value() == f"imagefolder:{tiny_checkpoints.image_data}"
        page.get_by_role("button", name="Evaluate").click()
        page.get_by_text("Done:").first.wait_for()
        assert "is a text dataset" not in page.inner_text("body")
    assert_stayed_local(requests, server)


def test_two_sessions_at_once_see_their_own_inputs(server, tiny_checkpoints, tmp_path):
    """Two browser sessions on one server type different reviews and upload different images at the same time
    (each action sent before either result is awaited); each sees only its own input, and the explanation of
    its own review (its count of word pieces: the reviews differ in length)."""
    from dashboard.checkpoints import load_model
    from rekd_core.explain import explain

    words = {"a": "alphamarkerword", "b": "betamarkerword"}
    reviews = {"a": f"fillerab splendid {words['a']} fillerac.",
               "b": f"fillerab {words['b']} dreadful fillerad fillerae fillerba fillerbb, fillerbc dreadful."}
    teacher = load_model(tiny_checkpoints.text_teacher)
    pieces = {name: explain(teacher, [text])[0].num_features for name, text in reviews.items()}
    assert pieces["a"] != pieces["b"]
    sizes = {"a": (72, 40), "b": (40, 56)}
    images = {}
    for name, (width, height) in sizes.items():
        images[name] = tmp_path / f"session-{name}.png"
        Image.new("RGB", (width, height), (40, 160, 90) if name == "a" else (200, 60, 60)).save(images[name])
    requests: list[str] = []
    with chromium() as browser:
        pages = {name: open_dashboard(browser, server, requests) for name in words}
        for page in pages.values():
            page.get_by_text("Type or paste", exact=True).click()
        for name, page in pages.items():  # both reviews are on their way before either is drawn
            area = page.locator("textarea").first
            area.fill(reviews[name])
            area.press("Control+Enter")
        for name, page in pages.items():
            other = words["b" if name == "a" else "a"]
            page.locator("span", has_text=words[name]).first.wait_for()
            page.get_by_test_id("stMetric").filter(has_text="Mask IoU").first.wait_for()
            body = page.inner_text("body")
            assert words[name] in body and other not in body, name
            assert body.count(f" of {pieces[name]} word pieces") == 2, name  # the teacher's and the student's

        for page in pages.values():
            page.get_by_text("Images (vision)", exact=True).click()
            page.get_by_text("Upload images", exact=True).click()
        for name, page in pages.items():
            page.locator("input[type=file]").first.set_input_files(str(images[name]))
        for name, page in pages.items():
            width, height = sizes[name]
            page.get_by_text(f"teacher's patches on the original ({width}x{height})").first.wait_for()
            page.get_by_text(f"student's patches on the original ({width}x{height})").first.wait_for()
            body = page.inner_text("body")
            other = sizes["b" if name == "a" else "a"]
            assert f"({other[0]}x{other[1]})" not in body and words["a"] not in body and words["b"] not in body, name
    assert_stayed_local(requests, server)
