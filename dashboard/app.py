"""REKD dashboard: compare a teacher's and a student's rationales on reviews and images.

Run from the repository root: ``streamlit run dashboard/app.py``. Checkpoints are looked for under
``checkpoints/`` (or ``$REKD_CHECKPOINTS``); the ratios view reads ``checkpoints/results.csv`` (or
``$REKD_RESULTS``). Nothing here reaches the network: models load from their directories, and
``.streamlit/config.toml`` turns off Streamlit's usage statistics and first-run prompt.

This file only lays out widgets; the work is in ``backend.py`` and the drawing in ``render.py``.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
import time
import traceback
from collections import OrderedDict
from pathlib import Path

for _name, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_HUB_DISABLE_TELEMETRY", "1"),
                      ("HF_DATASETS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_name, _value)
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from dashboard import backend as B  # noqa: E402
from dashboard import render as R  # noqa: E402
from rekd_core.compatibility import check_dataset_fits  # noqa: E402
from rekd_core.config import DEFAULT_SEED  # noqa: E402
from rekd_core.errors import RekdError  # noqa: E402
from rekd_core.words import evidence_words  # noqa: E402

TYPE_PATH = "__type_a_path__"
FROM_BROWSER = "From the dataset browser"
DATASET_SAMPLE = "Dataset sample"
VIEWS = ["Compare", "Ratios", "Dataset browser"]
EVAL_RATIOS = [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0]
MODES_HELP = f"CLS: {R.GLOSSARY['CLS']}  \nRE: {R.GLOSSARY['RE']}  \nREKD: {R.GLOSSARY['REKD']}"


# ----------------------------------------------------------------------------------------------
# Caches: models load once per (path, device, weights mtime); checkpoint discovery is refreshed
# every few seconds; datasets and the results file are read once per spec / modification.
# ----------------------------------------------------------------------------------------------


@st.cache_resource(max_entries=8, show_spinner="Loading model…")
def cached_model(path: str, device: str, mtime: float):
    model = B.load_model(path, device)
    B.warm_up(model)
    return model


@st.cache_data(ttl=10, show_spinner=False)
def cached_discovery(root: str):
    return B.discover_checkpoints(root)


@st.cache_resource(max_entries=2, show_spinner="Reading the dataset…")
def cached_dataset(spec: str):
    return B.load_dataset(spec)


def read_dataset(spec: str):
    """The dataset ``spec`` names, read once (``cached_dataset``), and only when its path lies inside
    ``$REKD_ALLOWED_ROOTS``: checked on every call, before the cache, so a cached dataset is no way round it."""
    B.check_dataset_allowed(spec)
    return cached_dataset(spec)


def dataset_sample(spec: str, task: str, split: str, n: int, seed: int) -> list:
    """A sample of the dataset ``spec`` as input items (``read_dataset``, then ``cached_dataset_items``)."""
    return cached_dataset_items(spec, task, split, n, seed, read_dataset(spec))


@st.cache_resource(max_entries=4, show_spinner="Sampling the dataset…")
def cached_dataset_items(spec: str, task: str, split: str, n: int, seed: int, _bundle) -> list:
    """A dataset sample as input items (with their human evidence, where the dataset has some); ``_bundle``
    is the dataset ``spec`` names (not hashed: the spec stands for it in the cache key)."""
    if _bundle.task != task:
        raise RekdError(f"{spec} is a {_bundle.task} dataset, but the task picked is {task}")
    return B.dataset_items(_bundle, split, n, seed)


@st.cache_data(max_entries=4, show_spinner=False)
def cached_results(path: str, mtime: float, headlines: dict):
    return B.load_results(path, headlines)


@st.cache_data(max_entries=4, show_spinner=False)
def cached_range_comparison(path: str, mtime: float, headlines: dict):
    return B.ratio_range_comparison(path, headlines=headlines)


@st.cache_data(max_entries=4, show_spinner=False)
def cached_headlines(written: str, what: str, recipe_mtime: float) -> dict:
    return B.recipe_headlines(written, what)


@st.cache_resource(max_entries=64, show_spinner=False)
def cached_upload(task: str, name: str, data: bytes) -> list:
    """Uploads are decoded once, not on every rerun (failures are not cached: they raise again)."""
    return B.parse_text_upload(name, data) if task == "text" else [B.parse_image_upload(name, data)]


@st.cache_resource(show_spinner=False)
def cached_examples(task: str):
    return B.load_examples(task)


@st.cache_resource(show_spinner=False)
def explanation_store() -> tuple[OrderedDict, threading.Lock]:
    """Recent explanations, so that a rerun caused by another widget does not run the models again
    (shared by all sessions: an explanation depends only on the models, the input and the ratio)."""
    return OrderedDict(), threading.Lock()


def explain_cached(ctx, item: B.InputItem, ratio: float, agreement: bool, fit: str) -> B.PairResult:
    if item.kind == "text":
        digest = hashlib.sha1(item.value.encode("utf-8", "surrogatepass")).hexdigest()
    else:
        digest = hashlib.sha1(item.value.tobytes()).hexdigest() + f"{item.value.size}"
    key = (ctx["pair_key"], str(ctx["device"]), B.weights_mtime(ctx["teacher_path"]),
           B.weights_mtime(ctx["student_path"]), ratio, agreement, item.kind, digest, fit,
           None if item.evidence is None else tuple(map(tuple, item.evidence)))
    store, lock = explanation_store()
    with lock:
        if key in store:
            store.move_to_end(key)
            return store[key]
    result = B.explain_pair(ctx["teacher"], ctx["student"], item, ratio, agreement=agreement, fit=fit)
    with lock:
        store[key] = result
        while len(store) > 64:
            store.popitem(last=False)
    return result


@contextlib.contextmanager
def guard(what: str):
    """Show any failure of one part of the page as a message; the rest of the page keeps working."""
    try:
        yield
    except RekdError as exc:
        st.error(str(exc))
    except Exception as exc:  # a bug, not a user error: say so, with the details folded away
        st.error(f"{what}: unexpected error ({type(exc).__name__}: {exc})")
        with st.expander("Details"):
            st.code(traceback.format_exc())


# ----------------------------------------------------------------------------------------------
# Sidebar: task, device, checkpoints, ratio
# ----------------------------------------------------------------------------------------------


def pick_checkpoint(role: str, task: str, infos: list, default: int | None) -> str:
    """A selectbox of the discovered checkpoints and a "type a path" choice; the chosen path."""
    key = f"{role}_{task}"
    if infos:
        options = [info.path for info in infos] + [TYPE_PATH]
        labels = {info.path: info.option_label for info in infos}
        labels[TYPE_PATH] = "Other directory (type a path)…"
        choice = st.selectbox(f"{role.title()} checkpoint", options, index=default or 0, key=key,
                              format_func=lambda p: labels.get(p, p), help=MODES_HELP)
        if choice != TYPE_PATH:
            return choice
    return st.text_input(f"{role.title()} checkpoint directory", key=f"{key}_path",
                         placeholder="/path/to/checkpoint (a folder with config.json)").strip()


def load(path: str, device) -> tuple[object | None, str | None]:
    if not path:
        return None, None
    try:
        B.check_allowed_path(path, "this checkpoint directory")  # before anything touches it, cache included
        return cached_model(path, str(device), B.weights_mtime(path)), None
    except RekdError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - never let a broken checkpoint take the page down
        return None, f"{path}: cannot load this checkpoint ({type(exc).__name__}: {exc})"


def sidebar():
    with st.sidebar:
        return _sidebar()


def _sidebar():
    st.title("REKD dashboard")
    task = st.radio("Task", list(B.TASKS), format_func=B.TASKS.get, key="task")
    choice = st.selectbox("Device", ["auto", "cuda", "mps", "cpu"], key="device",
                          help="auto picks a CUDA GPU, then Apple MPS, then the CPU")
    device, warning = B.pick_device(choice)
    st.caption(f"In use: **{B.device_description(device)}**")
    if warning:
        st.warning(warning)

    root = B.checkpoints_root()
    st.subheader("Models")
    try:
        B.check_allowed_path(root, "The checkpoints folder (REKD_CHECKPOINTS)")
        infos, problems = cached_discovery(str(root))
    except RekdError as exc:
        st.error(str(exc))
        infos, problems = [], []
    task_infos = [info for info in infos if info.task == task]
    if not task_infos and B.is_allowed_path(root):
        st.info(f"No {task} checkpoints found under `{root}`. Type checkpoint directories below, "
                "or set REKD_CHECKPOINTS to a folder of checkpoints.")
    if problems:
        with st.expander(f"{len(problems)} folder(s) under the checkpoints root skipped"):
            for line in problems:
                st.caption(line)
    t_default, s_default = B.default_pair(task_infos, cached_headlines(str(root), "checkpoints", B.recipe_mtime()))
    teacher_path = pick_checkpoint("teacher", task, task_infos, t_default)
    student_path = pick_checkpoint("student", task, task_infos, s_default)
    teacher, t_error = load(teacher_path, device)
    student, s_error = load(student_path, device)

    models = {"teacher": teacher, "student": student}
    spans = {role: B.trained_range(m.config) for role, m in models.items() if m is not None}
    pair_key = (teacher_path, student_path)
    ratio = ratio_slider(models, spans, pair_key)
    names = {"teacher": Path(teacher_path).name, "student": Path(student_path).name}
    return dict(task=task, device=device, names=names, infos=task_infos,
                teacher_path=teacher_path, student_path=student_path, teacher=teacher, student=student,
                errors={"teacher": t_error, "student": s_error}, ratio=ratio, pair_key=pair_key,
                spans=spans)


def ratio_slider(models: dict, spans: dict, pair_key: tuple) -> float:
    """The ratio slider, starting at the trained ratio of the pair, with each model's trained ratio (or
    range) marked under it."""
    trained = [m.ratio for m in (models["student"], models["teacher"]) if m is not None and m.generator is not None]
    start = min(max(round(trained[0], 2) if trained else 0.1, 0.01), 1.0)
    # A new pair starts at its trained ratio. Otherwise the trained ratio is also the slider's own default:
    # a click during the page's first run makes the browser redraw the slider at its default, and without
    # one it showed (and then sent) 0.01. (Both at once would make Streamlit warn.)
    default = {"value": start}
    if st.session_state.get("_pair") != pair_key or "ratio" not in st.session_state:
        st.session_state["_pair"] = pair_key
        st.session_state["ratio"] = start
        default = {}
    ratio = st.slider("Rationale ratio (top-k at inference)", 0.01, 1.0, step=B.RATIO_STEP, key="ratio",
                      help=R.GLOSSARY["ratio"], **default)
    marks = [(role, *span, colour) for (role, span), colour in zip(spans.items(), (R.TEACHER, R.STUDENT)) if span]
    if marks:
        st.html(R.ratio_marks_html(ratio, marks))
    cls_roles = [role for role, m in models.items() if m is not None and spans.get(role) is None]
    if cls_roles:
        st.caption(" and ".join(cls_roles).capitalize() + ": CLS, reads everything at any ratio.",
                   help=R.GLOSSARY["CLS"])
    return float(ratio)


def model_cards(ctx) -> B.PairCheck | None:
    columns = st.columns(2)
    for column, role, colour in zip(columns, ("teacher", "student"), (R.TEACHER, R.STUDENT)):
        with column:
            path, error = ctx[f"{role}_path"], ctx["errors"][role]
            if not path:
                st.info(f"No {role} picked: choose one in the sidebar or type its directory.")
                continue
            if error:
                st.error(f"{role.title()}: {error}")
                continue
            with guard(f"{role} card"):
                info = B.describe_checkpoint(path, B.checkpoints_root())
                if not Path(info.name).is_absolute():  # under the checkpoints root: its short name
                    ctx["names"][role] = info.name
                st.html(R.model_card_html(info, role.title(), colour, B.teacher_note(info, ctx["infos"])))
    teacher, student = ctx["teacher"], ctx["student"]
    if teacher is None or student is None:
        return None
    check = B.check_pair(teacher, student, ctx["task"])
    if check.fatal:
        st.error(check.fatal)
    for note in check.notes:
        st.warning(note)
    return check


# ----------------------------------------------------------------------------------------------
# Compare view
# ----------------------------------------------------------------------------------------------


def gather_inputs(ctx) -> tuple[list[B.InputItem], list[str]]:
    """The input widgets of the compare view; the items to explain and one message per bad input."""
    task = ctx["task"]
    items: list[B.InputItem] = []
    errors: list[str] = []
    picked = st.session_state.get("browser_pick")
    options = ["Type or paste", "Upload .txt / .csv files", "Bundled example"] if task == "text" else \
              ["Upload images", "Bundled example"]
    options.append(DATASET_SAMPLE)
    if picked is not None and picked.task == task:
        options.append(FROM_BROWSER)
    key = f"source_{task}"
    if st.session_state.get(key) not in options:
        st.session_state[key] = "Bundled example"
    source = st.radio("Input", options, horizontal=True, key=key)
    if source == "Type or paste":
        text = st.text_area("Review", key="review_text", height=170,
                            placeholder="Type or paste a movie review, then press Ctrl+Enter (or click outside).")
        if text.strip():
            try:
                items.append(B.prepare_review(text, "typed review"))
            except RekdError as exc:
                errors.append(str(exc))
        elif text:
            errors.append("The review is empty (only white space): there is nothing to explain.")
    elif source.startswith("Upload"):
        types = list(B.TEXT_UPLOAD_TYPES if task == "text" else B.IMAGE_UPLOAD_TYPES)
        label = ("Reviews: .txt files (one review each) or .csv files (a text/review column)" if task == "text" else
                 "Images: PNG, JPEG, WebP or BMP, any size or colour mode")
        files = st.file_uploader(label, type=types, accept_multiple_files=True, key=f"upload_{task}") or []
        for upload in files:
            try:
                items += cached_upload(task, upload.name, upload.getvalue())
            except RekdError as exc:
                errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{upload.name}: cannot be read ({type(exc).__name__}: {exc})")
    elif source == "Bundled example":
        examples = cached_examples(task)
        index = st.selectbox("Example", range(len(examples)), format_func=lambda i: examples[i].name,
                             key=f"example_{task}")
        items.append(examples[index or 0])
    elif source == DATASET_SAMPLE:
        spec, split, n, seed = dataset_inputs(ctx, "compare", 20)
        if spec:
            try:
                items += dataset_sample(spec, task, split, n, seed)
            except RekdError as exc:
                errors.append(str(exc))
        else:
            errors.append("No dataset given: type a spec such as csv:DIR or eraser-movies:DIR (reviews with human "
                          "evidence) above.")
    elif source == FROM_BROWSER:
        items.append(picked)
    return items, errors


def explanation_column(role: str, name: str, exp, colour: str, item: B.InputItem, view, ctx, max_length,
                       plausibility: dict | None = None, fit: str = "squash") -> dict:
    """One model's prediction and rationale (``view``: the image as it read it), with its plausibility
    against the human evidence when the input has some; returns the images drawn (for the downloads)."""
    drawn = {}
    st.markdown(f"#### :{'blue' if role == 'Teacher' else 'orange'}[{role}]: {name}")
    warning = B.range_warning(role.lower(), ctx["ratio"], ctx["spans"].get(role.lower()))
    if warning:
        st.warning(warning, icon="⚠️")
    st.html(R.probs_html(exp, colour, true_label=item.label))
    if item.evidence is not None and item.kind == "text":
        st.caption(f"Against the human evidence: {R.plausibility_line(plausibility)}.", help=R.GLOSSARY["plausibility"])
    what, one = ("word pieces", "word piece") if item.kind == "text" else ("patches", "patch")
    if exp.scores:
        picked = f"Selected {len(exp.selected)} of {exp.num_features} {what} (achieved ratio {exp.ratio:.3f})"
        if item.kind == "text":
            words, total = R.word_counts(exp)
            picked += f", {words} of {total} words highlighted."
        else:
            picked += f" on a {exp.grid_side}x{exp.grid_side} grid of {exp.patch_size}px patches."
        st.caption(picked, help=R.GLOSSARY["word pieces" if item.kind == "text" else "rationale"] + "  \n"
                   + R.GLOSSARY["achieved ratio"])
    else:
        st.caption(f"CLS model: it reads every {one}, so it has no rationale to show.", help=R.GLOSSARY["CLS"])
    if item.kind == "text":
        st.html(R.highlight_html(item.value, exp, colour, max_length))
    else:
        selected = exp.selected if exp.scores else range(exp.grid_side ** 2)
        drawn["overlay"] = R.patch_overlay(view, selected, exp.grid_side, colour)
        drawn["original"] = R.display_image(item.value)
        drawn["view"] = view
        boxes = B.cell_boxes(item.value.width, item.value.height, exp.grid_side, fit)
        left, right = st.columns(2)
        left.image(R.original_overlay(item.value, boxes, selected, colour),
                   caption=f"{role.lower()}'s patches on the original ({item.value.width}x{item.value.height})")
        read = f"{view.width}x{view.height}"
        right.image(drawn["overlay"], caption=f"{role.lower()}'s patches on the {read} it read (unselected dimmed)")
    return drawn


def compare_view(ctx, check: B.PairCheck | None, is_open: bool):
    task = ctx["task"]
    items, errors = gather_inputs(ctx)
    for message in errors:
        st.error(message)
    notices = [item.notice for item in items if item.notice]
    for notice in notices[:5]:
        st.warning(notice)
    if len(notices) > 5:
        st.warning(f"… and {len(notices) - 5} more notices like these.")
    if not items:
        if not errors:
            st.info("Give an input above: " + ("type or paste a review, upload .txt or .csv files, or pick a bundled "
                                               "example." if task == "text"
                                               else "upload images or pick a bundled example."))
        return
    if len(items) > 1:
        index = st.selectbox(f"Show input ({len(items)} read)", range(len(items)),
                             format_func=lambda i: f"{i + 1}. {items[i].preview(80)}", key=f"pick_{task}")
        item = items[index or 0]
    else:
        item = items[0]
    teacher, student = ctx["teacher"], ctx["student"]
    if teacher is None or student is None or check is None or check.fatal:
        st.info("The comparison needs a working teacher and student of this task: see the messages above.")
        return
    fit, fit_notes = image_fit(item, teacher, student) if task == "vision" else ("squash", [])
    if not is_open:
        return
    ratio = ctx["ratio"]
    result = explain_cached(ctx, item, ratio, check.agreement, fit)
    max_length = teacher.processor.max_length if task == "text" else None
    if task == "text" and (result.teacher.truncated or result.student.truncated):
        st.info(f"The review is longer than the models read ({max_length} word pieces): the rest is greyed out below.")
    names = {"Teacher": ctx["names"]["teacher"], "Student": ctx["names"]["student"]}
    human = item.evidence is not None and task == "text"
    columns = st.columns(3 if human else 2)
    drawn = {}
    for column, role, exp, colour in zip(columns, ("Teacher", "Student"), (result.teacher, result.student),
                                         (R.TEACHER, R.STUDENT)):
        with column:
            drawn[role] = explanation_column(role, names[role], exp, colour, item, result.views.get(role.lower()),
                                             ctx, max_length, result.plausibility.get(role.lower()), fit)
    if human:
        with columns[2]:
            human_column(item, result, max_length)

    st.subheader("Agreement")
    cmp = result.comparison
    agreement_image = None
    if check.same_labels:
        agreement_metrics(result)
    if cmp is None:
        st.info("The rationale agreement view needs a teacher and a student that both select features (no CLS "
                "model), with the same labels and feature grid.")
    else:
        st.html(R.legend_html(f"teacher ({names['Teacher']})", f"student ({names['Student']})"))
        if task == "text":
            st.html(R.agreement_html(item.value, result.teacher, cmp, max_length))
        else:
            agreement_image = R.agreement_overlay(drawn["Teacher"]["view"], cmp, result.teacher.grid_side)
            left, right, _ = st.columns([1, 1, 2])
            left.image(drawn["Teacher"]["original"], caption="original")
            right.image(agreement_image, caption="agreement: both, teacher only, student only")
    st.caption(f"Both explanations took {1000 * result.seconds:.0f} ms on {B.device_description(ctx['device'])}.")

    warnings = [B.range_warning(role, ratio, ctx["spans"].get(role)) for role in ("teacher", "student")]
    view = R.ComparisonView(
        input_name=item.name, kind=item.kind, teacher_name=names["Teacher"], student_name=names["Student"],
        teacher_exp=result.teacher, student_exp=result.student, comparison=cmp, ratio=ratio,
        text=item.value if item.kind == "text" else None, true_label=item.label, max_length=max_length,
        original=drawn["Teacher"].get("original"), teacher_overlay=drawn["Teacher"].get("overlay"),
        student_overlay=drawn["Student"].get("overlay"), agreement_image=agreement_image,
        notes=[n for n in (item.notice, *fit_notes, *warnings) if n],
        evidence=item.evidence if human else None, plausibility=result.plausibility)
    stem = "comparison_" + "".join(c if c.isalnum() else "_" for c in item.name)[:40]
    left, right, _ = st.columns([1, 1, 2])
    left.download_button("Download comparison (PNG)", data=lambda: R.comparison_png(view), file_name=f"{stem}.png",
                         mime="image/png", key="download_png", on_click="ignore")
    right.download_button("Download comparison (HTML)", data=lambda: R.comparison_html(view).encode("utf-8"),
                          file_name=f"{stem}.html", mime="text/html", key="download_html", on_click="ignore")


def human_column(item: B.InputItem, result: B.PairResult, max_length: int | None) -> None:
    """The third column of a review with human evidence (ERASER): the words the annotators marked, and
    how plausible each model's rationale is against them."""
    st.markdown("#### :violet[Human evidence]")
    words = len(item.value.split())
    marked = len(evidence_words(item.evidence, words))
    st.caption(f"{marked} of {words} words marked as evidence by human annotators. Teacher "
               f"F1 {R.format_score((result.plausibility.get('teacher') or {}).get('f1'))}, student "
               f"F1 {R.format_score((result.plausibility.get('student') or {}).get('f1'))}.",
               help=R.GLOSSARY["plausibility"])
    if not marked:
        st.info("The annotators marked no word of this review: there is no plausibility to score.")
    st.html(R.human_html(item.value, item.evidence, R.read_chars(item.value, (result.teacher, result.student)),
                         max_length))


def image_fit(item: B.InputItem, teacher, student) -> tuple[str, list[str]]:
    """The choice of how an image is fitted to the models' square input, and the lines that say what
    that does to this image (shown here and in the downloads)."""
    fit = st.radio("Fit the image to the model's square input", list(B.FIT_MODES), horizontal=True, key="image_fit",
                   format_func=lambda mode: B.FIT_MODES[mode].partition(":")[0],
                   help="  \n".join(B.FIT_MODES.values()))
    width, height = item.value.size
    sizes = sorted({teacher.processor.image_size, student.processor.image_size})
    notes = [B.describe_fit(width, height, size, fit) for size in sizes]
    for note in notes:
        st.caption(note)
    warning = B.small_image_warning(item.name, width, height, sizes[-1])
    if warning:
        st.warning(warning)
        notes.append(warning)
    return fit, notes


def agreement_metrics(result: B.PairResult) -> None:
    """Prediction agreement and, when both select over one grid, the overlap of the two rationales. No
    verdict where a model saw no feature, and no IoU where neither selected anything (undefined)."""
    t_exp, s_exp, cmp = result.teacher, result.student, result.comparison
    m = st.columns(4)
    blind = [role for role, exp in (("teacher", t_exp), ("student", s_exp)) if R.saw_no_features(exp)]
    if blind:
        m[0].metric("Predictions", R.UNDEFINED, f"{' and '.join(blind)} saw no features", delta_color="off",
                    delta_arrow="off", help="A model that picked no feature has no prediction to compare.")
    else:
        agree = t_exp.label.lower() == s_exp.label.lower()
        m[0].metric("Predictions", "agree" if agree else "disagree", f"teacher {t_exp.label}, student {s_exp.label}",
                    delta_color="off", delta_arrow="off", help=R.GLOSSARY["agreement"])
    if cmp is None:
        return
    undefined = " Here neither model picked a feature, so there is nothing to overlap." if cmp["iou"] is None else ""
    m[1].metric("Mask IoU", R.format_score(cmp["iou"]), help=R.GLOSSARY["mask IoU"] + undefined)
    m[2].metric("Mask F1", R.format_score(cmp["f1"]), help=R.GLOSSARY["mask F1"] + undefined)
    m[3].metric("Both / teacher only / student only",
                f"{len(cmp['both'])} / {len(cmp['teacher_only'])} / {len(cmp['student_only'])}",
                help=R.GLOSSARY["overlap counts"])


# ----------------------------------------------------------------------------------------------
# Ratios view
# ----------------------------------------------------------------------------------------------


def ratios_view(ctx, check):
    st.subheader("Accuracy and sparsity across rationale ratios")
    default = str(B.default_results_path())
    path = st.text_input("Results file (one row per run)", value=default, key="results_path").strip()
    try:
        B.check_allowed_path(path, "This results file")
    except RekdError as exc:
        st.error(str(exc))
    else:
        results_file(ctx, path)
    st.divider()
    with guard("Live evaluation"):
        live_evaluation(ctx, check)


def results_file(ctx, path: str):
    """The plots and tables of the results file at ``path`` (one the page may read), or why there are none."""
    try:
        mtime = os.path.getmtime(path) if path and os.path.isfile(path) else 0.0
        headlines = cached_headlines(path, "results", B.recipe_mtime())
        frame = cached_results(path, mtime, headlines)
    except RekdError as exc:
        if path and not os.path.exists(path):
            st.info(f"No results file at `{path}` yet: it is written when the checkpoints are trained and evaluated "
                    "across ratios. Type another path above, or evaluate the loaded pair live below.")
        else:
            st.error(str(exc))
    else:
        with guard("Results"):
            results_section(ctx, frame, headlines)
        with guard("Models read at many ratios"):
            range_section(ctx, cached_range_comparison(path, mtime, headlines))


def results_section(ctx, frame, headlines: dict):
    tasks = sorted(frame["task"].astype(str).unique())
    default = B.results_task_for(tasks, ctx["task"]) or tasks[0]
    left, middle, right = st.columns(3)
    chosen = left.selectbox("Task in the results file", tasks, index=tasks.index(default),
                           key=f"results_task_{ctx['task']}")
    part = frame[frame["task"] == chosen]
    modes = sorted(part["mode"].unique(), key=lambda m: list(B.MODES).index(m) if m in B.MODES else 9)
    picked_modes = middle.multiselect("Modes", modes, default=modes, format_func=lambda m: B.MODES.get(m, m.upper()),
                                      key="results_modes", help=MODES_HELP)
    base_roles = part["role"].map(B.base_role)
    roles = sorted(base_roles.unique())
    picked_roles = right.multiselect("Roles", roles, default=roles, key="results_roles")
    variants = sorted(set(part["series_family"]) - {""})
    names = loaded_run_names(ctx)  # the loaded models' series: as the file records them, else from their names
    loaded = set(part.loc[part["run"].isin(names), "series_family"]) | {B.series_family(n, headlines) for n in names}
    picked_variants = st.multiselect(
        "Other families, each its own series (starred; those of the models loaded above are picked); the "
        "headline's runs are always shown", variants, default=[v for v in variants if v in loaded],
        key=f"results_variants_{ctx['task']}") if variants else []  # one per task: its default is read when first shown
    part = part[part["mode"].isin(picked_modes) & base_roles.isin(picked_roles)
                & part["series_family"].isin(["", *picked_variants])]
    if part.empty:
        st.info("No run matches these filters.")
        return
    agg = B.aggregate_results(part)
    seeds = int(agg["runs"].max())
    st.caption(f"{len(part)} runs; points are means over up to {seeds} seeds, bars one standard deviation. "
               "A CLS model reads everything: it is drawn as a dashed line.")
    st.plotly_chart(R.results_figure(agg, "accuracy"), key="results_accuracy")
    if (agg["mode"] != "cls").any():
        st.plotly_chart(R.achieved_ratio_figure(agg), key="results_sparsity")
    else:
        st.caption("No RE or REKD run among these: no sparsity to plot (a CLS model reads everything).")
    students = agg[agg["role"].str.startswith("student")]
    for metric, title in (("teacher_agreement", "students: prediction agreement with the teacher"),
                          ("teacher_mask_iou", "students: rationale (mask) IoU with the teacher")):
        if f"{metric}_mean" in agg and students[f"{metric}_mean"].notna().any():
            st.plotly_chart(R.results_figure(students, metric, title), key=f"results_{metric}")
    st.dataframe(agg, hide_index=True, key="results_table", column_config=readable_columns(agg))
    left, right, _ = st.columns([1, 1, 3])
    left.download_button("Download summary (CSV)", R.csv_bytes(agg), "results_summary.csv", "text/csv",
                         key="download_results_summary", on_click="ignore")
    right.download_button("Download runs (CSV)", R.csv_bytes(part), "results_runs.csv", "text/csv",
                          key="download_results_runs", on_click="ignore")


def range_section(ctx, comparison):
    """Models trained over a range of ratios, read at each ratio, against the fixed-ratio models."""
    st.markdown("**Models read at many ratios**")
    task = B.results_task_for(sorted(comparison["task"].astype(str).unique()), ctx["task"])
    part = comparison[comparison["task"] == task]
    if part.empty:
        st.caption("No model of this task has been read at several ratios yet (the recipe's `read_at`).")
        return
    st.plotly_chart(R.ratio_range_figure(part), key="results_ratio_range")
    st.dataframe(part, hide_index=True, key="results_ratio_range_table")


def loaded_run_names(ctx) -> list[str]:
    """The run names (paths under the checkpoints root) of the loaded teacher and student."""
    names = {info.path: info.name for info in ctx["infos"]}
    return [names.get(ctx[f"{role}_path"], str(ctx[f"{role}_path"])) for role in ("teacher", "student")]


def dataset_inputs(ctx, prefix: str, default_n: int):
    """Dataset spec, split, sample size and seed widgets (the student's training data by default)."""
    default_spec = B.default_dataset_spec(ctx["student_path"])
    a, b, c, d = st.columns([3, 1, 1, 1])
    # One field per task and default: switching the task (or to a student trained on other data) brings a
    # field that holds that task's dataset, not the spec typed for the other one.
    spec = a.text_input("Dataset (csv:DIR, jsonl:DIR, imagefolder:DIR, aclimdb:PATH, eraser-movies:DIR, "
                        "cifar10:PATH, …)",
                        value=default_spec, key=f"{prefix}_spec|{ctx['task']}|{default_spec}").strip()
    split = b.selectbox("Split", ["test", "dev", "train"], key=f"{prefix}_split")
    n = c.number_input("Sample size", 1, B.MAX_SAMPLE, default_n, key=f"{prefix}_n")
    seed = d.number_input("Seed", 0, 2**31 - 1, DEFAULT_SEED, key=f"{prefix}_seed")
    return spec, split, int(n), int(seed)


def live_evaluation(ctx, check):
    st.subheader("Evaluate the loaded pair live")
    st.caption("Accuracy, achieved ratio and agreement of the teacher and the student on a stratified sample of a "
               "dataset, with the top-k selection re-done at each ratio.")
    spec, split, n, seed = dataset_inputs(ctx, "eval", 200)
    ratios = st.multiselect("Rationale ratios", EVAL_RATIOS, default=[0.05, 0.1, 0.2, 0.5, 1.0], key="eval_ratios")
    ready = ctx["teacher"] is not None and ctx["student"] is not None and check is not None and not check.fatal
    if st.button("Evaluate", key="eval_run", disabled=not ready, type="primary"):
        bundle = read_dataset(spec)
        check_dataset_fits(bundle, ctx["student"])
        sample = B.sample_split(bundle, split, n, seed)
        bar = st.progress(0.0, text="Evaluating…")
        started = time.perf_counter()
        frame = B.evaluate_pair(ctx["teacher"], ctx["student"], sample, ratios, check,
                                progress=lambda f, text: bar.progress(min(f, 1.0), text=text)).frame
        bar.progress(1.0, text=f"Done: {len(sample)} examples x {len(ratios)} ratios "
                               f"in {time.perf_counter() - started:.1f} s")
        st.session_state["live_eval"] = {"frame": frame, "pair": ctx["pair_key"],
                                         "what": f"{spec} ({split}, n={len(sample)})"}
    if not ready:
        st.caption("Load a compatible teacher and student to evaluate them.")
    result = st.session_state.get("live_eval")
    if result is not None:
        if result["pair"] != ctx["pair_key"]:
            st.caption("These numbers are for the previously loaded pair: evaluate again for the current one.")
        st.markdown(f"**Live evaluation** on {result['what']}")
        st.plotly_chart(R.live_eval_figure(result["frame"]), key="live_eval_chart")
        st.dataframe(result["frame"], hide_index=True, key="live_eval_table",
                     column_config=readable_columns(result["frame"]))
        st.download_button("Download live evaluation (CSV)", R.csv_bytes(result["frame"]), "live_evaluation.csv",
                           "text/csv", key="download_live_eval", on_click="ignore")


def readable_columns(frame) -> dict:
    """Short column headers with their meaning as a tooltip (wide tables cut long headers), numbers to
    three decimals."""
    config = {}
    for column, (label, meaning) in R.column_labels(frame.columns).items():
        if frame[column].dtype.kind == "f":
            config[column] = st.column_config.NumberColumn(label, help=meaning, format="%.3f")
        else:
            config[column] = st.column_config.Column(label, help=meaning)
    return config


# ----------------------------------------------------------------------------------------------
# Dataset browser
# ----------------------------------------------------------------------------------------------


def open_in_comparison(item: B.InputItem):
    st.session_state["browser_pick"] = item
    st.session_state[f"source_{item.task}"] = FROM_BROWSER
    st.session_state["view"] = "Compare"


def browser_view(ctx, check):
    st.subheader("Browse a sample, sorted by teacher-student disagreement")
    task = ctx["task"]
    source = st.radio("Sample from", ["Bundled examples", "A local dataset"], horizontal=True, key="browse_source")
    if source == "A local dataset":
        spec, split, n, seed = dataset_inputs(ctx, "browse", 50)
    ready = ctx["teacher"] is not None and ctx["student"] is not None and check is not None and not check.fatal
    if st.button("Rank by disagreement", key="browse_run", disabled=not ready, type="primary"):
        if source == "Bundled examples":
            items, what = cached_examples(task), "the bundled examples"
        else:
            bundle = read_dataset(spec)
            if bundle.task != task:
                raise RekdError(f"{spec} is a {bundle.task} dataset, but the task picked is {task}")
            items, what = B.dataset_items(bundle, split, n, seed), f"{spec} ({split}, n={n}, seed {seed})"
        bar = st.progress(0.0, text="Explaining…")
        frame = B.rank_by_disagreement(ctx["teacher"], ctx["student"], items, ctx["ratio"], agreement=check.agreement,
                                       progress=lambda f, text: bar.progress(min(f, 1.0), text=text))
        bar.empty()
        ranking = st.session_state.get("browser", {}).get("ranking", 0) + 1
        st.session_state["browser"] = {"items": items, "frame": frame, "pair": ctx["pair_key"], "ratio": ctx["ratio"],
                                       "what": what, "task": task, "ranking": ranking}
    if not ready:
        st.caption("Load a compatible teacher and student to rank a sample.")
    state = st.session_state.get("browser")
    if state is None or state["task"] != task:
        return
    if state["pair"] != ctx["pair_key"] or state["ratio"] != ctx["ratio"]:
        st.caption("Ranked with another pair or ratio: rank again to refresh.")
    frame, items = state["frame"], state["items"]
    sorts = B.ranking_sorts(frame)
    sort = "disagreement"
    if len(sorts) > 1:
        sort = st.selectbox("Sort by", sorts, key=f"browser_sort_{state['ranking']}", help=R.GLOSSARY["plausibility"])
        frame = B.sort_ranking(frame, sort)
    order = ("rows where the predictions differ first, then by lowest mask IoU." if sort == "disagreement" else
             f"sorted by {sort} (rows without a score last).")
    st.markdown(f"**{len(frame)} inputs** from {state['what']}, at ratio {state['ratio']:g}: {order}")
    if len(sorts) > 1:
        st.caption("This sample has human evidence: each model's plausibility F1 against it is in the table.",
                   help=R.GLOSSARY["plausibility"])
    for role in ("teacher", "student"):
        warning = B.range_warning(role, state["ratio"], ctx["spans"].get(role))
        if warning:
            st.warning(warning, icon="⚠️")
    # The table and the row box are new widgets for each ranking: kept across rankings, the browser would
    # show the previous ranking's row in the box while the table and "Open" use the new one.
    # So are they for each order: a row number picked in one order names another row in the next.
    table_key, row_key = f"browser_table_{state['ranking']}_{sort}", f"browser_row_{state['ranking']}_{sort}"

    def table_clicked():
        rows = st.session_state[table_key].selection.rows
        if rows:
            st.session_state[row_key] = rows[0]

    st.caption("Click a row (or pick it below) to choose what to open in the comparison.")
    shown = frame.drop(columns=["disagreement"])
    st.dataframe(shown, hide_index=True, key=table_key, on_select=table_clicked, selection_mode="single-row",
                 column_config=readable_columns(shown))
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    rank = left.selectbox("Row to open", range(len(frame)), key=row_key,
                          format_func=lambda k: f"{k + 1}. {frame.loc[k, 'input']} (teacher {frame.loc[k, 'teacher']}, "
                                                f"student {frame.loc[k, 'student']})")
    right.button("Open in comparison", key="browser_open", on_click=open_in_comparison,
                 args=(items[int(frame.loc[rank or 0, "row"])],))
    st.download_button("Download table (CSV)", R.csv_bytes(frame), "disagreement.csv", "text/csv",
                       key="download_browser", on_click="ignore")


# ----------------------------------------------------------------------------------------------


def main():
    st.set_page_config(page_title="REKD: teacher vs student rationales", page_icon="🔍", layout="wide")
    B.keep_uploads_in_memory(st.get_option("server.maxUploadSize"))  # before any upload: they come from this page
    B.configure_torch_threads()
    ctx = sidebar()
    st.title("Teacher vs student rationales")
    st.caption("A select-predict model highlights the features (word pieces or image patches) it bases its prediction "
               "on. Compare what a REKD student learned to select with its teacher's rationale.")
    with st.expander("How to read this"):
        st.markdown(R.HOW_TO_READ)
    check = None
    with guard("Models"):
        check = model_cards(ctx)
    if st.session_state.get("view") not in VIEWS:
        st.session_state["view"] = VIEWS[0]
    tabs = st.tabs(VIEWS, key="view", on_change="rerun")
    with tabs[0], guard("Compare"):
        compare_view(ctx, check, tabs[0].open is not False)
    with tabs[1], guard("Ratios"):
        ratios_view(ctx, check)
    with tabs[2], guard("Dataset browser"):
        browser_view(ctx, check)


main()
