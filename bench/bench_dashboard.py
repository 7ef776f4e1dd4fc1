"""Benchmark the dashboard's interactive path: once the models are loaded, how long does one
teacher + student explanation and its rendering take for a review of 256 word pieces and for one
32x32 image? (The issue's budget: under 0.5 s on the CPU.)

    python bench/bench_dashboard.py                  # the shipped checkpoints, else preset-sized stand-ins
    python bench/bench_dashboard.py --text-pair T S --vision-pair T S --runs 30
    python bench/bench_dashboard.py --apptest        # also time whole Streamlit reruns (slider moves)
    python bench/bench_dashboard.py --threads 2      # torch threads (default: the dashboard's, half the cores)

Checkpoints are found under checkpoints/ (or $REKD_CHECKPOINTS) and paired as the dashboard pairs
them. A task with none gets untrained stand-ins of the preset sizes given (their speed is that of
trained models of the same size): a 256-word-piece BERT pair and a 32x32-pixel ViT pair with 4-pixel
patches (an 8x8 grid). The timed work is exactly what a rerun of the compare view does: both
explanations, the highlighted review (or the patch overlays, PNG-encoded as st.image does) and the
agreement view. Prints the median, 90th percentile and minimum of --runs runs after a warm-up.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from dashboard import analysis as A  # noqa: E402
from dashboard import checkpoints as C  # noqa: E402
from dashboard import environment as E  # noqa: E402
from dashboard import inputs as I  # noqa: E402
from dashboard.render import cards as K  # noqa: E402
from dashboard.render import images as IMG  # noqa: E402
from dashboard.render import style as S  # noqa: E402
from dashboard.render import text as T  # noqa: E402


def stand_in_pair(task: str, presets: list[str], workdir: Path) -> tuple[str, str]:
    """Untrained teacher and student checkpoints of the given presets (text: 256 word pieces, a
    WordPiece vocabulary trained on the bundled reviews; vision: 32x32 images, 4px patches)."""
    from rekd_core.checkpoint import load_checkpoint, save_checkpoint
    from rekd_core.config import TrainConfig
    from rekd_core.data import RawSplit
    from rekd_core.factory import create_model

    if task == "text":
        reviews = [item.value for item in I.load_examples("text")]
        split = RawSplit(reviews * 4, [0, 1] * (2 * len(reviews)))
        labels = ["neg", "pos"]
        extra = dict(max_length=256, vocab_size=2000, ratio=0.1)
    else:
        split = RawSplit([], [])
        labels = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        extra = dict(image_size=32, patch_size=4, ratio=0.15)
    paths = []
    source = None
    for role, preset in zip(("teacher", "student"), presets):
        cfg = TrainConfig(task=task, mode="re" if role == "teacher" else "rekd", backbone=preset, dataset="bench",
                          out=str(workdir / task / role), teacher="bench" if role == "student" else None,
                          **extra).resolved()
        model = create_model(cfg, labels, split, tokenizer_source=source)
        save_checkpoint(model, cfg.out, extra_config={"dataset": "stand-in (untrained)", "status": "complete"})
        source = load_checkpoint(cfg.out)
        paths.append(cfg.out)
    return paths[0], paths[1]


def pick_pair(task: str, given: list[str] | None, presets: list[str], workdir: Path) -> tuple[str, str, str]:
    if given:
        return given[0], given[1], "given"
    root = E.checkpoints_root()
    infos = [i for i in C.discover_checkpoints(root)[0] if i.task == task]
    t, s = C.default_pair(infos, E.recipe_headlines(root, "checkpoints"))
    if t is not None and s is not None and t != s:
        return infos[t].path, infos[s].path, f"shipped: {infos[t].name} / {infos[s].name}"
    return (*stand_in_pair(task, presets, workdir), f"untrained stand-ins ({' / '.join(presets)})")


def long_review(tokenizer_model) -> I.InputItem:
    """The bundled long review, repeated if needed so that the model reads a full 256 word pieces."""
    text = I.load_examples("text")[2].value
    while len(tokenizer_model.processor.tokenizer(text)["input_ids"]) < tokenizer_model.processor.max_length:
        text += " " + text
    return I.prepare_review(text, "long review")


def render_text(item, result, max_length):
    K.probs_html(result.teacher, S.TEACHER)
    K.probs_html(result.student, S.STUDENT)
    T.word_counts(result.teacher)
    T.word_counts(result.student)
    T.highlight_html(item.value, result.teacher, S.TEACHER, max_length)
    T.highlight_html(item.value, result.student, S.STUDENT, max_length)
    if result.comparison is not None:
        T.agreement_html(item.value, result.teacher, result.comparison, max_length)


def render_image(item, result, teacher):
    K.probs_html(result.teacher, S.TEACHER)
    K.probs_html(result.student, S.STUDENT)
    view = teacher.processor.resized(item.value)
    images = [IMG.display_image(item.value),
              IMG.patch_overlay(view, result.teacher.selected, result.teacher.grid_side, S.TEACHER),
              IMG.patch_overlay(view, result.student.selected, result.student.grid_side, S.STUDENT)]
    if result.comparison is not None:
        images.append(IMG.agreement_overlay(view, result.comparison, result.teacher.grid_side))
    for image in images:  # st.image sends each as a PNG
        IMG.png_bytes(image)


def time_task(task: str, teacher_path: str, student_path: str, device, runs: int) -> dict:
    started = time.perf_counter()
    teacher, student = C.load_model(teacher_path, device), C.load_model(student_path, device)
    load_s = time.perf_counter() - started
    check = C.check_pair(teacher, student, task)
    if check.fatal:
        raise SystemExit(f"{task}: {check.fatal}")
    if task == "text":
        item = long_review(teacher)
    else:
        item = I.load_examples("vision")[0]  # a 32x32 CIFAR-10 image
    ratio = student.ratio
    explain_times, render_times = [], []
    for run in range(runs + 2):
        t0 = time.perf_counter()
        result = A.explain_pair(teacher, student, item, ratio, agreement=check.agreement)
        t1 = time.perf_counter()
        if task == "text":
            render_text(item, result, teacher.processor.max_length)
        else:
            render_image(item, result, teacher)
        t2 = time.perf_counter()
        if run >= 2:  # two warm-up runs
            explain_times.append(t1 - t0)
            render_times.append(t2 - t1)
    totals = [e + r for e, r in zip(explain_times, render_times)]
    features = result.teacher.num_features
    return {"task": task, "teacher": teacher_path, "student": student_path, "features": features,
            "load_s": round(load_s, 3), "runs": runs,
            "median_s": round(statistics.median(totals), 4),
            "p90_s": round(sorted(totals)[int(0.9 * (len(totals) - 1))], 4),
            "min_s": round(min(totals), 4), "explain_median_s": round(statistics.median(explain_times), 4),
            "render_median_s": round(statistics.median(render_times), 4)}


def time_apptest(root: Path, runs: int) -> dict:
    """Whole Streamlit reruns (script + both explanations + rendering), moving the ratio slider."""
    from streamlit.testing.v1 import AppTest

    os.environ["REKD_CHECKPOINTS"] = str(root)
    out = {}
    for task in ("text", "vision"):
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
        at.run()
        at.sidebar.radio(key="task").set_value(task).run()
        if task == "text":
            at.radio(key="source_text").set_value("Bundled example").run()
            at.selectbox(key="example_text").set_value(2).run()  # the long review
        times = []
        for run in range(runs):
            at.sidebar.slider(key="ratio").set_value(0.05 + 0.01 * (run % 20))
            t0 = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t0)
            assert not at.exception, [e.value for e in at.exception]
        out[task] = {"rerun_median_s": round(statistics.median(times), 4), "rerun_min_s": round(min(times), 4)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text-pair", nargs=2, metavar=("TEACHER", "STUDENT"))
    parser.add_argument("--vision-pair", nargs=2, metavar=("TEACHER", "STUDENT"))
    parser.add_argument("--text-presets", default="bert-4x256,bert-1x64",
                        help="stand-in sizes when no text checkpoints")
    parser.add_argument("--vision-presets", default="vit-6x192,vit-2x64",
                        help="stand-in sizes when no vision checkpoints")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the dashboard's, half the cores)")
    parser.add_argument("--apptest", action="store_true", help="also time whole Streamlit reruns through AppTest")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        os.environ["REKD_DASHBOARD_THREADS"] = str(args.threads)
    E.configure_torch_threads()
    device, warning = E.pick_device(args.device)
    if warning:
        print(warning, file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        workdir = Path(tmp)
        for task, given, presets in (("text", args.text_pair, args.text_presets),
                                     ("vision", args.vision_pair, args.vision_presets)):
            teacher, student, origin = pick_pair(task, given, presets.split(","), workdir)
            row = time_task(task, teacher, student, device, args.runs)
            row["models"] = origin
            rows.append(row)
        apptest = time_apptest(workdir if any("stand-in" in r["models"] for r in rows) else E.checkpoints_root(),
                               max(5, args.runs // 2)) if args.apptest else None
    report = {"device": E.device_description(device), "torch_threads": torch.get_num_threads(), "results": rows,
              "budget_s": 0.5}
    if apptest:
        report["apptest_reruns"] = apptest
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"device: {report['device']}; {args.runs} runs after 2 warm-up runs; budget 0.5 s")
    for row in rows:
        what = f"{row['features']} word pieces" if row["task"] == "text" else f"32x32 image, {row['features']} patches"
        verdict = "OK" if row["median_s"] < 0.5 else "OVER BUDGET"
        print(f"{row['task']:>6} ({what}; {row['models']}): median {1000 * row['median_s']:.0f} ms "
              f"(explain {1000 * row['explain_median_s']:.0f} ms + render {1000 * row['render_median_s']:.0f} ms), "
              f"p90 {1000 * row['p90_s']:.0f} ms, min {1000 * row['min_s']:.0f} ms; "
              f"model load {row['load_s']:.2f} s [{verdict}]")
    if apptest:
        for task, times in apptest.items():
            print(f"{task:>6} whole Streamlit rerun (AppTest): median {1000 * times['rerun_median_s']:.0f} ms, "
                  f"min {1000 * times['rerun_min_s']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
