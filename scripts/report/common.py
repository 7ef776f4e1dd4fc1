"""What the report's sections share: the groups of the recipes, which rows are one model, and how a
number is written."""
from __future__ import annotations

import math

import pandas as pd

# The first part of a run's name is its group: group -> (dataset as the paper's table names it, headline ratio).
GROUPS = {"text": ("IMDB", 0.10), "vision": ("CIFAR-10", 0.15), "imdb": ("IMDB", 0.10),
          "cifar10": ("CIFAR-10", 0.15), "cifar100": ("CIFAR-100 (coarse)", 0.15)}
# The headline trio of a ratio plot: (role, mode, label, colour, marker).
SERIES = [("teacher", "re", "teacher RE", "tab:gray", "s"), ("student", "re", "student RE", "tab:blue", "o"),
          ("student", "rekd", "student REKD", "tab:red", "^")]
# Two-sided 95% quantiles of Student's t by degrees of freedom; above 10, 1.96 + 2.5 / df is within 0.002.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def at_ratio(rows: pd.DataFrame, ratio: float) -> pd.DataFrame:
    """The rows trained at ``ratio``."""
    return rows[(rows.ratio - ratio).abs() < 1e-9]


def model_runs(rows: pd.DataFrame, group: str, role: str, mode: str, backbone: str | None = None) -> pd.DataFrame:
    """The runs (seeds) of one model among ``rows``: CLS at any ratio, RE and REKD at the group's headline ratio."""
    rows = rows[(rows.group == group) & (rows.role == role) & (rows["mode"] == mode)]
    if backbone is not None:
        rows = rows[rows.backbone == backbone]
    return rows if mode == "cls" else at_ratio(rows, GROUPS[group][1])


def ci95(values: pd.Series) -> float:
    """Half the width of the 95% confidence interval of the mean of ``values`` (Student's t; NaN under 2 values)."""
    values = values.dropna()
    return ci95_of(values.std(ddof=1), len(values))


def ci95_of(std: float, n: int) -> float:
    """``ci95`` from the standard deviation of ``n`` values."""
    return T_975.get(n - 1, 1.96 + 2.5 / (n - 1)) * std / math.sqrt(n) if n >= 2 else float("nan")


def mean_ci(values: pd.Series, digits: int = 3, examples: float | None = None) -> str:
    """``mean ± 95% half-width (n seeds)``, ``value (1 seed)``, or "not run". With the number of test
    ``examples``, a single run's accuracy gets the binomial interval of its test set (normal approximation)."""
    values = values.dropna()
    if values.empty:
        return "not run"
    if len(values) == 1:
        value = values.iloc[0]
        if examples:
            half = 1.96 * math.sqrt(value * (1 - value) / examples)
            return f"{value:.{digits}f} ± {half:.{digits}f} (1 seed, {examples:.0f} test examples)"
        return f"{value:.{digits}f} (1 seed)"
    return f"{values.mean():.{digits}f} ± {ci95(values):.{digits}f} ({len(values)} seeds)"


def family_label(rows: pd.DataFrame) -> str:
    """How a table names a family of runs: "" for its group's headline, else its family in brackets."""
    return "" if rows.headline.all() else f" ({rows.family.iloc[0]})"


def cell(value, digits: int = 3) -> str:
    """A number for a table cell; "" for a missing one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
