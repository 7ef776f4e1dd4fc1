"""REKD dashboard: compare a teacher's and a student's rationales on reviews and images.

Run from the repository root: ``streamlit run dashboard/app.py``. Checkpoints are looked for under
``checkpoints/`` (or ``$REKD_CHECKPOINTS``); the ratios view reads ``checkpoints/results.csv`` (or
``$REKD_RESULTS``). Nothing here reaches the network: models load from their directories, and
``.streamlit/config.toml`` turns off Streamlit's usage statistics and first-run prompt.

This file is the page's shell: the sidebar (``sidebar.py``), the model cards, and one tab per view of
``dashboard/views`` (``VIEWS``), each given the typed ``PageContext`` (``context.py``).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

for _name, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_HUB_DISABLE_TELEMETRY", "1"),
                      ("HF_DATASETS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_name, _value)
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from dashboard import checkpoints as C  # noqa: E402
from dashboard import environment as E  # noqa: E402
from dashboard.context import PageContext  # noqa: E402
from dashboard.render.cards import model_card_html  # noqa: E402
from dashboard.render.glossary import HOW_TO_READ  # noqa: E402
from dashboard.sidebar import sidebar  # noqa: E402
from dashboard.views import VIEWS  # noqa: E402
from dashboard.widgets import guard, keep_widget_values  # noqa: E402


def model_cards(ctx: PageContext) -> None:
    """Each model's card (or why there is none), then what of the pair fits together (``ctx.check``)."""
    for column, slot in zip(st.columns(2), ctx.slots):
        with column:
            if not slot.path:
                st.info(f"No {slot.role} picked: choose one in the sidebar or type its directory.")
                continue
            if slot.error:
                st.error(f"{slot.role.title()}: {slot.error}")
                continue
            with guard(f"{slot.role} card"):
                info = C.describe_checkpoint(slot.path, E.checkpoints_root())
                if not Path(info.name).is_absolute():  # under the checkpoints root: its short name
                    slot.name = info.name
                st.html(model_card_html(info, slot.role.title(), slot.colour, C.teacher_note(info, ctx.infos)))
    if ctx.teacher.model is None or ctx.student.model is None:
        return
    ctx.check = C.check_pair(ctx.teacher.model, ctx.student.model, ctx.task)
    if ctx.check.fatal:
        st.error(ctx.check.fatal)
    for note in ctx.check.notes:
        st.warning(note)


def main() -> None:
    st.set_page_config(page_title="REKD: teacher vs student rationales", page_icon="🔍", layout="wide")
    E.keep_uploads_in_memory(st.get_option("server.maxUploadSize"))  # before any upload: they come from this page
    E.configure_torch_threads()
    keep_widget_values()
    ctx = sidebar()
    st.title("Teacher vs student rationales")
    st.caption("A select-predict model highlights the features (word pieces or image patches) it bases its prediction "
               "on. Compare what a REKD student learned to select with its teacher's rationale.")
    with st.expander("How to read this"):
        st.markdown(HOW_TO_READ)
    with guard("Models"):
        model_cards(ctx)
    labels = [view.label for view in VIEWS]
    if st.session_state.get("view") not in labels:
        st.session_state["view"] = labels[0]
    for view, tab in zip(VIEWS, st.tabs(labels, key="view", on_change="rerun")):
        with tab, guard(view.label):
            view.draw(ctx, tab.open is not False)


main()
