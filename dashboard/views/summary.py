"""Summary: a batch of inputs (those read in Compare, a dataset sample or the bundled examples) read by both
models: each model's accuracy where labels exist, their prediction agreement and mean mask IoU, a confusion
matrix for each model, and the inputs where they disagree most, each one click from Compare."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import analysis as A
from dashboard.context import PageContext, View, ratios_phrase
from dashboard.render import plots
from dashboard.render.glossary import GLOSSARY
from dashboard.render.style import ROLE_COLOURS, csv_bytes, format_score
from dashboard.widgets import (
    BUNDLED,
    COMPARE_INPUTS,
    LOCAL_DATASET,
    RANKING_WIDTHS,
    open_in_compare,
    progress_bar,
    sample_source,
    table,
)
from rekd_core.errors import DataError
from rekd_core.metric_info import METRICS

STATE = "summary"  # task -> the last summary of that task
TOP = 5  # inputs listed as the most disagreeing


def draw(ctx: PageContext, is_open: bool) -> None:
    st.subheader("Summarise a batch of inputs")
    st.caption("Upload a set of reviews or images (or sample a dataset) in Compare, then summarise it here; or "
               "sample a dataset directly.")
    read = sample_source(ctx, "summary", [COMPARE_INPUTS, LOCAL_DATASET, BUNDLED], 100)
    summaries = st.session_state.setdefault(STATE, {})
    if st.button("Summarise", key="summary_run", disabled=not ctx.ready, type="primary"):
        items, what = read()
        if not items:
            raise DataError("Compare has read no input yet: give some there (an upload, a dataset sample), or pick "
                            "a dataset here.")
        bar, progress = progress_bar("Explaining…")
        found = A.summarise_batch(ctx.teacher.model, ctx.student.model, items, ctx.ratios, ctx.check,
                                  progress=progress)
        bar.empty()
        summaries[ctx.task] = {"summary": found, "items": items, "what": what, **ctx.stamp()}
    if not ctx.ready:
        st.caption("Load a compatible teacher and student to summarise a batch.")
    state = summaries.get(ctx.task)
    if state is not None:
        show_summary(ctx, state)


def show_summary(ctx: PageContext, state: dict) -> None:
    found: A.BatchSummary = state["summary"]
    if not ctx.made_for(state):
        st.caption("Summarised with another pair or ratio: summarise again to refresh.")
    st.markdown(f"**{found.n} inputs** from {state['what']}, at {ratios_phrase(state['ratios'])}")
    columns = st.columns(4)
    for column, role in zip(columns, ("teacher", "student")):
        column.metric(f"{role.title()} accuracy", format_score(found.accuracy[role]),
                      f"over {found.labelled[role]} labelled input(s)", delta_color="off", delta_arrow="off",
                      help=METRICS["accuracy"].help + " Over the inputs whose true label the model knows.")
    columns[2].metric("Prediction agreement", format_score(found.agreement), help=GLOSSARY["agreement"])
    columns[3].metric("Mean mask IoU", format_score(found.mean_iou), help=GLOSSARY["mask IoU"])
    blind = [f"the {role} picked no feature in {count}" for role, count in found.blind.items() if count]
    if blind:
        st.caption(f"Left out of a model's numbers, where it has no prediction: {'; '.join(blind)}.")
    if not any(found.labelled.values()):
        st.info("None of these inputs has a true label the models know: no accuracy and no confusion matrix. "
                "Upload a .csv with a label column, or sample a labelled dataset.")
    else:
        for column, role in zip(st.columns(2), ("teacher", "student")):
            column.plotly_chart(plots.confusion_figure(found.confusion[role], found.labels[role],
                                                       f"{role}: {found.labelled[role]} labelled inputs",
                                                       ROLE_COLOURS[role]), key=f"summary_confusion_{role}")
    most_disagreeing(ctx, state)
    with st.expander(f"All {found.n} inputs, most disagreeing first"):
        table(found.ranking.drop(columns=["disagreement"]), "summary_table", widths=RANKING_WIDTHS)
        st.download_button("Download the summary's table (CSV)", csv_bytes(found.ranking), "summary.csv",
                           "text/csv", key="download_summary", on_click="ignore")


def most_disagreeing(ctx: PageContext, state: dict) -> None:
    """The inputs where the two models disagree most, each with a button that opens it in Compare."""
    frame, items = state["summary"].ranking, state["items"]
    rows = frame[frame["disagreement"].notna()].head(TOP)
    st.markdown("**Where they disagree most**" if len(rows) else "**No input to rank by disagreement**")
    for _, row in rows.iterrows():
        left, right = st.columns([5, 1], vertical_alignment="center")
        iou = "" if pd.isna(row["teacher_mask_iou"]) else f", mask IoU {format_score(row['teacher_mask_iou'])}"
        true = f" (true: {row['true label']})" if row["true label"] else ""
        left.markdown(f"**#{row['#']}** {row['input']}{true} — teacher **{row['teacher']}** "
                      f"({format_score(row['p(teacher)'])}), student **{row['student']}** "
                      f"({format_score(row['p(student)'])}){iou}")
        right.button("Open in Compare", key=f"summary_open_{row['#']}", on_click=open_in_compare,
                     args=(ctx, items[int(row["#"]) - 1]))


VIEW = View("Summary", draw)
