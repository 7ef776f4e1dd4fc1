"""Pure drawing functions of the dashboard: explanations -> HTML, PIL images, plotly figures and
tables. No Streamlit and no model code here, so every function is testable on its own.

Colours (Okabe-Ito, readable with the common colour-vision deficiencies): the teacher is blue, the
student orange, and a feature both select is bluish green. Human evidence (ERASER) is reddish purple
with a dotted underline, so that it never reads as a model's selection.
"""
from __future__ import annotations

import base64
import html
import importlib.util
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rekd_core.metric_info import METRICS, describe
from rekd_core.words import Word, evidence_words, read_limit, word_spans

TEACHER = "#0072B2"
STUDENT = "#E69F00"
BOTH = "#009E73"
HUMAN = "#CC79A7"
MODE_COLOURS = {"cls": "#7F7F7F", "re": "#0072B2", "rekd": "#D55E00"}
# A CLS model reads everything, so it is a flat reference line: the teacher's and the student's must
# not look alike (black dashes and reddish-purple dots), other roles fall back to grey dash-dots.
CLS_LINES = {"teacher": ("#000000", "dash"), "student": ("#CC79A7", "dot")}
UNDEFINED = "—"  # shown for a score that has no value (the IoU of two empty selections)
MAX_UNREAD_CHARS = 2_000  # of the part of a review the model did not read, this much is shown
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_GAP, _BR_START, _BR_REST = -1, -2, -3


def tint(colour: str, strength: float = 0.35) -> str:
    """``colour`` blended with white (``strength`` 1 = the colour itself)."""
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    mix = lambda c: round(255 - (255 - c) * strength)  # noqa: E731
    return f"#{mix(r):02x}{mix(g):02x}{mix(b):02x}"


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# Words the page uses, explained once: tooltips (help=) and the "How to read this" box share them
# ----------------------------------------------------------------------------------------------

GLOSSARY = {
    "rationale": "The few features (word pieces of a review, patches of an image) a model picks. Its prediction "
                 "is made from those alone, so they show what it based the prediction on.",
    "CLS": "A plain classifier that reads every feature: it picks nothing, so it has no rationale. Shown as a "
           "reference for how accurate a model can be with everything in view.",
    "RE": "Rationale extraction: a generator picks a few features and a predictor classifies from only those; "
          "the two are trained together.",
    "REKD": "RE with knowledge distillation: a small student learns what to pick and what to predict from a "
            "big RE teacher.",
    "word pieces": "The pieces a tokenizer cuts text into ('unbelievable' -> 'un', '##believ', '##able'). The "
                   "models pick pieces; the page highlights the whole words they belong to.",
    "ratio": "The share of an input's features each model keeps: the k = ratio x features with the highest "
             "scores. Each model was trained at one ratio (marked under the slider); far from it, its "
             "predictions are untested.",
    "achieved ratio": METRICS["achieved_ratio"].meaning,
    "mask IoU": METRICS["teacher_mask_iou"].meaning,
    "mask F1": METRICS["teacher_mask_f1"].meaning,
    "agreement": METRICS["teacher_agreement"].meaning,
    "overlap counts": "Features picked by both models / by the teacher only / by the student only.",
    "plausibility": METRICS["plausibility_f1"].meaning,
    "sufficiency": METRICS["sufficiency"].help,
    "comprehensiveness": METRICS["comprehensiveness"].help,
}

HOW_TO_READ = f"""\
- **Rationale**: {GLOSSARY["rationale"]}
- **Teacher and student**: the teacher is a big model; the student a small one. **CLS**, **RE** and **REKD**
  are how a model was trained: {GLOSSARY["CLS"]} {GLOSSARY["RE"]} {GLOSSARY["REKD"]}
- **Word pieces**: {GLOSSARY["word pieces"]} Special pieces such as [CLS] and [SEP] are never highlighted.
- **Ratio** (the sidebar slider): {GLOSSARY["ratio"]} **Achieved ratio**: {GLOSSARY["achieved ratio"]}
- **Agreement**: blue = teacher only, orange = student only, green = both. **Mask IoU**: {GLOSSARY["mask IoU"]}
  **Prediction agreement**: {GLOSSARY["agreement"]}
- **Human evidence** (datasets that have it, such as ERASER movies, opened from the dataset browser): purple,
  dotted underline. **Plausibility**: {GLOSSARY["plausibility"]}
- A model that picked **no feature** saw nothing: it has no prediction, whatever numbers it outputs.
"""


def format_score(value: float | None) -> str:
    """A score with three decimals, or "—" when it is undefined (None or NaN)."""
    return UNDEFINED if value is None or value != value else f"{value:.3f}"


def saw_no_features(exp) -> bool:
    """Whether a selecting model picked nothing: its predictor then saw an empty input, and whatever it
    outputs is its bias, not a prediction about this input. (A CLS model, without scores, reads all.)"""
    return bool(exp.scores) and not exp.selected


# ----------------------------------------------------------------------------------------------
# Text: word pieces -> words -> highlighted HTML
# ----------------------------------------------------------------------------------------------


def _segments(text: str, words: Sequence[Word], limit: int) -> list[tuple[int, int, int]]:
    """``(owner, start, end)`` runs of ``text[:limit]``: owner is a word index, ``_GAP`` for text
    between words, ``_BR_START``/``_BR_REST`` for the HTML line breaks (<br />) that IMDB reviews hold."""
    owner = np.full(limit, _GAP, dtype=np.int64)
    for index, word in enumerate(words):
        if word.start < limit:
            owner[word.start:min(word.end, limit)] = index
    for match in _BR.finditer(text, 0, limit):
        owner[match.start()] = _BR_START
        owner[match.start() + 1:match.end()] = _BR_REST
    runs = []
    if limit == 0:
        return runs
    change = np.flatnonzero(np.diff(owner)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [limit]])
    for start, end in zip(starts.tolist(), ends.tolist()):
        value = int(owner[start])
        if value == _BR_START:  # consecutive tags: one break each
            runs.append((_BR_START, start, start + 1))
            if end > start + 1:
                runs.append((_BR_REST, start + 1, end))
        else:
            runs.append((value, start, end))
    return runs


_TEXT_BOX = ("font-family:Georgia,'DejaVu Serif',serif;font-size:15px;line-height:1.7;white-space:pre-wrap;"
             "color:#222;background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 12px;"
             "max-height:520px;overflow-y:auto")


def _text_html(text: str, words: Sequence[Word], tokens: Sequence[str], limit: int, colour_of: dict[int, str],
               notes: dict[int, str] | None = None, max_length: int | None = None, underline: str = "solid") -> str:
    """The review read up to character ``limit``, each word whose pieces map to a colour (``colour_of``: piece ->
    colour) highlighted; special pieces are in no word, so they never are. The rest is shown greyed, as unread."""
    word_colour: dict[int, str] = {}
    for index, word in enumerate(words):
        colours = [colour_of[p] for p in word.pieces if p in colour_of]
        if colours:
            word_colour[index] = _strongest(colours)
    out = []
    for owner, start, end in _segments(text, words, limit):
        if owner == _BR_START:
            out.append("<br>")
        elif owner == _BR_REST:
            continue
        elif owner == _GAP:
            out.append(html.escape(text[start:end]))
        else:
            piece_text = html.escape(text[start:end])
            word = words[owner]
            title = html.escape(" ".join(tokens[p] for p in word.pieces) + (notes or {}).get(owner, ""), quote=True)
            if owner in word_colour:
                out.append(f'<span style="background:{tint(word_colour[owner], 0.45)};border-bottom:2px {underline} '
                           f'{word_colour[owner]};border-radius:3px;color:#111" title="{title}">{piece_text}</span>')
            else:
                out.append(f'<span title="{title}">{piece_text}</span>')
    if limit < len(text):
        rest = text[limit:]
        shown = rest[:MAX_UNREAD_CHARS]
        more = f" … ({len(rest) - len(shown):,} more characters)" if len(rest) > len(shown) else ""
        pieces = f" ({max_length} word pieces)" if max_length else ""
        out.append('<span style="display:inline-block;margin:4px 0;padding:0 6px;font-family:sans-serif;font-size:12px;'
                   f'background:#fdecea;color:#8a1c1c;border-radius:4px">✂ the model stops reading here{pieces}</span>')
        out.append(f'<span style="color:#999">{html.escape(_BR.sub(chr(10), shown))}{html.escape(more)}</span>')
    return f'<div style="{_TEXT_BOX}">{"".join(out)}</div>'


_PRIORITY = {BOTH: 3, TEACHER: 2, STUDENT: 1}


def _strongest(colours: Iterable[str]) -> str:
    return max(colours, key=lambda c: _PRIORITY.get(c, 0))


def highlight_html(text: str, exp, colour: str = TEACHER, max_length: int | None = None) -> str:
    """One model's rationale over the review: the words any of whose pieces it selected."""
    selected = set(exp.selected) if exp.scores else set()  # a CLS model selects nothing: it reads all
    colour_of = {i: colour for i in selected}
    notes = {}
    if exp.scores:
        for index, word in enumerate(exp.words):
            best = max(exp.scores[p] for p in word.pieces if p < len(exp.scores))
            notes[index] = f" · score {best:+.2f}"
    return _text_html(text, exp.words, exp.tokens, read_limit(text, exp.offsets, exp.truncated), colour_of, notes,
                      max_length)


def _agreement_colours(comparison: dict) -> dict[int, str]:
    """Feature -> colour of the agreement view: both (green), teacher only (blue), student only (orange)."""
    colour_of = {i: BOTH for i in comparison["both"]}
    colour_of.update({i: TEACHER for i in comparison["teacher_only"]})
    colour_of.update({i: STUDENT for i in comparison["student_only"]})
    return colour_of


def agreement_html(text: str, teacher_exp, comparison: dict, max_length: int | None = None) -> str:
    """The review with words selected by both (green), only the teacher (blue), only the student
    (orange): a word takes the strongest of its pieces' classes."""
    return _text_html(text, teacher_exp.words, teacher_exp.tokens,
                      read_limit(text, teacher_exp.offsets, teacher_exp.truncated), _agreement_colours(comparison),
                      max_length=max_length)


def word_counts(exp) -> tuple[int, int]:
    """(selected words, words read): a word counts as selected if any of its pieces is."""
    selected = set(exp.selected)
    return sum(1 for w in exp.words if selected.intersection(w.pieces)), len(exp.words)


def human_html(text: str, evidence: Iterable[tuple[int, int]], read_upto: int | None = None,
               max_length: int | None = None) -> str:
    """The review with the words of the human evidence highlighted (reddish purple, dotted underline);
    past ``read_upto`` (the character where the models stop reading, None: they read it all) dimmed as in the
    models' views, since plausibility counts only the words the models read."""
    spans = word_spans(text)
    human = evidence_words(evidence, len(spans))
    words = [Word(start, end, [index]) for index, (start, end) in enumerate(spans)]
    limit = len(text) if read_upto is None else read_upto
    shown = [word for word in words if word.end <= limit]
    return _text_html(text, shown, [text[start:end] for start, end in spans], limit,
                      {i: HUMAN for i in human if i < len(shown)}, {i: " · human evidence" for i in human},
                      max_length, underline="dotted")


def legend_html(teacher_name: str = "teacher", student_name: str = "student") -> str:
    chip = lambda c, label: ('<span style="display:inline-block;margin-right:14px">'  # noqa: E731
                             '<span style="display:inline-block;'
                             f'width:12px;height:12px;border-radius:3px;background:{c};vertical-align:middle;'
                             f'margin-right:4px"></span>{html.escape(label)}</span>')
    return ('<div style="font-family:sans-serif;font-size:13px;margin:4px 0">'
            + chip(BOTH, "selected by both") + chip(TEACHER, f"{teacher_name} only")
            + chip(STUDENT, f"{student_name} only") + "</div>")


# ----------------------------------------------------------------------------------------------
# Predictions and model cards
# ----------------------------------------------------------------------------------------------


def probs_html(exp, colour: str = TEACHER, top: int = 10, true_label: str | None = None) -> str:
    """The predicted label and a bar per class probability (the ``top`` most likely). A model that
    picked no feature gets no verdict and no bars: its output is the predictor's bias on an empty input."""
    if saw_no_features(exp):
        return ('<div style="font-family:sans-serif;color:#222">'
                '<div style="font-size:20px;font-weight:600;margin-bottom:4px;color:#777">No prediction</div>'
                f'<div style="font-size:13px;color:#555">The model picked none of the {exp.num_features} features: its '
                'predictor saw nothing, so whatever it outputs says nothing about this input. Raise the ratio until '
                'it picks at least one feature.</div></div>')
    items = sorted(exp.probs.items(), key=lambda kv: -kv[1])
    shown = items[:top]
    verdict = ""
    if true_label:
        right = exp.label.lower() == true_label.lower()
        verdict = (f' <span style="font-size:13px;color:{"#1a7f37" if right else "#b42318"}">'
                   f'({"✓" if right else "✗"} true label: {html.escape(true_label)})</span>')
    rows = [f'<div style="font-size:20px;font-weight:600;margin-bottom:4px">{html.escape(exp.label)}'
            f' <span style="font-size:14px;font-weight:400;color:#555">p = {exp.probs[exp.label]:.3f}</span>'
            f'{verdict}</div>']
    for label, p in shown:
        weight = "600" if label == exp.label else "400"
        rows.append(
            '<div style="display:flex;align-items:center;gap:6px;font-size:13px;margin:1px 0">'
            f'<span style="width:9em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-weight:{weight}">'
            f'{html.escape(label)}</span>'
            '<span style="flex:1;background:#eee;height:10px;border-radius:3px;display:inline-block;position:relative">'
            f'<span style="position:absolute;left:0;top:0;bottom:0;width:{100 * p:.1f}%;background:{colour};'
            'border-radius:3px"></span></span>'
            f'<span style="width:3.5em;text-align:right;font-variant-numeric:tabular-nums">{p:.3f}</span></div>')
    if len(items) > top:
        rows.append(f'<div style="font-size:12px;color:#777">… and {len(items) - top} more classes</div>')
    return '<div style="font-family:sans-serif;color:#222">' + "".join(rows) + "</div>"


def format_count(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


MASKING_TEXT = {"zero": "every feature, the unselected as zeros (zero masking)",
                "drop": "only the selected features (drop masking)"}


def model_card_html(info, role: str, colour: str, teacher: str | None = None) -> str:
    """A small card: backbone, parameters, mode and ratio, test accuracy, data and grid, and the teacher
    (``teacher``, else the path the checkpoint recorded) that a REKD model was distilled from or an RE
    model scored against."""
    grid = info.grid or {}
    if grid.get("type") == "text":
        grid_text = f"{grid.get('max_length')} word pieces, vocabulary {grid.get('vocab_size'):,}"
    elif grid.get("type") == "vision":
        side = grid.get("image_size", 0) // max(grid.get("patch_size", 1), 1)
        grid_text = f"{grid.get('image_size')}px images, {side}x{side} patches of {grid.get('patch_size')}px"
    else:
        grid_text = "?"
    detail = info.parameters_detail or {}
    params = format_count(info.parameters)
    if detail:
        params += " (" + ", ".join(f"{k} {format_count(v)}" for k, v in detail.items() if v) + ")"
    accuracy = f"{info.test_accuracy:.3f}" if info.test_accuracy is not None else "not recorded"
    if info.test_ratio is not None and info.mode != "cls":
        accuracy += f" (achieved ratio {info.test_ratio:.3f})"
    if info.mode == "cls":
        ratio = "reads everything (no selection)"
    else:
        low, high = info.ratio_range or (info.ratio, info.ratio)
        ratio = f"trained at {low:g}" if low == high else f"trained over {low:g} to {high:g}"
    rows = [("backbone", info.backbone), ("parameters", params), ("mode", info.mode_name), ("rationale ratio", ratio),
            ("test accuracy", accuracy), ("labels", _short_list(info.labels)), ("feature grid", grid_text),
            ("dataset", info.dataset or "?")]
    if teacher or info.teacher:
        rows.append(("distilled from" if info.mode == "rekd" else "compared with", teacher or info.teacher))
    if info.masking:
        rows.append(("predictor reads", MASKING_TEXT.get(info.masking, info.masking)))
    if info.generator_embeddings:
        rows.append(("generator embeddings", f"{info.generator_embeddings} "
                     f"({'pretrained' if info.generator_embeddings == 'frozen' else 'learned from scratch'})"))
    if info.status and info.status != "complete":
        rows.append(("status", info.status))
    rows += [("⚠ warning", warning) for warning in info.warnings]
    hints = {"mode": GLOSSARY.get(info.mode_name, ""), "rationale ratio": GLOSSARY["ratio"],
             "test accuracy": GLOSSARY["achieved ratio"],
             "feature grid": GLOSSARY["word pieces"] if grid.get("type") == "text" else "",
             "predictor reads": "zero masking (the paper's): every feature, an unselected one as a zero vector at its "
                                "position; drop masking: only the selected features, at their positions",
             "generator embeddings": "the generator's word embeddings: frozen when they come from pretrained "
                                     "weights, trained when they start random",
             "⚠ warning": "from the model's test metrics: what its generator selects on its own (argmax), "
                          "against the target ratio and between classes"}
    body = "".join(f'<tr title="{html.escape(hints.get(k, ""), quote=True)}">'
                   '<td style="color:#666;padding:1px 10px 1px 0;'
                   f'white-space:nowrap;vertical-align:top">{html.escape(k)}</td>'
                   f'<td style="padding:1px 0;word-break:break-all">{html.escape(str(v))}</td></tr>' for k, v in rows)
    return (f'<div style="font-family:sans-serif;font-size:13px;color:#222;background:#fff;border:1px solid #ddd;'
            f'border-left:5px solid {colour};border-radius:6px;padding:8px 10px;margin-bottom:6px">'
            '<div style="font-weight:600;font-size:15px;margin-bottom:4px">'
            f'{html.escape(role)}: {html.escape(info.name)}</div>'
            f'<table style="border-collapse:collapse">{body}</table></div>')


def _short_list(values: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f", … ({len(values)} classes)" if len(values) > limit else "")


# ----------------------------------------------------------------------------------------------
# Images: original and patch overlays
# ----------------------------------------------------------------------------------------------


def display_image(image: Image.Image, size: int = 256) -> Image.Image:
    """``image`` fitted into a ``size`` square: small images are enlarged with sharp pixels."""
    width, height = image.size
    scale = size / max(width, height)
    if scale >= 1:
        factor = max(1, int(scale))
        return image.resize((width * factor, height * factor), Image.NEAREST)
    copy = image.copy()
    copy.thumbnail((size, size), Image.LANCZOS)
    return copy


def _grid_canvas(view: Image.Image, grid_side: int, size: int) -> tuple[np.ndarray, int]:
    cell = max(1, size // grid_side)
    side = cell * grid_side
    method = Image.NEAREST if side >= view.width else Image.LANCZOS
    return np.asarray(view.convert("RGB").resize((side, side), method), dtype=np.float32), cell


def _dimmed(pixels: np.ndarray, dim: float) -> np.ndarray:
    """The unselected look: darkened, lifted a little off black so that dark images keep their shapes."""
    return pixels * dim + 255 * 0.06


def _cell_mask(cells: Iterable[int], grid_side: int, cell: int) -> np.ndarray:
    grid = np.zeros(grid_side * grid_side, dtype=bool)
    grid[[int(i) for i in cells if 0 <= int(i) < grid_side * grid_side]] = True
    return np.kron(grid.reshape(grid_side, grid_side), np.ones((cell, cell), dtype=bool))


def _draw_grid(image: Image.Image, grid_side: int, cell: int, outlines: dict[int, str]) -> Image.Image:
    draw = ImageDraw.Draw(image, "RGBA")
    side = grid_side * cell
    for k in range(1, grid_side):
        draw.line([(k * cell, 0), (k * cell, side)], fill=(255, 255, 255, 90), width=1)
        draw.line([(0, k * cell), (side, k * cell)], fill=(255, 255, 255, 90), width=1)
    width = 2 if cell >= 8 else 1
    for index, colour in outlines.items():
        r, c = divmod(int(index), grid_side)
        draw.rectangle([c * cell, r * cell, (c + 1) * cell - 1, (r + 1) * cell - 1], outline=_rgb(colour), width=width)
    return image


def patch_overlay(view: Image.Image, selected: Iterable[int], grid_side: int, colour: str = TEACHER,
                  size: int = 256, dim: float = 0.28) -> Image.Image:
    """The image as the model sees it, enlarged to about ``size``: unselected patches dimmed,
    selected ones outlined in ``colour``, the patch grid drawn."""
    pixels, cell = _grid_canvas(view, grid_side, size)
    selected = [int(i) for i in selected]
    keep = _cell_mask(selected, grid_side, cell)[..., None]
    out = np.where(keep, pixels, _dimmed(pixels, dim))
    image = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    return _draw_grid(image, grid_side, cell, {i: colour for i in selected})


def original_overlay(image: Image.Image, boxes: Sequence[Sequence[float]], selected: Iterable[int],
                     colour: str = TEACHER, size: int = 256, dim: float = 0.28) -> Image.Image:
    """The original image as ``display_image`` shows it, with the model's cells mapped back onto it (``boxes``:
    each cell's (left, top, right, bottom) in the original's pixels, ``backend.cell_boxes``): outside the
    selected cells dimmed, the cells drawn, the selected ones outlined in ``colour``."""
    shown = display_image(image, size).convert("RGB")
    scale = shown.width / image.width
    scaled = [tuple(round(v * scale) for v in box) for box in boxes]
    selected = [int(i) for i in selected if 0 <= int(i) < len(scaled)]
    keep = np.zeros((shown.height, shown.width, 1), dtype=bool)
    for left, top, right, bottom in (scaled[i] for i in selected):
        keep[top:bottom, left:right] = True
    pixels = np.asarray(shown, dtype=np.float32)
    out = Image.fromarray(np.clip(np.where(keep, pixels, _dimmed(pixels, dim)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out, "RGBA")
    for left, top, right, bottom in scaled:
        if right > left and bottom > top:
            draw.rectangle([left, top, right - 1, bottom - 1], outline=(255, 255, 255, 90), width=1)
    for i in selected:
        left, top, right, bottom = scaled[i]
        if right > left and bottom > top:
            draw.rectangle([left, top, right - 1, bottom - 1], outline=_rgb(colour), width=2)
    return out


def agreement_overlay(view: Image.Image, comparison: dict, grid_side: int, size: int = 256,
                      dim: float = 0.28, alpha: float = 0.45) -> Image.Image:
    """Patches selected by both (green), only the teacher (blue), only the student (orange) tinted
    and outlined; the rest dimmed."""
    pixels, cell = _grid_canvas(view, grid_side, size)
    out = _dimmed(pixels, dim)
    outlines = {}
    for key, colour in (("teacher_only", TEACHER), ("student_only", STUDENT), ("both", BOTH)):
        mask = _cell_mask(comparison[key], grid_side, cell)[..., None]
        tinted = pixels * (1 - alpha) + np.array(_rgb(colour), dtype=np.float32) * alpha
        out = np.where(mask, tinted, out)
        outlines.update({int(i): colour for i in comparison[key]})
    image = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    return _draw_grid(image, grid_side, cell, outlines)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _data_uri(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


# ----------------------------------------------------------------------------------------------
# One comparison as a standalone HTML page and as a PNG
# ----------------------------------------------------------------------------------------------


@dataclass
class ComparisonView:
    """Everything a downloaded comparison shows."""

    input_name: str
    kind: str  # "text" | "image"
    teacher_name: str
    student_name: str
    teacher_exp: object
    student_exp: object
    comparison: dict | None
    ratio: float | None
    text: str | None = None
    true_label: str | None = None
    max_length: int | None = None
    original: Image.Image | None = None
    teacher_overlay: Image.Image | None = None
    student_overlay: Image.Image | None = None
    agreement_image: Image.Image | None = None
    notes: list[str] = field(default_factory=list)
    evidence: list[tuple[int, int]] | None = None  # human evidence spans over text.split() words (ERASER)
    plausibility: dict = field(default_factory=dict)  # role -> words.word_plausibility() scores (or None)


def plausibility_line(scores: dict | None) -> str:
    """One model's plausibility against the human evidence as one line ("—" when undefined), saying how many
    evidence words lie past where the model stopped reading (they are not counted)."""
    if scores is None:
        return f"plausibility F1 {UNDEFINED} (no rationale, or no human evidence)"
    unread = (f"; {scores['unread']} evidence word{'s' if scores['unread'] != 1 else ''} past where it stopped "
              "reading, not counted" if scores.get("unread") else "")
    if scores["f1"] is None:
        return f"plausibility F1 {UNDEFINED} (no evidence word among those it read{unread})"
    return (f"plausibility F1 {format_score(scores['f1'])} (precision {format_score(scores['precision'])}, "
            f"recall {format_score(scores['recall'])}; {scores['selected']} words picked, {scores['human']} marked "
            f"by humans{unread})")


def read_chars(text: str, exps: Iterable) -> int | None:
    """Where the first of several models stops reading ``text`` (characters), None when all read it all."""
    limits = [read_limit(text, exp.offsets, True) for exp in exps if exp.truncated]
    return min(limits) if limits else None


def agreement_summary(comparison: dict | None) -> str:
    if comparison is None:
        return "agreement not available for this pair"
    agree = "agree" if comparison["labels_agree"] else "disagree"
    undefined = " (undefined: neither model picked a feature)" if comparison["iou"] is None else ""
    return (f"predictions {agree}; mask IoU {format_score(comparison['iou'])}, F1 {format_score(comparison['f1'])}"
            f"{undefined}; "
            f"{len(comparison['both'])} features selected by both, "
            f"{len(comparison['teacher_only'])} by the teacher only, "
            f"{len(comparison['student_only'])} by the student only")


def comparison_html(view: ComparisonView) -> str:
    """A self-contained HTML page (images inlined) of one teacher-student comparison."""
    ratio = f"{view.ratio:g}" if view.ratio is not None else "each model's training ratio"
    columns = []
    for role, name, exp, colour, overlay in (
            ("Teacher", view.teacher_name, view.teacher_exp, TEACHER, view.teacher_overlay),
            ("Student", view.student_name, view.student_exp, STUDENT, view.student_overlay)):
        if view.kind == "text":
            body = highlight_html(view.text or "", exp, colour, view.max_length)
        else:
            body = (f'<img alt="original" src="{_data_uri(view.original)}" style="margin-right:8px">'
                    f'<img alt="{role} patches" src="{_data_uri(overlay)}">')
        line = plausibility_line(view.plausibility.get(role.lower()))
        human = f'<p style="font-size:13px;color:#555">{html.escape(line)}</p>' if view.evidence is not None else ""
        columns.append('<div style="flex:1;min-width:320px">'
                       f'<h2 style="color:{colour}">{role}: {html.escape(name)}</h2>'
                       f'{probs_html(exp, colour, true_label=view.true_label)}'
                       f'<p style="font-size:13px;color:#555">selected {len(exp.selected)} of {exp.num_features} '
                       f'features (ratio {exp.ratio:.3f})</p>{human}{body}</div>')
    if view.evidence is not None and view.kind == "text":
        limit = read_chars(view.text or "", (view.teacher_exp, view.student_exp))
        columns.append(f'<div style="flex:1;min-width:320px"><h2 style="color:{HUMAN}">Human evidence</h2>'
                       f'{human_html(view.text or "", view.evidence, limit, view.max_length)}</div>')
    if view.comparison is not None:
        if view.kind == "text":
            agreement = agreement_html(view.text or "", view.teacher_exp, view.comparison, view.max_length)
        else:
            agreement = f'<img alt="agreement" src="{_data_uri(view.agreement_image)}">'
        agreement = legend_html() + agreement
    else:
        agreement = "<p>Agreement is not available for this pair.</p>"
    notes = "".join(f'<p style="color:#8a5a00">{html.escape(n)}</p>' for n in view.notes)
    return ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
            f"<title>Teacher vs student: {html.escape(view.input_name)}</title></head>"
            '<body style="font-family:sans-serif;max-width:1400px;margin:16px auto;padding:0 16px;color:#222">'
            f"<h1>Teacher vs student rationales</h1><p><b>Input:</b> {html.escape(view.input_name)}"
            + (f" (true label: {html.escape(view.true_label)})" if view.true_label else "")
            + f" · <b>rationale ratio:</b> {ratio}</p>{notes}"
            f'<div style="display:flex;gap:24px;flex-wrap:wrap">{"".join(columns)}</div>'
            f"<h2>Agreement</h2><p>{html.escape(agreement_summary(view.comparison))}</p>{agreement}"
            "<p style='color:#888;font-size:12px'>Made with the REKD dashboard.</p></body></html>")


_FONT_DIR = None


def _font(size: int, bold: bool = False) -> ImageFont.ImageFont:
    """DejaVu Sans from matplotlib's data folder, else Pillow's own font. The folder is found without importing
    matplotlib, whose import creates its configuration folder (a temporary one where the home folder is
    read-only): the PNG export writes nothing to the disk."""
    global _FONT_DIR
    try:
        if _FONT_DIR is None:
            spec = importlib.util.find_spec("matplotlib")
            _FONT_DIR = Path(spec.submodule_search_locations[0]) / "mpl-data" / "fonts" / "ttf"
        return ImageFont.truetype(str(_FONT_DIR / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")), size)
    except Exception:  # no matplotlib fonts: Pillow's own
        return ImageFont.load_default(size)


def _text_atoms(text: str, exp, colour_of: dict[int, str]) -> tuple[list[list[tuple[str, str | None]]], int]:
    """The read part of a review as visual words (lists of (string, colour or None)), with ``None``
    entries for line breaks, and the number of characters not read."""
    words = exp.words
    limit = read_limit(text, exp.offsets, exp.truncated)
    chunks: list = []
    current: list = []

    def flush():
        nonlocal current
        if current:
            chunks.append(current)
            current = []

    for owner, start, end in _segments(text, words, limit):
        if owner == _BR_START:
            flush()
            chunks.append(None)
        elif owner == _BR_REST:
            continue
        elif owner == _GAP:
            for part in re.split(r"(\s+)", text[start:end]):
                if not part:
                    continue
                if part.isspace():
                    flush()
                    chunks.extend([None] * part.count("\n"))
                else:
                    current.append((part, None))
        else:
            colours = [colour_of[p] for p in words[owner].pieces if p in colour_of]
            current.append((text[start:end], _strongest(colours) if colours else None))
    flush()
    return chunks, len(text) - limit


def _layout(chunks, width: int, font, line_height: int) -> list[list[tuple[int, str, str | None]]]:
    lines: list[list[tuple[int, str, str | None]]] = [[]]
    x = 0
    space = font.getlength(" ")
    for chunk in chunks:
        if chunk is None:
            if lines[-1] or (len(lines) > 1 and lines[-2]):
                lines.append([])
            x = 0
            continue
        chunk_width = sum(font.getlength(s) for s, _ in chunk)
        if x > 0 and x + space + chunk_width > width:
            lines.append([])
            x = 0
        elif x > 0:
            x += space
        for s, colour in chunk:
            w = font.getlength(s)
            if x + w > width and x > 0:
                lines.append([])
                x = 0
            lines[-1].append((int(x), s, colour))
            x += w
    return lines


def _draw_lines(draw, lines, x0: int, y0: int, font, line_height: int) -> int:
    for number, line in enumerate(lines):
        y = y0 + number * line_height
        for x, s, colour in line:
            if colour:
                w = font.getlength(s)
                draw.rounded_rectangle([x0 + x - 1, y + 1, x0 + x + w + 1, y + line_height - 3], radius=3,
                                       fill=tint(colour, 0.45))
                draw.line([x0 + x - 1, y + line_height - 3, x0 + x + w + 1, y + line_height - 3], fill=colour, width=2)
            draw.text((x0 + x, y + 3), s, font=font, fill=(20, 20, 20))
    return y0 + len(lines) * line_height


def comparison_png(view: ComparisonView, width: int = 1400) -> bytes:
    """The comparison as one PNG: header, both predictions (and their plausibility, with human evidence),
    the rationales and the agreement."""
    title_font, head_font, font, small = _font(24, True), _font(18, True), _font(15), _font(13)
    margin, gap = 24, 24
    column = (width - 2 * margin - gap) // 2
    line_height = 24
    blocks = []  # (height, draw function)

    ratio = f"{view.ratio:g}" if view.ratio is not None else "training ratios"
    header = f"Input: {view.input_name}" + (f"  (true label: {view.true_label})" if view.true_label else "") + \
             f"   ·   rationale ratio: {ratio}"
    blocks.append((72, lambda d, y: (d.text((margin, y), "Teacher vs student rationales", font=title_font,
                                            fill=(20, 20, 20)),
                                     d.text((margin, y + 36), header[:180], font=small, fill=(80, 80, 80)))))
    if view.notes:  # out-of-range ratios, how an image was fitted, ...: as on the page
        notes = [note[:190] for note in view.notes]
        blocks.append((20 * len(notes) + 8,
                       lambda d, y: [d.text((margin, y + 20 * i), note, font=small, fill=(138, 90, 0))
                                     for i, note in enumerate(notes)]))

    def prediction_lines(role, name, exp):
        if saw_no_features(exp):
            return [f"{role}: {name}"[:70], "no prediction: the model picked no feature (it saw nothing)",
                    "raise the ratio until it picks at least one",
                    f"selected 0 of {exp.num_features} features (ratio {exp.ratio:.3f})"]
        top = sorted(exp.probs.items(), key=lambda kv: -kv[1])[:5]
        return [f"{role}: {name}"[:70], f"prediction: {exp.label} (p = {exp.probs[exp.label]:.3f})",
                "   ".join(f"{k} {v:.3f}" for k, v in top)[:90],
                f"selected {len(exp.selected)} of {exp.num_features} features (ratio {exp.ratio:.3f})"]

    heads = [prediction_lines("Teacher", view.teacher_name, view.teacher_exp),
             prediction_lines("Student", view.student_name, view.student_exp)]

    def draw_heads(d, y):
        for k, (lines, colour) in enumerate(zip(heads, (TEACHER, STUDENT))):
            x = margin + k * (column + gap)
            d.rectangle([x, y, x + 5, y + 4 * 22], fill=colour)
            for i, line in enumerate(lines):
                d.text((x + 14, y + i * 22), line, font=head_font if i == 0 else small, fill=(20, 20, 20))

    blocks.append((4 * 22 + 16, draw_heads))
    if view.evidence is not None and view.kind == "text":  # the scores only: the human highlight is in the HTML
        lines = [f"{role} against the human evidence: {plausibility_line(view.plausibility.get(role))}"[:190]
                 for role in ("teacher", "student")]
        blocks.append((20 * len(lines) + 8, lambda d, y: [d.text((margin, y + 20 * i), line, font=small,
                                                                 fill=_rgb(HUMAN)) for i, line in enumerate(lines)]))

    if view.kind == "text":
        text = view.text or ""
        per_model = []
        for exp, colour in ((view.teacher_exp, TEACHER), (view.student_exp, STUDENT)):
            chunks, unread = _text_atoms(text, exp, {i: colour for i in exp.selected} if exp.scores else {})
            per_model.append((_layout(chunks, column, font, line_height), unread))
        rows = max(len(lines) for lines, _ in per_model)
        unread = per_model[0][1]

        def draw_texts(d, y, per_model=per_model, unread=unread):
            for k, (lines, _) in enumerate(per_model):
                _draw_lines(d, lines, margin + k * (column + gap), y, font, line_height)
            if unread:
                d.text((margin, y + rows * line_height + 4),
                       f"✂ the model stops reading here: {unread:,} more characters not read",
                       font=small, fill=(138, 28, 28))

        blocks.append((rows * line_height + (28 if unread else 8), draw_texts))
        if view.comparison is not None:
            chunks, _ = _text_atoms(text, view.teacher_exp, _agreement_colours(view.comparison))
            agreement_lines = _layout(chunks, width - 2 * margin, font, line_height)
            blocks.append((40, lambda d, y: _agreement_header(d, y, margin, view, head_font, small)))
            blocks.append((len(agreement_lines) * line_height + 8,
                           lambda d, y: _draw_lines(d, agreement_lines, margin, y, font, line_height)))
    else:
        tiles = [("original", view.original), ("teacher patches", view.teacher_overlay),
                 ("student patches", view.student_overlay)]
        if view.comparison is not None:
            tiles.append(("agreement", view.agreement_image))
        tiles = [(caption, image) for caption, image in tiles if image is not None]
        tile = max(image.height for _, image in tiles) if tiles else 0

        def draw_tiles(d, y, tiles=tiles):
            x = margin
            for caption, image in tiles:
                d._image.paste(image, (x, y))
                d.text((x, y + tile + 4), caption, font=small, fill=(60, 60, 60))
                x += image.width + 16

        blocks.append((40, lambda d, y: _agreement_header(d, y, margin, view, head_font, small)))
        blocks.append((tile + 28, draw_tiles))

    height = sum(h for h, _ in blocks) + 2 * margin
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = margin
    for h, fn in blocks:
        fn(draw, y)
        y += h
    return png_bytes(canvas)


def _agreement_header(draw, y, x, view: ComparisonView, head_font, small) -> None:
    draw.text((x, y), "Agreement", font=head_font, fill=(20, 20, 20))
    summary = agreement_summary(view.comparison)
    draw.text((x + int(head_font.getlength("Agreement")) + 14, y + 3), summary[:150], font=small, fill=(60, 60, 60))
    lx = x
    for colour, label in ((BOTH, "both"), (TEACHER, "teacher only"), (STUDENT, "student only")):
        draw.rectangle([lx, y + 24, lx + 11, y + 35], fill=colour)
        draw.text((lx + 16, y + 22), label, font=small, fill=(60, 60, 60))
        lx += 30 + int(small.getlength(label))


# ----------------------------------------------------------------------------------------------
# Ratio plots
# ----------------------------------------------------------------------------------------------

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
    fig.update_layout(title="accuracy read at each ratio: a model trained over a range against fixed-ratio models",
                      xaxis_title="ratio read at", yaxis_title="accuracy", legend_title_text="model · series",
                      height=420, margin=dict(l=10, r=10, t=50, b=10), template="plotly_white")
    return fig


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
    fig.update_xaxes(title_text="rationale ratio (top-k at inference)")
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=50, b=10), template="plotly_white")
    return fig


def csv_bytes(frame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


# ----------------------------------------------------------------------------------------------
# Table headers: short labels (wide tables cut long ones) with the full meaning as a tooltip
# ----------------------------------------------------------------------------------------------

_COLUMNS = {
    "task": ("task", "text (reviews) or vision (images)"),
    "role": ("role", "teacher (big) or student (small); a recipe variant is named in brackets"),
    "mode": ("mode", "CLS: reads everything. RE: " + GLOSSARY["RE"] + " REKD: " + GLOSSARY["REKD"]),
    "model": ("model", "teacher or student"),
    "backbone": ("backbone", "the network's size: layers x hidden width"),
    "ratio": ("ratio", GLOSSARY["ratio"]),
    "runs": ("runs", "how many runs (seeds) the mean and deviation are over"),
    "n": ("n", "examples evaluated"),
    "row": ("#", "position of the input in the sample"),
    "input": ("input", "the review (its start) or the image"),
    "true label": ("true", "the label the dataset gives"),
    "teacher": ("teacher", "the teacher's prediction (— when it picked no feature)"),
    "p(teacher)": ("p(T)", "the teacher's probability for its prediction"),
    "student": ("student", "the student's prediction (— when it picked no feature)"),
    "p(student)": ("p(S)", "the student's probability for its prediction"),
    "agree": ("agree", GLOSSARY["agreement"]),
}
def column_labels(columns: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Column -> (short header, tooltip) for the known columns of the dashboard's tables: the page's own
    (``_COLUMNS``) and the metrics (``rekd_core.metric_info``: named once, with their ``_mean`` / ``_std``)."""
    out = {}
    for column in columns:
        found = _COLUMNS.get(column) or describe(column)
        if found:
            out[column] = found
    return out


def ratio_marks_html(ratio: float, marks: Sequence[tuple[str, float, float, str]], low: float = 0.01,
                     high: float = 1.0) -> str:
    """A ruler under the ratio slider: each model's trained ratio (a tick, or a band for a trained range)
    in its colour, and the ratio in use as a black line, so that the slider shows where each model was
    trained. ``marks``: (name, lowest, highest trained ratio, colour)."""
    at = lambda r: 100 * (min(max(r, low), high) - low) / (high - low)  # noqa: E731
    trained = lambda lo, hi: f"trained at {lo:g}" if lo == hi else f"trained over {lo:g} to {hi:g}"  # noqa: E731
    parts = []
    for row, (name, lo, hi, colour) in enumerate(marks):  # one row each: equal ratios do not hide each other
        title = html.escape(f"{name} {trained(lo, hi)}", quote=True)
        width = max(at(hi) - at(lo), 0.0)
        parts.append(f'<div title="{title}" style="position:absolute;top:{1 + 6 * row}px;height:5px;'
                     f'left:calc({at(lo):.2f}% - 3px);width:calc({width:.2f}% + 6px);'
                     f'background:{colour};border-radius:2px">'
                     '</div>')
    parts.append(f'<div title="ratio in use: {ratio:g}" style="position:absolute;top:0;bottom:0;'
                 f'left:calc({at(ratio):.2f}% - 1px);width:2px;background:#111"></div>')
    legend = " · ".join(f'<span style="color:{colour}">■</span> {html.escape(name)} {trained(lo, hi)}'
                        for name, lo, hi, colour in marks)
    return ('<div style="font-family:sans-serif;font-size:12px;color:#444;margin:-6px 0 4px 0">'
            f'<div style="position:relative;height:{max(14, 2 + 6 * len(marks))}px;background:#eee;border-radius:3px">'
            f'{"".join(parts)}</div>'
            f'<div style="margin-top:2px">{legend} · <b>|</b> in use {ratio:g}</div></div>')

