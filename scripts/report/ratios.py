"""The ratio sweeps: test accuracy against the ratio each model was trained at, one plot and one table a group."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .common import GROUPS, SERIES, at_ratio, ci95, mean_ci


def sweep_series(models: pd.DataFrame) -> list[tuple[str, pd.DataFrame, str, str, str]]:
    """(label, rows, colour, marker, line style) of each series of a group's sweep: the headline trio, then
    each other family of that role and mode trained at 2+ ratios (dashed, star markers)."""
    headline = models[models.headline]
    family = f" ({headline.family.iloc[0]}, headline)" if len(headline) and headline.family.iloc[0] else ""
    series = [(label + family, headline[(headline.role == role) & (headline["mode"] == mode)], colour, marker, "-")
              for role, mode, label, colour, marker in SERIES]
    others = models[~models.headline]
    for (role, mode, family), rows in others.groupby(["role", "mode", "family"], sort=False):
        colour = next((c for r, m, _label, c, _marker in SERIES if (r, m) == (role, mode)), None)
        if colour and rows.ratio.nunique() >= 2:
            series.append((f"{role} {mode.upper()} ({family})", rows, colour, "*", "--"))
    return [entry for entry in series if len(entry[1])]


def ratio_sweeps(runs: pd.DataFrame, figures: Path, out: Path) -> str:
    """Per group: accuracy against the trained ratio (mean over seeds, bars: 95% interval), the headline CLS
    models as dotted lines, and the numbers in a table."""
    lines = ["## Accuracy against the ratio", "",
             "Each model trained and tested at one ratio (top-k at that ratio); mean over seeds, bars: 95% interval "
             "where there are several. Every REKD student distils from its family's teacher trained at the headline "
             "ratio, which selects top-k at the student's ratio. Dotted: the headline CLS models (every feature read)."]
    for group in runs.group.unique():
        models = runs[(runs.group == group) & runs["mode"].isin(["re", "rekd"])]
        if models.ratio.nunique() < 2:  # no family of the group was trained at several ratios
            continue
        dataset, series = GROUPS[group][0], sweep_series(models)
        path = figures / f"{group}_sweep.png"
        _plot(series, runs[(runs.group == group) & (runs["mode"] == "cls") & runs.headline], dataset, path)
        image = os.path.relpath(path, out.parent)
        lines += ["", f"### {dataset}", "", f"![{dataset}: accuracy against the ratio]({image})",
                  "", "| ratio | " + " | ".join(label for label, *_rest in series) + " |",
                  "| --- | " + " | ".join("---" for _ in series) + " |"]
        for ratio in sorted(models.ratio.unique()):
            cells = [mean_ci(at_ratio(rows, ratio).accuracy) for _label, rows, *_rest in series]
            lines.append(f"| {ratio:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot(series: list, cls: pd.DataFrame, dataset: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10.5, 4.8))
    for label, rows, colour, marker, style in series:
        stats = rows.groupby("ratio").accuracy.agg(["mean", ci95]).reset_index()
        ax.errorbar(stats.ratio, stats["mean"], yerr=stats["ci95"].fillna(0), marker=marker, capsize=3, label=label,
                    color=colour, linestyle=style, alpha=0.85)
    for role, colour in (("teacher", "tab:gray"), ("student", "tab:blue")):
        accuracy = cls[cls.role == role].accuracy
        if len(accuracy):
            ax.axhline(accuracy.mean(), linestyle=":", color=colour, linewidth=1.2,
                       label=f"{role} CLS, all features ({accuracy.mean():.3f})")
    ax.set(xlabel="ratio trained and tested at", ylabel="test accuracy", title=f"{dataset}: accuracy against the ratio")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
