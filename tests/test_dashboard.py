"""The dashboard, driven through Streamlit's AppTest on tiny trained checkpoints (tests/dashboard_fixtures.py),
and its drawing and input functions on their own.

Every flow of the issue is driven here: model selection and cards, device choice, typed, uploaded
and bundled inputs, the ratio slider, the ratios view (results file and live evaluation), the
dataset browser, the downloads, and the bad inputs that must each give one clear message while
the rest of the page keeps working. The checks read what is rendered (HTML, metrics, captions,
chart specs, tables), not only that no exception was raised.
"""
from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dashboard import analysis as A
from dashboard import checkpoints as C
from dashboard import environment as E
from dashboard import inputs as I
from dashboard import results_file as F
from dashboard.render import cards as K
from dashboard.render import export as X
from dashboard.render import glossary as G
from dashboard.render import images as IMG
from dashboard.render import plots as PL
from dashboard.render import style as S
from dashboard.render import text as T
from rekd_core.errors import DataError
from rekd_core.inputs import decode_text
from rekd_core.metric_info import METRICS
from rekd_core.words import evidence_words, word_plausibility

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.core_fixtures import fake_explanation, image_bytes, png_claiming
from tests.dashboard_fixtures import (
    BOTH_MARK,
    REVIEW,
    STUDENT_MARK,
    TEACHER_MARK,
    assert_clean,
    browser_table,
    helps,
    metrics,
    only,
    plotly_specs,
    prob_blocks,
    row_box,
    selected_pieces,
    spec_field,
    table_with,
    text_boxes,
    upload,
    use_text,
    values,
)

pytest_plugins = ["tests.dashboard_fixtures"]

# ----------------------------------------------------------------------------------------------
# Models: discovery, cards, device, typed paths, broken and mismatched checkpoints
# ----------------------------------------------------------------------------------------------


def test_default_pair_cards_and_first_comparison(make_app, tiny_checkpoints):
    at = make_app()
    assert at.sidebar.radio(key="task").value == "text"
    assert at.sidebar.selectbox(key="teacher_text").value == str(tiny_checkpoints.text_teacher)
    assert at.sidebar.selectbox(key="student_text").value == str(tiny_checkpoints.text_student)
    cards = [h.value for h in at.html if "feature grid" in h.value]
    assert len(cards) == 2
    teacher_card, student_card = cards
    for card in cards:
        assert "bert-1x32" in card and "test accuracy" in card and "parameters" in card
        assert f"{tiny_checkpoints.max_length} word pieces" in card
    assert "Teacher: text/teacher" in teacher_card and ">RE<" in teacher_card
    assert "Student: text/student" in student_card and ">REKD<" in student_card
    assert "distilled from" in student_card and "rationale ratio" in student_card
    assert "text/teacher (found here)" in student_card  # the recorded teacher, by its name under the root
    # A fresh page already compares the two models on a bundled review.
    assert at.radio(key="source_text").value == "Bundled example"
    assert len(prob_blocks(at)) == 2 and len(text_boxes(at)) == 3
    assert set(metrics(at)) == {"Predictions", "Mask IoU", "Mask F1", "Both / teacher only / student only"}
    assert [t.label for t in at.tabs] == ["Compare", "Summary", "Ratios", "Dataset browser"]
    assert any("In use: **cpu" in c.value for c in at.sidebar.caption)


def test_device_choice_falls_back_to_cpu_with_a_message(make_app):
    at = make_app()
    at.sidebar.selectbox(key="device").set_value("cuda").run()
    assert_clean(at)
    import torch

    if torch.cuda.is_available():
        assert any("In use: **cuda" in c.value for c in at.sidebar.caption)
    else:
        assert any("not available here; running on the CPU instead" in w.value for w in at.sidebar.warning)
        assert any("In use: **cpu" in c.value for c in at.sidebar.caption)
        assert len(text_boxes(at)) == 3  # the comparison still runs


def test_switching_student_to_a_cls_model(make_app, tiny_checkpoints):
    at = make_app()
    at.sidebar.selectbox(key="student_text").set_value(str(tiny_checkpoints.text_cls)).run()
    assert_clean(at)
    student_card = [h.value for h in at.html if "feature grid" in h.value][1]
    assert ">CLS<" in student_card and "reads everything" in student_card
    assert any("CLS model: it reads every word piece" in c.value for c in at.caption)
    student_box = text_boxes(at)[1]
    assert STUDENT_MARK not in student_box  # nothing highlighted: a CLS model has no rationale
    assert any("The student is a CLS model" in w.value for w in at.warning)
    assert set(metrics(at)) == {"Predictions"}  # predictions are compared, rationales are not
    assert len(text_boxes(at)) == 2 and any("rationale agreement view needs" in i.value for i in at.info)
    # The browser and the live evaluation still work, on predictions only.
    at.button(key="browse_run").click().run()
    assert_clean(at)
    assert browser_table(at).value["teacher_mask_iou"].isna().all()
    at.number_input(key="eval_n").set_value(10)
    at.multiselect(key="eval_ratios").set_value([0.2])
    at.button(key="eval_run").click().run()
    assert_clean(at)
    student = table_with(at, "achieved_ratio").iloc[1]
    assert student["mode"] == "CLS" and student["achieved_ratio"] == 1.0
    # This CLS model trained its own vocabulary: a different grid, so no scoring against the teacher.
    assert any("different feature grids (vocab_sha256" in w.value for w in at.warning)


def test_no_checkpoints_found_then_typed_paths(make_app, tiny_checkpoints, tmp_path):
    at = make_app(REKD_CHECKPOINTS=tmp_path / "empty")
    assert any("No text checkpoints found" in i.value for i in at.sidebar.info)
    assert all(s.key != "teacher_text" for s in at.sidebar.selectbox)  # nothing to pick from: a path box instead
    assert any("No teacher picked" in i.value for i in at.info)
    assert [t.label for t in at.tabs] == ["Compare", "Summary", "Ratios", "Dataset browser"]  # the page still works
    at.sidebar.text_input(key="teacher_text_path").set_value(str(tiny_checkpoints.text_teacher)).run()
    at.sidebar.text_input(key="student_text_path").set_value(str(tiny_checkpoints.text_student)).run()
    assert_clean(at)
    assert len(text_boxes(at)) == 3 and "Mask IoU" in metrics(at)


def test_broken_and_missing_checkpoints_give_clear_messages(make_app, tiny_checkpoints):
    at = make_app(REKD_CHECKPOINTS=tiny_checkpoints.broken)
    # bad_config is discovered but skipped, with its reason; the two others are listed.
    skipped = [c.value for c in at.sidebar.caption if "not a rekd checkpoint" in c.value or "corrupt JSON" in c.value]
    assert skipped and "bad_config" in skipped[0]
    at.sidebar.selectbox(key="teacher_text").set_value("__type_a_path__").run()
    at.sidebar.text_input(key="teacher_text_path").set_value("/nonexistent/checkpoint").run()
    assert_clean(at)
    assert any("no checkpoint directory there" in e.value for e in at.error)
    at.sidebar.text_input(key="teacher_text_path").set_value(str(tiny_checkpoints.bad_weights)).run()
    assert_clean(at)
    assert any("corrupt weights file" in e.value for e in at.error)
    assert any("needs a working teacher and student" in i.value for i in at.info)
    # The rest of the page keeps working: the ratios view reads its file.
    at.text_input(key="results_path").set_value(str(tiny_checkpoints.results)).run()
    assert_clean(at)
    assert len(at.get("plotly_chart")) >= 2


def test_teacher_and_student_of_different_tasks(make_app, tiny_checkpoints):
    at = make_app()
    at.sidebar.selectbox(key="student_text").set_value("__type_a_path__").run()
    at.sidebar.text_input(key="student_text_path").set_value(str(tiny_checkpoints.vision_student)).run()
    assert_clean(at)
    assert any("The student is a vision model" in e.value for e in at.error)
    assert not text_boxes(at) and not metrics(at)
    assert any("needs a working teacher and student" in i.value for i in at.info)


def test_teacher_and_student_with_different_label_sets(make_app, tiny_checkpoints):
    at = make_app()
    at.sidebar.selectbox(key="student_text").set_value("__type_a_path__").run()
    at.sidebar.text_input(key="student_text_path").set_value(str(tiny_checkpoints.relabelled)).run()
    assert_clean(at)
    assert any("labels (neg, pos) differ from the student's (negative, positive)" in w.value for w in at.warning)
    assert len(prob_blocks(at)) == 2  # each model's own prediction is still shown
    assert not metrics(at)
    assert any("rationale agreement view needs" in i.value for i in at.info)


def test_models_load_once_not_on_every_rerun(make_app, monkeypatch):
    import streamlit as st

    calls = []
    original = C.load_model
    monkeypatch.setattr(C, "load_model", lambda path, device="cpu": calls.append(path) or original(path, device))
    st.cache_resource.clear()
    at = make_app()
    for ratio in (0.2, 0.3, 0.4):
        at.sidebar.slider(key="ratio").set_value(ratio).run()
        assert_clean(at)
    assert len(calls) == 2  # teacher and student, once each


# ----------------------------------------------------------------------------------------------
# Inputs: typing, uploads, examples, slider
# ----------------------------------------------------------------------------------------------


def test_typed_review_is_highlighted_word_by_word(make_app):
    at = use_text(make_app(), REVIEW)
    teacher_box, student_box, agreement_box = text_boxes(at)
    # Every word of the review is shown whole: "unknownword" is many word pieces but one word.
    for box in (teacher_box, student_box, agreement_box):
        assert re.search(r">unknownword<", box), "word pieces were not merged back into the word"
        assert "fillerab" in box and "dreadful" in box
    assert TEACHER_MARK in teacher_box and STUDENT_MARK in student_box
    assert any(mark in agreement_box for mark in (TEACHER_MARK, STUDENT_MARK, BOTH_MARK))
    assert "title=\"u ##n" in teacher_box or "##" in teacher_box  # the pieces are in the tooltip
    assert metrics(at)["Predictions"] in ("agree", "disagree")
    assert float(metrics(at)["Mask IoU"]) >= 0.0
    assert any("Both explanations took" in c.value for c in at.caption)


def test_ratio_slider_reselects_features(make_app):
    at = use_text(make_app(), REVIEW)
    at.sidebar.slider(key="ratio").set_value(0.1).run()
    low = selected_pieces(at)
    low_marks = text_boxes(at)[0].count(TEACHER_MARK)
    at.sidebar.slider(key="ratio").set_value(0.8).run()
    assert_clean(at)
    high = selected_pieces(at)
    assert len(low) == 2 and len(high) == 2
    assert all(hi > lo for hi, lo in zip(high, low))
    assert text_boxes(at)[0].count(TEACHER_MARK) > low_marks
    iou_high = float(metrics(at)["Mask IoU"])
    assert iou_high > 0.5  # at 0.8 both models select most of a short review


def trained_ratio(path: Path) -> float:
    return float(json.loads((Path(path) / "config.json").read_text())["ratio"])


def range_warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if w.value.startswith("Out of range")]


def test_slider_marks_trained_ratios_and_warns_out_of_range(make_app, tiny_checkpoints):
    at = use_text(make_app(), REVIEW)
    trained = trained_ratio(tiny_checkpoints.text_teacher)
    assert at.sidebar.slider(key="ratio").value == pytest.approx(trained)
    ruler = next(h.value for h in at.html if "ratio in use" in h.value)
    assert f"teacher trained at {trained:g}" in ruler and f"student trained at {trained:g}" in ruler
    assert not range_warnings(at)
    away = round(trained + 0.4, 2)
    at.sidebar.slider(key="ratio").set_value(away).run()
    assert_clean(at)
    warnings = range_warnings(at)
    assert len(warnings) == 2 and f"the teacher was trained at {trained:g}, not at {away:g}" in warnings[0]
    assert "student" in warnings[1] and "more features" in warnings[1]
    assert len(prob_blocks(at)) == 2 and all("p = " in block for block in prob_blocks(at))  # still shown, warned
    assert f"ratio in use: {away:g}" in next(h.value for h in at.html if "ratio in use" in h.value)


def test_a_redrawn_slider_shows_the_trained_ratio(make_app, tiny_checkpoints):
    """A click during the page's first run interrupts it, and the browser redraws the slider at its own
    default without sending a value back: that default must be the trained ratio (it was 0.01, which the
    page then showed and used)."""
    at = make_app()
    trained = trained_ratio(tiny_checkpoints.text_teacher)
    at.run()
    slider = at.sidebar.slider(key="ratio")
    assert slider.value == pytest.approx(trained) and list(slider.proto.default) == [pytest.approx(trained)]
    slider.set_value(0.5).run()
    at.run()
    assert at.sidebar.slider(key="ratio").value == pytest.approx(0.5)  # the default does not undo a choice
    at.sidebar.radio(key="task").set_value("vision").run()  # another pair: its own trained ratio
    assert at.sidebar.slider(key="ratio").value == pytest.approx(trained_ratio(tiny_checkpoints.vision_student))


def test_a_trained_ratio_range_in_the_config_is_honoured(make_app, tiny_checkpoints, tmp_path):
    """A model whose config carries ``ratio_range`` is in range anywhere inside it."""
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints.text_teacher, root / "text" / "teacher")
    shutil.copytree(tiny_checkpoints.text_student, root / "text" / "student")
    config_path = root / "text" / "student" / "config.json"
    config = json.loads(config_path.read_text())
    config["ratio_range"] = [0.05, 0.5]
    config_path.write_text(json.dumps(config))
    at = use_text(make_app(REKD_CHECKPOINTS=root), REVIEW)
    ruler = next(h.value for h in at.html if "ratio in use" in h.value)
    assert "student trained over 0.05 to 0.5" in ruler
    card = [h.value for h in at.html if "feature grid" in h.value][1]
    assert "trained over 0.05 to 0.5" in card
    at.sidebar.slider(key="ratio").set_value(0.3).run()
    warnings = range_warnings(at)
    assert len(warnings) == 1 and "the teacher" in warnings[0]  # the student was trained up to 0.5
    at.sidebar.slider(key="ratio").set_value(0.7).run()
    assert len(range_warnings(at)) == 2 and "trained over 0.05 to 0.5, not at 0.7" in range_warnings(at)[1]


def test_trained_range_and_out_of_range_rules():
    assert C.trained_range({"mode": "re", "ratio": 0.1}) == (0.1, 0.1)
    assert C.trained_range({"mode": "rekd", "ratio": 0.1, "ratio_range": [0.05, 0.3]}) == (0.05, 0.3)
    assert C.trained_range({"mode": "re", "ratio": 0.1, "ratio_range": [0.3, 0.05]}) == (0.1, 0.1)  # not a range
    assert C.trained_range({"mode": "re", "ratio": 0.1, "ratio_range": "wide"}) == (0.1, 0.1)
    assert C.trained_range({"mode": "cls", "ratio": 1.0}) is None
    assert not C.outside_trained_range(0.12, (0.125, 0.125))  # the slider cannot land on 0.125
    assert not C.outside_trained_range(0.13, (0.125, 0.125))
    assert C.outside_trained_range(0.14, (0.125, 0.125)) and C.outside_trained_range(0.01, (0.05, 0.3))
    assert not C.outside_trained_range(0.9, None)  # a CLS model reads everything at any ratio
    assert C.range_warning("student", 0.2, (0.05, 0.3)) is None
    assert "fewer features" in C.range_warning("student", 0.02, (0.05, 0.3))


def test_an_empty_selection_gives_no_prediction_and_no_iou(make_app):
    at = use_text(make_app(), REVIEW)
    at.sidebar.slider(key="ratio").set_value(0.01).run()
    assert_clean(at)
    assert selected_pieces(at) == [0, 0]  # a short review: round(0.01 x pieces) = 0
    for block in prob_blocks(at):
        assert "No prediction" in block and "saw nothing" in block
        assert "p = " not in block and "true label" not in block  # no probability shown as a verdict
    shown = metrics(at)
    assert shown["Mask IoU"] == shown["Mask F1"] == shown["Predictions"] == S.UNDEFINED
    iou = next(m for m in at.metric if m.label == "Mask IoU")
    assert "Undefined" in iou.proto.help and "neither model picked a feature" in iou.proto.help
    assert len(range_warnings(at)) == 2


def test_iou_of_two_empty_selections_is_undefined(tiny_checkpoints):
    teacher = C.load_model(tiny_checkpoints.text_teacher)
    student = C.load_model(tiny_checkpoints.text_student)
    item = I.prepare_review(REVIEW)
    result = A.explain_pair(teacher, student, item, 0.01)
    assert result.teacher.selected == [] == result.student.selected
    assert result.comparison["iou"] is None and result.comparison["f1"] is None
    assert "mask IoU —, F1 — (undefined: neither model picked a feature)" in X.agreement_summary(result.comparison)
    # At 0.05 a two-word review has round(0.05 x 4 pieces) = 0 to select, a long one (40 pieces) 2.
    frame = A.rank_by_disagreement(teacher, student,
                                   [I.prepare_review("fillerab splendid"), I.prepare_review(REVIEW * 3)], 0.05)
    blind = frame[frame["#"] == 1].iloc[0]
    assert np.isnan(blind["teacher_mask_iou"]) and blind["teacher"] == S.UNDEFINED and blind["agree"] is None
    seen = frame[frame["#"] == 2].iloc[0]
    assert seen["teacher"] in teacher.labels and not np.isnan(seen["teacher_mask_iou"])
    view = X.ComparisonView(item.name, "text", "t", "s", result.teacher, result.student, result.comparison,
                            A.per_model(0.01), text=item.value)
    page = X.comparison_html(view)
    assert "No prediction" in page and "p = " not in page
    assert Image.open(io.BytesIO(X.comparison_png(view))).width == 1400


def test_enormous_review_is_truncated_with_notices(make_app, tiny_checkpoints):
    text = "fillerab splendid " * 20_000  # 360,000 characters
    at = use_text(make_app(), text)
    assert any("only its first 50,000 characters" in w.value for w in at.warning)
    assert any(f"longer than the models read ({tiny_checkpoints.max_length} word pieces)" in i.value for i in at.info)
    teacher_box = text_boxes(at)[0]
    assert "the model stops reading here" in teacher_box and "more characters" in teacher_box
    assert len(teacher_box) < 20_000  # the unread tail is cut for display


def test_empty_typed_review(make_app):
    at = use_text(make_app(), "   \n  ")
    assert any("empty" in e.value for e in at.error)
    assert not text_boxes(at)


def test_uploaded_txt_and_csv_reviews(make_app):
    at = make_app()
    at.radio(key="source_text").set_value("Upload .txt / .csv files").run()
    csv_text = "text,label\n\"fillerab splendid fillerac, one\",pos\n\"filleraa dreadful fillerbb two\",neg\n,neg\n"
    upload(at, "upload_text", [("one.txt", REVIEW.encode("utf-8"), "text/plain"),
                               ("many.csv", csv_text.encode("utf-8"), "text/csv")])
    pick = at.selectbox(key="pick_text")
    assert pick.label == "Show input (3 read)"
    assert any("1 empty row(s) skipped" in w.value for w in at.warning)
    assert ">unknownword<" in text_boxes(at)[0]
    pick.set_value(2).run()
    assert_clean(at)
    assert "dreadful" in text_boxes(at)[0]
    assert "true label: neg" in prob_blocks(at)[0]


def test_bad_text_uploads_each_get_a_message(make_app):
    at = make_app()
    at.radio(key="source_text").set_value("Upload .txt / .csv files").run()
    png = image_bytes(Image.new("RGB", (8, 8), (200, 10, 10)), "PNG")
    upload(at, "upload_text", [
        ("empty.txt", b"", "text/plain"),
        ("binary.txt", b"\x00\x01\x02 abc", "text/plain"),
        ("photo.txt", png, "text/plain"),
        ("nocolumn.csv", b"a,b\n1,2\n", "text/csv"),
        ("good.txt", REVIEW.encode("utf-8"), "text/plain"),
    ])
    errors = values(at.error)
    assert len(errors) == 4, errors  # one line per bad file
    joined = " | ".join(errors)
    assert "empty.txt: the file is empty" in joined
    assert "binary.txt: not a text file" in joined and "photo.txt: not a text file" in joined
    assert "UTF-8" not in joined  # no advice to re-save a binary file as UTF-8
    assert "nocolumn.csv: no review column" in joined
    assert len(text_boxes(at)) == 3  # the good file is still compared


def test_uploads_in_other_encodings_are_decoded_and_named(make_app):
    at = make_app()
    at.radio(key="source_text").set_value("Upload .txt / .csv files").run()
    review = "Tr\xe8s \xe9mouvant, fillerab splendid, g\xe9nial."
    upload(at, "upload_text", [("latin1.txt", review.encode("latin-1"), "text/plain"),
                               ("utf16.csv", f'text,label\n"{review}",pos\n'.encode("utf-16"), "text/csv")])
    assert not at.error, values(at.error)
    notices = [w.value for w in at.warning if "decoded as" in w.value]
    assert len(notices) == 2, values(at.warning)
    latin = next(n for n in notices if n.startswith("latin1.txt"))
    utf16 = next(n for n in notices if n.startswith("utf16.csv"))
    encoding = re.search(r"decoded as (\S+)", latin).group(1)
    assert review.encode("latin-1").decode(encoding) == review  # the named encoding is the one that decodes it
    assert "utf_16" in utf16
    for index in range(2):
        at.selectbox(key="pick_text").set_value(index).run()
        assert "Très" in text_boxes(at)[0] and "émouvant" in text_boxes(at)[0] and "génial" in text_boxes(at)[0]


def test_bundled_examples(make_app):
    at = make_app()
    example = at.selectbox(key="example_text")
    assert len(example.options) == 3
    example.set_value(2).run()  # the long review: more than 40 word pieces
    assert_clean(at)
    assert "the model stops reading here" in text_boxes(at)[0]
    assert "true label: neg" in prob_blocks(at)[0]
    at.sidebar.radio(key="task").set_value("vision").run()
    assert_clean(at)
    assert len(at.selectbox(key="example_vision").options) == 4
    captions = [c for img in at.get("image") for c in img.captions]
    assert any("teacher's patches" in c for c in captions) and any("agreement" in c for c in captions)


def test_uploaded_images_of_many_formats_and_modes(make_app):
    at = make_app()
    at.sidebar.radio(key="task").set_value("vision").run()
    at.radio(key="source_vision").set_value("Upload images").run()
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    files = [
        ("rgba.png", image_bytes(rgb.convert("RGBA"), "PNG"), "image/png"),
        ("grey16.png", image_bytes(Image.fromarray((rng.integers(0, 65535, (20, 20))).astype(np.uint16)), "PNG"),
         "image/png"),
        ("palette.bmp", image_bytes(rgb.convert("P"), "BMP"), "image/bmp"),
        ("cmyk.jpg", image_bytes(rgb.convert("CMYK"), "JPEG"), "image/jpeg"),
        ("photo.webp", image_bytes(rgb, "WEBP"), "image/webp"),
        ("big.jpg", image_bytes(Image.new("RGB", (3000, 2500), (200, 30, 30)), "JPEG"), "image/jpeg"),
    ]
    upload(at, "upload_vision", files)
    assert not at.error, values(at.error)
    pick = at.selectbox(key="pick_vision")
    assert pick.label == "Show input (6 read)"
    for index in range(6):
        pick.set_value(index).run()
        assert_clean(at)
        captions = [c for img in at.get("image") for c in img.captions]
        assert any("teacher's patches" in c for c in captions), files[index][0]
        assert "Mask IoU" in metrics(at)
    assert any("original (2048x1707)" in c for img in at.get("image") for c in img.captions)  # shrunk for display


def test_bad_image_uploads_each_get_a_message(make_app):
    at = make_app()
    at.sidebar.radio(key="task").set_value("vision").run()
    at.radio(key="source_vision").set_value("Upload images").run()
    good = image_bytes(Image.new("RGB", (32, 32), (10, 200, 10)), "PNG")
    noisy = image_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)), "PNG")
    upload(at, "upload_vision", [
        ("corrupt.png", noisy[: len(noisy) // 2], "image/png"),
        ("notes.png", b"these are my notes, not an image", "image/png"),
        ("empty.jpg", b"", "image/jpeg"),
        ("huge.png", png_claiming(9000, 9000), "image/png"),
        ("bomb.png", png_claiming(30000, 30000), "image/png"),
        ("good.png", good, "image/png"),
    ])
    errors = " | ".join(values(at.error))
    assert "corrupt.png: a corrupt or truncated image" in errors
    assert "notes.png: not an image file" in errors
    assert "empty.jpg: the file is empty" in errors
    assert "huge.png: the image is 9,000x9,000 pixels (81 megapixels)" in errors
    assert "bomb.png:" in errors
    assert len(at.error) == 5
    captions = [c for img in at.get("image") for c in img.captions]
    assert any("teacher's patches" in c for c in captions)  # good.png is still compared


def fit_captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if " -> " in c.value]


def test_images_say_how_they_are_fitted_and_small_ones_warn(make_app, tiny_checkpoints):
    at = make_app()
    at.sidebar.radio(key="task").set_value("vision").run()
    at.radio(key="source_vision").set_value("Upload images").run()
    size = json.loads((tiny_checkpoints.vision_teacher / "config.json").read_text())["processor"]["image_size"]
    photo = image_bytes(Image.new("RGB", (2000, 1500), (30, 120, 200)), "JPEG")
    upload(at, "upload_vision", [("photo.jpg", photo, "image/jpeg"),
                                 ("dot.png", image_bytes(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG"), "image/png")])
    assert at.radio(key="image_fit").value == "squash"  # the default: what the models' own transform does
    assert fit_captions(at) == [f"2000x1500 -> {size}x{size}: squashed (its 2000:1500 shape is distorted to 1:1)."]
    assert not [w for w in at.warning if "smaller than" in w.value]
    at.radio(key="image_fit").set_value("centre-crop").run()
    assert fit_captions(at) == [f"2000x1500 -> {size}x{size}: centre-cropped to 1500x1500 (25% of its width cut), "
                                "then resized."]
    at.radio(key="image_fit").set_value("pad").run()
    assert_clean(at)
    assert "padded to 2000x2000 with black borders" in fit_captions(at)[0]
    assert any("teacher's patches" in c for img in at.get("image") for c in img.captions)
    at.selectbox(key="pick_vision").set_value(1).run()  # the 1x1 PNG
    assert_clean(at)
    warning = next(w.value for w in at.warning if "smaller than" in w.value)
    assert f"dot.png is only 1x1 pixels, smaller than the {size}x{size} images the model reads" in warning


@pytest.mark.parametrize("mode", ["squash", "centre-crop", "pad"])
def test_cells_map_back_onto_the_original_image(mode):
    """Each cell of the model's square, mapped back onto a 200x100 original, covers the pixels fit_image put in it."""
    ys, xs = np.mgrid[0:100, 0:200]
    original = Image.fromarray(np.stack([xs * 255 / 199, ys * 255 / 99, np.full_like(xs, 128)], -1).astype(np.uint8))
    fitted = np.asarray(I.fit_image(original, 64, mode), dtype=float)
    boxes = I.cell_boxes(200, 100, 4, mode)
    source = np.asarray(original, dtype=float)
    empty = 0
    for index, (left, top, right, bottom) in enumerate(boxes):
        if right <= left or bottom <= top:
            empty += 1
            continue
        row, col = divmod(index, 4)
        assert 0 <= left < right <= 200 and 0 <= top < bottom <= 100
        if mode != "pad":  # a padded cell also holds black border, so only its clipped part is the image's
            centre = source[int((top + bottom) / 2), int((left + right) / 2)]
            np.testing.assert_allclose(fitted[row * 16 + 8, col * 16 + 8], centre, atol=10)
    # a wide image padded to a square: the top and bottom rows of cells hold only the black border
    assert empty == (8 if mode == "pad" else 0)
    assert boxes[4] == ((0.0, 0.0, 50.0, 50.0) if mode == "pad" else boxes[4])


def test_selected_cells_are_drawn_on_the_original():
    original = Image.new("RGB", (200, 100), (200, 200, 200))
    overlay = np.asarray(IMG.original_overlay(original, I.cell_boxes(200, 100, 4, "squash"), [0], S.TEACHER))
    assert overlay.shape == (100, 200, 3)  # display_image keeps it (under 256 px, less than twice enlarged)
    assert overlay[12, 25].tolist() == [200, 200, 200]  # inside cell 0 (50 x 25 px)
    assert overlay[90, 180].max() < 100  # cell 15: dimmed
    assert tuple(overlay[0, 25]) == S.rgb(S.TEACHER)  # outline of cell 0


def test_fitting_happens_before_the_model_and_is_what_the_overlay_shows(tiny_checkpoints):
    from rekd_core.explain import explain

    teacher, student = C.load_model(tiny_checkpoints.vision_teacher), C.load_model(tiny_checkpoints.vision_student)
    size = teacher.processor.image_size
    pixels = np.full((20, 40, 3), (20, 200, 20), dtype=np.uint8)
    pixels[:, :8] = (250, 0, 0)  # a red band on the left fifth of a wide image
    item = I.InputItem("wide", "image", Image.fromarray(pixels))
    views = {}
    for fit in I.FIT_MODES:
        result = A.explain_pair(teacher, student, item, 0.25, fit=fit)
        view = np.asarray(result.views["teacher"])
        assert view.shape == (size, size, 3)
        # The model read exactly the view the overlays are drawn on.
        assert explain(teacher, [result.views["teacher"]], ratio=0.25)[0].probs == pytest.approx(result.teacher.probs)
        views[fit] = view
    assert views["squash"][:, 0, 0].min() > 200  # the red band is kept, stretched over the whole height
    assert views["centre-crop"][:, :, 0].max() < 100  # the middle square has no red
    assert views["pad"][0].max() == 0 and views["pad"][-1].max() == 0  # black borders above and below
    assert views["pad"][size // 2, 0, 0] > 200
    # Squashing gives the model what its own transform gives it: the dashboard's default changes nothing.
    plain = explain(teacher, [item.value], ratio=0.25)[0]
    assert plain.probs == pytest.approx(A.explain_pair(teacher, student, item, 0.25).teacher.probs, abs=1e-5)
    with pytest.raises(Exception, match="unknown image fit"):
        I.fit_image(item.value, size, "stretch")


# ----------------------------------------------------------------------------------------------
# Ratios view
# ----------------------------------------------------------------------------------------------


def test_ratios_view_plots_the_results_file(make_app, tiny_checkpoints):
    at = make_app()
    assert at.text_input(key="results_path").value == str(tiny_checkpoints.results)
    assert at.selectbox(key="results_task_text").value == "text"
    specs = plotly_specs(at)
    titles = [s["layout"]["title"]["text"] for s in specs]
    assert titles == ["accuracy across rationale ratios", "achieved sparsity: selected / real features",
                      "students: prediction agreement with the teacher",
                      "students: rationale (mask) IoU with the teacher"]
    names = {trace["name"] for trace in specs[0]["data"]}
    assert names == {"teacher · CLS · bert-4x256", "teacher · RE · bert-4x256", "student · RE · bert-1x64",
                     "student · REKD · bert-1x64"}
    rekd = next(t for t in specs[0]["data"] if t["name"] == "student · REKD · bert-1x64")
    assert rekd["x"] == [0.05, 0.1, 0.2, 0.5]
    assert rekd["y"][1] == pytest.approx(0.75 + 0.02 + 0.006)  # mean over 3 seeds
    cls = next(t for t in specs[0]["data"] if "CLS" in t["name"])
    assert cls["line"]["dash"] == "dash"
    summary = table_with(at, "accuracy_mean")
    assert {"accuracy_mean", "accuracy_std", "achieved_ratio_mean", "runs"} <= set(summary.columns)
    assert set(summary["runs"]) == {3}
    # Recipe variants are off until picked; a picked one is its own starred series, and the role filter
    # (which lists the plain roles) still applies to it.
    assert at.multiselect(key="results_roles").options == ["student", "teacher"]
    at.multiselect(key="results_variants_text").set_value(["example-cost"]).run()
    variant = next(t for t in plotly_specs(at)[0]["data"] if t["name"] == "student (example-cost) · REKD · bert-1x64")
    assert variant["x"] == [0.1] and variant["y"] == [pytest.approx(0.9)] and variant["marker"]["symbol"] == "star"
    at.multiselect(key="results_roles").set_value(["teacher"]).run()
    assert all(t["name"].startswith("teacher") for t in plotly_specs(at)[0]["data"])
    at.multiselect(key="results_roles").set_value(["student", "teacher"]).run()
    # Filters: drop CLS, switch to the vision rows.
    at.multiselect(key="results_modes").set_value(["re", "rekd"]).run()
    assert all("CLS" not in t["name"] for t in plotly_specs(at)[0]["data"])
    at.selectbox(key="results_task_text").set_value("vision").run()
    assert_clean(at)
    assert any("vit-2x64" in t["name"] for t in plotly_specs(at)[0]["data"])
    at.sidebar.radio(key="task").set_value("vision").run()  # the vision rows are the vision task's default
    assert at.selectbox(key="results_task_vision").value == "vision"
    at.multiselect(key="results_modes").set_value(["cls"]).run()  # only CLS runs: nothing sparse to plot
    assert_clean(at)
    specs = plotly_specs(at)
    assert len(specs) == 1 and specs[0]["layout"]["yaxis"]["range"] == pytest.approx([0.86, 0.96])
    assert any("No RE or REKD run among these" in c.value for c in at.caption)


def test_cls_reference_lines_of_teacher_and_student_look_different():
    rows = [dict(task="text", role=role, mode="cls", backbone=backbone, ratio=1.0, accuracy_mean=acc, accuracy_std=0.0,
                 runs=3) for role, backbone, acc in (("teacher", "bert-4x256", 0.9), ("student", "bert-1x64", 0.8))]
    rows.append(dict(task="text", role="student", mode="rekd", backbone="bert-1x64", ratio=0.1, accuracy_mean=0.7,
                     accuracy_std=0.01, runs=3))
    lines = {t.name: t for t in PL.results_figure(pd.DataFrame(rows)).data}
    teacher, student = lines["teacher · CLS · bert-4x256"], lines["student · CLS · bert-1x64"]
    assert teacher.showlegend and student.showlegend
    assert teacher.line.color != student.line.color and teacher.line.dash != student.line.dash
    assert S.MODE_COLOURS["rekd"] not in (teacher.line.color, student.line.color)


def table_headers(table) -> dict[str, dict]:
    """Column -> the header config a table sends to the browser (label, help)."""
    return {name: config for name, config in json.loads(table.proto.columns).items()}


def test_wide_tables_have_short_headers_with_help(make_app):
    at = make_app()
    summary = table_headers(next(d for d in at.dataframe if "accuracy_mean" in d.value.columns))
    assert (summary["teacher_mask_iou_mean"]["label"] == "IoU w/ T"
            and METRICS["teacher_mask_iou"].meaning in summary["teacher_mask_iou_mean"]["help"])
    assert (summary["achieved_ratio_std"]["label"] == "achieved ±"
            and "standard deviation" in summary["achieved_ratio_std"]["help"])
    summary.pop("_index", None)  # the hidden index
    longest = max(len(config["label"]) for config in summary.values())
    assert longest <= 12 < max(len(name) for name in summary)  # the raw names are longer than any header shown
    at.button(key="browse_run").click().run()
    browser = table_headers(browser_table(at))
    assert browser["teacher_mask_iou"]["label"] == "IoU w/ T" and "overlap" in browser["teacher_mask_iou"]["help"]


def test_jargon_is_explained_where_it_appears(make_app):
    at = make_app()
    assert [e.label for e in at.expander if e.label == "How to read this"]
    guide = " ".join(m.value for m in at.markdown)
    for word in ("**Rationale**", "**CLS**", "**RE**", "**REKD**", "**Word pieces**", "**Ratio**", "**Achieved ratio**",
                 "**Mask IoU**", "**Prediction agreement**"):
        assert word in guide, word
    tips = helps(at)
    for meaning in (G.GLOSSARY["ratio"], G.GLOSSARY["mask IoU"], G.GLOSSARY["mask F1"], G.GLOSSARY["agreement"],
                    G.GLOSSARY["REKD"], G.GLOSSARY["word pieces"], G.GLOSSARY["achieved ratio"]):
        assert meaning in tips, meaning
    card = next(h.value for h in at.html if "feature grid" in h.value)
    assert G.GLOSSARY["RE"].split(":")[0] in card  # the mode row of a model card says what RE is


def test_ratios_view_picks_the_variant_of_the_loaded_models(make_app, tiny_checkpoints, tmp_path):
    """A student shipped as a recipe variant (under GROUP/variants/) is compared by default with the
    teacher it was distilled from, and the ratios view shows its variant's series without a pick, also
    when the page opened on another task."""
    root = tmp_path / "checkpoints"
    for name, source in (("text/teacher", tiny_checkpoints.text_teacher),
                         ("text/student", tiny_checkpoints.text_student),
                         ("vision/teacher", tiny_checkpoints.vision_teacher),
                         ("vision/variants/student-rekd-example-cost-s2026", tiny_checkpoints.vision_student)):
        shutil.copytree(source, root / name)
    results = tmp_path / "results.csv"
    results.write_text(tiny_checkpoints.results.read_text()
                       + "vision/variants/student-rekd-example-cost-s1,vision,student,"
                       "rekd,vit-2x64,0.1,1,0.9,0.9,0.1,0.9,0.7,5\n")
    at = make_app(REKD_CHECKPOINTS=root, REKD_RESULTS=results)
    assert at.multiselect(key="results_variants_text").value == []  # the text models are no variant's
    at.sidebar.radio(key="task").set_value("vision").run()
    assert (at.sidebar.selectbox(key="student_vision").value
            == str(root / "vision" / "variants" / "student-rekd-example-cost-s2026"))
    assert at.multiselect(key="results_variants_vision").value == ["example-cost"]
    assert any(t["name"] == "student (example-cost) · REKD · vit-2x64" for t in plotly_specs(at)[0]["data"])


def test_ratios_view_shows_the_loaded_pair_trained_over_ratios(make_app, tiny_checkpoints, tmp_path):
    """Models trained over a range of ratios are a series of their own; when they are the loaded pair (the
    shipped IMDB headline), that series is picked without a click, so the plot is not empty."""
    from rekd_core.results import append_result

    root, results = tmp_path / "checkpoints", tmp_path / "results.csv"
    for name, source in (("text/teacher", tiny_checkpoints.text_teacher),
                         ("text/student", tiny_checkpoints.text_student)):
        shutil.copytree(source, root / name)
    for run, role, mode, accuracy in (("text/teacher", "teacher", "re", 0.8), ("text/student", "student", "rekd", 0.7)):
        append_result(results, {"run": run, "task": "text", "role": role, "mode": mode, "ratio": 0.1, "seed": 1,
                                "accuracy": accuracy, "ratio_range": "0.05-0.5"})
    at = make_app(REKD_CHECKPOINTS=root, REKD_RESULTS=results)
    assert_clean(at)
    assert at.multiselect(key="results_variants_text").value == ["ratio range 0.05-0.5"]
    assert sorted(t["y"][0] for t in plotly_specs(at)[0]["data"]) == [pytest.approx(0.7), pytest.approx(0.8)]


def write_headline_recipe(path: Path, root: Path, results: Path) -> Path:
    """A recipe that writes ``root`` and ``results`` and names the vision group's headline: the pconv variant."""
    path.write_text(f"out_root: {root}\nresults: {results}\nheadline:\n  vision: {{variant: pconv, unnamed: linear}}\n")
    return path


def test_the_recipe_headline_leads_the_default_pair_and_the_ratios_view(make_app, tiny_checkpoints, tmp_path):
    """Where the recipe that wrote the checkpoints and the results file makes a variant its group's headline,
    the dashboard opens on that family's teacher and student and plots its runs as the plain series; the
    runs without a variant become a family of their own (the recipe's name for them), off until picked."""
    root, results = tmp_path / "checkpoints", tmp_path / "results.csv"
    # vision/teacher-re is the larger teacher: the default without the recipe.
    for name, source in (("vision/teacher-re", tiny_checkpoints.vision_teacher),
                         ("vision/student-rekd", tiny_checkpoints.vision_student),
                         ("vision/variants/teacher-re-pconv", tiny_checkpoints.vision_student),
                         ("vision/variants/student-rekd-pconv", tiny_checkpoints.vision_student)):
        shutil.copytree(source, root / name)
    rows = "".join(f"{run},vision,student,rekd,vit-2x64,0.1,1,{accuracy},0.9,0.1,0.9,0.7,5\n" for run, accuracy in
                   (("vision/student-rekd", 0.6), ("vision/variants/student-rekd-pconv", 0.7),
                    ("vision/variants/student-rekd-pconv-kd-r-topk", 0.8)))
    results.write_text(tiny_checkpoints.results.read_text().splitlines(keepends=True)[0] + rows)
    recipe = write_headline_recipe(tmp_path / "recipe.yaml", root, results)
    at = make_app(REKD_CHECKPOINTS=root, REKD_RESULTS=results, REKD_RECIPE=recipe)
    at.sidebar.radio(key="task").set_value("vision").run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="teacher_vision").value == str(root / "vision" / "variants" / "teacher-re-pconv")
    assert at.sidebar.selectbox(key="student_vision").value == str(root / "vision" / "variants" / "student-rekd-pconv")
    assert at.multiselect(key="results_variants_vision").options == ["linear", "pconv-kd-r-topk"]
    assert at.multiselect(key="results_variants_vision").value == []
    traces = [(t["name"], t["y"]) for t in plotly_specs(at)[0]["data"]]
    assert traces == [("student · REKD · vit-2x64", [pytest.approx(0.7)])]
    at.multiselect(key="results_variants_vision").set_value(["linear"]).run()
    names = {t["name"]: t["y"] for t in plotly_specs(at)[0]["data"]}
    assert names["student (linear) · REKD · vit-2x64"] == [pytest.approx(0.6)]
    # The same checkpoints and results without that recipe: the runs without a variant lead, as before.
    at = make_app(REKD_CHECKPOINTS=root, REKD_RESULTS=results, REKD_RECIPE=tmp_path / "missing.yaml")
    at.sidebar.radio(key="task").set_value("vision").run()
    assert at.sidebar.selectbox(key="teacher_vision").value == str(root / "vision" / "teacher-re")
    assert at.multiselect(key="results_variants_vision").options == ["pconv", "pconv-kd-r-topk"]


def test_recipe_headlines_only_for_what_the_recipe_wrote(tmp_path, monkeypatch):
    root, results = tmp_path / "checkpoints", tmp_path / "results.csv"
    monkeypatch.setenv("REKD_RECIPE", str(write_headline_recipe(tmp_path / "recipe.yaml", root, results)))
    headline = {"vision": {"variant": "pconv", "unnamed": "linear"}}
    assert E.recipe_headlines(results, "results") == headline == E.recipe_headlines(root, "checkpoints")
    assert E.recipe_headlines(tmp_path / "other.csv", "results") == {} == E.recipe_headlines(results, "checkpoints")
    (tmp_path / "broken.yaml").write_text("headline: [unclosed\n")
    monkeypatch.setenv("REKD_RECIPE", str(tmp_path / "broken.yaml"))
    assert E.recipe_headlines(results, "results") == {}
    (tmp_path / "flat.yaml").write_text(f"out_root: {root}\nheadline: {{vision: pconv}}\n")  # not group -> mapping
    monkeypatch.setenv("REKD_RECIPE", str(tmp_path / "flat.yaml"))
    assert E.recipe_headlines(root, "checkpoints") == {}
    monkeypatch.setenv("REKD_RECIPE", str(tmp_path / "absent.yaml"))
    assert E.recipe_headlines(results, "results") == {} and E.recipe_mtime() == 0.0


def test_the_shipped_recipe_names_the_shipped_headline():
    """The repository's recipe labels the repository's own checkpoints and results file (and no others)."""
    headlines = E.recipe_headlines(E.REPO_ROOT / "checkpoints", "checkpoints")
    assert headlines["vision"]["variant"] == "dino-f8" and headlines["text"]["variant"] == "minilm-more"
    assert E.recipe_headlines(E.REPO_ROOT / "checkpoints" / "results.csv", "results") == headlines


def test_ratios_view_without_or_with_a_bad_results_file(make_app, tmp_path):
    at = make_app(REKD_RESULTS=tmp_path / "missing.csv")
    assert any("No results file at" in i.value for i in at.info)
    assert not at.get("plotly_chart")
    bad = tmp_path / "bad.csv"
    bad.write_text("mode,ratio\nre,0.1\n")
    at.text_input(key="results_path").set_value(str(bad)).run()
    assert_clean(at)
    assert any("lacks column(s) accuracy" in e.value for e in at.error)
    assert len(text_boxes(at)) == 3  # the compare view is unaffected


def test_live_evaluation_with_progress(make_app, tiny_checkpoints):
    at = make_app()
    assert spec_field(at, "eval").value == f"csv:{tiny_checkpoints.text_data}"  # the student's data
    at.number_input(key="eval_n").set_value(20)
    at.multiselect(key="eval_ratios").set_value([0.1, 0.5])
    at.button(key="eval_run").click().run()
    assert_clean(at)
    progress = at.get("progress")
    assert progress and progress[-1].value == 100 and progress[-1].text.startswith("Done: 20 examples x 2 ratios")
    frame = table_with(at, "achieved_ratio")
    assert list(frame["model"]) == ["teacher", "student", "teacher", "student"]
    assert list(frame["ratio"]) == [0.1, 0.1, 0.5, 0.5]
    assert set(frame["n"]) == {20}
    assert frame["achieved_ratio"].iloc[-1] == pytest.approx(0.5, abs=0.05)
    spec = next(s for s in plotly_specs(at) if any(t["name"] == "student accuracy" for t in s["data"]))
    assert {t["name"] for t in spec["data"]} >= {"teacher accuracy", "mask IoU with teacher", "prediction agreement"}


def test_live_evaluation_bad_dataset(make_app, tiny_checkpoints):
    at = make_app()
    spec_field(at, "eval").set_value("csv:/no/such/dir")
    at.button(key="eval_run").click().run()
    assert_clean(at)
    assert any("path not found" in e.value for e in at.error)
    spec_field(at, "eval").set_value(f"imagefolder:{tiny_checkpoints.image_data}")
    at.button(key="eval_run").click().run()
    assert_clean(at)
    assert any("is a vision dataset, but the models are text models" in e.value for e in at.error)


def test_live_evaluation_dataset_follows_the_task(make_app, tiny_checkpoints):
    """Switching the task brings that task's dataset into the spec field: a text spec left there made
    Evaluate fail ("... is a text dataset, but the models are vision models")."""
    at = make_app()
    assert spec_field(at, "eval").value == f"csv:{tiny_checkpoints.text_data}"
    at.sidebar.radio(key="task").set_value("vision").run()
    assert_clean(at)
    assert spec_field(at, "eval").value == f"imagefolder:{tiny_checkpoints.image_data}"
    at.number_input(key="eval_n").set_value(8)
    at.multiselect(key="eval_ratios").set_value([0.2])
    at.button(key="eval_run").click().run()
    assert_clean(at)
    assert not at.error, values(at.error)
    assert list(table_with(at, "achieved_ratio")["model"]) == ["teacher", "student"]
    at.sidebar.radio(key="task").set_value("text").run()  # and back: the text dataset again
    assert spec_field(at, "eval").value == f"csv:{tiny_checkpoints.text_data}"


# ----------------------------------------------------------------------------------------------
# Dataset browser
# ----------------------------------------------------------------------------------------------


def test_browser_ranks_bundled_examples_and_opens_a_row(make_app):
    at = make_app()
    at.button(key="browse_run").click().run()
    assert_clean(at)
    table = browser_table(at).value
    assert len(table) == 3
    assert list(table.columns) == ["#", "input", "true label", "teacher", "p(teacher)", "student", "p(student)",
                                   "agree", "teacher_mask_iou"]
    keys = list(zip(table["agree"], table["teacher_mask_iou"]))
    assert keys == sorted(keys, key=lambda k: (k[0], k[1]))  # disagreements first, then lowest IoU
    shown = int(table.loc[1, "#"]) - 1  # a row that is not the example Compare shows (the first)
    row_box(at).set_value(1 if shown else 2).run()
    opened = I.load_examples("text")[int(table.loc[1 if shown else 2, "#"]) - 1]
    at.button(key="browser_open").click().run()
    assert_clean(at)
    assert at.session_state["view"] == "Compare"
    assert at.radio(key="source_text").value == "From another tab"
    words = opened.value.split()[:3]
    assert all(w.strip(".,'\"") in text_boxes(at)[0] for w in words)
    assert f"true label: {opened.label}" in prob_blocks(at)[0]


def test_browser_on_a_local_dataset(make_app, tiny_checkpoints):
    at = make_app()
    at.sidebar.radio(key="task").set_value("vision").run()
    at.radio(key="browse_source").set_value("A local dataset").run()
    assert spec_field(at, "browse").value == f"imagefolder:{tiny_checkpoints.image_data}"
    at.number_input(key="browse_n").set_value(12)
    at.button(key="browse_run").click().run()
    assert_clean(at)
    table = browser_table(at).value
    assert len(table) == 12 and set(table["true label"]) == {"neg", "pos"}
    at.button(key="browser_open").click().run()
    assert_clean(at)
    assert at.radio(key="source_vision").value == "From another tab"
    assert any("teacher's patches" in c for img in at.get("image") for c in img.captions)


def test_downloads_are_offered(make_app):
    at = make_app()
    labels = {b.label for b in at.get("download_button")}
    assert {"Download comparison (PNG)", "Download comparison (HTML)", "Download summary (CSV)",
            "Download runs (CSV)"} <= labels
    at.button(key="browse_run").click().run()
    assert "Download table (CSV)" in {b.label for b in at.get("download_button")}


# ----------------------------------------------------------------------------------------------
# the page's modules without Streamlit (render/, inputs, checkpoints, analysis) on their own
# ----------------------------------------------------------------------------------------------


def test_highlight_marks_whole_words_never_special_tokens():
    text = "Unbelievable, it's great! [SEP]"
    tokens = ["[CLS]", "un", "##believ", "##able", ",", "it", "'", "s", "great", "!", "[SEP]", "[SEP]"]
    offsets = [(0, 0), (0, 2), (2, 8), (8, 12), (12, 13), (14, 16), (16, 17), (17, 18), (19, 24), (24, 25),
               (26, 31), (0, 0)]
    specials = {"[CLS]", "[SEP]", "[PAD]", "[UNK]"}
    exp = fake_explanation(text, tokens, offsets, [0, 2, 8, 10, 11], specials)
    html_text = T.highlight_html(text, exp, S.TEACHER)
    assert re.search(r'title="un ##believ ##able[^"]*">Unbelievable</span>', html_text)
    assert re.search(r'">great</span>', html_text)
    # Two words; [CLS], the closing [SEP] and a literal "[SEP]" typed in the review are selected but never shown
    # as highlighted words.
    assert html_text.count(TEACHER_MARK) == 2
    assert "[CLS]" not in html_text and html_text.count("[SEP]") == 1 and not re.search(r">\[SEP\]</span>", html_text)
    cmp = {"both": [8], "teacher_only": [2, 0], "student_only": [10, 11], "iou": 0.33, "f1": 0.5, "labels_agree": True}
    agreement = T.agreement_html(text, fake_explanation(text, tokens, offsets, [2, 8], specials), cmp)
    assert BOTH_MARK in agreement and TEACHER_MARK in agreement and STUDENT_MARK not in agreement
    assert T.word_counts(exp) == (2, 7)
    view = X.ComparisonView("typed", "text", "t", "s", exp, exp, cmp, A.per_model(0.5), text=text)
    page = X.comparison_html(view)
    assert not re.search(r">\[CLS\]</span>", page)  # never a highlighted word; named, not counted:
    assert "Selected 2 of 9 word pieces (achieved ratio 0.222); it also picked [CLS], [SEP], [SEP], special" in page
    chunks, _ = X._text_atoms(text, exp, X._word_styles(exp, S.TEACHER, "selection"))
    assert [s for chunk in chunks if chunk for s, colour in chunk if colour] == ["Unbelievable", "great"]


def test_special_tokens_are_never_highlighted_on_the_page(make_app, monkeypatch):
    """Even when a model selects every piece, [CLS], [SEP] and a typed "[SEP]" are not shown as highlighted."""
    original = A.explain
    select_all = lambda exp: setattr(exp, "selected", list(range(exp.num_features))) or exp  # noqa: E731
    monkeypatch.setattr(A, "explain",
                        lambda model, inputs, **kw: [select_all(e) for e in original(model, inputs, **kw)])
    at = use_text(make_app(), "fillerab splendid [SEP] dreadful")
    for box in text_boxes(at):
        assert "[CLS]" not in box
        assert not re.search(r"<span[^>]*border-bottom[^>]*>\[SEP\]</span>", box)
        assert re.search(r"<span[^>]*border-bottom[^>]*>splendid</span>", box)


def test_highlight_turns_br_tags_into_line_breaks_and_escapes_html():
    text = "Good<br /><br />film & <b>cast</b>"
    tokens = ["good", "<", "br", "/", ">", "<", "br", "/", ">", "film", "&", "<", "b", ">", "cast", "<", "/", "b", ">"]
    offsets = [(0, 4), (4, 5), (5, 7), (8, 9), (9, 10), (10, 11), (11, 13), (14, 15), (15, 16), (16, 20), (21, 22),
               (23, 24), (24, 25), (25, 26), (26, 30), (30, 31), (31, 32), (32, 33), (33, 34)]
    html_text = T.highlight_html(text, fake_explanation(text, tokens, offsets, [0, 9]), S.TEACHER)
    assert html_text.count("<br>") == 2 and "br /" not in html_text
    assert ">&amp;<" in html_text and ">&lt;<" in html_text and "<b>" not in html_text


def test_truncated_review_shows_the_unread_part_dimmed():
    text = "alpha beta gamma delta"
    exp = fake_explanation(text, ["[CLS]", "alpha", "beta", "[SEP]"], [(0, 0), (0, 5), (6, 10), (0, 0)], [1],
                           {"[CLS]", "[SEP]"}, truncated=True)
    html_text = T.highlight_html(text, exp, S.STUDENT, max_length=4)
    assert "the model stops reading here (4 word pieces)" in html_text
    assert html_text.index("stops reading") < html_text.index("gamma delta")


def test_patch_overlays_dim_unselected_patches_and_draw_the_grid():
    view = Image.new("RGB", (16, 16), (200, 200, 200))
    overlay = IMG.patch_overlay(view, [0, 5], grid_side=4, colour=S.TEACHER, size=256)
    assert overlay.size == (256, 256)
    pixels = np.asarray(overlay)
    assert pixels[32, 32].tolist() == [200, 200, 200]  # inside selected patch 0
    assert pixels[32, 224].max() < 100  # patch 3: dimmed
    assert tuple(pixels[0, 10]) == S.rgb(S.TEACHER)  # outline of patch 0
    cmp = {"both": [0], "teacher_only": [1], "student_only": [2]}
    agreement = np.asarray(IMG.agreement_overlay(view, cmp, grid_side=4, size=256))
    assert agreement[32, 32, 1] > agreement[32, 32, 0]  # both: green tint
    assert agreement[32, 96, 2] > agreement[32, 96, 0]  # teacher only: blue tint
    assert agreement[32, 160, 0] > agreement[32, 160, 2]  # student only: orange tint
    assert agreement[200, 200].max() < 100  # unselected: dimmed


def test_comparison_exports(tiny_checkpoints):
    teacher = C.load_model(tiny_checkpoints.text_teacher)
    student = C.load_model(tiny_checkpoints.text_student)
    item = I.prepare_review(REVIEW + " <br /><br />" + REVIEW * 3, "typed")
    result = A.explain_pair(teacher, student, item, 0.3)
    view = X.ComparisonView(item.name, "text", "teacher", "student", result.teacher, result.student, result.comparison,
                            A.per_model(0.3), text=item.value, true_label="pos",
                            max_length=tiny_checkpoints.max_length)
    page = X.comparison_html(view)
    assert page.startswith("<!DOCTYPE html>") and "Teacher: teacher" in page and "mask IoU" in page
    assert ">unknownword<" in page and "the model stops reading here" in page
    png = Image.open(io.BytesIO(X.comparison_png(view)))
    assert png.width == 1400 and png.height > 300
    assert len(np.unique(np.asarray(png.convert("L")))) > 20  # text and highlights, not a blank page

    vt, vs = C.load_model(tiny_checkpoints.vision_teacher), C.load_model(tiny_checkpoints.vision_student)
    item = I.load_examples("vision")[0]
    result = A.explain_pair(vt, vs, item, 0.25)
    view_image = vt.processor.resized(item.value)
    view = X.ComparisonView(item.name, "image", "teacher", "student", result.teacher, result.student, result.comparison,
                            A.per_model(0.25), original=IMG.display_image(item.value),
                            teacher_overlay=IMG.patch_overlay(view_image, result.teacher.selected, 4),
                            student_overlay=IMG.patch_overlay(view_image, result.student.selected, 4, S.STUDENT),
                            agreement_image=IMG.agreement_overlay(view_image, result.comparison, 4))
    assert page.count("<img") == 0 and X.comparison_html(view).count("<img") == 5
    png = Image.open(io.BytesIO(X.comparison_png(view)))
    assert png.height > 256


def test_text_upload_parsing():
    assert I.parse_text_upload("a.txt", "\ufeffhello world".encode("utf-8"))[0].value == "hello world"
    # UTF-8 is tried first (no notice); other text is decoded, and a tie between equally plausible legacy
    # encodings (short texts) goes to the most common one, so "très" does not come out as cp1250's "trčs".
    utf8 = I.parse_text_upload("u.txt", "café très bien".encode("utf-8"))[0]
    assert utf8.value == "café très bien" and utf8.notice is None
    assert decode_text("café très bien".encode("utf-8"), "u.txt") == ("café très bien", "utf-8")
    assert decode_text("caf\xe9 tr\xe8s bien".encode("latin-1"), "l.txt") == ("café très bien", "cp1252")
    with pytest.raises(DataError, match="not a text file"):
        decode_text(bytes(range(256)) * 8, "random.bin")
    items = I.parse_text_upload("r.csv", b"Review,Sentiment\nnice film,pos\nbad film,neg\n")
    assert [(i.value, i.label) for i in items] == [("nice film", "pos"), ("bad film", "neg")]
    single = I.parse_text_upload("s.csv", b"comments\nfirst one\nsecond one\n")
    assert [i.value for i in single] == ["first one", "second one"]
    with pytest.raises(DataError, match="not a readable CSV"):
        I.parse_text_upload("bad.csv", b'text\n"unterminated\n')
    with pytest.raises(DataError, match="no review in the file"):
        I.parse_text_upload("blank.csv", b"text,label\n,pos\n")
    long = I.prepare_review("x" * (I.MAX_REVIEW_CHARS + 10))
    assert len(long.value) == I.MAX_REVIEW_CHARS and "only its first" in long.notice


def test_results_file_reading(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("Modality,role,MODE,ratio,seed,accuracy\nimdb,student,REKD,0.1,1,0.8\nimdb,student,REKD,0.1,2,0.9\n"
                    "imdb,student,REKD,0.1,3,oops\n")
    frame = F.load_results(path)
    assert list(frame["task"]) == ["imdb", "imdb"] and set(frame["mode"]) == {"rekd"}
    agg = F.aggregate_results(frame)
    assert agg.loc[0, "accuracy_mean"] == pytest.approx(0.85) and agg.loc[0, "runs"] == 2
    assert F.results_task_for(["cifar10", "imdb"], "text") == "imdb"
    assert F.results_task_for(["cifar10", "imdb"], "vision") == "cifar10"
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        F.load_results(tmp_path / "empty.csv")
    with pytest.raises(DataError, match="no results file"):
        F.load_results(tmp_path / "nope.csv")
    figure = PL.results_figure(agg)
    assert figure.data[0].name == "student · REKD"
    # A recipe variant's runs (and its seeds) form their own series instead of joining the headline seeds.
    path.write_text("run,task,role,mode,ratio,seed,accuracy\ntext/student-re,text,student,re,0.1,1,0.8\n"
                    "text/variants/student-re-example-cost,text,student,re,0.1,1,0.9\n"
                    "text/variants/student-re-example-cost-s2,text,student,re,0.1,2,0.7\n")
    frame = F.load_results(path)
    assert list(frame["series_family"]) == ["", "example-cost", "example-cost"]
    assert F.base_role("student (example-cost)") == "student" == F.base_role("student")
    agg = F.aggregate_results(frame).set_index("role")
    assert agg.loc["student", "runs"] == 1 and agg.loc["student (example-cost)", "runs"] == 2
    assert agg.loc["student (example-cost)", "accuracy_mean"] == pytest.approx(0.8)
    markers = {trace.name: trace.marker.symbol for trace in PL.results_figure(agg.reset_index()).data}
    assert markers == {"student · RE": "circle", "student (example-cost) · RE": "star"}



def test_models_read_at_many_ratios_for_the_ratios_tab(tmp_path):
    """Readings at other ratios (``read_at`` rows) and a model trained over a range of ratios stay out of the
    ratios plot's series of fixed-ratio models, and make up the comparison the Ratios tab shows."""
    path = tmp_path / "results.csv"
    path.write_text("run,task,role,mode,backbone,ratio,seed,accuracy,source,read_ratio,ratio_range\n"
                    "text/student-re,text,student,re,b,0.1,1,0.8,training,0.1,\n"
                    "text/sweep/student-re-r0.5,text,student,re,b,0.5,1,0.82,training,0.5,\n"
                    "text/student-re,text,student,re,b,0.1,1,0.6,read_at,0.5,\n"
                    "text/range/student-re,text,student,re,b,0.1,1,0.79,training,0.1,0.05-0.5\n"
                    "text/range/student-re,text,student,re,b,0.1,1,0.81,read_at,0.5,0.05-0.5\n")
    frame = F.load_results(path)
    assert list(frame.role) == ["student", "student", "student (ratio range 0.05-0.5)"]
    assert list(F.load_results(path, readings=True).read_ratio) == [0.5, 0.5]
    comparison = F.ratio_range_comparison(path, "text")
    assert {(r.series, r.ratio): r.accuracy for r in comparison.itertuples()} == {
        ("range model", 0.5): pytest.approx(0.81), ("fixed, at its own ratio", 0.1): pytest.approx(0.8),
        ("fixed, at its own ratio", 0.5): pytest.approx(0.82), ("fixed, read away", 0.5): pytest.approx(0.6)}
    assert F.ratio_range_comparison(path, "vision").empty


def test_ratios_tab_shows_models_read_at_many_ratios(make_app, tmp_path):
    results = tmp_path / "results.csv"
    results.write_text("run,task,role,mode,backbone,ratio,seed,accuracy,source,read_ratio,ratio_range\n"
                       "text/student-re,text,student,re,b,0.1,1,0.8,training,0.1,\n"
                       "text/range/student-re,text,student,re,b,0.1,1,0.81,read_at,0.1,0.05-0.5\n"
                       "text/range/student-re,text,student,re,b,0.1,1,0.79,read_at,0.5,0.05-0.5\n")
    at = make_app(REKD_RESULTS=results)
    assert_clean(at)
    spec = next(s for s in plotly_specs(at) if "accuracy read at each ratio" in s["layout"]["title"]["text"])
    traces = {t["name"]: t["y"] for t in spec["data"]}
    assert traces["student · RE · b · range model"] == [pytest.approx(0.81), pytest.approx(0.79)]
    at.sidebar.radio(key="task").set_value("vision").run()  # no vision model read at several ratios
    assert any("has been read at several ratios yet" in c.value for c in at.caption)


def test_default_pair_prefers_named_teacher_and_rekd_student():
    info = lambda name, mode, params: C.CheckpointInfo(path=name, name=name, task="text", mode=mode,  # noqa: E731
                                                       ratio=0.1, labels=["neg", "pos"], backbone="b",
                                                       parameters=params)
    infos = [info("cls-big", "cls", 900), info("re-small", "re", 10), info("re-big", "re", 500), info("kd", "rekd", 20)]
    assert C.default_pair(infos) == (2, 3)
    infos.append(info("my-teacher", "re", 100))
    assert C.default_pair(infos)[0] == 4
    infos.append(info("teacher-cls", "cls", 1000))  # a CLS baseline is no teacher of rationales
    infos.append(info("student-rekd", "rekd", 30))
    assert C.default_pair(infos) == (4, 6)
    # ... and, before those, a student of that teacher, which may name it by the root it trained under
    infos.append(C.CheckpointInfo(path="/ckpt/vision/kd-p", name="vision/kd-p", task="text", mode="rekd", ratio=0.1,
                                  labels=["neg", "pos"], backbone="b", parameters=40, teacher="runs/my-teacher"))
    assert C.default_pair(infos) == (4, 7)
    # among equal teachers, one trained over a range of ratios, wherever it is listed
    ranged = [C.CheckpointInfo(path="range/my-teacher", name="range/my-teacher", task="text", mode="re", ratio=0.1,
                               labels=["neg", "pos"], backbone="b", parameters=100, ratio_range=(0.05, 0.5))]
    assert C.default_pair(ranged + infos)[0] == 0 and C.default_pair(infos + ranged)[0] == len(infos)
    assert C.default_pair([]) == (None, None)
    assert C.teacher_note(infos[7], infos) == "my-teacher (found here)"
    assert C.teacher_note(infos[7], infos[:4]) == "runs/my-teacher (not among these checkpoints)"
    assert C.teacher_note(infos[6], infos) is None
    assert "compared with" in K.model_card_html(C.CheckpointInfo(path="p", name="re", task="text", mode="re", ratio=0.1,
                                                                 labels=["a"], backbone="b", teacher="t"), "S", "#000")


def test_discovery_skips_hidden_and_reports_broken(tiny_checkpoints, tmp_path):
    infos, problems = C.discover_checkpoints(tiny_checkpoints.root)
    assert {i.name for i in infos} == {"text/teacher", "text/student", "text/cls", "vision/teacher", "vision/student"}
    assert problems == []
    student = next(i for i in infos if i.name == "text/student")
    assert student.mode_name == "REKD" and student.teacher == str(tiny_checkpoints.text_teacher)
    assert student.parameters and student.test_accuracy is not None
    infos, problems = C.discover_checkpoints(tiny_checkpoints.broken)
    assert len(infos) == 2 and len(problems) == 1 and "bad_config" in problems[0]
    assert C.discover_checkpoints(tmp_path / "nothing") == ([], [])


def test_rank_and_evaluate_pair_directly(tiny_checkpoints):
    teacher = C.load_model(tiny_checkpoints.text_teacher)
    student = C.load_model(tiny_checkpoints.text_student)
    bundle = I.load_dataset(f"csv:{tiny_checkpoints.text_data}")
    items = I.dataset_items(bundle, "test", 10)
    seen = []
    frame = A.rank_by_disagreement(teacher, student, items, 0.2, progress=lambda f, t: seen.append(f))
    assert len(frame) == 10 and seen[-1] == pytest.approx(1.0)
    assert list(frame["disagreement"]) == sorted(frame["disagreement"], reverse=True)
    split = I.sample_split(bundle, "dev", 16)
    assert len(split) == 16
    seen.clear()
    result = A.evaluate_pair(teacher, student, split, [0.2, 0.5], progress=lambda f, t: seen.append(f))
    assert len(result.frame) == 4 and seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    assert list(result.frame["model"]) == ["teacher", "student"] * 2
    for role in ("teacher", "student"):
        matrix = np.array(result.confusion[(role, 0.5)])
        assert matrix.sum() == 16 and matrix.sum(axis=1).tolist() == [8, 8]  # stratified: 8 of each true class
        row = result.frame[(result.frame["model"] == role) & (result.frame["ratio"] == 0.5)].iloc[0]
        assert np.trace(matrix) / 16 == pytest.approx(row["accuracy"])
    # the student's scores against the teacher are evaluate_split's, read one ratio at a time
    from rekd_core.evaluation import evaluate_split

    alone = evaluate_split(student, split, teacher=teacher, ratio=0.5)
    row = result.frame.iloc[3]
    for key in ("teacher_agreement", "teacher_mask_iou", "accuracy"):
        assert row[key] == pytest.approx(alone[key]), key


def test_browser_row_box_follows_a_new_ranking(make_app):
    """After re-ranking, the "Row to open" box starts on the new ranking (its first row), and "Open in
    comparison" opens the input the box names. Before, the box kept the row number picked in the previous
    ranking: the browser still showed that ranking's review in it while "Open" used the new ranking's row."""
    at = make_app()
    at.sidebar.slider(key="ratio").set_value(0.1).run()
    at.button(key="browse_run").click().run()
    row_box(at).set_value(2).run()
    at.sidebar.slider(key="ratio").set_value(0.9).run()
    at.button(key="browse_run").click().run()
    assert_clean(at)
    box, table = row_box(at), browser_table(at).value
    assert box.value == 0
    items = I.load_examples("text")
    opened = items[int(table.loc[box.value, "#"]) - 1]
    assert opened.preview(70) in box.options[box.index]  # what the box says ...
    at.button(key="browser_open").click().run()
    assert_clean(at)
    assert opened.value.split()[0].strip(".,'\"") in text_boxes(at)[0]  # ... is what opens
    assert f"true label: {opened.label}" in prob_blocks(at)[0]



def test_the_model_card_shows_the_generator_embeddings_and_a_degenerate_generator(tmp_path):
    """A text RE model's card says whether its generator's word embeddings were frozen (pretrained) or
    trained, and shows the warnings its test metrics recorded about its own (argmax) selection."""
    from rekd_core.checkpoint import CONFIG_FILE, METRICS_FILE

    config = {"format": "rekd-checkpoint", "version": 1, "task": "text", "mode": "re", "ratio": 0.1,
              "labels": ["neg", "pos"], "backbone": {"source": "bert-1x32"}, "dropout": 0.5,
              "processor": {"type": "text"}, "generator_embeddings": "trained"}
    warning = "on its own (argmax) the generator selects 0.000 of the features against the target 0.100"
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    (tmp_path / METRICS_FILE).write_text(json.dumps({"test": {"accuracy": 0.9, "warnings": [warning]}}))
    info = C.describe_checkpoint(tmp_path)
    assert info.generator_embeddings == "trained" and info.warnings == [warning]
    card = K.model_card_html(info, "Student", "#000")
    assert "trained (learned from scratch)" in card and "selects 0.000 of the features" in card
    assert "every feature, the unselected as zeros (zero masking)" in card  # no masking recorded: the paper's
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "masking": "drop"}))
    assert "only the selected features (drop masking)" in K.model_card_html(C.describe_checkpoint(tmp_path),
                                                                             "Student", "#000")


# ----------------------------------------------------------------------------------------------
# Human rationales (ERASER): plausibility, the human highlight, sorting the browser by it
# ----------------------------------------------------------------------------------------------

HUMAN_MARK = f"border-bottom:2px dotted {S.HUMAN}"
PIECES_TEXT = "Unbelievable , truly great film ."


def test_human_highlight_marks_the_evidence_words_only():
    page = T.human_html(PIECES_TEXT, [(0, 1), (3, 4)])
    assert page.count(HUMAN_MARK) == 2
    assert re.search(rf'{re.escape(HUMAN_MARK)}[^>]*title="Unbelievable · human evidence">Unbelievable</span>', page)
    assert re.search(r'<span title="truly">truly</span>', page)  # not evidence: plain
    assert S.HUMAN not in (S.TEACHER, S.STUDENT, S.BOTH)
    cut = T.human_html(PIECES_TEXT, [(0, 1), (3, 4)], read_upto=20)  # the models stopped after "truly"
    assert "the model stops reading here" in cut and cut.index("stops reading") < cut.index("great")
    # "great", past where the models stop, keeps its underline among the greyed unread words, said unread
    assert cut.count(HUMAN_MARK) == 2 and 'title="human evidence, not read by the models">great</span>' in cut
    assert "Unbelievable · human evidence" in cut
    assert evidence_words([(0, 2), (5, 99)], 6) == {0, 1, 5}


def test_sort_ranking_by_plausibility():
    frame = pd.DataFrame({"#": [1, 2, 3, 4], "disagreement": [0.9, 0.5, 0.1, 0.0],
                          "teacher_plausibility_f1": [0.2, float("nan"), 0.8, 0.5],
                          "student_plausibility_f1": [0.6, 0.3, 0.4, 0.5]})
    frame["plausibility_f1_gap"] = frame["student_plausibility_f1"] - frame["teacher_plausibility_f1"]
    assert A.ranking_sorts(frame) == list(A.RANKING_SORTS)
    order = lambda sort: [n - 1 for n in A.sort_ranking(frame, sort)["#"]]  # noqa: E731
    assert order("disagreement") == [0, 1, 2, 3]
    assert order("teacher plausibility, highest first") == [2, 3, 0, 1]  # no score: last
    assert order("teacher plausibility, lowest first") == [0, 3, 2, 1]
    assert order("student plausibility, lowest first") == [1, 2, 3, 0]
    assert order("student minus teacher plausibility, highest first") == [0, 3, 2, 1]
    plain = frame[["#", "disagreement"]]
    assert A.ranking_sorts(plain) == ["disagreement"]
    with pytest.raises(DataError, match="no human evidence"):
        A.sort_ranking(plain, "teacher plausibility, lowest first")
    with pytest.raises(DataError, match="unknown order"):
        A.sort_ranking(frame, "by colour")


def test_explain_pair_scores_both_models_against_human_evidence(tiny_checkpoints, tmp_path):
    from tests.dashboard_fixtures import write_tiny_eraser

    teacher = C.load_model(tiny_checkpoints.text_teacher)
    student = C.load_model(tiny_checkpoints.text_student)
    bundle = I.load_dataset(f"eraser-movies:{write_tiny_eraser(tmp_path / 'eraser')}")
    items = I.dataset_items(bundle, "test", 8)
    assert all(item.evidence is not None for item in items) and any(item.evidence for item in items)
    item = next(item for item in items if len(item.evidence) == 2)
    result = A.explain_pair(teacher, student, item, 0.3)
    for role, exp in (("teacher", result.teacher), ("student", result.student)):
        expected = word_plausibility(item.value, exp, item.evidence)
        assert result.plausibility[role] == expected and 0.0 <= expected["f1"] <= 1.0
    assert A.explain_pair(teacher, student, I.prepare_review(item.value), 0.3).plausibility == {}
    view = X.ComparisonView(item.name, "text", "t", "s", result.teacher, result.student, result.comparison,
                            A.per_model(0.3), text=item.value, evidence=item.evidence,
                            plausibility=result.plausibility)
    page = X.comparison_html(view)
    assert "Human evidence" in page and HUMAN_MARK in page
    assert page.count("plausibility F1 ") == 2
    marked = len(evidence_words(item.evidence, len(item.value.split())))
    assert page.count(HUMAN_MARK) == marked
    plain = X.ComparisonView(item.name, "text", "t", "s", result.teacher, result.student, result.comparison,
                             A.per_model(0.3), text=item.value)
    with_scores, without = (Image.open(io.BytesIO(X.comparison_png(v))) for v in (view, plain))
    assert with_scores.height == without.height + 22  # one more line under each prediction: its plausibility
    assert "Human evidence" not in X.comparison_html(plain)


def test_browser_shows_and_sorts_by_plausibility_and_opens_the_human_evidence(make_app, tmp_path):
    from tests.dashboard_fixtures import write_tiny_eraser

    root = write_tiny_eraser(tmp_path / "eraser")
    at = make_app()
    at.sidebar.slider(key="ratio").set_value(0.3).run()
    at.radio(key="browse_source").set_value("A local dataset").run()
    spec_field(at, "browse").set_value(f"eraser-movies:{root}").run()
    at.number_input(key="browse_n").set_value(8)
    at.button(key="browse_run").click().run()
    assert_clean(at)
    table = browser_table(at).value
    assert len(table) == 8 and set(A.PLAUSIBILITY_COLUMNS) <= set(table.columns)
    assert table["teacher_plausibility_f1"].isna().sum() == 1  # the review the annotators marked nothing in
    gap = table["student_plausibility_f1"] - table["teacher_plausibility_f1"]
    assert np.allclose(table["plausibility_f1_gap"], gap, equal_nan=True)
    sort = only(at.selectbox, "browser_sort")
    assert sort.options == list(A.RANKING_SORTS)
    sort.set_value("student plausibility, highest first").run()
    assert_clean(at)
    table = browser_table(at).value
    scores = table["student_plausibility_f1"]
    assert scores.iloc[-1] != scores.iloc[-1]  # NaN last
    assert list(scores.iloc[:-1]) == sorted(scores.iloc[:-1], reverse=True)
    assert row_box(at).value == 0
    at.button(key="browser_open").click().run()  # the most plausible student row
    assert_clean(at)
    assert at.radio(key="source_text").value == "From another tab"
    boxes = text_boxes(at)
    assert len(boxes) == 4  # teacher, student, human evidence, agreement
    assert HUMAN_MARK in boxes[2] and HUMAN_MARK not in boxes[0] + boxes[1] + boxes[3]
    captions = [c.value for c in at.caption if "Against the human evidence" in c.value]
    assert len(captions) == 2
    assert f"plausibility F1 {S.format_score(table.loc[0, 'student_plausibility_f1'])}" in captions[1]
    assert any("marked as evidence by human annotators" in c.value for c in at.caption)
    assert G.GLOSSARY["plausibility"] in helps(at)


def test_compare_reads_a_dataset_sample_with_its_human_evidence(make_app, tmp_path):
    from tests.dashboard_fixtures import write_tiny_eraser

    at = make_app()
    at.radio(key="source_text").set_value("Dataset sample").run()
    assert_clean(at)
    assert spec_field(at, "compare").value.startswith("csv:")  # the student's training data by default
    assert not [b for b in text_boxes(at) if HUMAN_MARK in b]  # no evidence there: no human column
    spec_field(at, "compare").set_value(str(tmp_path / "nowhere")).run()
    assert_clean(at)
    assert len(at.error) == 1 and "nowhere" in at.error[0].value
    spec = f"eraser-movies:{write_tiny_eraser(tmp_path / 'eraser')}"
    spec_field(at, "compare").set_value(spec).run()
    at.number_input(key="compare_n").set_value(4).run()
    assert_clean(at)
    assert len(at.selectbox(key="pick_text").options) == 4
    sample = I.dataset_items(I.load_dataset(spec), "test", 4, 2026)  # what the page sampled (the default seed)
    at.selectbox(key="pick_text").set_value(next(i for i, item in enumerate(sample) if item.evidence)).run()
    assert_clean(at)
    boxes = text_boxes(at)
    assert len(boxes) == 4 and HUMAN_MARK in boxes[2]
    assert len([c for c in at.caption if "Against the human evidence" in c.value]) == 2
