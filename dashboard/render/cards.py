"""Small HTML blocks: a model's prediction with its class probabilities (and the classes it knows), its
faithfulness line, its model card, and the ruler under the ratio slider that marks where each model was trained."""
from __future__ import annotations

import html
from typing import Sequence

from dashboard.render.glossary import GLOSSARY
from dashboard.render.style import TEACHER, format_score, saw_no_features
from rekd_core.metric_info import METRICS
from rekd_core.words import selection_counts


def probs_html(exp, colour: str = TEACHER, top: int = 10, true_label: str | None = None,
               label_set: bool = False) -> str:
    """The predicted label and a bar per class probability (the ``top`` most likely), and with ``label_set`` the
    classes the model knows. A model that picked no feature gets no verdict and no bars: its output is the
    predictor's bias on an empty input."""
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
    if label_set:
        rows.append(f'<div style="font-size:12px;color:#555;margin-top:3px" title="{GLOSSARY["labels"]}">It knows '
                    f'{len(exp.probs)} classes: {html.escape(", ".join(exp.probs))}. Every input gets one of them, '
                    'whatever it shows.</div>')
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


def selection_line(exp, kind: str) -> str:
    """What a selecting model picked, as on the page and in the downloads. Text counts word pieces without the
    special ones ([CLS], [SEP]: they belong to no word and are never shown); a model that can select them (trained
    before they were excluded) gets the ones it picked named instead."""
    if kind != "text":
        return (f"Selected {len(exp.selected)} of {exp.num_features} patches (achieved ratio {exp.ratio:.3f}) on a "
                f"{exp.grid_side}x{exp.grid_side} grid of {exp.patch_size}px patches.")
    picked, selectable, specials = selection_counts(exp)
    line = f"Selected {picked} of {selectable} word pieces (achieved ratio {picked / max(selectable, 1):.3f})"
    if specials:
        line += (f"; it also picked {', '.join(specials)}, special pieces that belong to no word: not counted, "
                 "not shown")
    return line + "."


def faithfulness_line(exp) -> str | None:
    """One model's sufficiency and comprehensiveness on one input (``Explanation.faithfulness``) as one line, each
    with its better direction; None for a CLS model (no rationale) or an explanation made without them."""
    found = exp.faithfulness
    if not found:
        return None
    scores = " · ".join(f"{name} {format_score(found[name])} ({METRICS[name].direction})"
                        for name in ("sufficiency", "comprehensiveness"))
    return (f"{scores}, for {found['label']}, the class predicted from the whole input (p {found['p_full']:.3f}; "
            f"from the rationale alone {found['p_rationale']:.3f}, without it {found['p_complement']:.3f})")


def _short_list(values: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f", … ({len(values)} classes)" if len(values) > limit else "")




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
