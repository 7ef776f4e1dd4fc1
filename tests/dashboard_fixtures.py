"""Fixtures of the dashboard tests, registered as a plugin by each dashboard test module
(``pytest_plugins = ["tests.dashboard_fixtures"]``), so the tiny checkpoints are trained once per
session and shared by tests/test_dashboard.py, tests/test_dashboard_serving.py and
tests/test_dashboard_e2e.py; ``make_app`` starts the page on them through Streamlit's AppTest."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from dashboard.render.style import BOTH, STUDENT, TEACHER

if TYPE_CHECKING:
    from streamlit.testing.v1 import AppTest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
TEXT_MAX_LENGTH = 40  # long enough for the typed test reviews, short enough that a real review is cut


def write_results(path: Path) -> None:
    """A results file in the layout of checkpoints/results.csv: 2 tasks x CLS/RE/REKD x 3 seeds."""
    rows = []
    for task, teacher, student in (("text", "bert-4x256", "bert-1x64"), ("vision", "vit-6x192", "vit-2x64")):
        for seed in (1, 2, 3):
            rows.append(dict(task=task, role="teacher", mode="cls", backbone=teacher, ratio=1.0, seed=seed,
                             accuracy=0.90 + 0.005 * seed, f1=0.9, achieved_ratio=1.0, teacher_agreement="",
                             wall_time_s=10))
            for ratio in (0.05, 0.1, 0.2, 0.5):
                rows.append(dict(task=task, role="teacher", mode="re", backbone=teacher, ratio=ratio, seed=seed,
                                 accuracy=0.80 + 0.1 * ratio + 0.004 * seed, f1=0.8, achieved_ratio=ratio * 1.02,
                                 teacher_agreement="", wall_time_s=10))
                for mode, base in (("re", 0.65), ("rekd", 0.75)):
                    rows.append(dict(task=task, role="student", mode=mode, backbone=student, ratio=ratio, seed=seed,
                                     accuracy=base + 0.2 * ratio + 0.003 * seed, f1=0.7, achieved_ratio=ratio * 0.98,
                                     teacher_agreement=0.7 if mode == "re" else 0.8,
                                     teacher_mask_iou=0.3 if mode == "re" else 0.6, wall_time_s=5))
    for seed in (1, 2, 3):  # a recipe variant: its own series, hidden until picked
        rows.append(dict(run=f"text/variants/student-rekd-example-cost-s{seed}", task="text", role="student",
                         mode="rekd", backbone="bert-1x64", ratio=0.1, seed=seed, accuracy=0.9, f1=0.9,
                         achieved_ratio=0.1, teacher_agreement=0.9, teacher_mask_iou=0.7, wall_time_s=5))
    fields = ["run", "task", "role", "mode", "backbone", "ratio", "seed", "accuracy", "f1", "achieved_ratio",
              "teacher_agreement", "teacher_mask_iou", "wall_time_s"]  # as rekd sweep writes them (and more)
    for number, row in enumerate(rows):
        row.setdefault("run", f"{row['task']}/{row['role']}-{row['mode']}-{number}")
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)


def write_tiny_eraser(root: Path, n_test: int = 8) -> Path:
    """An ERASER movies layout (``eraser-movies:ROOT``) in the tiny text task's words: ``n_test`` short test
    reviews, each with the cue word of its label and human evidence over it and, in some, over fillers
    too (so that the models' plausibility differs between reviews); review 0 has no evidence at all."""
    docs = root / "docs"
    docs.mkdir(parents=True)
    fillers = [f"filler{chr(97 + i)}{chr(97 + j)}" for i in range(3) for j in range(4)]
    splits: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for split, n in (("train", 2), ("val", 1), ("test", n_test)):
        for i in range(n):
            label = ("NEG", "POS")[i % 2]
            words = [fillers[(i + k) % len(fillers)] for k in range(10)]
            cue = i % 10
            words[cue] = "splendid" if label == "POS" else "dreadful"
            docid = f"{split}_{i:03d}.txt"
            (docs / docid).write_text(" ".join(words[:5]) + "\n" + " ".join(words[5:]) + "\n", encoding="utf-8")
            spans = [] if (split == "test" and i == 0) else [(cue, cue + 1)] + [(0, i % 4)] * (i % 4 > 0)
            evidences = [[{"docid": docid, "start_token": s, "end_token": e, "start_sentence": -1,
                           "end_sentence": -1, "text": "..."}] for s, e in spans]
            splits[split].append({"annotation_id": docid, "classification": label, "docids": [docid],
                                  "evidences": evidences})
    for split, rows in splits.items():
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def write_long_eraser(root: Path) -> Path:
    """An ERASER movies layout of four test reviews of 70 words, longer than the tiny models' 40 word pieces:
    review 1's evidence lies wholly past that window, review 2's partly, reviews 3 and 4's inside it."""
    docs = root / "docs"
    docs.mkdir(parents=True)
    fillers = [f"filler{chr(97 + i)}{chr(97 + j)}" for i in range(3) for j in range(4)]
    spans = {0: [(60, 63)], 1: [(1, 2), (60, 62)], 2: [(3, 4)], 3: [(5, 6)]}
    rows = []
    for i, evidence in spans.items():
        words = [fillers[(i + k) % len(fillers)] for k in range(70)]
        label = ("NEG", "POS")[i % 2]
        for start, _ in evidence:
            words[start] = "splendid" if label == "POS" else "dreadful"
        docid = f"test_{i:03d}.txt"
        (docs / docid).write_text(" ".join(words) + "\n", encoding="utf-8")
        rows.append({"annotation_id": docid, "classification": label, "docids": [docid],
                     "evidences": [[{"docid": docid, "start_token": s, "end_token": e, "start_sentence": -1,
                                     "end_sentence": -1, "text": "..."}] for s, e in evidence]})
    for split in ("train", "val", "test"):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> SimpleNamespace:
    """``checkpoints/{text,vision}/{teacher,student}`` (an RE teacher and its REKD student),
    ``checkpoints/text/cls``, ``checkpoints/results.csv``, the toy datasets they were trained on
    (one epoch each: seconds), and a folder of broken checkpoints beside them."""
    from rekd_core.config import TrainConfig
    from rekd_core.synthetic import write_image_task, write_text_task
    from rekd_core.training import train

    root = tmp_path_factory.mktemp("dashboard")
    text_data = write_text_task(root / "textdata", n_train=160, n_test=40, length=20)
    image_data = write_image_task(root / "imgdata", n_train=96, n_test=32)
    ckpt = root / "checkpoints"
    common = dict(epochs=1, batch_size=32, progress=False, tau_every=10, faithfulness=False, device="cpu")
    text = dict(task="text", backbone="bert-1x32", dataset=f"csv:{text_data}", max_length=TEXT_MAX_LENGTH, ratio=0.1,
                lambda_sel=1e-3, **common)
    vision = dict(task="vision", backbone="vit-1x32", image_size=16, patch_size=4, dataset=f"imagefolder:{image_data}",
                  lambda_sel=1e-2, **common)
    train(TrainConfig(mode="re", out=str(ckpt / "text" / "teacher"), **text))
    train(TrainConfig(mode="rekd", teacher=str(ckpt / "text" / "teacher"), out=str(ckpt / "text" / "student"), **text))
    train(TrainConfig(mode="cls", out=str(ckpt / "text" / "cls"), **text))
    train(TrainConfig(mode="re", out=str(ckpt / "vision" / "teacher"), **vision))
    train(TrainConfig(mode="rekd", teacher=str(ckpt / "vision" / "teacher"), out=str(ckpt / "vision" / "student"),
                      **vision))
    write_results(ckpt / "results.csv")

    # Broken or odd checkpoints, outside the discovered root so that the default pickers stay clean.
    broken = root / "broken"
    relabelled = broken / "relabelled"  # the student's weights and grid, other class names
    shutil.copytree(ckpt / "text" / "student", relabelled)
    config = json.loads((relabelled / "config.json").read_text())
    config["labels"] = ["negative", "positive"]
    (relabelled / "config.json").write_text(json.dumps(config))
    bad_weights = broken / "bad_weights"
    shutil.copytree(ckpt / "text" / "student", bad_weights)
    (bad_weights / "model.safetensors").write_bytes(b"this is not a safetensors file")
    bad_config = broken / "bad_config"
    bad_config.mkdir(parents=True)
    (bad_config / "config.json").write_text("{ not json")
    return SimpleNamespace(root=ckpt, results=ckpt / "results.csv", text_data=text_data, image_data=image_data,
                           text_teacher=ckpt / "text" / "teacher", text_student=ckpt / "text" / "student",
                           text_cls=ckpt / "text" / "cls", vision_teacher=ckpt / "vision" / "teacher",
                           vision_student=ckpt / "vision" / "student", relabelled=relabelled, bad_weights=bad_weights,
                           bad_config=bad_config, broken=broken, max_length=TEXT_MAX_LENGTH)


@pytest.fixture
def make_app(tiny_checkpoints, monkeypatch):
    """A function that starts the app on the tiny checkpoints (env overrides allowed) and runs it once."""
    import torch
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("REKD_CHECKPOINTS", str(tiny_checkpoints.root))
    for name in ("REKD_RESULTS", "REKD_RECIPE", "REKD_ALLOWED_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()  # the app sets torch's threads: the next tests get theirs back

    def make(**env) -> AppTest:
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        assert_clean(at)
        return at

    yield make
    torch.set_num_threads(threads)


def assert_clean(at) -> None:
    """No exception on the page, and no error that the page calls unexpected (a bug, not a user error)."""
    assert not at.exception, [e.value for e in at.exception]
    unexpected = [e.value for e in at.error if "unexpected error" in e.value]
    assert not unexpected, unexpected


# ----------------------------------------------------------------------------------------------
# Reading the page (AppTest)
# ----------------------------------------------------------------------------------------------

TEXT_BOX = "font-family:Georgia"
TEACHER_MARK = f"border-bottom:2px solid {TEACHER}"
STUDENT_MARK = f"border-bottom:2px solid {STUDENT}"
BOTH_MARK = f"border-bottom:2px solid {BOTH}"
REVIEW = "fillerab splendid fillerac fillerad unknownword! fillerae dreadful fillerba fillerbb."


def values(elements) -> list:
    return [e.value for e in elements]


def text_boxes(at: AppTest) -> list[str]:
    """The highlighted reviews, in page order: teacher, student, agreement."""
    return [h.value for h in at.html if TEXT_BOX in h.value]


def prob_blocks(at: AppTest) -> list[str]:
    return [h.value for h in at.html if "font-size:20px;font-weight:600" in h.value]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def use_text(at: AppTest, text: str) -> AppTest:
    at.radio(key="source_text").set_value("Type or paste").run()
    at.text_area(key="review_text").set_value(text).run()
    assert_clean(at)
    return at


def upload(at: AppTest, key: str, files: list[tuple[str, bytes, str]]) -> AppTest:
    at.file_uploader(key=key).set_value(files).run()
    assert_clean(at)
    return at


def selected_pieces(at: AppTest) -> list[int]:
    """'Selected k of N ...' captions of the two models, as k."""
    return [int(m.group(1)) for c in at.caption if (m := re.match(r"Selected (\d+) of (\d+)", c.value))]


def table_with(at: AppTest, column: str) -> pd.DataFrame:
    """The (last) table shown that has ``column``."""
    tables = [d.value for d in at.dataframe if column in d.value.columns]
    assert tables, f"no table with a {column!r} column"
    return tables[-1]


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def only(elements, prefix: str):
    """The one element whose key starts with ``prefix`` (keys that carry a task or a ranking number)."""
    found = [e for e in elements if str(e.key).startswith(prefix)]
    assert len(found) == 1, [e.key for e in elements]
    return found[0]


def spec_field(at: AppTest, prefix: str):
    """The dataset spec box of the live evaluation ("eval") or the browser ("browse")."""
    return only(at.text_input, f"{prefix}_spec")


def browser_table(at: AppTest):
    return only(at.dataframe, "browser_table")


def row_box(at: AppTest):
    return only(at.selectbox, "browser_row")


def helps(at: AppTest) -> str:
    """Every tooltip (help=) of the page's widgets, metrics and captions, joined."""
    found = []
    for kind in ("slider", "selectbox", "multiselect", "radio", "metric", "caption", "text_input"):
        for element in at.get(kind):
            text = getattr(element.proto, "help", "")
            if text:
                found.append(text)
    return " | ".join(found)
