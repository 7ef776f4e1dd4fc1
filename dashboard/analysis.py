"""Running the teacher and the student on the page's inputs, each at its own ratio: one input (``explain_pair``: both
rationales compared, their faithfulness, their plausibility against human evidence, how familiar the input looks to
each model), a batch (``explain_batch``) ranked by disagreement or plausibility (the browser) or summarised
(accuracy, agreement, mask IoU, confusion matrices: the summary), and the pair evaluated across ratios (the live
evaluation). No Streamlit here.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import pandas as pd
from PIL import Image

from dashboard.checkpoints import MODES, ROLES
from dashboard.inputs import InputItem, fit_image
from dashboard.render.style import UNDEFINED, saw_no_features
from rekd_core.compatibility import PairFit
from rekd_core.compatibility import check_pair as fit_of
from rekd_core.errors import ConfigError, DataError
from rekd_core.explain import Explanation, compare, explain
from rekd_core.familiarity import entropy_note, image_size_note, predictive_entropy
from rekd_core.metrics import confusion_matrix
from rekd_core.words import word_plausibility

ProgressFn = Callable[[float, str], None]
Ratios = dict[str, "float | None"]  # role -> the ratio the page reads that model at (None: the model's own)
RatioChoice = "Ratios | float | None"  # per model, or one ratio for both


def per_model(ratios: RatioChoice) -> Ratios:
    """``ratios`` as role -> ratio: one ratio (or None, each model's own) stands for both models."""
    return dict(ratios) if isinstance(ratios, dict) else {role: ratios for role in ROLES}


@dataclass
class InputCheck:
    """How familiar an input looks to one model (``rekd_core.familiarity``): the entropy of its prediction at its
    own ratio, one line per signal, and whether any signal says the input is unlike its test data. ``available``
    False: the checkpoint has no reference statistics, so nothing is claimed."""

    available: bool
    entropy: float
    notes: list[str] = field(default_factory=list)
    unusual: bool = False


@dataclass
class PairResult:
    teacher: Explanation
    student: Explanation
    comparison: dict | None  # compare_selections(); None when the pair has no agreement view
    seconds: float
    views: dict[str, Image.Image] = field(default_factory=dict)  # images: what each model read ("teacher", "student")
    # Against the input's human evidence, per role ("teacher", "student"): word_plausibility(); {} without evidence.
    plausibility: dict[str, dict | None] = field(default_factory=dict)
    checks: dict[str, InputCheck] = field(default_factory=dict)  # per role: how familiar the input looks to it


def compare_selections(t_exp: Explanation, s_exp: Explanation) -> dict:
    """``rekd_core.explain.compare``, with mask IoU and F1 None (undefined) when neither model selected
    anything: two empty selections do not agree perfectly, there is nothing to compare."""
    comparison = compare(t_exp, s_exp)
    if not t_exp.selected and not s_exp.selected:
        comparison["iou"] = comparison["f1"] = None
    return comparison


def explain_pair(teacher, student, item: InputItem, ratios: RatioChoice, agreement: bool = True, fit: str = "squash",
                 references: dict[str, dict | None] | None = None) -> PairResult:
    """Both models' explanations of one input, each at its ratio in ``ratios``, with their faithfulness; an image is
    first fitted to each model's square (``fit_image``), and ``views`` holds what each read. ``references``: each
    model's ``input_reference.json`` (or None), for ``checks``."""
    ratios = per_model(ratios)
    want = "text" if teacher.task == "text" else "image"
    if item.kind != want:
        raise DataError(f"{item.name}: a {teacher.task} model cannot read "
                        f"{'a review' if item.kind == 'text' else 'an image'}")
    started = time.perf_counter()
    models = {"teacher": teacher, "student": student}
    views = {}
    if item.kind == "image":
        views = {role: fit_image(item.value, model.processor.image_size, fit) for role, model in models.items()}
    exps = {role: explain(model, [views.get(role, item.value)], ratio=ratios[role], faithfulness=True)[0]
            for role, model in models.items()}
    t_exp, s_exp = exps["teacher"], exps["student"]
    comparison = compare_selections(t_exp, s_exp) if agreement and t_exp.length == s_exp.length else None
    scores = {}
    if item.evidence is not None and item.kind == "text":
        scores = {role: word_plausibility(item.value, exp, item.evidence) for role, exp in exps.items()}
    checks = {role: check_input(model, exps[role], ratios[role], views.get(role, item.value), item,
                                (references or {}).get(role)) for role, model in models.items()}
    return PairResult(t_exp, s_exp, comparison, time.perf_counter() - started, views, scores, checks)


def check_input(model, exp: Explanation, ratio: float | None, read, item: InputItem,
                reference: dict | None) -> InputCheck:
    """``InputCheck`` of one model on one input (``read``: what it read). The entropy is that of its prediction at
    its own ratio, as its reference was measured: ``exp`` when the page reads it there, else read again."""
    own = model.ratio if model.generator is not None else None
    if ratio is not None and own is not None and abs(ratio - own) > 1e-9:
        exp = explain(model, [read])[0]
    entropy = predictive_entropy(exp.probs.values())
    if reference is None:
        return InputCheck(False, entropy)
    unusual, line = entropy_note(reference, entropy, "review" if item.kind == "text" else "image")
    check = InputCheck(True, entropy, [line], unusual)
    if item.kind == "image":
        size_line = image_size_note(reference, *(item.size or item.value.size))
        if size_line:
            check.notes.append(size_line)
            check.unusual = True
    return check


def explain_batch(teacher, student, items: Sequence[InputItem], ratios: RatioChoice, progress: ProgressFn | None = None,
                  batch_size: int = 16) -> list[tuple[Explanation, Explanation]]:
    """(teacher's, student's) explanation of every item, each model at its ratio in ``ratios``."""
    ratios = per_model(ratios)
    values = [item.value for item in items]
    found: dict[str, list[Explanation]] = {role: [] for role in ROLES}
    models = {"teacher": teacher, "student": student}
    for start in range(0, len(values), batch_size):
        chunk = values[start:start + batch_size]
        for role, model in models.items():
            found[role] += explain(model, chunk, ratio=ratios[role], batch_size=batch_size)
            if progress:
                done = len(found["teacher"]) + len(found["student"])
                progress(done / max(1, 2 * len(values)), f"{role}: {len(found[role])}/{len(values)}")
    return list(zip(found["teacher"], found["student"]))


def rank_by_disagreement(teacher, student, items: Sequence[InputItem], ratios: RatioChoice, agreement: bool = True,
                         progress: ProgressFn | None = None, batch_size: int = 16) -> pd.DataFrame:
    """``ranking`` of ``explain_batch``."""
    return ranking(items, explain_batch(teacher, student, items, ratios, progress, batch_size), agreement)


def ranking(items: Sequence[InputItem], pairs: Sequence[tuple[Explanation, Explanation]],
            agreement: bool = True) -> pd.DataFrame:
    """One row per item, most disagreeing first: rows whose predictions differ, then by lowest mask IoU, then by the
    largest gap in the teacher label's probability. ``#`` is the item's place in the sample, from 1 (as in the
    names of dataset items). A model that selected nothing has no prediction ("—", probability NaN, ``agree``
    None): such a row has nothing to rank by and comes last, as does a row whose plausibility is undefined when
    sorted by it. With human evidence, ``PLAUSIBILITY_COLUMNS`` hold each model's ``word_plausibility`` F1 and the
    student's minus the teacher's."""
    human = any(item.evidence is not None for item in items)
    rows = []
    for number, (item, (t_exp, s_exp)) in enumerate(zip(items, pairs), start=1):
        cmp = compare_selections(t_exp, s_exp) if agreement and t_exp.length == s_exp.length else None
        iou = cmp["iou"] if cmp and cmp["iou"] is not None else math.nan
        blind = saw_no_features(t_exp) or saw_no_features(s_exp)  # no prediction to compare
        labels_agree = None if blind else t_exp.label.lower() == s_exp.label.lower()
        gap = abs(t_exp.probs.get(t_exp.label, 0.0) - s_exp.probs.get(t_exp.label, s_exp.probs.get(s_exp.label, 0.0)))
        (t_label, t_p), (s_label, s_p) = _verdict(t_exp), _verdict(s_exp)
        disagreement = math.nan if blind else ((not labels_agree) + (0.0 if iou != iou else 1.0 - iou) + 0.1 * gap)
        rows.append({"#": number, "input": item.preview(70), "true label": item.label or "",
                     "teacher": t_label, "p(teacher)": t_p, "student": s_label, "p(student)": s_p,
                     "agree": labels_agree, "teacher_mask_iou": iou, "disagreement": disagreement})
        if human:
            for role, exp in (("teacher", t_exp), ("student", s_exp)):
                scores = word_plausibility(item.value, exp, item.evidence) if item.evidence is not None else None
                rows[-1][f"{role}_plausibility_f1"] = math.nan if not scores or scores["f1"] is None else scores["f1"]
            rows[-1]["plausibility_f1_gap"] = rows[-1]["student_plausibility_f1"] - rows[-1]["teacher_plausibility_f1"]
    columns = ["#", "input", "true label", "teacher", "p(teacher)", "student", "p(student)", "agree",
               "teacher_mask_iou", *(PLAUSIBILITY_COLUMNS if human else ()), "disagreement"]
    return sort_ranking(pd.DataFrame(rows, columns=columns), "disagreement")


# The browser's orders: name -> (column, highest first). A column a ranking lacks (no human evidence) is refused.
PLAUSIBILITY_COLUMNS = ("teacher_plausibility_f1", "student_plausibility_f1", "plausibility_f1_gap")
RANKING_SORTS = {
    "disagreement": ("disagreement", True),
    "teacher plausibility, lowest first": ("teacher_plausibility_f1", False),
    "teacher plausibility, highest first": ("teacher_plausibility_f1", True),
    "student plausibility, lowest first": ("student_plausibility_f1", False),
    "student plausibility, highest first": ("student_plausibility_f1", True),
    "student minus teacher plausibility, lowest first": ("plausibility_f1_gap", False),
    "student minus teacher plausibility, highest first": ("plausibility_f1_gap", True),
}


def ranking_sorts(frame: pd.DataFrame) -> list[str]:
    """The orders of ``RANKING_SORTS`` that a ranking supports (plausibility only with human evidence)."""
    return [name for name, (column, _) in RANKING_SORTS.items() if column in frame.columns]


def sort_ranking(frame: pd.DataFrame, sort: str) -> pd.DataFrame:
    """A ranking re-ordered by one of ``RANKING_SORTS``, ties in sample order; rows without a score (NaN: no
    prediction to compare, no human word read, or no rationale) go last. ``DataError`` for an order the ranking
    does not support."""
    if sort not in RANKING_SORTS:
        raise DataError(f"unknown order {sort!r}: pick one of {', '.join(RANKING_SORTS)}")
    column, highest_first = RANKING_SORTS[sort]
    if column not in frame.columns:
        raise DataError(f"cannot sort by {sort}: this sample has no human evidence (rank an ERASER dataset, "
                        "eraser-movies:DIR)")
    return frame.sort_values([column, "#"], ascending=[not highest_first, True], kind="stable",
                             na_position="last").reset_index(drop=True)


def _verdict(exp: Explanation) -> tuple[str, float]:
    """(label, probability) of a prediction; ("—", NaN) for a model that saw no feature: it has none."""
    return (UNDEFINED, math.nan) if saw_no_features(exp) else (exp.label, exp.probs[exp.label])


@dataclass
class BatchSummary:
    """A batch of inputs read by both models. Predictions exist where a model picked at least one feature
    (``blind[role]`` counts the inputs where it picked none, which are left out of its numbers); accuracy and the
    confusion matrices (rows the true class, columns the predicted one, in ``labels[role]``'s order) are over the
    ``labelled`` inputs whose true label the model knows (None without any); agreement over the inputs both predict;
    the mean mask IoU over those where it is defined. ``ranking``: the batch, most disagreeing first."""

    n: int
    labelled: dict[str, int]
    blind: dict[str, int]
    accuracy: dict[str, float | None]
    agreement: float | None
    mean_iou: float | None
    confusion: dict[str, list[list[int]]]
    labels: dict[str, list[str]]
    ranking: pd.DataFrame


def summarise_batch(teacher, student, items: Sequence[InputItem], ratios: RatioChoice, fit: PairFit,
                    progress: ProgressFn | None = None) -> BatchSummary:
    """``BatchSummary`` of ``items`` read by the pair, each model at its ratio in ``ratios``."""
    import torch

    pairs = explain_batch(teacher, student, items, ratios, progress)
    frame = ranking(items, pairs, fit.agreement)
    models = {"teacher": teacher, "student": student}
    labelled, blind, accuracy, confusion = {}, {}, {}, {}
    for column, (role, model) in enumerate(models.items()):
        index = {label.lower(): i for i, label in enumerate(model.labels)}
        known = [(index[item.label.lower()], pair[column].label_index) for item, pair in zip(items, pairs)
                 if item.label and item.label.lower() in index and not saw_no_features(pair[column])]
        blind[role] = sum(saw_no_features(pair[column]) for pair in pairs)
        labelled[role] = len(known)
        targets, preds = (torch.tensor([k[i] for k in known], dtype=torch.long) for i in (0, 1))
        matrix = confusion_matrix(preds, targets, len(model.labels))
        confusion[role] = matrix.tolist()
        accuracy[role] = float(matrix.trace()) / len(known) if known else None
    agree = frame["agree"].dropna().astype(float)
    iou = frame["teacher_mask_iou"].dropna()
    return BatchSummary(len(items), labelled, blind, accuracy, float(agree.mean()) if len(agree) else None,
                        float(iou.mean()) if len(iou) else None, confusion,
                        {role: list(model.labels) for role, model in models.items()}, frame)


@dataclass
class LiveEvaluation:
    """The loaded pair evaluated at several ratios: one row per model and ratio (``frame``), and each model's
    confusion matrix at each ratio (``confusion[(role, ratio)]``: rows the true class, columns the predicted one,
    in the order of ``labels[role]``)."""

    frame: pd.DataFrame
    confusion: dict[tuple[str, float], list[list[int]]]
    labels: dict[str, list[str]]


def evaluate_pair(teacher, student, split, ratios: Sequence[float], fit: PairFit | None = None,
                  progress: ProgressFn | None = None, batch_size: int = 32) -> LiveEvaluation:
    """Accuracy, F1 and achieved ratio of the teacher and the student on ``split`` (a ``RawSplit``) at each
    rationale ratio (``rekd_core.evaluation.evaluate_at_ratios``), with the student's mask IoU and prediction
    agreement with the teacher when the two read the same features and share their labels (``fit``)."""
    from rekd_core.evaluation import evaluate_at_ratios

    ratios = sorted({float(r) for r in ratios})
    if not ratios:
        raise ConfigError("pick at least one rationale ratio to evaluate")
    fit = fit or fit_of(teacher, student)
    scored = fit.shared_features and fit.same_labels

    def tick(role: str):
        def report(done: int, total: int) -> None:
            if progress:
                progress((done / total + (role == "student")) / 2, f"{role} at {len(ratios)} ratio(s): batch "
                                                                   f"{done}/{total}")
        return report

    found = {"teacher": evaluate_at_ratios(teacher, split, ratios, batch_size=batch_size, on_batch=tick("teacher")),
             "student": evaluate_at_ratios(student, split, ratios, teacher=teacher if scored else None,
                                           batch_size=batch_size, on_batch=tick("student"))}
    rows, confusion = [], {}
    models = {"teacher": teacher, "student": student}
    for ratio in ratios:
        for role, model in models.items():
            metrics = found[role][ratio]
            confusion[(role, ratio)] = metrics["confusion_matrix"]
            rows.append({"model": role, "mode": MODES.get(model.config.mode, model.config.mode),
                         "backbone": model.config.backbone.source, "ratio": ratio,
                         "accuracy": metrics["accuracy"], "f1": metrics.get("f1", math.nan),
                         "achieved_ratio": metrics.get("ratio", 1.0),
                         "teacher_mask_iou": metrics.get("teacher_mask_iou", math.nan),
                         "teacher_agreement": metrics.get("teacher_agreement", math.nan), "n": metrics["n"]})
    return LiveEvaluation(pd.DataFrame(rows), confusion, {role: list(m.labels) for role, m in models.items()})
