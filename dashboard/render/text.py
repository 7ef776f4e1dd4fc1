"""Reviews as HTML: each model's rationale over the words it read (its word pieces grouped into words by
``rekd_core.words``; the part past its window greyed as unread), shaded by selection probability if asked, the
agreement of the two rationales, and the human evidence of ERASER reviews with each model's plausibility."""
from __future__ import annotations

import html
from typing import Iterable, Sequence

import numpy as np

from dashboard.inputs import LINE_BREAK as BR
from dashboard.render.style import BOTH, HUMAN, STUDENT, TEACHER, UNDEFINED, format_score, tint
from rekd_core.words import Word, evidence_words, read_limit, word_spans

MAX_UNREAD_CHARS = 2_000  # of the part of a review the model did not read, this much is shown
GAP, BR_START, BR_REST = -1, -2, -3


def segments(text: str, words: Sequence[Word], limit: int) -> list[tuple[int, int, int]]:
    """``(owner, start, end)`` runs of ``text[:limit]``: owner is a word index, ``GAP`` for text
    between words, ``BR_START``/``BR_REST`` for the HTML line breaks (<br />) that IMDB reviews hold."""
    owner = np.full(limit, GAP, dtype=np.int64)
    for index, word in enumerate(words):
        if word.start < limit:
            owner[word.start:min(word.end, limit)] = index
    for match in BR.finditer(text, 0, limit):
        owner[match.start()] = BR_START
        owner[match.start() + 1:match.end()] = BR_REST
    runs = []
    if limit == 0:
        return runs
    change = np.flatnonzero(np.diff(owner)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [limit]])
    for start, end in zip(starts.tolist(), ends.tolist()):
        value = int(owner[start])
        if value == BR_START:  # consecutive tags: one break each
            runs.append((BR_START, start, start + 1))
            if end > start + 1:
                runs.append((BR_REST, start + 1, end))
        else:
            runs.append((value, start, end))
    return runs


_TEXT_BOX = ("font-family:Georgia,'DejaVu Serif',serif;font-size:15px;line-height:1.7;white-space:pre-wrap;"
             "color:#222;background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 12px;"
             "max-height:520px;overflow-y:auto")


def _text_html(text: str, words: Sequence[Word], tokens: Sequence[str], limit: int, styles: dict[int, str],
               notes: dict[int, str] | None = None, max_length: int | None = None,
               unread_marks: Sequence[tuple[int, int]] = (), unread_style: str = "") -> str:
    """The review read up to character ``limit``, each word ``styles`` names drawn in its CSS (``styles``: word index
    -> style); special pieces are in no word, so they never are. The rest is shown greyed, as unread, its character
    spans ``unread_marks`` drawn in ``unread_style``."""
    out = []
    for owner, start, end in segments(text, words, limit):
        if owner == BR_START:
            out.append("<br>")
        elif owner == BR_REST:
            continue
        elif owner == GAP:
            out.append(html.escape(text[start:end]))
        else:
            piece_text = html.escape(text[start:end])
            title = html.escape(" ".join(tokens[p] for p in words[owner].pieces) + (notes or {}).get(owner, ""),
                                quote=True)
            style = f' style="{styles[owner]}"' if owner in styles else ""
            out.append(f'<span{style} title="{title}">{piece_text}</span>')
    if limit < len(text):
        rest = text[limit:]
        shown = rest[:MAX_UNREAD_CHARS]
        more = f" … ({len(rest) - len(shown):,} more characters)" if len(rest) > len(shown) else ""
        pieces = f" ({max_length} word pieces)" if max_length else ""
        out.append('<span style="display:inline-block;margin:4px 0;padding:0 6px;font-family:sans-serif;font-size:12px;'
                   f'background:#fdecea;color:#8a1c1c;border-radius:4px">✂ the model stops reading here{pieces}: '
                   'the rest is unread</span>')
        unread = _unread_html(shown, limit, unread_marks, unread_style)
        out.append(f'<span style="color:#999" title="not read by the model">{unread}{html.escape(more)}</span>')
    return f'<div style="{_TEXT_BOX}">{"".join(out)}</div>'


def _unread_html(shown: str, offset: int, marks: Sequence[tuple[int, int]], style: str) -> str:
    """``shown`` (the unread text from character ``offset``) as HTML, the character spans ``marks`` (of the whole
    text) in ``style``."""
    out, at = [], 0
    for start, end in sorted(marks):
        start, end = max(start - offset, at), min(end - offset, len(shown))
        if start >= end:
            continue
        out.append(html.escape(BR.sub("\n", shown[at:start])))
        out.append(f'<span style="{style}" title="human evidence, not read by the models">'
                   f'{html.escape(shown[start:end])}</span>')
        at = end
    out.append(html.escape(BR.sub("\n", shown[at:])))
    return "".join(out)


def mark_style(colour: str, underline: str = "solid") -> str:
    """The CSS of a selected word: tinted, underlined in ``colour``."""
    return (f"background:{tint(colour, 0.45)};border-bottom:2px {underline} {colour};border-radius:3px;"
            "color:#111")


def shade_style(colour: str, probability: float, selected: bool) -> str:
    """The CSS of a word shaded by its selection probability (a stronger tint of ``colour`` the likelier), outlined
    in ``colour`` when top-k selected it."""
    outline = f"outline:2px solid {colour};outline-offset:-1px;" if selected else ""
    return f"background:{tint(colour, shade_strength(probability))};{outline}border-radius:3px;color:#111"


def shade_strength(probability: float) -> float:
    """How strongly a feature of selection probability ``probability`` is tinted: faint at 0, full at 1."""
    return 0.06 + 0.74 * min(max(probability, 0.0), 1.0)


_PRIORITY = {BOTH: 3, TEACHER: 2, STUDENT: 1}


def strongest(colours: Iterable[str]) -> str:
    """The colour of a word whose pieces fall in several classes: both, then teacher only, then student only."""
    return max(colours, key=lambda c: _PRIORITY.get(c, 0))


def word_probabilities(exp) -> list[float]:
    """Each word's selection probability: the highest of its pieces' (a word is picked when any piece is)."""
    probabilities = exp.selection_probabilities
    return [max(probabilities[p] for p in word.pieces if p < len(probabilities)) for word in exp.words]


def highlight_html(text: str, exp, colour: str = TEACHER, max_length: int | None = None,
                   shading: str = "selection") -> str:
    """One model's rationale over the review: the words any of whose pieces it selected (``shading`` "selection"),
    or every word shaded by its selection probability with the selected ones outlined ("probability")."""
    selected = set(exp.selected) if exp.scores else set()  # a CLS model selects nothing: it reads all
    picked = {i for i, word in enumerate(exp.words) if selected.intersection(word.pieces)}
    notes, styles = {}, {}
    if exp.scores:
        for index, probability in enumerate(word_probabilities(exp)):
            notes[index] = f" · selection probability {probability:.2f}"
            if shading == "probability":
                styles[index] = shade_style(colour, probability, index in picked)
    if shading != "probability":
        styles = {index: mark_style(colour) for index in picked}
    return _text_html(text, exp.words, exp.tokens, read_limit(text, exp.offsets, exp.truncated), styles, notes,
                      max_length)


def agreement_colours(comparison: dict) -> dict[int, str]:
    """Feature -> colour of the agreement view: both (green), teacher only (blue), student only (orange)."""
    colour_of = {i: BOTH for i in comparison["both"]}
    colour_of.update({i: TEACHER for i in comparison["teacher_only"]})
    colour_of.update({i: STUDENT for i in comparison["student_only"]})
    return colour_of


def word_colours(exp, colour_of: dict[int, str]) -> dict[int, str]:
    """Word index -> the strongest colour among its pieces' (``colour_of``: piece -> colour)."""
    found = {}
    for index, word in enumerate(exp.words):
        colours = [colour_of[p] for p in word.pieces if p in colour_of]
        if colours:
            found[index] = strongest(colours)
    return found


def agreement_html(text: str, teacher_exp, comparison: dict, max_length: int | None = None) -> str:
    """The review with words selected by both (green), only the teacher (blue), only the student
    (orange): a word takes the strongest of its pieces' classes."""
    styles = {i: mark_style(c) for i, c in word_colours(teacher_exp, agreement_colours(comparison)).items()}
    return _text_html(text, teacher_exp.words, teacher_exp.tokens,
                      read_limit(text, teacher_exp.offsets, teacher_exp.truncated), styles, max_length=max_length)


def word_counts(exp) -> tuple[int, int]:
    """(selected words, words read): a word counts as selected if any of its pieces is."""
    selected = set(exp.selected)
    return sum(1 for w in exp.words if selected.intersection(w.pieces)), len(exp.words)


def human_html(text: str, evidence: Iterable[tuple[int, int]], read_upto: int | None = None,
               max_length: int | None = None) -> str:
    """The review with the words of the human evidence highlighted (reddish purple, dotted underline);
    past ``read_upto`` (the character where the models stop reading, None: they read it all) dimmed as in the
    models' views, since plausibility counts only the words the models read: the evidence there keeps its
    underline, its words greyed like the rest."""
    spans = word_spans(text)
    human = evidence_words(evidence, len(spans))
    words = [Word(start, end, [index]) for index, (start, end) in enumerate(spans)]
    limit = len(text) if read_upto is None else read_upto
    shown = [word for word in words if word.end <= limit]
    unread = [spans[i] for i in sorted(human) if i >= len(shown)]
    return _text_html(text, shown, [text[start:end] for start, end in spans], limit,
                      {i: mark_style(HUMAN, "dotted") for i in human if i < len(shown)},
                      {i: " · human evidence" for i in human}, max_length, unread,
                      f"border-bottom:2px dotted {HUMAN};background:{tint(HUMAN, 0.15)}")


def legend_html(teacher_name: str = "teacher", student_name: str = "student") -> str:
    chip = lambda c, label: ('<span style="display:inline-block;margin-right:14px">'  # noqa: E731
                             '<span style="display:inline-block;'
                             f'width:12px;height:12px;border-radius:3px;background:{c};vertical-align:middle;'
                             f'margin-right:4px"></span>{html.escape(label)}</span>')
    return ('<div style="font-family:sans-serif;font-size:13px;margin:4px 0">'
            + chip(BOTH, "selected by both") + chip(TEACHER, f"{teacher_name} only")
            + chip(STUDENT, f"{student_name} only") + "</div>")




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
