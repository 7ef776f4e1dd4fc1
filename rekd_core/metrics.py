"""Classification, selection, agreement, faithfulness and plausibility metrics over plain tensors.

Pure functions (no model code) for the metrics METHOD.md asks for beside accuracy. Conventions:

- masks are ``(B, L)`` tensors of 0/1 values (float or bool; straight-through masks are fine, only
  ``!= 0`` is read);
- ``feature_mask`` ``(B, L)`` is True on real features and False on padding; every mask metric
  ignores padded positions, so a selection on padding never counts;
- every function returns Python floats; a mean over zero examples is ``nan`` (nothing to measure
  is not the same as a score of 0).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

NAN = float("nan")


def _as_bool(mask: Tensor) -> Tensor:
    """A 0/1 mask (float or bool, possibly carrying gradients) as a bool tensor."""
    mask = mask.detach()
    return mask if mask.dtype == torch.bool else mask != 0


def _check_masks(*masks: Tensor) -> None:
    shape = masks[0].shape
    if len(shape) != 2:
        raise ValueError(f"masks must be (B, L), got shape {tuple(shape)}")
    for m in masks[1:]:
        if m.shape != shape:
            raise ValueError(f"mask shapes differ: {tuple(shape)} vs {tuple(m.shape)}")


def _f1(precision: Tensor, recall: Tensor) -> Tensor:
    """Harmonic mean, 0 where precision + recall is 0."""
    denom = precision + recall
    return torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-300), torch.zeros_like(denom))


def _mean(values: Tensor) -> float:
    return float(values.double().mean()) if values.numel() else NAN


# ---------------------------------------------------------------------------------------------
# classification


def confusion_matrix(preds: Tensor, targets: Tensor, num_labels: int) -> Tensor:
    """``(num_labels, num_labels)`` counts, rows = true class, columns = predicted class."""
    preds = preds.detach().reshape(-1).long()
    targets = targets.detach().reshape(-1).long()
    if preds.shape != targets.shape:
        raise ValueError(f"preds and targets differ in size: {preds.numel()} vs {targets.numel()}")
    for name, t in (("preds", preds), ("targets", targets)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_labels):
            raise ValueError(f"{name} outside [0, {num_labels}): min {int(t.min())}, max {int(t.max())}")
    counts = torch.bincount(targets * num_labels + preds, minlength=num_labels * num_labels)
    return counts.reshape(num_labels, num_labels)


def classification_metrics(preds: Tensor, targets: Tensor, num_labels: int) -> dict[str, float]:
    """Accuracy and macro precision / recall / F1 over all ``num_labels`` classes.

    Per-class scores follow sklearn's ``zero_division=0``: a class never predicted has precision 0,
    a class never true has recall 0, and it still counts in the macro mean (a collapsed classifier
    is not flattered). Macro F1 is the mean of the per-class F1s. With two classes the binary
    scores of class 1 are added as ``precision_pos``, ``recall_pos``, ``f1_pos``.
    """
    cm = confusion_matrix(preds, targets, num_labels).double()
    tp = cm.diagonal()
    predicted = cm.sum(dim=0)
    true = cm.sum(dim=1)
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(true > 0, tp / true.clamp_min(1), torch.zeros_like(tp))
    f1 = _f1(precision, recall)
    n = float(cm.sum())
    out = {
        "accuracy": float(tp.sum()) / n if n else NAN,
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
    }
    if num_labels == 2:
        out.update(precision_pos=float(precision[1]), recall_pos=float(recall[1]), f1_pos=float(f1[1]))
    return out


def prediction_agreement(preds_a: Tensor, preds_b: Tensor) -> float:
    """Fraction of examples on which two models predict the same class (e.g. teacher vs student)."""
    a, b = preds_a.detach().reshape(-1), preds_b.detach().reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"prediction sizes differ: {a.numel()} vs {b.numel()}")
    return _mean((a == b).double())


# ---------------------------------------------------------------------------------------------
# selection


def selection_ratio(mask: Tensor, feature_mask: Tensor) -> float:
    """Selected real features / real features over the whole batch (micro), padding excluded.

    The achieved counterpart of the target ratio p. ``nan`` when the batch has no real feature.
    """
    _check_masks(mask, feature_mask)
    real = _as_bool(feature_mask)
    n_real = int(real.sum())
    return int((_as_bool(mask) & real).sum()) / n_real if n_real else NAN


def selection_ratio_by_class(mask: Tensor, feature_mask: Tensor, targets: Tensor, num_labels: int) -> list[float]:
    """``selection_ratio`` over the examples of each class (``nan`` for a class with none): a generator
    that selects much more for one class than another lets its rationale's length carry the label."""
    return [selection_ratio(mask[targets == c], feature_mask[targets == c]) if bool((targets == c).any()) else NAN
            for c in range(num_labels)]


DEGENERATE_FACTOR = 4.0  # an own selection under a quarter, or over four times, the target ratio
CLASS_SPREAD = 2.0  # one class's own selection at least twice another's


def generator_warnings(target: float, argmax_ratio: float, by_class: Sequence[float],
                       labels: Sequence[str]) -> list[str]:
    """Plain-language warnings about a degenerate generator, from its own (argmax) selection: far below
    or above the target ratio (top-k then re-selects what the generator would not), or very different
    between classes. Empty when the generator behaves."""
    warnings = []
    if argmax_ratio < target / DEGENERATE_FACTOR or argmax_ratio > target * DEGENERATE_FACTOR:
        warnings.append(f"on its own (argmax) the generator selects {argmax_ratio:.3f} of the features against the "
                        f"target {target:.3f}: top-k re-selects for this model")
    present = {label: r for label, r in zip(labels, by_class) if not math.isnan(r)}
    if len(present) > 1:
        low, high = min(present, key=present.get), max(present, key=present.get)
        # a class spread among near-empty selections says nothing more than the warning above
        if present[high] >= target / DEGENERATE_FACTOR and present[high] >= CLASS_SPREAD * present[low]:
            warnings.append(f"the generator selects {present[high]:.3f} of the features of {high} but "
                            f"{present[low]:.3f} of {low}: its rationale's length tells the class")
    return warnings


def mask_agreement(mask_a: Tensor, mask_b: Tensor, feature_mask: Tensor) -> dict[str, float]:
    """IoU and F1 (Dice) of two hard masks over real features, per example, averaged over examples.

    Measures how far two rationales coincide (teacher vs student). An example where neither mask
    selects a real feature (including an all-padding row) has no overlap to measure: it is left out of
    the mean, and ``nan`` is returned when every example is such.
    """
    _check_masks(mask_a, mask_b, feature_mask)
    real = _as_bool(feature_mask)
    a, b = _as_bool(mask_a) & real, _as_bool(mask_b) & real
    inter = (a & b).sum(dim=1).double()
    union = (a | b).sum(dim=1).double()
    total = (a.sum(dim=1) + b.sum(dim=1)).double()
    measured = union > 0
    iou = inter[measured] / union[measured]
    f1 = 2 * inter[measured] / total[measured]
    return {"iou": _mean(iou), "f1": _mean(f1)}


def random_mask_like(feature_mask: Tensor, ratio: float, generator: torch.Generator | None = None) -> Tensor:
    """A uniformly random selection of ``k = round(ratio * n_real)`` real features per example.

    The chance baseline for plausibility (and agreement) at the same selection ratio. Returns a
    float 0/1 mask shaped like ``feature_mask``, 0 on padding. ``generator`` (on the mask's
    device) makes it reproducible.
    """
    if feature_mask.dim() != 2:
        raise ValueError(f"feature_mask must be (B, L), got shape {tuple(feature_mask.shape)}")
    real = _as_bool(feature_mask)
    scores = torch.rand(real.shape, generator=generator, device=real.device)
    scores = scores.masked_fill(~real, -1.0)  # padding ranks last
    k = torch.round(real.sum(dim=1).double() * ratio).long()
    order = scores.argsort(dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return ((rank < k.unsqueeze(1)) & real).float()


# ---------------------------------------------------------------------------------------------
# faithfulness (ERASER)


def faithfulness_per_example(p_full: Tensor, p_rationale: Tensor, p_complement: Tensor) -> tuple[Tensor, Tensor]:
    """ERASER sufficiency and comprehensiveness of each example, (B,) each.

    Inputs (B,) are the probability of the class y' predicted on the full input, under the full input, the
    rationale only, and the input without the rationale: ``sufficiency = p_full - p_rationale`` (low: the
    rationale alone suffices), ``comprehensiveness = p_full - p_complement`` (high: the rationale held what the
    prediction needed).
    """
    full, rat, comp = (t.detach().reshape(-1).double() for t in (p_full, p_rationale, p_complement))
    if not full.shape == rat.shape == comp.shape:
        raise ValueError(f"probability sizes differ: {full.numel()}, {rat.numel()}, {comp.numel()}")
    return full - rat, full - comp


def faithfulness(p_full: Tensor, p_rationale: Tensor, p_complement: Tensor) -> dict[str, float]:
    """ERASER sufficiency and comprehensiveness over a split: the means of ``faithfulness_per_example``."""
    sufficiency, comprehensiveness = faithfulness_per_example(p_full, p_rationale, p_complement)
    return {"sufficiency": _mean(sufficiency), "comprehensiveness": _mean(comprehensiveness)}


# ---------------------------------------------------------------------------------------------
# plausibility (ERASER)


def mask_to_spans(mask_row: Tensor) -> list[tuple[int, int]]:
    """Maximal runs of selected positions in a 1-D mask as ``(start, end)``, end exclusive."""
    row = _as_bool(mask_row).reshape(-1).to(torch.int8)
    edges = torch.diff(F.pad(row, (1, 1))).nonzero().reshape(-1).tolist()
    return list(zip(edges[0::2], edges[1::2]))


def _span_ious(pred: list[tuple[int, int]], human: list[tuple[int, int]]) -> Tensor:
    """``(len(pred), len(human))`` token IoU of every pair of spans."""
    p = torch.tensor(pred, dtype=torch.float64).reshape(-1, 2)
    h = torch.tensor(human, dtype=torch.float64).reshape(-1, 2)
    inter = (torch.minimum(p[:, None, 1], h[None, :, 1]) - torch.maximum(p[:, None, 0], h[None, :, 0])).clamp_min(0)
    union = (p[:, 1] - p[:, 0])[:, None] + (h[:, 1] - h[:, 0])[None, :] - inter
    return inter / union


def plausibility(
    pred_mask: Tensor, human_mask: Tensor, feature_mask: Tensor, iou_threshold: float = 0.5
) -> dict[str, float]:
    """Agreement of the selected tokens with human rationales (ERASER), over real features.

    ``precision``/``recall``/``f1``: token-level, per example, macro-averaged over examples
    (precision of an empty selection is 0). ``iou_f1``: ERASER's IOU-F1 over contiguous spans;
    a predicted span matches a human span when their token IoU >= ``iou_threshold``; per example
    precision = matched predicted spans / predicted spans, recall = matched human spans / human
    spans, their F1 averaged over examples. (Spans read off a mask are disjoint and separated, so
    the matching is one-to-one and both counts agree, as in ERASER's code. ERASER then reports the
    F1 of the averaged precision and recall; this is the average of the per-example F1s.)
    Examples with no human rationale token are skipped; ``nan`` if none is left.
    """
    _check_masks(pred_mask, human_mask, feature_mask)
    real = _as_bool(feature_mask)
    pred, human = (_as_bool(pred_mask) & real).cpu(), (_as_bool(human_mask) & real).cpu()
    keep = human.any(dim=1)
    pred, human = pred[keep], human[keep]

    tp = (pred & human).sum(dim=1).double()
    n_pred = pred.sum(dim=1).double()
    n_human = human.sum(dim=1).double()
    precision = torch.where(n_pred > 0, tp / n_pred.clamp_min(1), torch.zeros_like(tp))
    recall = tp / n_human.clamp_min(1)
    token_f1 = _f1(precision, recall)

    span_f1 = []
    for p_row, h_row in zip(pred, human):
        p_spans, h_spans = mask_to_spans(p_row), mask_to_spans(h_row)
        if not p_spans:
            span_f1.append(0.0)
            continue
        match = _span_ious(p_spans, h_spans) >= iou_threshold
        sp = float(match.any(dim=1).double().mean())
        sr = float(match.any(dim=0).double().mean())
        span_f1.append(2 * sp * sr / (sp + sr) if sp + sr > 0 else 0.0)

    return {
        "precision": _mean(precision),
        "recall": _mean(recall),
        "f1": _mean(token_f1),
        "iou_f1": _mean(torch.tensor(span_f1, dtype=torch.float64)),
    }


# ---------------------------------------------------------------------------------------------
# accumulation over batches


class MetricAccumulator:
    """Collects per-batch tensors across an evaluation and computes the final metrics.

    ``add(preds=..., targets=..., mask=..., feature_mask=...)`` once per batch (tensors are
    detached and moved to the CPU); ``cat(key)`` concatenates a key over batches along dim 0,
    padding dim 1 of (B, L) tensors to the longest batch with 0 (False for bool masks), so batches
    padded to different lengths join. ``compute(num_labels)`` returns every metric the
    conventional keys allow (see ``KEYS``); other keys may be stored freely.
    """

    KEYS = (
        "preds", "targets",  # -> classification_metrics
        "mask", "feature_mask",  # -> selection_ratio
        "teacher_preds", "teacher_mask",  # -> prediction_agreement, mask_agreement
        "p_full", "p_rationale", "p_complement",  # -> faithfulness
        "human_mask",  # -> plausibility
    )

    def __init__(self) -> None:
        self._store: dict[str, list[Tensor]] = {}

    def add(self, **tensors: Tensor) -> None:
        """Store one batch of each named tensor (first dimension = examples)."""
        for key, value in tensors.items():
            value = torch.as_tensor(value).detach().cpu()
            if value.dim() == 0:
                value = value.reshape(1)
            self._store.setdefault(key, []).append(value)

    def __contains__(self, key: str) -> bool:
        return key in self._store

    def keys(self) -> list[str]:
        return list(self._store)

    def cat(self, key: str) -> Tensor:
        """All batches of ``key`` joined along dim 0; dim 1 zero-padded to the longest batch."""
        if key not in self._store:
            raise KeyError(f"no tensor stored under {key!r}; have {self.keys()}")
        parts = self._store[key]
        if parts[0].dim() >= 2:
            length = max(p.shape[1] for p in parts)
            parts = [p if p.shape[1] == length else _pad_dim1(p, length) for p in parts]
        return torch.cat(parts, dim=0)

    def compute(self, num_labels: int) -> dict[str, float]:
        """Every metric whose inputs were added, as one flat dict of floats.

        Keys: classification_metrics' (from preds, targets); ``selection_ratio``;
        ``prediction_agreement``; ``mask_iou``, ``mask_f1`` (mask vs teacher_mask);
        ``sufficiency``, ``comprehensiveness``; ``plausibility_{precision,recall,f1,iou_f1}``.
        """
        has = self.__contains__
        out: dict[str, float] = {}
        if has("preds") and has("targets"):
            out.update(classification_metrics(self.cat("preds"), self.cat("targets"), num_labels))
        if has("preds") and has("teacher_preds"):
            out["prediction_agreement"] = prediction_agreement(self.cat("preds"), self.cat("teacher_preds"))
        if has("mask") and has("feature_mask"):
            mask, feature_mask = self.cat("mask"), self.cat("feature_mask")
            out["selection_ratio"] = selection_ratio(mask, feature_mask)
            if has("teacher_mask"):
                agreement = mask_agreement(mask, self.cat("teacher_mask"), feature_mask)
                out.update({f"mask_{k}": v for k, v in agreement.items()})
            if has("human_mask"):
                plaus = plausibility(mask, self.cat("human_mask"), feature_mask)
                out.update({f"plausibility_{k}": v for k, v in plaus.items()})
        if has("p_full") and has("p_rationale") and has("p_complement"):
            out.update(faithfulness(self.cat("p_full"), self.cat("p_rationale"), self.cat("p_complement")))
        return out


def _pad_dim1(t: Tensor, length: int) -> Tensor:
    """Right-pad dim 1 of ``t`` with zeros (False for bool) up to ``length``."""
    shape = list(t.shape)
    shape[1] = length - t.shape[1]
    return torch.cat([t, torch.zeros(shape, dtype=t.dtype)], dim=1)


__all__ = [
    "MetricAccumulator",
    "classification_metrics",
    "confusion_matrix",
    "faithfulness",
    "faithfulness_per_example",
    "mask_agreement",
    "mask_to_spans",
    "plausibility",
    "prediction_agreement",
    "random_mask_like",
    "selection_ratio",
]
