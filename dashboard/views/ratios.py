"""Ratios: accuracy, sparsity and agreement across rationale ratios from the results file (seeds aggregated, recipe
variants as series of their own), the loaded pair's family read at many ratios, and the loaded pair evaluated live
on a dataset sample (with each model's confusion matrix). Each task keeps its own live evaluation."""
from __future__ import annotations

import os
import time

import streamlit as st

from dashboard import caching
from dashboard import environment as E
from dashboard import results_file as F
from dashboard.analysis import evaluate_pair
from dashboard.checkpoints import MODES
from dashboard.context import PageContext, View
from dashboard.inputs import sample_split
from dashboard.render import plots
from dashboard.render.style import ROLE_COLOURS, csv_bytes
from dashboard.sidebar import MODES_HELP
from dashboard.widgets import dataset_inputs, guard, kept, progress_bar, table
from rekd_core.compatibility import check_dataset_fits
from rekd_core.errors import RekdError

EVAL_RATIOS = [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0]
LIVE = "live_eval"  # task -> the last live evaluation of that task


def draw(ctx: PageContext, is_open: bool) -> None:
    st.subheader("Accuracy and sparsity across rationale ratios")
    path = st.text_input("Results file (one row per run)", key=kept("results_path", str(E.default_results_path())))
    try:
        E.check_allowed_path(path.strip(), "This results file")
    except RekdError as exc:
        st.error(str(exc))
    else:
        results_file(ctx, path.strip())
    st.divider()
    with guard("Live evaluation"):
        live_evaluation(ctx)


def results_file(ctx: PageContext, path: str) -> None:
    """The plots and tables of the results file at ``path`` (one the page may read), or why there are none."""
    try:
        mtime = os.path.getmtime(path) if path and os.path.isfile(path) else 0.0
        headlines = caching.cached_headlines(path, "results", E.recipe_mtime())
        frame = caching.cached_results(path, mtime, headlines)
    except RekdError as exc:
        if path and not os.path.exists(path):
            st.info(f"No results file at `{path}` yet: it is written when the checkpoints are trained and evaluated "
                    "across ratios. Type another path above, or evaluate the loaded pair live below.")
        else:
            st.error(str(exc))
        return
    loaded = loaded_families(ctx, frame, headlines)
    with guard("Results"):
        results_section(ctx, frame, loaded)
    with guard("Models read at many ratios"):
        range_section(ctx, caching.cached_range_comparison(path, mtime, headlines), headlines)


def loaded_families(ctx: PageContext, frame, headlines: dict) -> set[str]:
    """The series families of the loaded teacher and student: as the results file records them, else from their
    names (paths under the checkpoints root)."""
    names = loaded_run_names(ctx)
    return set(frame.loc[frame["run"].isin(names), "series_family"]) | {F.series_family(n, headlines) for n in names}


def loaded_run_names(ctx: PageContext) -> list[str]:
    """The run names (paths under the checkpoints root) of the loaded teacher and student."""
    names = {info.path: info.name for info in ctx.infos}
    return [names.get(slot.path, slot.path) for slot in ctx.slots]


def results_section(ctx: PageContext, frame, loaded: set[str]) -> None:
    tasks = sorted(frame["task"].astype(str).unique())
    default = F.results_task_for(tasks, ctx.task) or tasks[0]
    left, middle, right = st.columns(3)
    chosen = left.selectbox("Task in the results file", tasks, index=tasks.index(default),
                            key=f"results_task_{ctx.task}")
    part = frame[frame["task"] == chosen]
    modes = sorted(part["mode"].unique(), key=lambda m: list(MODES).index(m) if m in MODES else 9)
    picked_modes = middle.multiselect("Modes", modes, default=modes, format_func=lambda m: MODES.get(m, m.upper()),
                                      key="results_modes", help=MODES_HELP)
    base_roles = part["role"].map(F.base_role)
    roles = sorted(base_roles.unique())
    picked_roles = right.multiselect("Roles", roles, default=roles, key="results_roles")
    variants = sorted(set(part["series_family"]) - {""})
    picked_variants = st.multiselect(
        "Other families, each its own series (starred; those of the models loaded above are picked); the "
        "headline's runs are always shown", variants, default=[v for v in variants if v in loaded],
        key=f"results_variants_{ctx.task}") if variants else []  # one per task: its default is read when first shown
    part = part[part["mode"].isin(picked_modes) & base_roles.isin(picked_roles)
                & part["series_family"].isin(["", *picked_variants])]
    if part.empty:
        st.info("No run matches these filters.")
        return
    agg = F.aggregate_results(part)
    seeds = int(agg["runs"].max())
    st.caption(f"{len(part)} runs; points are means over up to {seeds} seeds, bars one standard deviation. "
               "A CLS model reads everything: it is drawn as a dashed line.")
    st.plotly_chart(plots.results_figure(agg, "accuracy"), key="results_accuracy")
    if (agg["mode"] != "cls").any():
        st.plotly_chart(plots.achieved_ratio_figure(agg), key="results_sparsity")
    else:
        st.caption("No RE or REKD run among these: no sparsity to plot (a CLS model reads everything).")
    students = agg[agg["role"].str.startswith("student")]
    for metric, title in (("teacher_agreement", "students: prediction agreement with the teacher"),
                          ("teacher_mask_iou", "students: rationale (mask) IoU with the teacher")):
        if f"{metric}_mean" in agg and students[f"{metric}_mean"].notna().any():
            st.plotly_chart(plots.results_figure(students, metric, title), key=f"results_{metric}")
    table(agg, "results_table", widths={c: "small" for c in agg.columns if c not in ("role", "backbone")})
    left, right, _ = st.columns([1, 1, 3])
    left.download_button("Download summary (CSV)", csv_bytes(agg), "results_summary.csv", "text/csv",
                         key="download_results_summary", on_click="ignore")
    right.download_button("Download runs (CSV)", csv_bytes(part), "results_runs.csv", "text/csv",
                          key="download_results_runs", on_click="ignore")


def range_section(ctx: PageContext, comparison, headlines: dict) -> None:
    """Models trained over a range of ratios, read at each ratio, against the fixed-ratio models: those of the
    loaded pair's family; other families that were read at many ratios only when picked."""
    st.markdown("**Models read at many ratios**")
    task = F.results_task_for(sorted(comparison["task"].astype(str).unique()), ctx.task)
    part = comparison[comparison["task"] == task]
    families = sorted(part["family"].astype(str).unique()) if "family" in part else []
    loaded = {F.family_of(name, headlines) for name in loaded_run_names(ctx)}
    if not families:
        st.caption("No model of this task has been read at several ratios yet (the recipe's `read_at`).")
        return
    mine = [family for family in families if family in loaded]
    if not mine:
        st.caption(f"The loaded pair's family ({', '.join(sorted(f or 'runs without a variant' for f in loaded))}) "
                   "has not been read at several ratios. "
                   "Other families of this task have: pick one to see them.")
    picked = st.multiselect("Families read at many ratios", families, default=mine, key=f"range_families_{ctx.task}",
                            format_func=lambda family: family or "runs without a variant")
    part = part[part["family"].astype(str).isin(picked)]
    if part.empty:
        return
    st.plotly_chart(plots.ratio_range_figure(part), key="results_ratio_range")
    table(part, "results_ratio_range_table")


def live_evaluation(ctx: PageContext) -> None:
    st.subheader("Evaluate the loaded pair live")
    st.caption("Accuracy, achieved ratio and agreement of the teacher and the student on a stratified sample of a "
               "dataset, with the top-k selection re-done at each ratio; each model's confusion matrix.")
    spec, split, n, seed = dataset_inputs(ctx, "eval", 200)
    ratios = st.multiselect("Rationale ratios", EVAL_RATIOS, key=kept("eval_ratios", [0.05, 0.1, 0.2, 0.5, 1.0]))
    results = st.session_state.setdefault(LIVE, {})
    if st.button("Evaluate", key="eval_run", disabled=not ctx.ready, type="primary"):
        bundle = caching.read_dataset(spec)
        check_dataset_fits(bundle, ctx.student.model)
        sample = sample_split(bundle, split, n, seed)
        bar, progress = progress_bar("Evaluating…")
        started = time.perf_counter()
        found = evaluate_pair(ctx.teacher.model, ctx.student.model, sample, ratios, ctx.check, progress=progress)
        bar.progress(1.0, text=f"Done: {len(sample)} examples x {len(ratios)} ratios "
                               f"in {time.perf_counter() - started:.1f} s")
        results[ctx.task] = {"result": found, "pair": ctx.pair_key, "what": f"{spec} ({split}, n={len(sample)})"}
    if not ctx.ready:
        st.caption("Load a compatible teacher and student to evaluate them.")
    done = results.get(ctx.task)
    if done is None:
        return
    if done["pair"] != ctx.pair_key:
        st.caption("These numbers are for the previously loaded pair: evaluate again for the current one.")
    found = done["result"]
    st.markdown(f"**Live evaluation** on {done['what']}")
    st.plotly_chart(plots.live_eval_figure(found.frame), key="live_eval_chart")
    table(found.frame, "live_eval_table")
    st.download_button("Download live evaluation (CSV)", csv_bytes(found.frame), "live_evaluation.csv",
                       "text/csv", key="download_live_eval", on_click="ignore")
    evaluated = sorted({ratio for _, ratio in found.confusion})
    ratio = st.selectbox("Confusion matrices at ratio", evaluated, key=f"live_confusion_ratio_{ctx.task}")
    for column, role in zip(st.columns(2), ("teacher", "student")):
        column.plotly_chart(plots.confusion_figure(found.confusion[(role, ratio)], found.labels[role],
                                                   f"{role} at ratio {ratio:g}", ROLE_COLOURS[role]),
                            key=f"live_confusion_{role}")


VIEW = View("Ratios", draw)
