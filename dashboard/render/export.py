"""One comparison as a standalone HTML page and as a PNG: both predictions with everything said under them
(selection, faithfulness, input check, plausibility), both rationales (marked, or shaded by selection probability),
the human evidence and the agreement."""
from __future__ import annotations

import html
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from dashboard.render.cards import faithfulness_line, probs_html, selection_line
from dashboard.render.images import data_uri, png_bytes
from dashboard.render.style import BOTH, HUMAN, STUDENT, TEACHER, format_score, saw_no_features, tint
from dashboard.render.text import (
    BR_REST,
    BR_START,
    GAP,
    agreement_colours,
    agreement_html,
    highlight_html,
    human_html,
    legend_html,
    plausibility_line,
    read_chars,
    segments,
    shade_strength,
    word_colours,
    word_probabilities,
)
from rekd_core.words import read_limit


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
    ratios: dict[str, float | None]  # role -> the ratio it was read at (None: its own)
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
    shading: str = "selection"  # "selection": the top-k words marked; "probability": every word shaded by it
    checks: dict[str, list[str]] = field(default_factory=dict)  # role -> the lines of its input check

    def roles(self):
        """(role, name, explanation, colour, overlay) of the teacher, then the student."""
        return (("teacher", self.teacher_name, self.teacher_exp, TEACHER, self.teacher_overlay),
                ("student", self.student_name, self.student_exp, STUDENT, self.student_overlay))

    @property
    def ratio_text(self) -> str:
        """The ratios the two models were read at: one number when they are linked."""
        teacher, student = self.ratios.get("teacher"), self.ratios.get("student")
        shown = lambda r: "its own" if r is None else f"{r:g}"  # noqa: E731
        return shown(teacher) if teacher == student else f"teacher {shown(teacher)}, student {shown(student)}"

    def lines(self, role: str, exp) -> list[str]:
        """What is said under a model's prediction: its selection, faithfulness, input check and plausibility."""
        found = [selection_line(exp, self.kind) if exp.scores else "CLS model: it reads everything, no rationale.",
                 faithfulness_line(exp), *self.checks.get(role, [])]
        if self.evidence is not None:
            found.append("Against the human evidence: " + plausibility_line(self.plausibility.get(role)))
        return [line for line in found if line]


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
    columns = []
    for role, name, exp, colour, overlay in view.roles():
        if view.kind == "text":
            body = highlight_html(view.text or "", exp, colour, view.max_length, view.shading)
        else:
            body = (f'<img alt="original" src="{data_uri(view.original)}" style="margin-right:8px">'
                    f'<img alt="{role} patches" src="{data_uri(overlay)}">')
        said = "".join(f'<p style="font-size:13px;color:#555">{html.escape(line)}</p>'
                       for line in view.lines(role, exp))
        columns.append('<div style="flex:1;min-width:320px">'
                       f'<h2 style="color:{colour}">{role.title()}: {html.escape(name)}</h2>'
                       f'{probs_html(exp, colour, true_label=view.true_label, label_set=view.kind == "image")}'
                       f'{said}{body}</div>')
    if view.evidence is not None and view.kind == "text":
        limit = read_chars(view.text or "", (view.teacher_exp, view.student_exp))
        columns.append(f'<div style="flex:1;min-width:320px"><h2 style="color:{HUMAN}">Human evidence</h2>'
                       f'{human_html(view.text or "", view.evidence, limit, view.max_length)}</div>')
    if view.comparison is not None:
        if view.kind == "text":
            agreement = agreement_html(view.text or "", view.teacher_exp, view.comparison, view.max_length)
        else:
            agreement = f'<img alt="agreement" src="{data_uri(view.agreement_image)}">'
        agreement = legend_html() + agreement
    else:
        agreement = "<p>Agreement is not available for this pair.</p>"
    notes = "".join(f'<p style="color:#8a5a00">{html.escape(n)}</p>' for n in view.notes)
    shading = (" · <b>shown:</b> selection probability (the stronger the colour, the likelier; outlined: top-k "
               "selected)" if view.shading == "probability" else "")
    return ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
            f"<title>Teacher vs student: {html.escape(view.input_name)}</title></head>"
            '<body style="font-family:sans-serif;max-width:1400px;margin:16px auto;padding:0 16px;color:#222">'
            f"<h1>Teacher vs student rationales</h1><p><b>Input:</b> {html.escape(view.input_name)}"
            + (f" (true label: {html.escape(view.true_label)})" if view.true_label else "")
            + f" · <b>rationale ratio:</b> {html.escape(view.ratio_text)}{shading}</p>{notes}"
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


def _text_atoms(text: str, exp, styles: dict[int, tuple]) -> tuple[list, int]:
    """The read part of a review as visual words (lists of (string, style or None); ``styles``: word index ->
    (colour, strength, "underline" or "outline")), with ``None`` entries for line breaks, and the number of
    characters not read."""
    limit = read_limit(text, exp.offsets, exp.truncated)
    chunks: list = []
    current: list = []

    def flush():
        nonlocal current
        if current:
            chunks.append(current)
            current = []

    for owner, start, end in segments(text, exp.words, limit):
        if owner == BR_START:
            flush()
            chunks.append(None)
        elif owner == BR_REST:
            continue
        elif owner == GAP:
            for part in re.split(r"(\s+)", text[start:end]):
                if not part:
                    continue
                if part.isspace():
                    flush()
                    chunks.extend([None] * part.count("\n"))
                else:
                    current.append((part, None))
        else:
            current.append((text[start:end], styles.get(owner)))
    flush()
    return chunks, len(text) - limit


def _word_styles(exp, colour: str, shading: str) -> dict[int, tuple]:
    """The PNG's counterpart of ``text.highlight_html``: word index -> (colour, strength, mark)."""
    if not exp.scores:
        return {}
    selected = set(exp.selected)
    picked = {i for i, word in enumerate(exp.words) if selected.intersection(word.pieces)}
    if shading == "probability":
        return {i: (colour, shade_strength(p), "outline" if i in picked else None)
                for i, p in enumerate(word_probabilities(exp))}
    return {i: (colour, 0.45, "underline") for i in picked}


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
        for x, s, style in line:
            if style:
                colour, strength, mark = style
                w = font.getlength(s)
                box = [x0 + x - 1, y + 1, x0 + x + w + 1, y + line_height - 3]
                draw.rounded_rectangle(box, radius=3, fill=tint(colour, strength),
                                       outline=colour if mark == "outline" else None, width=2)
                if mark == "underline":
                    draw.line([box[0], box[3], box[2], box[3]], fill=colour, width=2)
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

    header = f"Input: {view.input_name}" + (f"  (true label: {view.true_label})" if view.true_label else "") + \
             f"   ·   rationale ratio: {view.ratio_text}" + \
             ("   ·   shown: selection probability (outlined: top-k)" if view.shading == "probability" else "")
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
            head = ["no prediction: the model picked no feature (it saw nothing)",
                    "raise the ratio until it picks at least one"]
        else:
            top = sorted(exp.probs.items(), key=lambda kv: -kv[1])[:5]
            head = [f"prediction: {exp.label} (p = {exp.probs[exp.label]:.3f})",
                    "   ".join(f"{k} {v:.3f}" for k, v in top)[:90]]
        return [f"{role.title()}: {name}"[:70], *head, *(line[:105] for line in view.lines(role, exp))]

    heads = [prediction_lines(role, name, exp) for role, name, exp, _, _ in view.roles()]
    rows_of_heads = max(len(lines) for lines in heads)

    def draw_heads(d, y):
        for k, (lines, colour) in enumerate(zip(heads, (TEACHER, STUDENT))):
            x = margin + k * (column + gap)
            d.rectangle([x, y, x + 5, y + len(lines) * 22], fill=colour)
            for i, line in enumerate(lines):
                d.text((x + 14, y + i * 22), line, font=head_font if i == 0 else small, fill=(20, 20, 20))

    blocks.append((rows_of_heads * 22 + 16, draw_heads))

    if view.kind == "text":
        text = view.text or ""
        per_model = []
        for exp, colour in ((view.teacher_exp, TEACHER), (view.student_exp, STUDENT)):
            chunks, unread = _text_atoms(text, exp, _word_styles(exp, colour, view.shading))
            per_model.append((_layout(chunks, column, font, line_height), unread))
        rows = max(len(lines) for lines, _ in per_model)
        unread = per_model[0][1]

        def draw_texts(d, y, per_model=per_model, unread=unread):
            for k, (lines, _) in enumerate(per_model):
                _draw_lines(d, lines, margin + k * (column + gap), y, font, line_height)
            if unread:
                d.text((margin, y + rows * line_height + 4),
                       f"✂ the model stops reading here: {unread:,} more characters unread",
                       font=small, fill=(138, 28, 28))

        blocks.append((rows * line_height + (28 if unread else 8), draw_texts))
        if view.comparison is not None:
            colours = word_colours(view.teacher_exp, agreement_colours(view.comparison))
            chunks, _ = _text_atoms(text, view.teacher_exp, {i: (c, 0.45, "underline") for i, c in colours.items()})
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
