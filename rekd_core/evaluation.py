"""Run a model (and optionally its teacher) over a split and compute the metrics of METHOD.md."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .compatibility import check_dataset_fits  # noqa: F401 - rekd sweep imports it from here
from .errors import ConfigError, DataError
from .losses import argmax_mask, selection_cost
from .metrics import (
    MetricAccumulator,
    classification_metrics,
    confusion_matrix,
    faithfulness,
    generator_warnings,
    mask_agreement,
    plausibility,
    prediction_agreement,
    random_mask_like,
    selection_ratio,
    selection_ratio_by_class,
)
from .model import RationaleModel
from .processing import FeatureDataset, collate, model_inputs


@torch.no_grad()
def evaluate(model: RationaleModel, loader, *, teacher: RationaleModel | None = None, selection: str = "topk",
             ratio: float | None = None, lambda_sel: float = 0.0, sel_length: str = "padded", sel_cost: str = "batch",
             with_faithfulness: bool = False, accelerator=None, progress: bool = False, desc: str = "eval",
             teacher_cache: str | Path | None = None) -> dict:
    """Metrics of ``model`` over ``loader`` with a deterministic (or ``gumbel``) selection.

    Returns accuracy, macro precision/recall/F1, the cross-entropy ``loss`` and ``l_re``
    (CE + lambda_sel x selection cost over the whole split), the achieved ``ratio`` (padding
    excluded), ``ratio_argmax`` (what the generator would select on its own) and its value per class,
    and ``warnings`` about a degenerate generator (metrics.generator_warnings); with a teacher,
    mask IoU/F1 and prediction agreement; with ``with_faithfulness``, sufficiency and
    comprehensiveness; where the split has human rationales, token-level plausibility beside a
    random selection of the same size.

    ``teacher_cache``: a file that keeps the teacher's predictions and masks over this (unshuffled,
    single-process) loader, written on the first call and read on later ones, so the many students
    of a sweep that share a teacher and a test split run the teacher once.
    """
    from tqdm.auto import tqdm

    if accelerator is not None:  # a DDP wrapper hides the model's attributes; no gradients are needed here
        model = accelerator.unwrap_model(model)
    model.eval()
    if ratio is not None and not 0.0 < ratio <= 1.0:
        raise ConfigError(f"ratio must be in (0, 1], got {ratio}")
    ratio = model.ratio if ratio is None else ratio
    grid_length = model.num_features
    cached = _read_teacher_cache(teacher_cache) if teacher is not None and teacher_cache else None
    offset = 0
    acc = MetricAccumulator()
    random_gen = torch.Generator().manual_seed(0)
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        inputs, targets = model_inputs(batch), batch["label"]
        out = model(inputs, selection=selection, ratio=ratio)
        probs = out.logits.softmax(dim=-1)
        preds = probs.argmax(dim=-1)
        record = {"preds": preds, "targets": targets, "ce": F.cross_entropy(out.logits, targets, reduction="none")}
        if out.mask is not None:
            fm = out.feature_mask
            record.update(mask=out.mask, feature_mask=fm, argmax_mask=argmax_mask(out.gen_logits, fm),
                          length=fm.sum(dim=1).float())
            if with_faithfulness:
                faithful = rationale_probabilities(model, inputs, out.logits, out.mask, fm)
                record.update(p_full=faithful["p_full"], p_rationale=faithful["p_rationale"],
                              p_complement=faithful["p_complement"])
            if "human_mask" in batch:
                record.update(human_mask=batch["human_mask"],
                              random_mask=random_mask_like(fm.cpu(), ratio, random_gen).to(fm.device))
        if cached is not None:
            rows = slice(offset, offset + len(targets))
            record["teacher_preds"] = cached["preds"][rows].to(preds.device)
            if "mask" in cached:
                record["teacher_mask"] = cached["mask"][rows].to(preds.device, out.mask.dtype)
            offset += len(targets)
        elif teacher is not None:
            t_out = teacher(inputs, selection=selection, ratio=ratio)
            record["teacher_preds"] = t_out.logits.argmax(dim=-1)
            if t_out.mask is not None:
                record["teacher_mask"] = t_out.mask
        record = {k: _pad_features(v, grid_length) for k, v in record.items()}
        if accelerator is not None:
            record = accelerator.gather_for_metrics(record)
        acc.add(**{k: v.cpu() for k, v in record.items()})
    if teacher is not None and teacher_cache and cached is None:
        _write_teacher_cache(teacher_cache, acc)
    elif cached is not None and offset != len(cached["preds"]):
        raise DataError(f"{teacher_cache}: the cached teacher outputs are for {len(cached['preds'])} examples, "
                        f"not {offset}; delete the file")
    return _summarise(acc, model.labels, ratio, lambda_sel, sel_length, sel_cost, grid_length,
                      free_count=not model.config.exact_counts)


def rationale_probabilities(model: RationaleModel, inputs: dict[str, Tensor], logits: Tensor, mask: Tensor,
                            feature_mask: Tensor) -> dict[str, Tensor]:
    """What sufficiency and comprehensiveness are made of (METHOD.md), per example: with y' the class predicted
    from the unmasked input, ``p_full`` p(y'|x), ``p_rationale`` p(y'|rationale) (from ``logits``, the prediction
    from ``mask``) and ``p_complement`` p(y'|x without the rationale): the predictor reading every selectable
    feature but the rationale, through the model's own masking (special tokens are always read); ``label`` y'."""
    full = model.predict(inputs).float().softmax(dim=-1)
    label = full.argmax(dim=-1, keepdim=True)
    complement = model.predict(inputs, feature_mask.to(mask.dtype) - mask).float().softmax(dim=-1)
    return {"p_full": full.gather(1, label).squeeze(1),
            "p_rationale": logits.float().softmax(dim=-1).gather(1, label).squeeze(1),
            "p_complement": complement.gather(1, label).squeeze(1), "label": label.squeeze(1)}


def _read_teacher_cache(path: str | Path) -> dict | None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not Path(path).is_file():
        return None
    try:
        return load_file(str(path))
    except (SafetensorError, OSError):
        return None  # unreadable: recompute and overwrite


def _write_teacher_cache(path: str | Path, acc: MetricAccumulator) -> None:
    from safetensors.torch import save_file

    tensors = {"preds": acc.cat("teacher_preds")}
    if "teacher_mask" in acc:
        tensors["mask"] = acc.cat("teacher_mask").to(torch.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(partial))
    os.replace(partial, path)


def evaluate_split(model: RationaleModel, split, *, batch_size: int = 64, **kwargs) -> dict:
    """``evaluate`` over a raw split (see data.py), featurised with the model's processor."""
    dataset = FeatureDataset(split, model.processor, train=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    loader = _on_device(loader, model.device)
    return evaluate(model, loader, **kwargs)


@torch.no_grad()
def evaluate_at_ratios(model: RationaleModel, split, ratios: list[float], *, teacher: RationaleModel | None = None,
                       batch_size: int = 64, on_batch: Callable[[int, int], None] | None = None) -> dict[float, dict]:
    """``evaluate_split`` with top-k at each of ``ratios``: one dict of metrics per ratio, each with its
    ``confusion_matrix`` (rows the true class, columns the predicted one). The generator runs once per batch: its
    logits do not depend on the ratio, only the top-k cut and the predictor's pass do; a CLS model's predictor
    reads every feature, once for all ratios.

    ``teacher``: a model that reads the features ``model``'s processor makes (``compatibility.PairFit``'s
    ``shared_features``); ``model`` is then scored against it, read at the same ratio: ``teacher_agreement``, and
    ``teacher_mask_iou`` / ``_f1`` where both select. ``on_batch(done, total)`` is called after each batch."""
    dataset = FeatureDataset(split, model.processor, train=False)
    loader = _on_device(torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate), model.device)
    accumulators = {ratio: MetricAccumulator() for ratio in ratios}
    for done, batch in enumerate(loader, start=1):
        inputs, targets = model_inputs(batch), batch["label"]
        shared, readings = _read_at_ratios(model, inputs, ratios)
        _, teacher_readings = _read_at_ratios(teacher, inputs, ratios) if teacher is not None else ({}, {})
        for ratio, acc in accumulators.items():
            logits, mask = readings[ratio]
            record = {"targets": targets, "preds": logits.argmax(dim=-1),
                      "ce": F.cross_entropy(logits, targets, reduction="none")}
            if mask is not None:
                record.update(shared, mask=mask)
            if ratio in teacher_readings:
                teacher_logits, teacher_mask = teacher_readings[ratio]
                record["teacher_preds"] = teacher_logits.argmax(dim=-1)
                if teacher_mask is not None and mask is not None:
                    record["teacher_mask"] = teacher_mask
            acc.add(**{k: _pad_features(v, model.num_features).cpu() for k, v in record.items()})
        if on_batch:
            on_batch(done, len(loader))
    free_count = not model.config.exact_counts
    results = {}
    for ratio, acc in accumulators.items():
        results[ratio] = _summarise(acc, model.labels, ratio, 0.0, "padded", "batch", model.num_features,
                                    free_count=free_count)
        results[ratio]["confusion_matrix"] = confusion_matrix(acc.cat("preds"), acc.cat("targets"),
                                                              len(model.labels)).tolist()
    return results


def _read_at_ratios(model: RationaleModel, inputs: dict[str, Tensor], ratios: list[float]
                    ) -> tuple[dict[str, Tensor], dict[float, tuple[Tensor, Tensor | None]]]:
    """One batch read by ``model`` at each ratio: ratio -> (class logits, top-k mask or None for a CLS model), the
    generator run once; and what the ratios share (the selectable features, the argmax mask, the lengths)."""
    model.eval()
    if model.generator is None:
        logits = model.predict(inputs)
        return {}, {ratio: (logits, None) for ratio in ratios}
    features = model.feature_mask(inputs)
    gen_logits = model.generator(inputs).float()
    shared = {"feature_mask": features, "argmax_mask": argmax_mask(gen_logits, features),
              "length": features.sum(dim=1).float()}
    readings = {}
    for ratio in ratios:
        mask = model.select(gen_logits, features, "topk", ratio=ratio)
        readings[ratio] = (model.predict(inputs, mask), mask)
    return shared, readings


def _summarise(acc: MetricAccumulator, labels: list[str], ratio: float, lambda_sel: float, sel_length: str,
               sel_cost_kind: str, grid_length: int, free_count: bool = True) -> dict:
    preds, targets = acc.cat("preds"), acc.cat("targets")
    ce = acc.cat("ce").mean().item()
    metrics = {"n": len(targets), "loss": ce, "l_re": ce, **classification_metrics(preds, targets, len(labels))}
    if "mask" in acc:
        mask, fm = acc.cat("mask"), acc.cat("feature_mask")
        length = acc.cat("length") if sel_length == "real" else float(grid_length)
        sel_cost = selection_cost(mask.float(), ratio, length, per_example=sel_cost_kind == "example").item()
        argmax = acc.cat("argmax_mask")
        by_class = selection_ratio_by_class(argmax, fm, targets, len(labels))
        metrics.update(l_re=ce + lambda_sel * sel_cost, selection_cost=sel_cost,
                       ratio=selection_ratio(mask, fm), ratio_argmax=selection_ratio(argmax, fm),
                       ratio_argmax_by_class=dict(zip(labels, by_class)))
        metrics["warnings"] = generator_warnings(ratio, metrics["ratio_argmax"], by_class, labels) if free_count else []
        if "teacher_mask" in acc:
            agreement = mask_agreement(mask, acc.cat("teacher_mask"), fm)
            metrics.update(teacher_mask_iou=agreement["iou"], teacher_mask_f1=agreement["f1"])
        if "p_full" in acc:
            metrics.update(faithfulness(acc.cat("p_full"), acc.cat("p_rationale"), acc.cat("p_complement")))
        if "human_mask" in acc:
            human = acc.cat("human_mask")
            metrics.update({f"plausibility_{k}": v for k, v in plausibility(mask, human, fm).items()})
            metrics.update({f"random_plausibility_{k}": v
                            for k, v in plausibility(acc.cat("random_mask"), human, fm).items()})
    if "teacher_preds" in acc:
        metrics["teacher_agreement"] = prediction_agreement(preds, acc.cat("teacher_preds"))
    return metrics



def _pad_features(value: Tensor, length: int) -> Tensor:
    """Pad per-feature tensors of a trimmed text batch back to the full grid, so batches line up."""
    if value.dim() != 2 or value.shape[1] == length:
        return value
    return F.pad(value, (0, length - value.shape[1]), value=0)


class _on_device:
    """Wrap a loader so that every tensor of a batch lands on ``device``."""

    def __init__(self, loader, device: torch.device):
        self.loader, self.device = loader, device

    def __iter__(self):
        for batch in self.loader:
            yield {k: v.to(self.device) for k, v in batch.items()}

    def __len__(self) -> int:
        return len(self.loader)
