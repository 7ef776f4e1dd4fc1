"""rekd_core/words.py: word pieces back into words, the selection counted without special pieces, and a
rationale's plausibility against human evidence over the words a model read; and ``explain`` filling them in."""
from __future__ import annotations

import math

import pytest

from rekd_core.words import (
    merge_word_pieces,
    read_limit,
    selected_words,
    selection_counts,
    special_tokens,
    word_plausibility,
    word_spans,
)
from tests.core_fixtures import fake_explanation

pytest_plugins = ["tests.core_fixtures"]

PIECES_TEXT = "Unbelievable , truly great film ."
PIECES = (["[CLS]", "un", "##believ", "##able", ",", "truly", "great", "film", ".", "[SEP]"],
          [(0, 0), (0, 2), (2, 8), (8, 12), (13, 14), (15, 20), (21, 26), (27, 31), (32, 33), (0, 0)])
SPECIALS = {"[CLS]", "[SEP]", "[PAD]"}


def exp_of(selected, tokens=PIECES[0], offsets=PIECES[1], **kw):
    return fake_explanation(PIECES_TEXT, tokens, offsets, selected, SPECIALS, **kw)


def test_merge_word_pieces_groups_pieces_and_keeps_punctuation_apart():
    text = "Unbelievable, it's great!"
    offsets = [(0, 0), (0, 2), (2, 8), (8, 12), (12, 13), (14, 16), (16, 17), (17, 18), (19, 24), (24, 25), (0, 0)]
    words, specials = merge_word_pieces(text, offsets)
    assert [text[w.start:w.end] for w in words] == ["Unbelievable", ",", "it", "'", "s", "great", "!"]
    assert words[0].pieces == [1, 2, 3]
    assert specials == [0, 10]
    # a literal "[SEP]" typed in the text has a span, but is special: in no word
    typed = "good [SEP]"
    words, specials = merge_word_pieces(typed, [(0, 0), (0, 4), (5, 10), (0, 0)], ["[CLS]", "good", "[SEP]", "[SEP]"],
                                        SPECIALS)
    assert [typed[w.start:w.end] for w in words] == ["good"] and specials == [0, 2, 3]


def test_selected_words_and_counts_leave_special_pieces_out():
    exp = exp_of([0, 2, 6, 9])  # [CLS], a piece of "Unbelievable", "great", [SEP]
    assert selected_words(PIECES_TEXT, exp) == ["Unbelievable", "great"]
    # 8 selectable pieces that are not special; [CLS] and [SEP] are named, not counted
    assert selection_counts(exp) == (2, 8, ["[CLS]", "[SEP]"])
    assert selection_counts(exp_of([5])) == (1, 8, [])


def test_read_limit_and_word_spans():
    assert word_spans("a  bb\tc") == [(0, 1), (3, 5), (6, 7)]
    assert read_limit("alpha beta gamma", [(0, 0), (0, 5), (6, 10), (0, 0)], truncated=True) == 10
    assert read_limit("alpha beta gamma", [(0, 5)], truncated=False) == 16


def test_word_plausibility_on_hand_made_cases():
    # One piece of "Unbelievable" selects the whole word; [CLS] selected counts for nothing. Words picked:
    # Unbelievable, film; humans marked Unbelievable, truly, great: precision 1/2, recall 1/3, F1 0.4.
    scores = word_plausibility(PIECES_TEXT, exp_of([0, 2, 7]), [(0, 1), (2, 4)])
    assert scores["precision"] == pytest.approx(0.5) and scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(0.4) and (scores["selected"], scores["human"], scores["unread"]) == (2, 3, 0)
    assert word_plausibility(PIECES_TEXT, exp_of([3, 5, 6]), [(0, 1), (2, 4)])["f1"] == pytest.approx(1.0)
    nothing = word_plausibility(PIECES_TEXT, exp_of([]), [(0, 1)])
    assert nothing["f1"] == 0.0 and nothing["precision"] == 0.0 and nothing["selected"] == 0
    # Nothing to score: a CLS model (no rationale), no evidence.
    assert word_plausibility(PIECES_TEXT, exp_of([1], scores=[]), [(0, 1)]) is None
    assert word_plausibility(PIECES_TEXT, exp_of([1]), []) is None


def test_word_plausibility_counts_only_the_words_read_and_says_how_many_were_not():
    tokens, offsets = PIECES
    cut = fake_explanation(PIECES_TEXT, tokens[:6] + ["[SEP]"], offsets[:6] + [(0, 0)], [5], SPECIALS,
                           truncated=True)  # reads up to "truly"
    past = word_plausibility(PIECES_TEXT, cut, [(3, 5)])  # "great film": both past the window
    assert past["f1"] is None and past["human"] == 0 and past["unread"] == 2
    half = word_plausibility(PIECES_TEXT, cut, [(2, 4)])  # "truly" read, "great" not: left out of recall
    assert half["recall"] == pytest.approx(1.0) and half["human"] == 1 and half["unread"] == 1


def test_explain_groups_its_pieces_into_words(text_re_ckpt):
    from rekd_core.checkpoint import load_checkpoint
    from rekd_core.explain import explain

    model = load_checkpoint(text_re_ckpt)
    text = "fillerab splendid [SEP] unknownword!"
    exp = explain(model, [text], ratio=1.0)[0]
    assert [text[w.start:w.end] for w in exp.words] == ["fillerab", "splendid", "unknownword", "!"]
    specials = special_tokens(model.processor.tokenizer)
    assert {"[CLS]", "[SEP]"} <= specials and "[UNK]" not in specials
    assert [exp.tokens[i] for i in exp.special_pieces] == ["[CLS]", "[SEP]", "[SEP]"]
    assert selected_words(text, exp) == ["fillerab", "splendid", "unknownword", "!"]
    assert exp.to_dict(text)["selected_words"] == selected_words(text, exp)
    # the selection probabilities are the softmax of the generator's two logits: the sigmoid of their margin
    probabilities = exp.selection_probabilities
    assert len(probabilities) == len(exp.scores) and all(0.0 <= p <= 1.0 for p in probabilities)
    assert probabilities == pytest.approx([1 / (1 + math.exp(-s)) for s in exp.scores])
