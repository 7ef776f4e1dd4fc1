"""The results file of the Ratios tab (``checkpoints/results.csv``, or ``$REKD_RESULTS``, or a path typed in the
page), read as the ratios view plots it: one row per trained run, the runs of a recipe variant or trained over a
range of ratios as series of their own, the readings of models read at many ratios, seeds aggregated. No Streamlit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from rekd_core import results
from rekd_core.errors import DataError
from rekd_core.results import run_family

RESULT_COLUMNS = ("task", "role", "mode", "backbone", "ratio", "seed", "accuracy", "f1", "achieved_ratio",
                  "teacher_agreement", "wall_time_s")
REQUIRED_RESULT_COLUMNS = ("mode", "ratio", "accuracy")
# The metrics the results table aggregates (names of rekd_core.metric_info.METRICS)
RESULT_METRICS = ("accuracy", "f1", "achieved_ratio", "teacher_agreement", "teacher_mask_iou", "sufficiency",
                  "comprehensiveness", "plausibility_f1")
TASK_ALIASES = {"text": ("text", "imdb", "movie", "review", "aclimdb", "eraser", "sst"),
                "vision": ("vision", "image", "cifar", "imagenet", "mnist")}


def load_results(path: str | Path, headlines: dict[str, dict] | None = None, readings: bool = False) -> pd.DataFrame:
    """The results file (``rekd_core.results.load_results``: older layouts filled in) as the ratios view
    plots it: one row per trained run (``readings``: the ``read_at`` rows instead), ``mode`` and ``role``
    lower-cased, an empty task read as "all" and an empty role as "model". Column ``series_family`` names a
    run's family when it is not its group's headline (``headlines``, see ``recipe_headlines``, for rows that
    do not record it), and a model trained over a range of ratios; the role names it too (``student
    (example-cost)``), so that it is plotted as a series of its own. Rows without an accuracy are dropped.
    ``DataError`` when the file is missing, empty or lacks mode/ratio/accuracy."""
    path = Path(str(path).strip()).expanduser()
    frame = results.load_results(path, headlines)
    missing = [c for c in REQUIRED_RESULT_COLUMNS if c not in frame.attrs["file_columns"]]
    if missing:
        raise DataError(f"{path}: the results file lacks column(s) {', '.join(missing)} "
                        f"(expected: {', '.join(RESULT_COLUMNS)})")
    frame = frame[(frame.source == results.READ_AT) == readings].copy()
    for column, default in (("task", "all"), ("role", "model")):
        frame[column] = frame[column].str.strip().replace("", default)
    frame["mode"] = frame["mode"].str.strip().str.lower()
    frame["role"] = frame["role"].str.lower()
    trained_over = ("ratio range " + frame.ratio_range).where(frame.ratio_range != "", "")
    shown = frame.family.where(~frame.headline, "")
    both = (shown != "") & (trained_over != "")
    frame["series_family"] = (shown + ", " + trained_over).where(both, shown + trained_over)
    # A family other than the headline is its own series, not more seeds of the headline one.
    frame["role"] = frame["role"].where(frame.series_family == "", frame["role"] + " (" + frame.series_family + ")")
    frame = frame.dropna(subset=["accuracy"]).reset_index(drop=True)
    if frame.empty:
        raise DataError(f"{path}: the results file has no row with an accuracy")
    return frame


def series_family(run_name: str, headlines: dict[str, dict]) -> str:
    """The family a run (or a checkpoint of that name) is plotted as, apart from its group's headline: ""
    for the headline's runs, else the family's name (``rekd_core.results.name_columns``)."""
    family, is_headline = run_family(run_name, headlines)
    return "" if is_headline else family


def family_of(run_name: str, headlines: dict[str, dict]) -> str:
    """The family a run (or a checkpoint of that name) belongs to, the headline's included (its variant's name)."""
    return run_family(run_name, headlines)[0]


def base_role(role: str) -> str:
    """The role without its recipe variant: ``student (example-cost)`` -> ``student``."""
    return role.partition(" (")[0]


def results_task_for(values: Sequence[str], task: str) -> str | None:
    """The value of the results file's task column that belongs to the dashboard task (None if none)."""
    for value in values:
        if any(alias in str(value).lower() for alias in TASK_ALIASES.get(task, ())):
            return value
    return None


def ratio_range_comparison(path: str | Path, task: str | None = None,
                           headlines: dict[str, dict] | None = None) -> pd.DataFrame:
    """The comparison of the Ratios tab for models read at many ratios (``rekd_core.results.range_comparison``):
    accuracy against the ratio read at of each model trained over a range of ratios, of the fixed-ratio models
    of its kind at their own ratios, and of fixed-ratio models read away from theirs; only the rows of the
    results file's task value ``task`` when given. Empty while nothing was read."""
    frame = results.load_results(Path(str(path).strip()).expanduser(), headlines)
    comparison = results.range_comparison(frame)
    return comparison if task is None else comparison[comparison.task == task].reset_index(drop=True)


def aggregate_results(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and number of seeds per (task, role, mode, backbone, ratio)."""
    keys = ["task", "role", "mode", "backbone", "ratio"]
    metrics = [c for c in RESULT_METRICS if c in frame.columns]
    grouped = frame.groupby(keys, dropna=False)
    out = grouped[metrics].agg(["mean", "std"])
    out.columns = [f"{metric}_{stat}" for metric, stat in out.columns]
    out["runs"] = grouped.size()
    return out.reset_index()
