"""Plots of the Ratios tab and of the summary: accuracy and sparsity across rationale ratios from the results file,
models read at many ratios, the loaded pair's live evaluation, and confusion matrices (plotly)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from dashboard.render.style import BOTH, CLS_LINES, MODE_COLOURS, STUDENT, TEACHER

_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def _series(agg, metric: str):
    """One plotted series per (role, mode, backbone) of an aggregated results table."""
    keys = ["role", "mode", "backbone"]
    backbones = sorted(agg["backbone"].astype(str).unique())
    for (role, mode, backbone), group in agg.groupby(keys, sort=True):
        group = group.sort_values("ratio")
        y = group[f"{metric}_mean"]
        if y.isna().all():
            continue
        yield role, mode, backbone, group, backbones.index(str(backbone))


def _marker(role: str, size: int = 7) -> dict:
    """Teachers are diamonds; a recipe variant (role ``student (VARIANT)``) is a star, so that it
    stands apart from its headline series of the same mode colour."""
    if "(" in role:
        return dict(symbol="star", size=size + 5)
    return dict(symbol="diamond", size=size + 2) if role.startswith("teacher") else dict(symbol="circle", size=size)


def _series_name(role: str, mode: str, backbone: str) -> str:
    return f"{role} · {mode.upper()} · {backbone}" if backbone else f"{role} · {mode.upper()}"


def results_figure(agg, metric: str = "accuracy", title: str | None = None):
    """``metric`` (mean ± std over seeds) against the target rationale ratio: a line per role, mode
    and backbone; a CLS model, which reads everything, is a dashed horizontal line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    ratios = agg.loc[agg["mode"] != "cls", "ratio"].dropna()
    x_range = (float(ratios.min()), float(ratios.max())) if len(ratios) else (0.0, 1.0)
    if x_range[0] == x_range[1]:
        x_range = (max(0.0, x_range[0] - 0.05), x_range[1] + 0.05)
    for role, mode, backbone, group, b_index in _series(agg, metric):
        colour = MODE_COLOURS.get(mode, "#444")
        name = _series_name(role, mode, backbone)
        mean, std = group[f"{metric}_mean"], group.get(f"{metric}_std")
        if mode == "cls":
            value = float(mean.mean())
            cls_colour, dash = CLS_LINES.get(role, (colour, "dashdot"))
            fig.add_trace(go.Scatter(x=list(x_range), y=[value, value], mode="lines", name=name, showlegend=True,
                                     line=dict(color=cls_colour, dash=dash, width=2),
                                     hovertemplate=f"{name}<br>{metric} %{{y:.3f}} (reads everything)<extra></extra>"))
            continue
        fig.add_trace(go.Scatter(
            x=group["ratio"].tolist(), y=mean.tolist(), mode="lines+markers", name=name,
            error_y=dict(type="data", array=std.fillna(0).tolist() if std is not None else None,
                         visible=std is not None),
            line=dict(color=colour, dash=_DASHES[b_index % len(_DASHES)], width=3.5 if role == "teacher" else 2),
            marker=_marker(role),
            customdata=group["runs"].tolist(), hovertemplate=f"{name}<br>ratio %{{x}}<br>{metric} %{{y:.3f}}"
                                                      "<br>runs %{customdata}<extra></extra>"))
    values = [v for trace in fig.data for v in (trace.y or []) if v is not None and v == v]
    if values and max(values) - min(values) < 1e-9:  # one flat line: plotly's own range would be far too wide
        fig.update_yaxes(range=[values[0] - 0.05, values[0] + 0.05])
    fig.update_xaxes(range=ratio_axis(*x_range))  # plotly pads a lone point to +-1 (ratios below 0)
    fig.update_layout(title=title or f"{metric.replace('_', ' ')} across rationale ratios",
                      xaxis_title="target rationale ratio p", yaxis_title=metric.replace("_", " "),
                      legend_title_text="role · mode · backbone", height=420, margin=dict(l=10, r=10, t=50, b=10),
                      template="plotly_white")
    return fig


RANGE_SERIES_DASHES = {"range model": "solid", "fixed, at its own ratio": "dot", "fixed, read away": "dash"}


def ratio_range_figure(comparison):
    """Accuracy against the ratio read at (``backend.ratio_range_comparison``): for each kind of model (role,
    mode, backbone), the model trained over a range of ratios (solid), the fixed-ratio models at their own
    ratios (dotted) and a fixed-ratio model read away from its ratio (dashed); bars one standard deviation."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for (role, mode, backbone, series), group in comparison.groupby(["role", "mode", "backbone", "series"]):
        group = group.sort_values("ratio")
        name = f"{_series_name(role, mode, backbone)} · {series}"
        fig.add_trace(go.Scatter(
            x=group["ratio"].tolist(), y=group["accuracy"].tolist(), mode="lines+markers", name=name,
            error_y=dict(type="data", array=group["accuracy_std"].fillna(0).tolist()),
            line=dict(color=MODE_COLOURS.get(mode, "#444"), dash=RANGE_SERIES_DASHES.get(series, "solid"),
                      width=3.5 if role == "teacher" else 2), marker=_marker(role),
            customdata=group["run"].tolist(),
            hovertemplate=f"{name}<br>ratio %{{x}}<br>accuracy %{{y:.3f}}<br>%{{customdata}}<extra></extra>"))
    if len(comparison):
        fig.update_xaxes(range=ratio_axis(float(comparison["ratio"].min()), float(comparison["ratio"].max())))
    fig.update_layout(title="accuracy read at each ratio: a model trained over a range against fixed-ratio models",
                      xaxis_title="ratio read at", yaxis_title="accuracy", legend_title_text="model · series",
                      height=420, margin=dict(l=10, r=10, t=50, b=10), template="plotly_white")
    return fig


def ratio_axis(low: float, high: float) -> list[float]:
    """An x-axis range over the ratios ``low`` to ``high``, padded a little and never below 0 nor far above 1."""
    pad = 0.04 * (high - low) + 0.02
    return [max(0.0, low - pad), min(1.05, high + pad)]


def achieved_ratio_figure(agg):
    """Achieved selection ratio against the target ratio, with the y = x diagonal."""
    import plotly.graph_objects as go

    fig = go.Figure()
    selecting = agg[agg["mode"] != "cls"]
    if "achieved_ratio_mean" in selecting and len(selecting):
        top = float(max(selecting["ratio"].max(), selecting["achieved_ratio_mean"].max(skipna=True) or 0))
        fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="achieved = target",
                                 line=dict(color="#999", dash="dot")))
        for role, mode, backbone, group, b_index in _series(selecting, "achieved_ratio"):
            name = _series_name(role, mode, backbone)
            fig.add_trace(go.Scatter(
                x=group["ratio"].tolist(), y=group["achieved_ratio_mean"].tolist(), mode="lines+markers", name=name,
                line=dict(color=MODE_COLOURS.get(mode, "#444"), dash=_DASHES[b_index % len(_DASHES)],
                          width=3.5 if role == "teacher" else 2),
                marker=_marker(role, size=6)))
    fig.update_layout(title="achieved sparsity: selected / real features", xaxis_title="target rationale ratio p",
                      yaxis_title="achieved ratio", height=420, margin=dict(l=10, r=10, t=50, b=10),
                      template="plotly_white")
    return fig


def live_eval_figure(frame):
    """Live evaluation of the loaded pair: accuracy of both models, the student's agreement with
    the teacher (mask IoU, prediction agreement) and the achieved ratios, across ratios."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy and agreement", "achieved ratio"))
    for role, colour in (("teacher", TEACHER), ("student", STUDENT)):
        part = frame[frame["model"] == role].sort_values("ratio")
        if part.empty:
            continue
        fig.add_trace(go.Scatter(x=part["ratio"].tolist(), y=part["accuracy"].tolist(), mode="lines+markers",
                                 name=f"{role} accuracy",
                                 line=dict(color=colour, width=3)), row=1, col=1)
        fig.add_trace(go.Scatter(x=part["ratio"].tolist(), y=part["achieved_ratio"].tolist(), mode="lines+markers",
                                 name=f"{role} achieved ratio", line=dict(color=colour, width=2)), row=1, col=2)
        if role == "student":
            for column, name, dash in (("teacher_mask_iou", "mask IoU with teacher", "dot"),
                                       ("teacher_agreement", "prediction agreement", "dash")):
                if column in part and part[column].notna().any():
                    fig.add_trace(go.Scatter(x=part["ratio"].tolist(), y=part[column].tolist(),
                                             mode="lines+markers", name=name,
                                             line=dict(color=BOTH, dash=dash, width=2)), row=1, col=1)
    top = float(frame["ratio"].max()) if len(frame) else 1.0
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="achieved = target",
                             line=dict(color="#999", dash="dot")), row=1, col=2)
    if len(frame):
        fig.update_xaxes(range=ratio_axis(float(frame["ratio"].min()), float(frame["ratio"].max())), row=1, col=1)
    fig.update_xaxes(title_text="rationale ratio (top-k at inference)")
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=50, b=10), template="plotly_white")
    return fig


def confusion_figure(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str, colour: str = TEACHER):
    """A confusion matrix as a heatmap: rows the true class, columns the predicted one, each cell its count (and the
    share of its row in the hover), in ``colour``'s shades."""
    import plotly.graph_objects as go

    counts = np.asarray(matrix, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    fig = go.Figure(go.Heatmap(
        z=shares.tolist(), x=list(labels), y=list(labels), text=counts.astype(int).tolist(), texttemplate="%{text}",
        zmin=0, zmax=1,
        colorscale=[[0, "#ffffff"], [1, colour]], showscale=False,
        hovertemplate="true %{y}, predicted %{x}: %{text} (%{z:.0%} of the true %{y})<extra></extra>"))
    side = min(560, 120 + 36 * len(labels))
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="true", height=side,
                      margin=dict(l=10, r=10, t=50, b=10), template="plotly_white")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return fig
