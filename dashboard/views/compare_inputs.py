"""The inputs of Compare: typed reviews, uploads, bundled examples, dataset samples and the input another tab
opened here; which of them is shown. Each task keeps its own choices across task switches, uploads included."""
from __future__ import annotations

import streamlit as st

from dashboard import caching
from dashboard import inputs as I
from dashboard.context import PageContext
from dashboard.widgets import FROM_OTHER_VIEW, PICKED, dataset_inputs, kept
from rekd_core.errors import RekdError

DATASET_SAMPLE = "Dataset sample"
BUNDLED = "Bundled example"
SOURCES = {"text": ["Type or paste", "Upload .txt / .csv files", BUNDLED, DATASET_SAMPLE],
           "vision": ["Upload images", BUNDLED, DATASET_SAMPLE]}


def gather_inputs(ctx: PageContext) -> tuple[list[I.InputItem], list[str]]:
    """The input widgets of Compare; the items to explain and one message per bad input."""
    task = ctx.task
    picked = st.session_state.get(PICKED)
    options = list(SOURCES[task])
    if picked is not None and picked.task == task:
        options.append(FROM_OTHER_VIEW)
    key = kept(f"source_{task}", BUNDLED)
    if st.session_state.get(key) not in options:
        st.session_state[key] = BUNDLED
    source = st.radio("Input", options, horizontal=True, key=key)
    items: list[I.InputItem] = []
    errors: list[str] = []
    if source == "Type or paste":
        text = st.text_area("Review", key=kept("review_text"), height=170,
                            placeholder="Type or paste a movie review, then press Ctrl+Enter (or click outside).")
        if text.strip():
            try:
                items.append(I.prepare_review(text, "typed review"))
            except RekdError as exc:
                errors.append(str(exc))
        elif text:
            errors.append("The review is empty (only white space): there is nothing to explain.")
    elif source.startswith("Upload"):
        items += uploaded(task, errors)
    elif source == BUNDLED:
        examples = caching.cached_examples(task)
        index = st.selectbox("Example", range(len(examples)), format_func=lambda i: examples[i].name,
                             key=kept(f"example_{task}"))
        items.append(examples[index or 0])
    elif source == DATASET_SAMPLE:
        spec, split, n, seed = dataset_inputs(ctx, "compare", 20)
        if spec:
            try:
                items += caching.dataset_sample(spec, task, split, n, seed)
            except RekdError as exc:
                errors.append(str(exc))
        else:
            errors.append("No dataset given: type a spec such as csv:DIR or eraser-movies:DIR (reviews with human "
                          "evidence) above.")
    elif source == FROM_OTHER_VIEW:
        items.append(picked)
    return items, errors


def uploaded(task: str, errors: list[str]) -> list[I.InputItem]:
    """The uploaded files of ``task`` as input items. Streamlit forgets an uploader's files when the page stops
    drawing it (another task, another input): the files are kept per task and come back with their uploader; a
    user who removes them from the uploader removes them for good."""
    key, memory = f"upload_{task}", f"uploads_{task}"
    fresh = key not in st.session_state  # a new uploader: drawn for the first time, or again after a switch
    types = list(I.TEXT_UPLOAD_TYPES if task == "text" else I.IMAGE_UPLOAD_TYPES)
    label = ("Reviews: .txt files (one review each) or .csv files (a text/review column)" if task == "text" else
             "Images: PNG, JPEG, WebP or BMP, any size or colour mode")
    files = st.file_uploader(label, type=types, accept_multiple_files=True, key=key) or []
    if files:
        st.session_state[memory] = list(files)
    elif fresh and st.session_state.get(memory):
        files = st.session_state[memory]
        st.caption(f"{len(files)} file(s) uploaded before you switched away, kept: "
                   f"{', '.join(f.name for f in files)}. Upload again to replace them.")
    else:
        st.session_state.pop(memory, None)
    items = []
    for upload in files:
        try:
            items += caching.cached_upload(task, upload.name, upload.getvalue())
        except RekdError as exc:
            errors.append(str(exc))
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{upload.name}: cannot be read ({type(exc).__name__}: {exc})")
    return items


def pick(task: str, items: list[I.InputItem]) -> I.InputItem:
    """The item to show: a box to choose among several. When the list grows (files added to an upload), the box
    moves to the newest one, so that a new upload shows itself at once."""
    key, seen_key = f"pick_{task}", f"_seen_{task}"
    digests = [f"{item.name}|{item.digest}" for item in items]
    seen = st.session_state.get(seen_key, [])
    new = [i for i, digest in enumerate(digests) if digest not in seen]
    if new and set(seen) & set(digests):  # some were there before: the new ones were added to them
        st.session_state[key] = new[0]
    st.session_state[seen_key] = digests
    if len(items) == 1:
        return items[0]
    if st.session_state.get(key) not in range(len(items)):
        st.session_state[key] = 0
    index = st.selectbox(f"Show input ({len(items)} read)", range(len(items)),
                         format_func=lambda i: f"{i + 1}. {items[i].preview(80)}", key=kept(key))
    return items[index or 0]
