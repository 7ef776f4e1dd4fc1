"""Word pieces back into the words of a text, and what a rationale covers in those words.

A text model selects word pieces ("un", "##believ", "##able"); people read words. This module groups the pieces
back into words by their character spans (``merge_word_pieces``: ``rekd explain`` prints whole words, the
dashboard highlights them), says how far into a text a model read (``read_limit``), and scores a rationale
against human evidence, which ERASER gives as spans of ``text.split()``'s words (``word_plausibility``).
It works on anything with ``tokens``, ``offsets``, ``selected`` and ``scores`` (``explain.Explanation``).
"""
from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Collection, Iterable, Sequence

from .metrics import plausibility


@dataclass
class Word:
    """A readable word of the input: its character span and the word pieces it is made of."""

    start: int
    end: int
    pieces: list[int] = field(default_factory=list)


def special_tokens(tokenizer) -> frozenset[str]:
    """The tokens ``tokenizer`` treats as special ([CLS], [SEP], [PAD], ...), which belong to no word. [UNK]
    stands for a word of the input (and models may select it), so it is not one of them. Empty without a
    tokenizer (a vision model)."""
    if tokenizer is None:
        return frozenset()
    return frozenset(str(token) for token in tokenizer.all_special_tokens) - {str(tokenizer.unk_token)}


def merge_word_pieces(text: str, offsets: Sequence[tuple[int, int]], tokens: Sequence[str] | None = None,
                      special: Collection[str] = ()) -> tuple[list[Word], list[int]]:
    """Group word pieces back into words using their character spans in ``text``.

    A piece continues the previous word when it starts exactly where that word ends and both sides of the join
    are letters or digits ("un" + "##believ" + "##able"); punctuation stays its own word. Works for any
    tokenizer that reports offsets (WordPiece, BPE, SentencePiece). Returns the words in text order and the
    indices of the special pieces: those with an empty span ([CLS], [SEP], padding) and those whose token is
    one of ``special`` (a literal "[SEP]" typed in a review has a span but is still special). Special pieces
    belong to no word.
    """
    words: list[Word] = []
    specials: list[int] = []
    for index, (start, end) in enumerate(offsets):
        start, end = int(start), int(end)
        if end <= start or (tokens is not None and special and tokens[index] in special):
            specials.append(index)
            continue
        if words:
            last = words[-1]
            overlaps = start < last.end
            joins = start == last.end and 0 < start < len(text) and text[start - 1].isalnum() and text[start].isalnum()
            if overlaps or joins:
                last.end = max(last.end, end)
                last.pieces.append(index)
                continue
        words.append(Word(start, end, [index]))
    return words, specials


def read_limit(text: str, offsets: Sequence[tuple[int, int]], truncated: bool) -> int:
    """How far into ``text`` (characters) the model read: all of it, or up to the last word piece it kept."""
    if not truncated:
        return len(text)
    ends = [int(end) for start, end in offsets if int(end) > int(start)]
    return max(ends) if ends else 0


def selected_words(text: str, exp) -> list[str]:
    """The words of ``text`` any of whose pieces ``exp`` selected, in text order (special pieces are in none)."""
    chosen = set(exp.selected)
    return [text[word.start:word.end] for word in exp.words if chosen.intersection(word.pieces)]


def selection_counts(exp) -> tuple[int, int, list[str]]:
    """(selected word pieces, selectable word pieces, the special tokens selected), the counts leaving the
    special pieces out: they belong to no word and are never shown. A model trained before special tokens were
    excluded can still select [CLS] or [SEP]; those are named rather than counted."""
    special = set(exp.special_pieces)
    picked = [i for i in exp.selected if i not in special]
    selectable = [i for i in exp.selectable if i not in special]
    return len(picked), len(selectable), [exp.tokens[i] for i in exp.selected if i in special]


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of ``text.split()``'s words: the words ERASER's evidence spans index."""
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def evidence_words(evidence: Iterable[tuple[int, int]], n_words: int) -> set[int]:
    """The word indices that ``(start, end)`` evidence spans (end exclusive) cover, clipped to ``n_words``."""
    return {i for start, end in evidence for i in range(max(int(start), 0), min(int(end), n_words))}


def word_plausibility(text: str, exp, evidence: Sequence[tuple[int, int]]) -> dict | None:
    """How far one model's rationale matches the human evidence of ``text``, at the word level.

    Words are ``text.split()`` (what ERASER's spans index); a word is selected when any of its pieces is. Only
    the words the model read count, so a review cut at the model's window is not held against it:
    ``{"precision", "recall", "f1"}`` (``metrics.plausibility`` of one example; None when no human word was
    read), ``selected`` (words picked), ``human`` (evidence words read) and ``unread`` (evidence words past the
    window, left out). None when there is nothing to score: a CLS model (no rationale) or no evidence at all.
    """
    import torch

    spans = word_spans(text)
    marked = evidence_words(evidence, len(spans))
    if not exp.scores or not marked:
        return None
    starts = [start for start, _ in spans]
    chosen = set(exp.selected)
    read, picked = set(), set()
    for word in exp.words:  # a merged run of word pieces lies inside one whitespace word
        index = bisect_right(starts, word.start) - 1
        if index < 0 or word.start >= spans[index][1]:
            continue
        read.add(index)
        if chosen.intersection(word.pieces):
            picked.add(index)
    human = marked & read
    scores = {"precision": None, "recall": None, "f1": None, "selected": len(picked), "human": len(human),
              "unread": len(marked - read)}
    if human:
        masks = torch.zeros(3, len(spans), dtype=torch.bool)
        for row, words in enumerate((picked, human, read)):
            masks[row, sorted(words)] = True
        found = plausibility(masks[0:1], masks[1:2], masks[2:3])
        scores.update(precision=found["precision"], recall=found["recall"], f1=found["f1"])
    return scores
