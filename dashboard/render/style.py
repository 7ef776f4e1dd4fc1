"""Colours and the small formatting rules every drawing shares.

Colours (Okabe-Ito, readable with the common colour-vision deficiencies): the teacher is blue, the student orange,
and a feature both select is bluish green. Human evidence (ERASER) is reddish purple with a dotted underline, so
that it never reads as a model's selection.
"""
from __future__ import annotations

TEACHER = "#0072B2"
STUDENT = "#E69F00"
BOTH = "#009E73"
HUMAN = "#CC79A7"
ROLE_COLOURS = {"teacher": TEACHER, "student": STUDENT}
MODE_COLOURS = {"cls": "#7F7F7F", "re": "#0072B2", "rekd": "#D55E00"}
# A CLS model reads everything, so it is a flat reference line: the teacher's and the student's must
# not look alike (black dashes and reddish-purple dots), other roles fall back to grey dash-dots.
CLS_LINES = {"teacher": ("#000000", "dash"), "student": ("#CC79A7", "dot")}
UNDEFINED = "—"  # shown for a score that has no value (the IoU of two empty selections), and in tables' empty cells
SHADINGS = {"selection": "Top-k selection", "probability": "Selection probability"}  # how a rationale is drawn


def tint(colour: str, strength: float = 0.35) -> str:
    """``colour`` blended with white (``strength`` 1 = the colour itself)."""
    r, g, b = rgb(colour)
    mix = lambda c: round(255 - (255 - c) * strength)  # noqa: E731
    return f"#{mix(r):02x}{mix(g):02x}{mix(b):02x}"


def rgb(colour: str) -> tuple[int, int, int]:
    """``#rrggbb`` as three integers."""
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def format_score(value: float | None) -> str:
    """A score with three decimals, or "—" when it is undefined (None or NaN)."""
    if value is None or value != value:
        return UNDEFINED
    shown = f"{value:.3f}"
    return "0.000" if shown == "-0.000" else shown  # a tiny negative value is not worth a sign


def saw_no_features(exp) -> bool:
    """Whether a selecting model picked nothing: its predictor then saw an empty input, and whatever it
    outputs is its bias, not a prediction about this input. (A CLS model, without scores, reads all.)"""
    return bool(exp.scores) and not exp.selected


def csv_bytes(frame) -> bytes:
    """A table as the UTF-8 CSV the page's downloads hold."""
    return frame.to_csv(index=False).encode("utf-8")
