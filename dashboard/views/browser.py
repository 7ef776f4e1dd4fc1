"""Dataset browser: a sample (the bundled examples or a local dataset) ranked by teacher-student disagreement, or,
with human evidence, by either model's plausibility; any row opens in Compare. Images show as thumbnails. One
numbering throughout: ``#`` is an input's place in the sample, from 1, as in the names of dataset items."""
from __future__ import annotations

import streamlit as st

from dashboard import analysis as A
from dashboard.context import PageContext, View, ratios_phrase
from dashboard.render.glossary import GLOSSARY
from dashboard.render.images import thumbnail_uri
from dashboard.render.style import csv_bytes
from dashboard.widgets import (
    BUNDLED,
    LOCAL_DATASET,
    RANKING_WIDTHS,
    open_in_compare,
    progress_bar,
    sample_source,
    table,
)

STATE = "browser"  # task -> the last ranking of that task


def draw(ctx: PageContext, is_open: bool) -> None:
    st.subheader("Browse a sample, sorted by teacher-student disagreement")
    read = sample_source(ctx, "browse", [BUNDLED, LOCAL_DATASET], 50)
    rankings = st.session_state.setdefault(STATE, {})
    if st.button("Rank by disagreement", key="browse_run", disabled=not ctx.ready, type="primary"):
        items, what = read()
        bar, progress = progress_bar("Explaining…")
        frame = A.rank_by_disagreement(ctx.teacher.model, ctx.student.model, items, ctx.ratios,
                                       agreement=ctx.check.agreement, progress=progress)
        bar.empty()
        number = 1 + max((state["ranking"] for state in rankings.values()), default=0)
        rankings[ctx.task] = {"items": items, "frame": frame, "what": what, "ranking": number, **ctx.stamp()}
    if not ctx.ready:
        st.caption("Load a compatible teacher and student to rank a sample.")
    state = rankings.get(ctx.task)
    if state is not None:
        show_ranking(ctx, state)


def show_ranking(ctx: PageContext, state: dict) -> None:
    """The ranked table of ``state`` (one ranking), its order, the row to open, and its download."""
    if not ctx.made_for(state):
        st.caption("Ranked with another pair or ratio: rank again to refresh.")
    frame, items = state["frame"], state["items"]
    sorts = A.ranking_sorts(frame)
    sort = "disagreement"
    if len(sorts) > 1:
        sort = st.selectbox("Sort by", sorts, key=f"browser_sort_{state['ranking']}", help=GLOSSARY["plausibility"])
        frame = A.sort_ranking(frame, sort)
    order = ("rows where the predictions differ first, then by lowest mask IoU; rows where a model picked no "
             "feature last." if sort == "disagreement" else f"sorted by {sort} (rows without a score last).")
    st.markdown(f"**{len(frame)} inputs** from {state['what']}, at {ratios_phrase(state['ratios'])}: {order}")
    if len(sorts) > 1:
        st.caption("This sample has human evidence: each model's plausibility F1 against it is in the table.",
                   help=GLOSSARY["plausibility"])
    for slot in ctx.slots:
        if slot.range_warning:
            st.warning(slot.range_warning, icon="⚠️")
    # The table and the row box are new widgets for each ranking: kept across rankings, the browser would
    # show the previous ranking's row in the box while the table and "Open" use the new one.
    # So are they for each order: a row picked in one order is another row in the next.
    table_key, row_key = f"browser_table_{state['ranking']}_{sort}", f"browser_row_{state['ranking']}_{sort}"

    def table_clicked():
        rows = st.session_state[table_key].selection.rows
        if rows:
            st.session_state[row_key] = rows[0]

    st.caption("Click a row (or pick it below) to choose what to open in the comparison.")
    shown = frame.drop(columns=["disagreement"])
    thumbnails = bool(items) and items[0].kind == "image"
    if thumbnails:
        shown.insert(1, "image", [thumbnail_uri(items[number - 1].value) for number in shown["#"]])
    table(shown, table_key, widths=RANKING_WIDTHS, images=("image",),
          on_select=table_clicked, selection_mode="single-row", row_height=60 if thumbnails else None)
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    rank = left.selectbox("Row to open", range(len(frame)), key=row_key,
                          format_func=lambda k: f"#{frame.loc[k, '#']}: {frame.loc[k, 'input']} (teacher "
                                                f"{frame.loc[k, 'teacher']}, student {frame.loc[k, 'student']})")
    right.button("Open in Compare", key="browser_open", on_click=open_in_compare,
                 args=(ctx, items[int(frame.loc[rank or 0, "#"]) - 1]))
    st.download_button("Download table (CSV)", csv_bytes(frame), "disagreement.csv", "text/csv",
                       key="download_browser", on_click="ignore")


VIEW = View("Dataset browser", draw)
