"""Metrics against hand-computed values (the computation is written beside each case)."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from rekd_core.metrics import (
    MetricAccumulator,
    classification_metrics,
    confusion_matrix,
    faithfulness,
    faithfulness_per_example,
    mask_agreement,
    mask_to_spans,
    plausibility,
    prediction_agreement,
    random_mask_like,
    selection_ratio,
)

pytest_plugins = ["tests.core_fixtures"]

T, F = True, False
approx = pytest.approx


def _span_mask(length: int, *spans: tuple[int, int]) -> list[int]:
    row = [0] * length
    for start, end in spans:
        row[start:end] = [1] * (end - start)
    return row


# ---------------------------------------------------------------------------------------------
# classification


def test_confusion_matrix_rows_true_columns_predicted():
    cm = confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 2)
    # (true 0, pred 0), (true 0, pred 1), (true 1, pred 1)
    assert cm.tolist() == [[1, 1], [0, 1]]


def test_three_classes_with_a_class_never_predicted():
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 0, 1])
    # confusion (rows true): [[1,1,0],[0,2,0],[1,1,0]]; tp = [1,2,0]
    # predicted per class = [2,4,0], true per class = [2,2,2]
    # precision = [1/2, 2/4, 0 (never predicted)]          -> macro 1/3
    # recall    = [1/2, 2/2, 0]                            -> macro 1/2
    # f1        = [1/2, 2*(1/2)(1)/(3/2) = 2/3, 0]         -> macro (1/2 + 2/3)/3 = 7/18
    # accuracy  = 3/6
    m = classification_metrics(preds, targets, 3)
    assert m == approx({"accuracy": 0.5, "precision": 1 / 3, "recall": 0.5, "f1": 7 / 18})
    assert "f1_pos" not in m
    assert all(type(v) is float for v in m.values())


def test_class_absent_from_both_counts_zero_in_macro():
    # classes 0 and 1 perfect (p = r = f1 = 1), class 2 neither true nor predicted -> 0
    # macro = (1 + 1 + 0) / 3 = 2/3; accuracy = 2/2
    m = classification_metrics(torch.tensor([0, 1]), torch.tensor([0, 1]), 3)
    assert m == approx({"accuracy": 1.0, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})


def test_binary_adds_positive_class_scores():
    targets = torch.tensor([1, 1, 1, 0, 0])
    preds = torch.tensor([1, 0, 1, 1, 0])
    # confusion: [[1,1],[1,2]]; tp = [1,2]; predicted = [2,3]; true = [2,3]
    # precision = recall = f1 = [1/2, 2/3]; macro = (1/2 + 2/3)/2 = 7/12; accuracy 3/5
    m = classification_metrics(preds, targets, 2)
    assert m == approx(
        {
            "accuracy": 0.6,
            "precision": 7 / 12,
            "recall": 7 / 12,
            "f1": 7 / 12,
            "precision_pos": 2 / 3,
            "recall_pos": 2 / 3,
            "f1_pos": 2 / 3,
        }
    )


def test_binary_never_predicting_positive():
    # all predicted 0, targets [0, 1, 1]: class 1 tp 0, predicted 0 -> precision 0, recall 0, f1 0
    # class 0: precision 1/3, recall 1/1, f1 = 2*(1/3)/(4/3) = 1/2; macro f1 = 1/4; accuracy 1/3
    m = classification_metrics(torch.tensor([0, 0, 0]), torch.tensor([0, 1, 1]), 2)
    assert m["precision_pos"] == 0.0 and m["recall_pos"] == 0.0 and m["f1_pos"] == 0.0
    assert m["f1"] == approx(0.25)
    assert m["accuracy"] == approx(1 / 3)


def test_classification_rejects_out_of_range_and_handles_empty():
    with pytest.raises(ValueError):
        classification_metrics(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError):
        classification_metrics(torch.tensor([0, 1]), torch.tensor([0]), 2)
    m = classification_metrics(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long), 2)
    assert math.isnan(m["accuracy"]) and m["f1"] == 0.0


def test_prediction_agreement():
    # equal at positions 0, 2, 3 -> 3/4
    assert prediction_agreement(torch.tensor([0, 1, 2, 1]), torch.tensor([0, 2, 2, 1])) == approx(0.75)
    assert math.isnan(prediction_agreement(torch.tensor([]), torch.tensor([])))


# ---------------------------------------------------------------------------------------------
# selection


FEATURES = torch.tensor([[T, T, T, F], [T, T, F, F], [F, F, F, F]])


def test_selection_ratio_excludes_padding():
    mask = torch.tensor([[1.0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]])
    # real selected: row 0 {0, 2} (3 is padding), row 1 {0, 1}, row 2 nothing real -> 4
    # real features: 3 + 2 + 0 = 5 -> 4/5
    assert selection_ratio(mask, FEATURES) == approx(0.8)
    assert selection_ratio(mask.bool(), FEATURES) == approx(0.8)
    assert selection_ratio(mask, FEATURES.float()) == approx(0.8)


def test_selection_ratio_empty_selection_and_all_padding():
    assert selection_ratio(torch.zeros(3, 4), FEATURES) == 0.0
    assert math.isnan(selection_ratio(torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool)))


def test_selection_ratio_accepts_straight_through_mask():
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0]], requires_grad=True) * 1.0  # non-leaf, carries grad
    assert selection_ratio(mask, torch.ones(1, 4, dtype=torch.bool)) == approx(0.5)


def test_selection_ratio_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        selection_ratio(torch.zeros(2, 3), torch.zeros(2, 4, dtype=torch.bool))


def test_mask_agreement_per_example_mean():
    feature = torch.tensor(
        [[T, T, T, T, F], [T, T, T, F, F], [T, T, F, F, F], [F, F, F, F, F]]
    )
    a = torch.tensor([[1, 1, 0, 0, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    b = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    # row 0 (real 0..3): a {0,1}, b {1,2}: inter 1, union 3 -> IoU 1/3; F1 = 2*1/(2+2) = 1/2
    #                    (position 4 selected by both is padding and ignored)
    # row 1: identical -> 1, 1
    # row 2: both empty -> nothing to measure, left out
    # row 3: all padding, nothing real selected by either -> left out
    # mean IoU = (1/3 + 1)/2 = 2/3; mean F1 = (1/2 + 1)/2 = 3/4
    assert mask_agreement(a, b, feature) == approx({"iou": 2 / 3, "f1": 3 / 4})
    assert mask_agreement(a.float(), b.bool(), feature.float()) == approx({"iou": 2 / 3, "f1": 3 / 4})
    nothing = mask_agreement(a[2:], b[2:], feature[2:])  # two empty masks are undefined, not a perfect match
    assert math.isnan(nothing["iou"]) and math.isnan(nothing["f1"])


def test_mask_agreement_one_side_empty_is_zero():
    feature = torch.ones(1, 3, dtype=torch.bool)
    # a {0}, b {} -> inter 0, union 1 -> IoU 0; F1 = 0/(1+0) = 0
    assert mask_agreement(torch.tensor([[1, 0, 0]]), torch.zeros(1, 3), feature) == {"iou": 0.0, "f1": 0.0}


# ---------------------------------------------------------------------------------------------
# random baseline


def test_random_mask_like_selects_round_ratio_real_features():
    lengths = [10, 5, 0, 3]
    feature = torch.tensor([[i < n for i in range(10)] for n in lengths])
    gen = torch.Generator().manual_seed(0)
    mask = random_mask_like(feature, 0.3, gen)
    # k = round(0.3 * n): round(3.0) = 3, round(1.5) = 2 (half to even), round(0) = 0, round(0.9) = 1
    assert mask.shape == feature.shape and mask.dtype == torch.float32
    assert mask.sum(dim=1).tolist() == [3, 2, 0, 1]
    assert not (mask.bool() & ~feature).any()  # never on padding
    again = random_mask_like(feature, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)  # reproducible
    assert torch.equal(random_mask_like(feature, 1.0, gen), feature.float())


def test_random_mask_like_is_uniform_over_positions():
    feature = torch.ones(4000, 10, dtype=torch.bool)
    mask = random_mask_like(feature, 0.3, torch.Generator().manual_seed(1))
    # each position selected with probability 3/10; 4000 draws -> std ~0.007
    freq = mask.mean(dim=0)
    assert torch.all((freq - 0.3).abs() < 0.04)


# ---------------------------------------------------------------------------------------------
# faithfulness


def test_faithfulness():
    p_full = torch.tensor([0.9, 0.6])
    p_rationale = torch.tensor([0.8, 0.7])
    p_complement = torch.tensor([0.3, 0.5])
    # sufficiency = mean(0.1, -0.1) = 0; comprehensiveness = mean(0.6, 0.1) = 0.35
    out = faithfulness(p_full, p_rationale, p_complement)
    assert out == approx({"sufficiency": 0.0, "comprehensiveness": 0.35}, abs=1e-7)
    with pytest.raises(ValueError):
        faithfulness(p_full, p_rationale, torch.tensor([0.1]))
    sufficiency, comprehensiveness = faithfulness_per_example(p_full, p_rationale, p_complement)
    assert sufficiency.tolist() == approx([0.1, -0.1]) and comprehensiveness.tolist() == approx([0.6, 0.1])


@pytest.mark.parametrize("masking", ["zero", "drop"])
def test_each_explanations_faithfulness_averages_to_the_splits(text_re_ckpt, text_task, masking):
    """``explain(..., faithfulness=True)`` gives each input the sufficiency and comprehensiveness that ``evaluate``
    averages over a split: one definition, read under the model's own masking."""
    from rekd_core.checkpoint import load_checkpoint
    from rekd_core.data import load_dataset_spec, pick_split
    from rekd_core.evaluation import evaluate_split
    from rekd_core.explain import explain

    model = load_checkpoint(text_re_ckpt)
    model.config = dataclasses.replace(model.config, masking=masking)
    split = pick_split(load_dataset_spec(f"csv:{text_task}"), "test", limit=12)
    exps = explain(model, [split.inputs[i] for i in range(len(split))], ratio=0.3, faithfulness=True)
    metrics = evaluate_split(model, split, ratio=0.3, with_faithfulness=True)
    for name in ("sufficiency", "comprehensiveness"):
        assert sum(e.faithfulness[name] for e in exps) / len(exps) == approx(metrics[name], abs=1e-5), name
    for exp in exps:
        found = exp.faithfulness
        assert found["p_rationale"] == approx(exp.probs[found["label"]], abs=1e-6)
        assert found["sufficiency"] == approx(found["p_full"] - found["p_rationale"])
        assert found["comprehensiveness"] == approx(found["p_full"] - found["p_complement"])
    assert explain(model, [split.inputs[0]])[0].faithfulness is None  # only when asked for
    # Everything selected: the rationale is the whole input (sufficiency 0), and without it only [CLS] and [SEP]
    # are read, the same for inputs of one length (the task's reviews all have 20 words).
    whole = explain(model, [split.inputs[i] for i in range(3)], ratio=1.0, faithfulness=True)
    assert all(e.faithfulness["sufficiency"] == approx(0.0, abs=1e-6) for e in whole)
    empty = {round(e.faithfulness["p_full"] - e.faithfulness["comprehensiveness"], 5) for e in whole
             if e.faithfulness["label"] == whole[0].faithfulness["label"]}
    assert len(empty) == 1


# ---------------------------------------------------------------------------------------------
# plausibility


def test_mask_to_spans():
    assert mask_to_spans(torch.tensor([0, 1, 1, 0, 1])) == [(1, 3), (4, 5)]
    assert mask_to_spans(torch.tensor([1.0, 1.0, 0.0])) == [(0, 2)]
    assert mask_to_spans(torch.tensor([T, T, T])) == [(0, 3)]
    assert mask_to_spans(torch.zeros(4)) == []
    assert mask_to_spans(torch.zeros(0)) == []


def test_plausibility_token_and_span_scores():
    L = 10
    rows = [
        # A: human (2,6), pred (4,8): tokens tp {4,5} = 2 -> P 2/4, R 2/4, F1 1/2
        #    span IoU = 2 / 6 = 1/3 < 0.5 -> no match -> IOU-F1 0
        (_span_mask(L, (2, 6)), _span_mask(L, (4, 8)), L),
        # B: human (0,4); pred (0,2) + (6,7): tokens pred {0,1,6}, tp 2 -> P 2/3, R 2/4,
        #    F1 = 2*(2/3)(1/2)/(7/6) = 4/7
        #    span (0,2) vs (0,4): IoU 2/4 = 0.5 exactly -> match; (6,7) no match
        #    span P = 1/2, R = 1/1 -> IOU-F1 = 2*(1/2)(1)/(3/2) = 2/3
        (_span_mask(L, (0, 4)), _span_mask(L, (0, 2), (6, 7)), L),
        # C: no human rationale -> skipped whatever is predicted
        (_span_mask(L), _span_mask(L, (0, 10)), L),
        # D: human (1,3), empty prediction -> P 0 (empty), R 0, F1 0, IOU-F1 0
        (_span_mask(L, (1, 3)), _span_mask(L), L),
        # E: only 5 real tokens; human (3,8) -> real {3,4}; pred (3,5) + (8,10) -> real {3,4}
        #    -> P = R = F1 = 1; spans (3,5) vs (3,5) IoU 1 -> IOU-F1 1
        (_span_mask(L, (3, 8)), _span_mask(L, (3, 5), (8, 10)), 5),
    ]
    human = torch.tensor([r[0] for r in rows])
    pred = torch.tensor([r[1] for r in rows], dtype=torch.float32)
    feature = torch.tensor([[i < r[2] for i in range(L)] for r in rows])
    # mean over A, B, D, E:
    #   precision = (1/2 + 2/3 + 0 + 1)/4 = 13/24
    #   recall    = (1/2 + 1/2 + 0 + 1)/4 = 1/2
    #   f1        = (1/2 + 4/7 + 0 + 1)/4 = 29/56
    #   iou_f1    = (0 + 2/3 + 0 + 1)/4   = 5/12
    out = plausibility(pred, human, feature)
    assert out == approx({"precision": 13 / 24, "recall": 0.5, "f1": 29 / 56, "iou_f1": 5 / 12})


def test_plausibility_span_iou_just_below_half_does_not_match():
    feature = torch.ones(1, 10, dtype=torch.bool)
    human = torch.tensor([_span_mask(10, (0, 5))])
    pred = torch.tensor([_span_mask(10, (0, 2))])
    # IoU 2/5 < 0.5 -> IOU-F1 0; tokens: P 2/2 = 1, R 2/5, F1 = 2*(2/5)/(7/5) = 4/7
    out = plausibility(pred, human, feature)
    assert out == approx({"precision": 1.0, "recall": 0.4, "f1": 4 / 7, "iou_f1": 0.0})


def test_plausibility_without_any_human_rationale_is_nan():
    out = plausibility(torch.ones(2, 3), torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool))
    assert all(math.isnan(v) for v in out.values())


# ---------------------------------------------------------------------------------------------
# accumulator


def _filled_accumulator() -> MetricAccumulator:
    acc = MetricAccumulator()
    acc.add(
        preds=torch.tensor([1, 0]),
        targets=torch.tensor([1, 1]),
        teacher_preds=torch.tensor([1, 1]),
        mask=torch.tensor([[1.0, 0, 1], [0, 1, 1]], requires_grad=True),
        teacher_mask=torch.tensor([[1.0, 0, 0], [0, 1, 1]]),
        feature_mask=torch.tensor([[T, T, F], [T, T, T]]),
        p_full=torch.tensor([0.9, 0.8]),
        p_rationale=torch.tensor([0.7, 0.8]),
        p_complement=torch.tensor([0.5, 0.2]),
    )
    acc.add(
        preds=torch.tensor([0]),
        targets=torch.tensor([0]),
        teacher_preds=torch.tensor([0]),
        mask=torch.tensor([[1.0, 1, 0, 0, 0]]),
        teacher_mask=torch.tensor([[0.0, 0, 0, 0, 0]]),
        feature_mask=torch.tensor([[T, T, T, T, F]]),
        p_full=torch.tensor([0.6]),
        p_rationale=torch.tensor([0.3]),
        p_complement=torch.tensor([0.6]),
    )
    return acc


def test_accumulator_pads_differing_lengths():
    acc = _filled_accumulator()
    mask = acc.cat("mask")
    feature = acc.cat("feature_mask")
    assert mask.tolist() == [[1, 0, 1, 0, 0], [0, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    assert feature.dtype == torch.bool
    assert feature.tolist() == [[T, T, F, F, F], [T, T, T, F, F], [T, T, T, T, F]]
    assert acc.cat("preds").tolist() == [1, 0, 0]
    assert not mask.requires_grad
    assert "mask" in acc and "human_mask" not in acc
    with pytest.raises(KeyError):
        acc.cat("human_mask")


def test_accumulator_compute():
    out = _filled_accumulator().compute(num_labels=2)
    # targets [1,1,0], preds [1,0,0] -> accuracy 2/3; confusion [[1,0],[1,1]]
    #   precision [1/2, 1], recall [1, 1/2], f1 [2/3, 2/3] -> macro f1 2/3
    # teacher preds [1,1,0] -> agreement 2/3
    # selection: real selected row0 {0} (pos 2 is padding), row1 {1,2}, row2 {0,1} = 5; real 2+3+4 = 9
    # teacher agreement: row0 {0} vs {0} -> 1; row1 {1,2} vs {1,2} -> 1; row2 {0,1} vs {} -> 0
    #   -> IoU = F1 = 2/3
    # sufficiency = mean(0.2, 0, 0.3) = 1/6; comprehensiveness = mean(0.4, 0.6, 0) = 1/3
    expected = {
        "accuracy": 2 / 3,
        "precision": 0.75,
        "recall": 0.75,
        "f1": 2 / 3,
        "precision_pos": 1.0,
        "recall_pos": 0.5,
        "f1_pos": 2 / 3,
        "prediction_agreement": 2 / 3,
        "selection_ratio": 5 / 9,
        "mask_iou": 2 / 3,
        "mask_f1": 2 / 3,
        "sufficiency": 1 / 6,
        "comprehensiveness": 1 / 3,
    }
    assert out == approx(expected)


def test_accumulator_plausibility_keys_and_scalars():
    acc = MetricAccumulator()
    acc.add(
        mask=torch.tensor([[1, 1, 0]]),
        feature_mask=torch.tensor([[T, T, T]]),
        human_mask=torch.tensor([[1, 1, 0]]),
        loss=torch.tensor(0.5),  # scalars become one-element batches
    )
    acc.add(loss=torch.tensor(0.25))
    out = acc.compute(num_labels=2)
    assert out == approx(
        {
            "selection_ratio": 2 / 3,
            "plausibility_precision": 1.0,
            "plausibility_recall": 1.0,
            "plausibility_f1": 1.0,
            "plausibility_iou_f1": 1.0,
        }
    )
    assert acc.cat("loss").tolist() == [0.5, 0.25]


def test_generator_warnings_name_a_degenerate_selection():
    from rekd_core.metrics import generator_warnings, selection_ratio_by_class

    assert generator_warnings(0.1, 0.1, [0.09, 0.11], ["neg", "pos"]) == []
    [low] = generator_warnings(0.1, 0.0, [0.0, 0.0], ["neg", "pos"])
    assert "selects 0.000 of the features against the target 0.100: top-k re-selects" in low
    assert generator_warnings(0.1, 0.41, [0.4, 0.42], ["neg", "pos"])  # over four times the target
    assert generator_warnings(0.1, 0.026, [0.026, 0.026], ["neg", "pos"]) == []  # just above a quarter
    assert len(generator_warnings(0.1, 0.00003, [0.00002, 0.00004], ["neg", "pos"])) == 1  # no spread of nothing
    [spread] = generator_warnings(0.1, 0.1, [0.05, 0.1, float("nan")], ["a", "b", "c"])
    assert "0.100 of the features of b but 0.050 of a" in spread
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    real = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]]).bool()
    by_class = selection_ratio_by_class(mask, real, torch.tensor([0, 0, 2]), 3)
    assert by_class[0] == pytest.approx(3 / 6) and math.isnan(by_class[1]) and by_class[2] == 0.0


def test_models_trained_on_exact_counts_get_no_argmax_warnings():
    """A generator trained to pick exactly the evaluated count (gumbel_topk, or a ratio range) is never asked for
    its own argmax choice, so a warning read from it would mislead; a free-count generator keeps its warnings."""
    from rekd_core.model_config import ModelConfig

    def trained_on_exact_counts(config: dict) -> bool:
        model = {"task": "text", "mode": "re", "ratio": 0.1, "labels": ["a", "b"], "dropout": 0.1,
                 "backbone": {"type": "hf_text", "source": "bert-1x32", "hf_config": {}}}
        return ModelConfig.from_dict({**model, **config}).exact_counts

    assert not trained_on_exact_counts({"training": {"train_selection": "gumbel", "ratio_range": None}})
    assert not trained_on_exact_counts({})  # checkpoints that predate both options
    assert trained_on_exact_counts({"ratio_range": [0.05, 0.5], "training": {"train_selection": "gumbel"}})
    assert trained_on_exact_counts({"training": {"train_selection": "gumbel_topk"}})
    assert trained_on_exact_counts({"train_selection": "gumbel_topk"})  # the model config, as training evaluates
