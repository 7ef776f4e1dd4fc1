"""Models that hold at any ratio (issue 25): a model trained over a range of ratios, read at each ratio,
against the fixed-ratio models at their own ratios and a fixed-ratio model read away from its ratio."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from rekd_core.results import FIXED, MODEL_KEY, RANGE, RANGE_TOLERANCE, READ_AWAY, range_comparison, range_gaps

from .common import GROUPS, cell, ci95_of

STYLE = {RANGE: ("tab:red", "o", "-"), FIXED: ("tab:blue", "s", "-"), READ_AWAY: ("tab:gray", "^", "--")}
NOT_MEASURED = "not measured yet"


def ratio_range_section(frame: pd.DataFrame, planned: set[str], figures: Path, out: Path) -> str:
    """One plot per group (a panel per kind of model) of accuracy against the ratio read at, and a table of
    the gap between the range model and the fixed-ratio models at each ratio. ``frame``: every row of the
    results file, ``read_at`` rows included; ``planned``: the runs the recipe reads or trains over a range."""
    lines = ["## Models that hold at any ratio", "",
             "A model trained over a range of ratios (each batch at a ratio drawn from it, `ratio_range`) and read at "
             "each ratio on its test split (`read_at`; IMDB: a stratified 5,000 of the 25,000 test reviews), against "
             "the fixed-ratio models of the same kind at their own ratios (seeds averaged; range models trained as "
             "long as they were) and the fixed-ratio "
             f"headline model read away from its ratio. Target: the range model at most {RANGE_TOLERANCE} below the "
             "fixed-ratio models at each ratio."]
    comparison = range_comparison(frame, planned)
    comparison = comparison[comparison.group.isin(list(GROUPS))]
    if comparison.empty:
        return "\n".join(lines + ["", f"Nothing read at several ratios yet: {NOT_MEASURED}."])
    for group, rows in comparison.groupby("group", sort=False):
        dataset = GROUPS[group][0]
        path = figures / f"{group}_ratio_range.png"
        _plot(rows, dataset, path)
        gaps = range_gaps(rows)
        kinds = gaps[MODEL_KEY].drop_duplicates().to_dict("records")
        image = os.path.relpath(path, out.parent)
        lines += ["", f"### {dataset}", "", f"![{dataset}: read at each ratio]({image})", "",
                  f"Each cell: the gap (range model − fixed-ratio models at that ratio), whether it is within "
                  f"{RANGE_TOLERANCE}, and (range model / fixed at its own ratio / fixed read away).", "",
                  "| ratio | " + " | ".join(_kind(kind) for kind in kinds) + " |",
                  "| --- | " + " | ".join("---" for _ in kinds) + " |"]
        for ratio, at in gaps.groupby("ratio"):
            cells = [_gap_cell(at.merge(pd.DataFrame([kind]), on=MODEL_KEY)) for kind in kinds]
            lines.append(f"| {ratio:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _gap_cell(rows: pd.DataFrame) -> str:
    """One kind of model at one ratio: the gap and its verdict, or "not measured yet", then the accuracies."""
    if rows.empty:
        return ""
    row = rows.iloc[0]
    numbers = " / ".join(cell(row[series]) or "–" for series in (RANGE, FIXED, READ_AWAY))
    if row["within"] is None:
        return f"{NOT_MEASURED} ({numbers})"
    return f"{row['gap']:+.3f}, {'yes' if row['within'] else '**no**'} ({numbers})"


def _kind(row: dict) -> str:
    """How the table names a kind of model: role, mode, backbone and family."""
    family = f", {row['family']}" if row["family"] else ""
    return f"{row['role']} {row['mode'].upper()} ({row['backbone']}{family})"


def _plot(rows: pd.DataFrame, dataset: str, path: Path) -> None:
    kinds = rows[MODEL_KEY].drop_duplicates().to_dict("records")
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.6 * len(kinds), 4.2), squeeze=False, sharey=True)
    for ax, kind in zip(axes[0], kinds):
        mine = rows.merge(pd.DataFrame([kind]), on=MODEL_KEY)
        for series, (colour, marker, style) in STYLE.items():
            points = mine[mine.series == series].sort_values("ratio")
            if len(points):
                error = [ci95_of(std, n) for std, n in zip(points.accuracy_std, points.runs)]
                ax.errorbar(points.ratio, points.accuracy, yerr=pd.Series(error).fillna(0), color=colour,
                            marker=marker, linestyle=style, capsize=3, label=series)
        fixed = mine[mine.series == FIXED].sort_values("ratio")
        ax.fill_between(fixed.ratio, fixed.accuracy - RANGE_TOLERANCE, fixed.accuracy, color="tab:blue", alpha=0.1,
                        label=f"target: at most {RANGE_TOLERANCE} below fixed")
        ax.set(title=_kind(kind), xlabel="ratio read at")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy")
    handles = {label: handle for ax in axes[0] for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=8)
    fig.suptitle(f"{dataset}: accuracy against the ratio read at (bars: 95% interval over seeds)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
