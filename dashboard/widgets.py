"""Widgets and page state that several views share: a part of the page that fails without taking the rest down
(``guard``), tables with short headers and their meaning as tooltips (``table``), the dataset fields, widget values
that outlive a task switch (``kept``), and opening an input in Compare from another view."""
from __future__ import annotations

import contextlib
import traceback
from typing import Callable

import streamlit as st

from dashboard import caching
from dashboard import inputs as I
from dashboard.checkpoints import default_dataset_spec
from dashboard.context import PageContext
from dashboard.render.glossary import column_labels
from dashboard.render.style import UNDEFINED
from rekd_core.config import DEFAULT_SEED
from rekd_core.errors import RekdError

KEPT = "_kept_widgets"
FROM_OTHER_VIEW = "From another tab"  # Compare's input when the browser or the summary opened one there
PICKED = "picked_input"  # the input another view opened in Compare


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


def kept(key: str, default=None) -> str:
    """``key``, for a widget whose value must outlive the runs that do not draw it (another task's field, a hidden
    choice): Streamlit forgets the value of a widget a run does not draw. ``default`` is its first value, set
    here, so the widget itself takes none (a widget given both a value and a key set here makes Streamlit warn)."""
    st.session_state.setdefault(KEPT, set()).add(key)
    if default is not None and key not in st.session_state:
        st.session_state[key] = default
    return key


def keep_widget_values() -> None:
    """At the start of each run: every ``kept`` widget value written back to itself, which stops Streamlit from
    forgetting it when its widget is not drawn in this run (Streamlit's documented way)."""
    for key in st.session_state.get(KEPT, ()):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def progress_bar(text: str):
    """A progress bar that starts at 0 with ``text``, and the ``progress(fraction, text)`` callback that moves it
    (what the long steps of ``dashboard.analysis`` report to)."""
    bar = st.progress(0.0, text=text)
    return bar, lambda fraction, line: bar.progress(min(fraction, 1.0), text=line)


# Pixel widths of a ranking's columns (the browser's table, the summary's): with the human evidence's three
# plausibility columns they add up to about 980 px, so the whole table fits the page's main column beside the
# sidebar at 1,500 px; left to size themselves, the inputs' previews pushed the last columns out of view.
RANKING_WIDTHS = {"#": 50, "image": 60, "input": 200, "true label": 65, "teacher": 70, "p(teacher)": 60,
                  "student": 70, "p(student)": 60, "agree": 55, "teacher_mask_iou": 70,
                  "teacher_plausibility_f1": 85, "student_plausibility_f1": 85, "plausibility_f1_gap": 85}


def table(frame, key: str, widths: dict[str, str | int] | None = None, images: tuple[str, ...] = (), **options):
    """``st.dataframe`` of ``frame`` with short headers and their meaning as tooltips (wide tables cut long
    headers), numbers to three decimals, "—" in empty cells; ``widths``: column -> "small" / "medium" / "large" or
    pixels; ``images``: columns of image URIs; ``options`` go to ``st.dataframe``."""
    config = {}
    for column, (label, meaning) in column_labels(frame.columns).items():
        width = (widths or {}).get(column)
        if column in images:
            config[column] = st.column_config.ImageColumn(label, help=meaning, width=width)
        elif frame[column].dtype.kind == "f":
            config[column] = st.column_config.NumberColumn(label, help=meaning, format="%.3f", width=width)
        else:
            config[column] = st.column_config.Column(label, help=meaning, width=width)
    return st.dataframe(frame, hide_index=True, key=key, column_config=config, placeholder=UNDEFINED, **options)


def dataset_inputs(ctx: PageContext, prefix: str, default_n: int) -> tuple[str, str, int, int]:
    """Dataset spec (one per task), split, sample size and seed widgets (the student's training data by default),
    each kept across task switches."""
    default_spec = default_dataset_spec(ctx.student.path)
    a, b, c, d = st.columns([3, 1, 1, 1])
    # One field per task and default: switching the task (or to a student trained on other data) brings a
    # field that holds that task's dataset, and coming back brings what was typed there.
    spec = a.text_input("Dataset (csv:DIR, jsonl:DIR, imagefolder:DIR, aclimdb:PATH, eraser-movies:DIR, "
                        "cifar10:PATH, …)", key=kept(f"{prefix}_spec|{ctx.task}|{default_spec}", default_spec)).strip()
    split = b.selectbox("Split", ["test", "dev", "train"], key=kept(f"{prefix}_split"))
    n = c.number_input("Sample size", 1, I.MAX_SAMPLE, key=kept(f"{prefix}_n", default_n))
    seed = d.number_input("Seed", 0, 2**31 - 1, key=kept(f"{prefix}_seed", DEFAULT_SEED))
    return spec, split, int(n), int(seed)


def open_in_compare(ctx: PageContext, item: I.InputItem) -> None:
    """Show ``item`` in Compare (a button's callback): picked among Compare's own inputs when it is one of them,
    else as an input of its own ("From another tab"), Compare's other inputs left as they were."""
    task = ctx.task
    same = [i for i, known in enumerate(ctx.inputs) if known.digest == item.digest and known.name == item.name]
    if same and len(ctx.inputs) > 1:
        st.session_state[f"pick_{task}"] = same[0]
    elif not same:
        st.session_state[PICKED] = item
        st.session_state[f"source_{task}"] = FROM_OTHER_VIEW
    st.session_state["view"] = "Compare"


COMPARE_INPUTS, BUNDLED, LOCAL_DATASET = "The inputs read in Compare", "Bundled examples", "A local dataset"


def sample_source(ctx: PageContext, prefix: str, options: list[str], default_n: int
                  ) -> Callable[[], tuple[list[I.InputItem], str]]:
    """A choice of what a view reads (``options`` among Compare's inputs, the bundled examples and a local
    dataset, whose fields it draws); a function that reads it: (the items, a line that names them)."""
    source = st.radio("Sample from", options, horizontal=True, key=kept(f"{prefix}_source", options[0]))
    if source == LOCAL_DATASET:
        spec, split, n, seed = dataset_inputs(ctx, prefix, default_n)

    def read() -> tuple[list[I.InputItem], str]:
        if source == COMPARE_INPUTS:
            return list(ctx.inputs), f"the {len(ctx.inputs)} input(s) read in Compare"
        if source == BUNDLED:
            return caching.cached_examples(ctx.task), "the bundled examples"
        return caching.dataset_sample(spec, ctx.task, split, n, seed), f"{spec} ({split}, n={n}, seed {seed})"

    return read
