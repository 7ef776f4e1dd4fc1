"""Load test of the dashboard served to a lab: several browser sessions at once on one server.

    python bench/bench_load.py                 # 8 sessions x (5 typed reviews + 3 uploaded images), one 20-review
                                               # live evaluation at the same time
    python bench/bench_load.py --sessions 2 --reviews 1 --images 1 --eval-n 5      # a quick try

Starts ``streamlit run dashboard/app.py`` on the shipped checkpoints (the pairs the page opens on) with
``REKD_ALLOWED_ROOTS`` set to the checkpoints folder and the evaluation dataset's folder, as a lab would serve it,
and drives it from one headless Chromium (Debian's, /usr/bin/chromium; never ``playwright install``) with one
Playwright browser context per session, all at once (asyncio). One session warms the server up first (it loads
both pairs, as the first visitor would), then all sessions start together. Each types its reviews one after
another, waiting for both explanations of each, then switches to images, uploads its images at once and shows
each in turn. Session 1 first runs a live evaluation on a sample of the student's dataset (the page's default,
else a CSV written from the bundled reviews) while the others explain; then it explains its own inputs.

Measured and printed:
- the time to both explanations of each input: from the action (Ctrl+Enter in the review box, the upload, the
  pick of an image) until the page shows that input's explanation (a review's unique marker word in the
  highlighted text, drawn once both models ran; an image's captions of both models' patches on an original of
  its unique size); median and 95th percentile (nearest rank) of reviews, images and all;
- cross-talk: after each explanation, the page must show no other session's marker word or image size;
- the server's resident memory: sampled every 0.2 s and its high-water mark (VmHWM), after the warm-up and at
  the end; how many times each checkpoint was loaded (``dashboard.checkpoints.load_model`` is wrapped in the server
  process to log each load);
- the files the server wrote or created while serving (a Python audit hook in the server logs them);
- tracebacks in the server log and "unexpected error" on the pages.
Exits 1 when a session saw another's input, a checkpoint loaded twice, the server wrote a file or raised.

The browser runs on the same machine as the server: on a small machine its drawing competes with the models for
the CPU, so these times are an upper bound on what visitors on their own machines would see.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"
MARKER = re.compile(r"sess(\d\d)rev(\d\d)")
ORIGINAL = re.compile(r"original \((\d+)x(\d+)\)")
# Image j of session i is IMAGE_SIZES[j] wide plus 4 * i pixels: no two inputs share a size. The last one is a
# photo-sized JPEG of more than 1 MB (Starlette would spool an upload that large to disk unless the page stops it).
IMAGE_SIZES = [(96, 72), (224, 160), (1280, 960)]

# Runs in the server process before Streamlit: logs each model load and each file written or created.
SERVER_BOOT = r'''
import os, sys, time
sys.path.insert(0, os.getcwd())
import dashboard.checkpoints as C

_load = C.load_model

def load_model(path, device="cpu"):
    started = time.perf_counter()
    model = _load(path, device)
    print(f"[bench] model loaded: {path} in {time.perf_counter() - started:.1f} s", flush=True)
    return model

C.load_model = load_model
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
CREATING = {"os.mkdir", "os.rename", "os.link", "os.symlink", "os.truncate", "shutil.copyfile", "shutil.move",
            "tempfile.mkstemp", "tempfile.mkdtemp"}

def audit(event, args):
    if event == "open" and len(args) > 2 and isinstance(args[2], int) and args[2] & WRITE:
        print(f"[bench] {time.time():.3f} file written: {args[0]!r}", flush=True)
    elif event in CREATING:
        print(f"[bench] {time.time():.3f} file created ({event}): {args[0]!r}", flush=True)

sys.addaudithook(audit)
from streamlit.web import cli
sys.argv = ["streamlit", "run", "dashboard/app.py", *sys.argv[1:]]
sys.exit(cli.main())
'''


@dataclass
class Timing:
    session: int
    kind: str  # "review" | "image"
    seconds: float
    finished: float  # seconds since the sessions started


@dataclass
class Report:
    timings: list[Timing] = field(default_factory=list)
    crosstalk: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    evaluation: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def marker(session: int, number: int) -> str:
    return f"sess{session:02d}rev{number:02d}"


def reviews_for(session: int, count: int) -> list[str]:
    """``count`` reviews of about 80 words, cut from the bundled reviews, each with its marker word inside."""
    from dashboard.inputs import load_examples

    texts = [item.value.split() for item in load_examples("text")]
    out = []
    for number in range(1, count + 1):
        words = texts[(session + number) % len(texts)]
        start = (7 * number) % max(1, len(words) - 80)
        cut = words[start:start + 80]
        out.append(" ".join(cut[:40] + [marker(session, number)] + cut[40:]))
    return out


def image_size(session: int, number: int) -> tuple[int, int]:
    width, height = IMAGE_SIZES[(number - 1) % len(IMAGE_SIZES)]
    return width + 4 * session, height


def write_images(session: int, count: int, folder: Path) -> list[Path]:
    """The bundled CIFAR-10 images, enlarged to this session's sizes with some noise (a photo's grain); the
    largest saved as a JPEG of more than 1 MB."""
    import numpy as np
    from PIL import Image

    from dashboard.inputs import load_examples

    examples = [item.value for item in load_examples("vision")]
    rng = np.random.default_rng(session)
    paths = []
    for number in range(1, count + 1):
        size = image_size(session, number)
        base = np.asarray(examples[(session + number) % len(examples)].resize(size, Image.BILINEAR), dtype=float)
        pixels = np.clip(base + rng.normal(0, 24, base.shape), 0, 255).astype(np.uint8)
        large = size[0] * size[1] > 1_000_000
        path = folder / f"session{session:02d}-image{number}.{'jpg' if large else 'png'}"
        Image.fromarray(pixels).save(path, **({"quality": 97} if large else {}))
        paths.append(path)
    return paths


def evaluation_spec(folder: Path) -> tuple[str, Path]:
    """The dataset of the live evaluation: the shipped text student's, where it is on this machine (what the
    page offers), else a CSV dataset written from the bundled reviews; and the folder REKD_ALLOWED_ROOTS needs."""
    from dashboard import checkpoints as C
    from dashboard import environment as E
    from dashboard import inputs as I

    infos = [info for info in C.discover_checkpoints(E.checkpoints_root())[0] if info.task == "text"]
    _, student = C.default_pair(infos, E.recipe_headlines(E.checkpoints_root(), "checkpoints"))
    spec = E.local_dataset_spec(infos[student].dataset) if student is not None else ""
    if spec:
        return spec, Path(E.dataset_spec_path(spec)).expanduser().resolve().parent
    reviews = [(item.value, item.label) for item in I.load_examples("text")]
    data = folder / "reviews"
    data.mkdir()
    for split in ("train", "test"):
        rows = ["text,label"] + [f'"{text.replace(chr(34), chr(39))} ({split} {i})",{label}'
                                 for i in range(20) for text, label in reviews]
        (data / f"{split}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return f"csv:{data}", data


# ----------------------------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, roots: list[Path], log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, REKD_ALLOWED_ROOTS=os.pathsep.join(map(str, roots)), PYTHONUNBUFFERED="1")
    env.pop("REKD_CHECKPOINTS", None)
    process = subprocess.Popen([sys.executable, "-c", SERVER_BOOT, "--server.port", str(port),
                                "--server.headless", "true", "--server.fileWatcherType", "none"],
                               cwd=ROOT, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return process
        except OSError:
            pass
        if process.poll() is not None or time.time() > deadline:
            raise SystemExit("streamlit did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(0.5)


class MemorySampler(threading.Thread):
    """The resident memory of process ``pid`` every ``every`` seconds: ``samples`` of (time, bytes)."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        import psutil

        self.process, self.every, self.samples = psutil.Process(pid), every, []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.samples.append((time.perf_counter(), self.process.memory_info().rss))
            except Exception:  # the process ended
                return
            self.stopped.wait(self.every)

    def peak_since(self, since: float) -> int:
        return max((rss for t, rss in self.samples if t >= since), default=0)


def high_water_mark(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


# ----------------------------------------------------------------------------------------------
# The sessions
# ----------------------------------------------------------------------------------------------


async def open_page(browser, url: str, timeout_s: float):
    page = await (await browser.new_context(viewport={"width": 1280, "height": 1800})).new_page()
    page.set_default_timeout(timeout_s * 1000)
    await page.goto(url)
    await page.get_by_text("Both explanations took").first.wait_for()  # the bundled example is explained
    return page


async def check_page(page, session: int, allowed_sizes: set[tuple[int, int]], report: Report) -> None:
    """Records any other session's marker word or image size on the page, and any unexpected error."""
    body = await page.inner_text("body")
    for found in MARKER.finditer(body):
        if int(found.group(1)) != session:
            report.crosstalk.append(f"session {session} shows {found.group(0)}")
    for found in ORIGINAL.finditer(body):
        if (int(found.group(1)), int(found.group(2))) not in allowed_sizes:
            report.crosstalk.append(f"session {session} shows an original of {found.group(1)}x{found.group(2)}")
    if "unexpected error" in body:
        report.page_errors.append(f"session {session}: {body[body.index('unexpected error') - 200:][:400]}")


async def live_evaluation(page, spec: str, n: int, clock: float, report: Report) -> None:
    """The Ratios tab's live evaluation of the loaded pair on ``n`` examples of ``spec`` (default ratios)."""
    await page.get_by_role("tab", name="Ratios").click()
    field = page.get_by_label("Dataset (csv:DIR", exact=False).first
    await field.wait_for()
    if await field.input_value() != spec:
        await field.fill(spec)
        await field.press("Enter")
    size = page.get_by_label("Sample size").first
    await size.fill(str(n))
    await size.press("Enter")
    started = time.perf_counter()
    await page.get_by_role("button", name="Evaluate").click()
    await page.get_by_text(f"Done: {n} examples").first.wait_for()
    report.evaluation = {"spec": spec, "n": n, "seconds": time.perf_counter() - started,
                         "started": started - clock, "finished": time.perf_counter() - clock}
    await page.get_by_role("tab", name="Compare").click()


async def explain_reviews(page, session: int, count: int, clock: float, report: Report) -> None:
    await page.get_by_text("Type or paste", exact=True).click()
    area = page.locator("textarea").first
    for number, review in enumerate(reviews_for(session, count), start=1):
        await area.fill(review)
        started = time.perf_counter()
        await area.press("Control+Enter")
        await page.locator("span", has_text=marker(session, number)).first.wait_for()
        now = time.perf_counter()
        report.timings.append(Timing(session, "review", now - started, now - clock))
        await check_page(page, session, set(), report)


async def explain_images(page, session: int, paths: list[Path], clock: float, report: Report) -> None:
    sizes = [image_size(session, number) for number in range(1, len(paths) + 1)]
    allowed = set(sizes) | {(32, 32)}  # and the bundled example's, shown when the task switches
    await page.get_by_text("Images (vision)", exact=True).click()
    await page.get_by_text("Upload images", exact=True).click()
    for number, (width, height) in enumerate(sizes, start=1):
        started = time.perf_counter()
        if number == 1:
            await page.locator("input[type=file]").first.set_input_files([str(p) for p in paths])
        else:
            await page.get_by_test_id("stSelectbox").filter(has_text="Show input").first.click()
            await page.get_by_role("option", name=re.compile(rf"^{number}\. ")).click()
        for role in ("teacher", "student"):
            await page.get_by_text(f"{role}'s patches on the original ({width}x{height})").first.wait_for()
        now = time.perf_counter()
        report.timings.append(Timing(session, "image", now - started, now - clock))
        await check_page(page, session, allowed, report)


async def run_session(browser, url: str, session: int, args, images: list[Path], spec: str, clock: float,
                      report: Report) -> None:
    page = await open_page(browser, url, args.timeout)
    if session == 1 and args.eval_n:
        await live_evaluation(page, spec, args.eval_n, clock, report)
    await explain_reviews(page, session, args.reviews, clock, report)
    await explain_images(page, session, images, clock, report)
    await page.context.close()


async def drive(url: str, args, images: dict[int, list[Path]], spec: str, sampler: MemorySampler) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"])
        started = time.perf_counter()
        page = await open_page(browser, url, args.timeout)  # the warm-up: loads both pairs
        await page.get_by_text("Images (vision)", exact=True).click()
        await page.get_by_text("teacher's patches on the original").first.wait_for()
        await page.context.close()
        warm_up = {"seconds": time.perf_counter() - started, "rss": sampler.samples[-1][1]}
        report = Report()
        clock, wall_clock, cpu = time.perf_counter(), time.time(), server_cpu_seconds(sampler)
        await asyncio.gather(*(run_session(browser, url, s, args, images[s], spec, clock, report)
                               for s in range(1, args.sessions + 1)))
        wall, cpu = time.perf_counter() - clock, server_cpu_seconds(sampler) - cpu
        await browser.close()
    return {"warm_up": warm_up, "report": report, "wall": wall, "clock": clock, "wall_clock": wall_clock,
            "server_cpu": cpu}


def server_cpu_seconds(sampler: MemorySampler) -> float:
    """The CPU time (user + system, all threads) the server process has used so far."""
    times = sampler.process.cpu_times()
    return times.user + times.system


# ----------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0-100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(times: list[float]) -> str:
    if not times:
        return "none"
    return (f"n={len(times)}, median {statistics.median(times):.2f} s, p95 {percentile(times, 95):.2f} s, "
            f"min {min(times):.2f} s, max {max(times):.2f} s")


def load_average() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--reviews", type=int, default=5, help="typed reviews per session")
    parser.add_argument("--images", type=int, default=3, help="uploaded images per session")
    parser.add_argument("--eval-n", type=int, default=20, help="examples of session 1's live evaluation (0: none)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds any one wait may take")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install -y chromium")
    os.chdir(ROOT)  # where the server runs: the shipped recipe's relative dataset paths are read from here

    print(f"# started {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; load average {load_average()}; "
          f"{os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        folder = Path(tmp)
        spec, data_root = evaluation_spec(folder)
        roots = [(ROOT / "checkpoints").resolve(), data_root]
        images = {s: write_images(s, args.images, folder) for s in range(1, args.sessions + 1)}
        log_path = folder / "server.log"
        port = free_port()
        server = start_server(port, roots, log_path)
        sampler = MemorySampler(server.pid)
        sampler.start()
        try:
            result = asyncio.run(drive(f"http://localhost:{port}", args, images, spec, sampler))
            hwm = high_water_mark(server.pid)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
            sampler.stopped.set()
        log = log_path.read_text()
    report: Report = result["report"]
    loads = re.findall(r"\[bench\] model loaded: (\S+) in ([\d.]+) s", log)
    files = [(float(when), what) for when, what in re.findall(r"\[bench\] ([\d.]+) (file (?:written|created).*)", log)]
    written = [what for when, what in files if when >= result["wall_clock"]]  # while the sessions ran
    before = [what for when, what in files if when < result["wall_clock"]]  # start-up and warm-up
    tracebacks = log.count("Traceback")
    per_path = {path: sum(1 for p, _ in loads if p == path) for path, _ in loads}
    reviews = [t.seconds for t in report.timings if t.kind == "review"]
    images_s = [t.seconds for t in report.timings if t.kind == "image"]
    evaluation = report.evaluation
    during = [t for t in report.timings if t.session != 1 and evaluation
              and evaluation["started"] <= t.finished <= evaluation["finished"]]
    peak_sampled = sampler.peak_since(result["clock"])
    mib = 1024 * 1024

    print(f"# ended; load average {load_average()}")
    print(f"server: REKD_ALLOWED_ROOTS={os.pathsep.join(map(str, roots))}; 1 torch thread per explanation "
          f"(the dashboard's default on {os.cpu_count()} CPUs)")
    print(f"warm-up (one session opens the page and switches to images; both pairs load): "
          f"{result['warm_up']['seconds']:.1f} s, server RSS after it {result['warm_up']['rss'] / mib:.0f} MiB")
    print(f"{args.sessions} sessions at once, each {args.reviews} typed reviews then {args.images} uploaded images: "
          f"all done in {result['wall']:.1f} s; the server used {result['server_cpu']:.0f} CPU-seconds of the "
          f"{os.cpu_count() * result['wall']:.0f} the machine had meanwhile (the rest went to Chromium and the "
          "machine's other work)")
    print(f"time to both explanations, reviews: {summary(reviews)}")
    print(f"time to both explanations, images:  {summary(images_s)}")
    print(f"time to both explanations, all:     {summary(reviews + images_s)}")
    if evaluation:
        print(f"live evaluation (session 1, {evaluation['spec']}, n={evaluation['n']}, 5 ratios): "
              f"{evaluation['seconds']:.1f} s, from {evaluation['started']:.1f} s to {evaluation['finished']:.1f} s; "
              f"{len(during)} explanations of the other sessions finished meanwhile")
    print(f"server memory: peak RSS while the sessions ran {peak_sampled / mib:.0f} MiB (sampled every 0.2 s); "
          f"high-water mark of the whole run {hwm / mib:.0f} MiB")
    print(f"model loads: {len(loads)} ({', '.join(f'{Path(p).name} x{n}' for p, n in per_path.items())}); "
          + ", ".join(f"{Path(p).name} {float(s):.1f} s" for p, s in loads))
    print(f"files the server wrote or created while the sessions ran: {len(written)}"
          + (f" ({'; '.join(written[:10])})" if written else "")
          + f"; before them (start-up, warm-up): {len(before)}" + (f" ({'; '.join(before[:10])})" if before else ""))
    print(f"tracebacks in the server log: {tracebacks}; pages with an unexpected error: {len(report.page_errors)}")
    print(f"cross-talk (another session's input on a page): {len(report.crosstalk)}"
          + (f" ({'; '.join(report.crosstalk[:10])})" if report.crosstalk else ""))
    for session in range(1, args.sessions + 1):
        mine = [t.seconds for t in report.timings if t.session == session]
        print(f"  session {session}: {summary(mine)}")
    if args.json:
        args.json.write_text(json.dumps({
            "args": vars(args) | {"json": str(args.json)}, "warm_up": result["warm_up"], "wall_s": result["wall"],
            "server_cpu_s": result["server_cpu"],
            "timings": [t.__dict__ for t in report.timings], "evaluation": evaluation, "peak_rss": peak_sampled,
            "vmhwm": hwm, "loads": loads, "written": written, "written_before": before, "tracebacks": tracebacks,
            "page_errors": report.page_errors, "crosstalk": report.crosstalk}, indent=1))
    expected_explanations = args.sessions * (args.reviews + args.images)
    failed = (report.crosstalk or report.page_errors or tracebacks or written or len(report.timings)
              != expected_explanations or any(n > 1 for n in per_path.values()))
    if tracebacks:
        print(log[log.index("Traceback"):][:3000])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
