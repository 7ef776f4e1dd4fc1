"""The dashboard's analysis views and their fixes (issue 36), driven through Streamlit's AppTest on the tiny
checkpoints (tests/dashboard_fixtures.py), and their drawing and logic functions on their own: selection
probabilities as shading, a ratio for each model, faithfulness per example, the batch summary with confusion
matrices, thumbnails and new uploads, the labels a model knows and the input check, long reviews, one numbering,
task switches, the glossary, special tokens, empty cells, download names, shrunk images and the Ratios tab's axes."""
from __future__ import annotations

import io
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from dashboard import analysis as A
from dashboard import checkpoints as C
from dashboard import inputs as I
from dashboard.render import cards as K
from dashboard.render import export as X
from dashboard.render import images as IMG
from dashboard.render import style as S
from dashboard.render import text as T
from dashboard.render.glossary import HOW_TO_READ
from rekd_core.data import load_dataset_spec, pick_split
from rekd_core.explain import explain
from rekd_core.familiarity import build_reference, write_reference
from rekd_core.metric_info import METRICS

pytest.importorskip("streamlit")

from tests.core_fixtures import fake_explanation, image_bytes  # noqa: E402
from tests.dashboard_fixtures import (  # noqa: E402
    REVIEW,
    assert_clean,
    browser_table,
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
    write_long_eraser,
)

pytest_plugins = ["tests.dashboard_fixtures"]

OUTLINED = f"outline:2px solid {S.TEACHER}"


def captions(at, start: str) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith(start)]


def heatmaps(at) -> list[dict]:
    return [trace for spec in plotly_specs(at) for trace in spec["data"] if trace["type"] == "heatmap"]


def counted(heatmap: dict) -> int:
    """The inputs a confusion matrix counts (its cells' text)."""
    return sum(int(value) for row in heatmap["text"] for value in row)


def as_vision(at):
    at.sidebar.radio(key="task").set_value("vision").run()
    assert_clean(at)
    return at


# ----------------------------------------------------------------------------------------------
# Selection probabilities, a ratio for each model, faithfulness
# ----------------------------------------------------------------------------------------------


def test_probability_shading_shades_every_word_and_outlines_the_top_k(make_app):
    at = use_text(make_app(), REVIEW)
    assert at.radio(key="shading").value == "selection" and OUTLINED not in text_boxes(at)[0]
    at.radio(key="shading").set_value("probability").run()
    assert_clean(at)
    box = text_boxes(at)[0]
    words = re.findall(r'<span style="background:(#[0-9a-f]{6});(outline[^;]*;)?[^"]*" title="[^"]*selection '
                       r'probability (\d\.\d\d)"', box)
    picked, total = map(int, re.search(r"(\d+) of (\d+) words highlighted", captions(at, "Selected")[0]).groups())
    assert len(words) == total and sum(bool(outline) for _, outline, _ in words) == picked
    for background, _, probability in words:  # the stronger the tint, the likelier the word (shown to 2 decimals)
        low, high = (S.rgb(S.tint(S.TEACHER, T.shade_strength(float(probability) + d))) for d in (-0.005, 0.005))
        assert all(h - 1 <= c <= lo + 1 for c, lo, h in zip(S.rgb(background), low, high))
    assert captions(at, "Each model's colour is the stronger")


def test_both_exports_carry_the_shading(tiny_checkpoints):
    teacher, student = C.load_model(tiny_checkpoints.text_teacher), C.load_model(tiny_checkpoints.text_student)
    result = A.explain_pair(teacher, student, I.prepare_review(REVIEW), 0.2)
    views = {shading: X.ComparisonView("r", "text", "t", "s", result.teacher, result.student, result.comparison,
                                       A.per_model(0.2), text=REVIEW, shading=shading)
             for shading in ("selection", "probability")}
    assert OUTLINED in X.comparison_html(views["probability"]) and OUTLINED not in X.comparison_html(views["selection"])
    assert "shown:</b> selection probability" in X.comparison_html(views["probability"])
    pngs = [np.asarray(Image.open(io.BytesIO(X.comparison_png(v)))) for v in views.values()]
    assert pngs[0].shape == pngs[1].shape and (pngs[0] != pngs[1]).any()


def test_patches_are_shaded_by_their_selection_probability():
    view = Image.new("RGB", (16, 16), (200, 200, 200))
    shaded = np.asarray(IMG.patch_overlay(view, [3], 4, S.TEACHER, size=64, probabilities=[0.0, 0.5, 1.0, 1.0]))
    brightness = [shaded[8, 8 + 16 * k].mean() for k in range(3)]
    assert brightness[0] < brightness[1] < brightness[2]  # likelier patches are brighter
    assert tuple(shaded[0, 56]) == S.rgb(S.TEACHER)  # the top-k patch (3) is outlined
    boxes = I.cell_boxes(32, 32, 4)
    original = np.asarray(IMG.original_overlay(Image.new("RGB", (32, 32), (200, 200, 200)), boxes, [0], S.TEACHER,
                                               size=32, probabilities=[1.0] + [0.0] * 15))
    assert original[4, 4].mean() > original[20, 20].mean()


def test_each_model_at_its_own_ratio(make_app):
    at = use_text(make_app(), REVIEW)
    at.sidebar.toggle(key="link_ratios").set_value(False).run()
    assert_clean(at)
    assert at.sidebar.slider(key="ratio_teacher").value == at.sidebar.slider(key="ratio_student").value == 0.1
    rulers = [h.value for h in at.sidebar.get("html") if "ratio in use" in h.value]
    assert len(rulers) == 2 and "teacher trained" in rulers[0] and "student trained" not in rulers[0]
    at.sidebar.slider(key="ratio_teacher").set_value(0.6).run()
    assert_clean(at)
    teacher_k, student_k = selected_pieces(at)
    assert teacher_k > student_k
    assert captions(at, "The two models are read at different ratios (teacher 0.6, student 0.1)")
    assert len([w for w in at.warning if w.value.startswith("Out of range")]) == 1  # the teacher only
    at.button(key="browse_run").click().run()
    assert any("at ratios 0.6 (teacher) and 0.1 (student)" in m.value for m in at.markdown)
    at.sidebar.toggle(key="link_ratios").set_value(True).run()
    teacher_k, student_k = selected_pieces(at)
    assert teacher_k == student_k and at.sidebar.slider(key="ratio").value == 0.1


def test_compare_shows_each_models_faithfulness(make_app, tiny_checkpoints):
    at = use_text(make_app(), REVIEW)
    shown = captions(at, "Faithfulness here:")
    assert len(shown) == 2
    for line, path in zip(shown, (tiny_checkpoints.text_teacher, tiny_checkpoints.text_student)):
        found = explain(C.load_model(path), [REVIEW], ratio=0.1, faithfulness=True)[0].faithfulness
        assert f"sufficiency {S.format_score(found['sufficiency'])} (lower is better)" in line
        assert f"comprehensiveness {S.format_score(found['comprehensiveness'])} (higher is better)" in line
    tip = next(c for c in at.caption if c.value.startswith("Faithfulness here:")).proto.help
    assert METRICS["sufficiency"].meaning in tip and METRICS["comprehensiveness"].meaning in tip
    at.sidebar.selectbox(key="student_text").set_value(str(tiny_checkpoints.text_cls)).run()
    assert len(captions(at, "Faithfulness here:")) == 1  # a CLS model has no rationale to be faithful to


# ----------------------------------------------------------------------------------------------
# The summary of a batch
# ----------------------------------------------------------------------------------------------


def labelled_csv(text_data) -> str:
    """Eight reviews of the tiny text task with their labels, and a ninth without one, as an uploaded CSV."""
    rows = (text_data / "test.csv").read_text().splitlines()[1:9]
    return "text,label\n" + "".join(f"{row.split(',')[0]},{row.split(',')[1]}\n" for row in rows) + \
        "fillerad fillerae splendid fillerba,\n"


def test_summary_of_the_reviews_uploaded_in_compare(make_app, tiny_checkpoints):
    at = make_app()
    at.radio(key="source_text").set_value("Upload .txt / .csv files").run()
    reviews = labelled_csv(tiny_checkpoints.text_data).encode()
    upload(at, "upload_text", [("batch.csv", reviews, "text/csv")])
    at.button(key="summary_run").click().run()
    assert_clean(at)
    items = I.parse_text_upload("batch.csv", reviews)
    teacher, student = C.load_model(tiny_checkpoints.text_teacher), C.load_model(tiny_checkpoints.text_student)
    expected = A.summarise_batch(teacher, student, items, 0.1, C.check_pair(teacher, student))
    shown = {m.label: m for m in at.metric}
    assert shown["Teacher accuracy"].value == S.format_score(expected.accuracy["teacher"])
    assert "over 8 labelled input(s)" in shown["Teacher accuracy"].proto.delta  # the unlabelled ninth is left out
    assert shown["Prediction agreement"].value == S.format_score(expected.agreement)
    assert shown["Mean mask IoU"].value == S.format_score(expected.mean_iou)
    matrices = heatmaps(at)
    assert len(matrices) == 2 and matrices[0]["x"] == ["neg", "pos"]
    assert counted(matrices[0]) == 8 and [[int(v) for v in row] for row in matrices[0]["text"]] == \
        expected.confusion["teacher"]
    first = expected.ranking.iloc[0]
    at.button(key=f"summary_open_{first['#']}").click().run()  # one click from Compare
    assert_clean(at)
    assert at.session_state["view"] == "Compare" and at.selectbox(key="pick_text").value == first["#"] - 1
    assert at.radio(key="source_text").value == "Upload .txt / .csv files"  # the upload is still the input
    assert items[first["#"] - 1].value.split()[1] in text_boxes(at)[0]


def test_summary_of_a_dataset_sample_and_without_inputs(make_app, tiny_checkpoints):
    at = as_vision(make_app())
    at.radio(key="summary_source").set_value("A local dataset").run()
    assert spec_field(at, "summary").value == f"imagefolder:{tiny_checkpoints.image_data}"
    at.number_input(key="summary_n").set_value(8)
    at.button(key="summary_run").click().run()
    assert_clean(at)
    matrices = heatmaps(at)
    assert [counted(m) for m in matrices] == [8, 8]
    assert any(m.value == "**Where they disagree most**" for m in at.markdown) or any(
        m.value == "**No input to rank by disagreement**" for m in at.markdown)
    at.radio(key="summary_source").set_value("The inputs read in Compare").run()
    at.radio(key="source_vision").set_value("Upload images").run()
    at.button(key="summary_run").click().run()
    assert any("Compare has read no input yet" in e.value for e in at.error)


def test_live_evaluation_shows_each_models_confusion_matrix(make_app):
    at = make_app()
    at.number_input(key="eval_n").set_value(10)
    at.multiselect(key="eval_ratios").set_value([0.2, 0.5])
    at.button(key="eval_run").click().run()
    assert_clean(at)
    matrices = heatmaps(at)
    assert len(matrices) == 2 and all(counted(m) == 10 for m in matrices)
    ratio = only(at.selectbox, "live_confusion_ratio")
    assert ratio.options == ["0.2", "0.5"]
    ratio.set_value(0.5).run()
    assert [spec["layout"]["title"]["text"] for spec in plotly_specs(at) if spec["data"][0]["type"] == "heatmap"] \
        == ["teacher at ratio 0.5", "student at ratio 0.5"]


# ----------------------------------------------------------------------------------------------
# Images: thumbnails, new uploads, labels, the input check
# ----------------------------------------------------------------------------------------------


def test_the_image_browser_shows_thumbnails(make_app):
    at = as_vision(make_app())
    at.button(key="browse_run").click().run()
    assert_clean(at)
    table = browser_table(at)
    assert list(table.value.columns[:3]) == ["#", "image", "input"]
    assert all(uri.startswith("data:image/png;base64,") for uri in table.value["image"])
    assert json.loads(table.proto.columns)["image"]["type_config"]["type"] == "image"


def test_a_new_upload_shows_itself_at_once(make_app):
    at = as_vision(make_app())
    at.radio(key="source_vision").set_value("Upload images").run()
    first = ("first.png", image_bytes(Image.new("RGB", (40, 24), (200, 30, 30)), "PNG"), "image/png")
    second = ("second.png", image_bytes(Image.new("RGB", (24, 40), (30, 200, 30)), "PNG"), "image/png")
    upload(at, "upload_vision", [first])
    upload(at, "upload_vision", [first, second])
    assert at.selectbox(key="pick_vision").value == 1
    assert any("original (24x40)" in c for img in at.get("image") for c in img.captions)


def test_an_image_model_shows_the_labels_it_knows_and_the_input_check_is_unavailable(make_app):
    at = as_vision(make_app())
    assert all("It knows 2 classes: neg, pos. Every input gets one of them" in block for block in prob_blocks(at))
    assert len(captions(at, "Input check unavailable: this checkpoint has no reference statistics")) == 2
    assert not any("It knows" in block for block in prob_blocks(use_text(make_app(), REVIEW)))


@pytest.fixture
def referenced_root(tiny_checkpoints, tmp_path):
    """The tiny checkpoints, each with an input reference: the text teacher's from its test set, the text
    student's with a 95th percentile of 0 (any prediction but a certain one is above it), the vision models'
    from theirs (training images of 16x16)."""
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints.root, root)
    for task, data in (("text", f"csv:{tiny_checkpoints.text_data}"),
                       ("vision", f"imagefolder:{tiny_checkpoints.image_data}")):
        bundle = load_dataset_spec(data)
        for role in ("teacher", "student"):
            model = C.load_model(root / task / role)
            reference = build_reference(model, pick_split(bundle, "test", limit=12), pick_split(bundle, "train",
                                        limit=12), dataset=data)
            if (task, role) == ("text", "student"):
                reference["entropy"]["quantiles"]["0.95"] = 0.0
            write_reference(root / task / role, reference)
    return root


def test_the_input_check_against_the_test_set(make_app, referenced_root):
    at = use_text(make_app(REKD_CHECKPOINTS=referenced_root), REVIEW)
    quiet = captions(at, "Input check: Predictive entropy")
    assert len(quiet) == 1 and "within the 95% of 12 test reviews" in quiet[0]  # the teacher
    unusual = [w.value for w in at.warning if w.value.startswith("Unlike its test data?")]
    assert len(unusual) == 1 and "Less sure than on 95% of 12 test reviews" in unusual[0]  # the student
    at = as_vision(at)
    at.radio(key="source_vision").set_value("Upload images").run()
    upload(at, "upload_vision", [("big.png", image_bytes(Image.new("RGB", (400, 300), (90, 90, 90)), "PNG"),
                                  "image/png")])
    far = [w.value for w in at.warning if "Far larger than its training images: this one is 400x300" in w.value]
    assert len(far) == 2 and "12 sampled training images are 16x16 pixels" in far[0]


# ----------------------------------------------------------------------------------------------
# Long reviews: the unread part, evidence outside the window, rows with nothing read
# ----------------------------------------------------------------------------------------------


def test_evidence_past_the_window_is_counted_apart(make_app, tmp_path):
    spec = f"eraser-movies:{write_long_eraser(tmp_path / 'eraser')}"
    at = make_app()
    at.radio(key="source_text").set_value("Dataset sample").run()
    spec_field(at, "compare").set_value(spec).run()
    at.number_input(key="compare_n").set_value(4).run()
    sample = I.dataset_items(I.load_dataset(spec), "test", 4, 2026)
    at.selectbox(key="pick_text").set_value(next(i for i, item in enumerate(sample)
                                                 if item.evidence == [(60, 63)])).run()
    assert_clean(at)
    assert "✂ the model stops reading here (40 word pieces): the rest is unread" in text_boxes(at)[0]
    lines = captions(at, "Against the human evidence")
    assert len(lines) == 2 and all("no evidence word among those it read; 3 evidence words past where it stopped "
                                   "reading, not counted" in line for line in lines)
    assert captions(at, "3 of 70 words marked as evidence by human annotators. 3 of them past where the models stop")
    human = text_boxes(at)[2]  # teacher, student, human evidence: the evidence past the window is still marked
    assert human.count('title="human evidence, not read by the models"') == 3
    assert human.index("the model stops reading here") < human.index("human evidence, not read by the models")


def test_rows_with_nothing_read_rank_last(tiny_checkpoints, tmp_path):
    teacher, student = C.load_model(tiny_checkpoints.text_teacher), C.load_model(tiny_checkpoints.text_student)
    items = I.dataset_items(I.load_dataset(f"eraser-movies:{write_long_eraser(tmp_path / 'eraser')}"), "test", 4)
    items.append(I.prepare_review("fillerab splendid", "two words"))  # at 0.05: nothing picked, no prediction
    frame = A.rank_by_disagreement(teacher, student, items, 0.05)
    assert frame["#"].iloc[-1] == 5 and np.isnan(frame["disagreement"].iloc[-1])
    unread = next(i + 1 for i, item in enumerate(items) if item.evidence == [(60, 63)])
    for sort in ("teacher plausibility, lowest first", "student plausibility, highest first"):
        ordered = A.sort_ranking(frame, sort)
        assert set(ordered["#"].iloc[-2:]) == {unread, 5}  # no evidence word read, no evidence at all: last


# ----------------------------------------------------------------------------------------------
# Fixes
# ----------------------------------------------------------------------------------------------


def test_one_numbering_in_the_browser(make_app, tiny_checkpoints):
    at = make_app()
    at.radio(key="browse_source").set_value("A local dataset").run()
    at.number_input(key="browse_n").set_value(6)
    at.button(key="browse_run").click().run()
    table = browser_table(at).value
    assert sorted(table["#"]) == list(range(1, 7))
    box = row_box(at)
    for k in range(6):
        assert box.format_func(k).startswith(f"#{table['#'].iloc[k]}: ")
    box.set_value(3).run()
    at.button(key="browser_open").click().run()
    assert at.session_state["picked_input"].name.endswith(f"test #{table['#'].iloc[3]}")


def test_a_task_switch_carries_nothing_stale_and_restores_each_tasks_state(make_app, tiny_checkpoints):
    at = use_text(make_app(), REVIEW)
    spec_field(at, "eval").set_value(f"csv:{tiny_checkpoints.text_data} ").run()
    at.number_input(key="eval_n").set_value(8)
    at.multiselect(key="eval_ratios").set_value([0.2])
    at.button(key="eval_run").click().run()
    assert table_with(at, "achieved_ratio") is not None
    at = as_vision(at)
    assert not [d for d in at.dataframe if "achieved_ratio" in d.value.columns]  # not the text task's evaluation
    assert at.radio(key="source_vision").value == "Bundled example"
    at.sidebar.radio(key="task").set_value("text").run()
    assert_clean(at)
    assert at.radio(key="source_text").value == "Type or paste" and at.text_area(key="review_text").value == REVIEW
    assert spec_field(at, "eval").value == f"csv:{tiny_checkpoints.text_data} "  # what was typed
    assert list(table_with(at, "achieved_ratio")["ratio"]) == [0.2, 0.2]  # its own evaluation, back
    at.radio(key="source_text").set_value("Upload .txt / .csv files").run()
    upload(at, "upload_text", [("one.txt", b"fillerab splendid fillerac", "text/plain")])
    as_vision(at).sidebar.radio(key="task").set_value("text").run()
    assert captions(at, "1 file(s) uploaded before you switched away, kept: one.txt")
    assert "splendid" in text_boxes(at)[0]


def test_how_to_read_this_names_each_mode_and_the_ratio_ranges():
    assert "  - **CLS**: A plain classifier" in HOW_TO_READ and "  - **RE**: Rationale extraction" in HOW_TO_READ
    assert "  - **REKD**: RE with knowledge distillation" in HOW_TO_READ
    assert "trained at one ratio or over a range of ratios" in HOW_TO_READ
    assert "Each model was trained at one ratio (" not in HOW_TO_READ


def test_special_tokens_are_named_not_counted():
    text = "good [SEP] film"
    tokens = ["[CLS]", "good", "[SEP]", "film", "[SEP]"]
    exp = fake_explanation(text, tokens, [(0, 0), (0, 4), (5, 10), (11, 15), (0, 0)], [0, 1, 4], {"[CLS]", "[SEP]"})
    assert K.selection_line(exp, "text") == ("Selected 1 of 2 word pieces (achieved ratio 0.500); it also picked "
                                             "[CLS], [SEP], special pieces that belong to no word: not counted, not "
                                             "shown.")
    assert K.selection_line(fake_explanation(text, tokens, exp.offsets, [3], {"[CLS]", "[SEP]"}), "text") == \
        "Selected 1 of 2 word pieces (achieved ratio 0.500)."


def test_tables_show_a_dash_where_a_value_is_missing(make_app, tiny_checkpoints):
    at = make_app()
    at.sidebar.selectbox(key="student_text").set_value(str(tiny_checkpoints.text_cls)).run()
    at.button(key="browse_run").click().run()
    table = browser_table(at)
    assert table.value["teacher_mask_iou"].isna().all() and table.proto.placeholder == S.UNDEFINED
    assert all(d.proto.placeholder == S.UNDEFINED for d in at.dataframe)


def test_the_browser_table_fits_the_page_with_human_evidence(make_app, tmp_path):
    """Every column of a ranking with the three plausibility columns has a width, and together they fit the main
    column beside the sidebar at 1,500 px (about 1,040 px): the last column is not cut."""
    at = make_app()
    at.radio(key="browse_source").set_value("A local dataset").run()
    spec_field(at, "browse").set_value(f"eraser-movies:{write_long_eraser(tmp_path / 'eraser')}").run()
    at.button(key="browse_run").click().run()
    assert_clean(at)
    table = browser_table(at)
    widths = {column: found["width"] for column, found in json.loads(table.proto.columns).items()
              if "width" in found}
    assert set(table.value.columns) <= set(widths) and "plausibility_f1_gap" in widths
    assert sum(widths.values()) + 40 <= 1_000  # and the row's checkbox


def test_a_tiny_negative_score_shows_without_its_sign():
    assert S.format_score(-0.0002) == "0.000" and S.format_score(-0.0006) == "-0.001"
    assert S.format_score(float("nan")) == S.format_score(None) == S.UNDEFINED


def test_each_dataset_row_downloads_under_its_own_name(tiny_checkpoints):
    bundle = I.load_dataset(f"csv:{tiny_checkpoints.text_data}")
    items = I.dataset_items(bundle, "test", 12)
    stems = [I.download_stem(item) for item in items]
    assert len(set(stems)) == 12 and stems[11].split("_")[-2].endswith("12") and len(stems[0]) <= 60
    assert I.download_stem(I.prepare_review("same", "typed review")) != I.download_stem(
        I.prepare_review("other", "typed review"))


def test_a_shrunk_image_says_so(make_app):
    big = image_bytes(Image.new("RGB", (6000, 4000), (90, 140, 200)), "JPEG")
    item = I.parse_image_upload("photo.jpg", big)
    assert item.value.size == (2048, 1365) and item.size == (6000, 4000)
    assert item.notice.startswith("photo.jpg: 6000x4000 pixels, shrunk to 2048x1365 when read")
    at = as_vision(make_app())
    at.radio(key="source_vision").set_value("Upload images").run()
    upload(at, "upload_vision", [("photo.jpg", big, "image/jpeg")])
    assert any("6000x4000 pixels, shrunk to 2048x1365" in w.value for w in at.warning)


def test_the_ratio_axes_start_at_zero_or_above(make_app):
    at = make_app()
    for spec in plotly_specs(at):
        if "target rationale ratio" in json.dumps(spec["layout"].get("xaxis", {})):
            assert spec["layout"]["xaxis"].get("range", [0.0])[0] >= 0.0, spec["layout"]["title"]["text"]


def test_models_read_at_many_ratios_default_to_the_loaded_pairs_family(make_app, tiny_checkpoints, tmp_path):
    results = tmp_path / "results.csv"
    header = "run,task,role,mode,backbone,ratio,seed,accuracy,source,read_ratio,ratio_range\n"
    rows = "".join(f"text/{family}range/student-re,text,student,re,b,0.1,1,{acc},read_at,{ratio},0.05-0.5\n"
                   for family, acc in (("", 0.8), ("variants/", 0.7)) for ratio in (0.1, 0.3))
    trained = "text/student-re,text,student,re,b,0.1,1,0.75,training,0.1,\n"
    results.write_text(header + trained + rows.replace("variants/range/student-re", "variants/student-re-other"))
    at = make_app(REKD_RESULTS=results)
    families = only(at.multiselect, "range_families")
    assert families.value == [""] and families.options == ["runs without a variant", "other"]  # the loaded pair's
    traces = [t for spec in plotly_specs(at) if "accuracy read at each ratio" in spec["layout"]["title"]["text"]
              for t in spec["data"]]
    curves = [t["y"] for t in traces]
    assert [0.8, 0.8] in curves and [0.7, 0.7] not in curves  # the other family is left out until picked
