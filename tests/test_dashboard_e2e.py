"""End to end: the real dashboard (``streamlit run dashboard/app.py``) in headless Chromium.

Types a review, uploads an image, and saves a screenshot of each; checks that they are not blank,
that the page shows the comparison, and that the browser made no request beyond the local server.
Then moves the ratio slider away from the trained ratio (out-of-range warning) and to its lowest
value (an empty selection: no prediction, mask IoU undefined), uploads a latin-1 review (decoded,
its encoding named), and switches the task with the Ratios tab's dataset field in view. Then walks
through the analysis views (shading, a ratio for each model, the summary, long reviews, thumbnails,
the live evaluation's confusion matrices), a screenshot of each.
Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the ``playwright`` Python package
(driven with that Chromium: no browser download); skipped when either is missing. Set
``REKD_E2E_SCREENSHOTS=DIR`` to keep the screenshots.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
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
VISIBLE_DATASET_FIELD = "input[aria-label^='Dataset (csv:DIR']:visible"  # the open tab's (hidden tabs have theirs)

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


def test_analysis_views_in_headless_chromium(server, tiny_checkpoints, tmp_path):
    """What the analysis views show in a browser, a screenshot of each: scores as shading (words, then patches),
    each model at its own ratio, faithfulness and the input check, the summary of an uploaded batch (confusion
    matrices, one click to Compare), a long review's unread part and its evidence outside the window (counted
    apart, still marked), the labels an image model knows, a new upload shown at once, image thumbnails in the
    browser with its one numbering, the live evaluation's confusion matrices; and a task switch that brings each
    task's own state back."""
    from tests.dashboard_fixtures import write_long_eraser

    out = Path(os.environ.get("REKD_E2E_SCREENSHOTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    rows = (tiny_checkpoints.text_data / "test.csv").read_text().splitlines()[1:9]
    batch = tmp_path / "batch.csv"
    batch.write_text("text,label\n" + "".join(",".join(row.split(",")[:2]) + "\n" for row in rows))
    eraser = write_long_eraser(tmp_path / "eraser")
    images = [tmp_path / "wide.png", tmp_path / "tall.png"]
    Image.new("RGB", (40, 24), (200, 30, 30)).save(images[0])
    Image.new("RGB", (24, 40), (30, 200, 30)).save(images[1])
    images.append(tmp_path / "photo.jpg")
    Image.new("RGB", (6000, 4000), (90, 140, 200)).save(images[2], quality=60)
    requests: list[str] = []
    with dashboard_page(server, requests) as page:
        body = lambda: page.inner_text("body")  # noqa: E731
        assert body().count("Faithfulness here: sufficiency") == 2 and "Input check unavailable" in body()
        page.get_by_text("How to read this").first.click()  # the three modes by name, no claim of one ratio each
        page.get_by_text("CLS: A plain classifier").first.wait_for()
        assert "REKD: RE with knowledge distillation" in body() and "Each model was trained at one ratio" not in body()
        page.get_by_text("How to read this").first.click()
        # Scores, not only on/off: every word shaded, the top k outlined.
        page.locator("label").filter(has_text="Selection probability").first.click()
        page.get_by_text("Each model's colour is the stronger").first.wait_for()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "views_probability.png"), full_page=True)
        outlined = page.evaluate("() => [...document.querySelectorAll('span')].filter(s => s.style.outlineStyle "
                                 "=== 'solid' && s.style.outlineColor === 'rgb(0, 114, 178)').length")
        assert outlined >= 1  # the teacher's top-k words, outlined in its colour

        # A ratio for each model.
        page.get_by_text("One ratio for both models").first.click()
        teacher_slider = page.get_by_test_id("stSlider").first.locator("input[type=range]")
        teacher_slider.wait_for()
        teacher_slider.focus()
        teacher_slider.press("End")
        page.get_by_text("The two models are read at different ratios (teacher 1, student").first.wait_for()
        page.screenshot(path=str(out / "views_two_ratios.png"), full_page=True)
        page.get_by_text("One ratio for both models").first.click()

        # The summary of an uploaded batch, one click from Compare.
        page.get_by_text("Upload .txt / .csv files", exact=True).click()
        page.locator("input[type=file]").first.set_input_files(str(batch))
        page.get_by_text("Show input (8 read)").first.wait_for()
        page.get_by_role("tab", name="Summary").click()
        page.get_by_role("button", name="Summarise").click()
        page.get_by_text("Where they disagree most").first.wait_for()
        page.get_by_text("teacher: 8 labelled inputs").first.wait_for()  # the confusion matrices
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "views_summary.png"), full_page=True)
        assert "Teacher accuracy" in body() and "Mean mask IoU" in body()
        page.get_by_role("button", name="Open in Compare").first.click()
        page.get_by_text("Both explanations took").first.wait_for()
        assert page.get_by_role("tab", name="Compare").get_attribute("aria-selected") == "true"

        # A long review: its unread part and its evidence past the window.
        page.get_by_text("Dataset sample", exact=True).click()
        field = page.locator(VISIBLE_DATASET_FIELD).first
        field.fill(f"eraser-movies:{eraser}")
        field.press("Enter")
        page.get_by_text("marked as evidence by human annotators").first.wait_for()
        page.get_by_text("the rest is unread").first.wait_for()
        # The review whose evidence lies wholly past the window (it starts "filleraa fillerab").
        page.get_by_test_id("stSelectbox").filter(has_text="Show input").locator("input").first.click()
        page.get_by_role("option").filter(has_text="filleraa fillerab fillerac").first.click()
        page.get_by_text("3 of them past where the models stop reading").first.wait_for()
        assert body().count("3 evidence words past where it stopped reading, not counted") == 2
        assert page.locator("span[title='human evidence, not read by the models']").count() == 3  # still marked
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out / "views_long_review.png"), full_page=True)

        # Images: the labels a model knows, patches shaded by selection probability (the choice is kept).
        page.get_by_text("Images (vision)", exact=True).click()
        page.get_by_text("It knows 2 classes: neg, pos").first.wait_for()
        page.get_by_text("shaded by selection probability, top-k outlined").first.wait_for()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "views_image_probability.png"), full_page=True)
        # A new upload shows itself at once, not the first image again.
        page.get_by_text("Upload images", exact=True).click()
        page.locator("input[type=file]").first.set_input_files(str(images[0]))
        page.get_by_text("teacher's patches on the original (40x24)").first.wait_for()
        page.locator("input[type=file]").first.set_input_files(str(images[1]))
        page.get_by_text("teacher's patches on the original (24x40)").first.wait_for()
        assert "Show input (2 read)" in body()
        page.locator("input[type=file]").first.set_input_files(str(images[2]))  # shrunk when read, and said so
        page.get_by_text("photo.jpg: 6000x4000 pixels, shrunk to 2048x1365 when read").first.wait_for()
        page.get_by_text("teacher's patches on the original (2048x1365)").first.wait_for()
        page.get_by_role("tab", name="Dataset browser").click()
        page.get_by_role("button", name="Rank by disagreement").click()
        page.get_by_text("Row to open").first.wait_for()
        page.wait_for_timeout(2000)
        page.screenshot(path=str(out / "views_browser_images.png"), full_page=True)
        shown = page.evaluate("() => [...document.querySelectorAll('input')].map(i => i.value).join('|') + '|' + "
                              "document.body.innerText")
        assert re.search(r"#[1-4]: CIFAR-10 test image", shown)  # the row box numbers rows as the table does

        # The live evaluation: each model's confusion matrix.
        page.get_by_role("tab", name="Ratios").click()
        page.get_by_role("button", name="Evaluate").click()
        page.get_by_text("Done:").first.wait_for()
        page.get_by_text("Confusion matrices at ratio").first.wait_for()
        page.wait_for_timeout(2000)
        page.get_by_text("Confusion matrices at ratio").first.scroll_into_view_if_needed()  # the page scrolls inside
        page.screenshot(path=str(out / "views_live_evaluation.png"))
        assert page.locator(".stPlotlyChart").filter(has_text="teacher at ratio").count() == 1

        # Back to reviews: Compare's input is still the dataset sample, with its field as typed.
        page.get_by_text("Movie reviews (text)", exact=True).click()
        page.get_by_role("tab", name="Compare").click()
        page.get_by_text("marked as evidence by human annotators").first.wait_for()
        assert page.locator(VISIBLE_DATASET_FIELD).first.input_value() == f"eraser-movies:{eraser}"
    check_not_blank(out / "views_summary.png")
    assert_stayed_local(requests, server)
