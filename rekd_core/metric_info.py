"""What each metric is called, what it means and which way is better: one entry per metric.

The name is the key of the metric in ``evaluate``'s dicts, the results file and every CSV the dashboard writes;
the label is its short table header; the meaning is one plain line for tooltips and the glossary; ``better`` says
whether higher or lower values are better (None: neither, such as a ratio that should match its target).
A metric of one model measured against another takes its name with the role in front (``teacher_plausibility_f1``,
``student_sufficiency``); ``describe`` reads those and the ``_mean`` / ``_std`` columns of aggregated tables.
"""
from __future__ import annotations

from dataclasses import dataclass

HIGHER, LOWER = "higher", "lower"


@dataclass(frozen=True)
class MetricInfo:
    name: str
    label: str
    meaning: str
    better: str | None = None

    @property
    def direction(self) -> str:
        """"higher is better", "lower is better", or "" when neither is."""
        return f"{self.better} is better" if self.better else ""

    @property
    def help(self) -> str:
        """The meaning and, where there is one, the better direction: a tooltip."""
        return f"{self.meaning} ({self.direction})" if self.better else self.meaning


_OVERLAP = "1 = the same features, 0 = none in common. Undefined (—) when neither picked anything"
METRICS: dict[str, MetricInfo] = {info.name: info for info in (
    MetricInfo("accuracy", "acc", "The share of inputs classified right.", HIGHER),
    MetricInfo("f1", "F1", "Macro F1 of the predictions: the mean over classes of the harmonic mean of precision and "
               "recall.", HIGHER),
    MetricInfo("precision", "prec.", "Macro precision: of the inputs given a class, the share that are of it, "
               "averaged over classes.", HIGHER),
    MetricInfo("recall", "recall", "Macro recall: of the inputs of a class, the share given it, averaged over "
               "classes.", HIGHER),
    MetricInfo("achieved_ratio", "achieved", "The share of features actually kept: k is rounded to a whole number "
               "and padding is not counted, so it can differ a little from the ratio asked for."),
    MetricInfo("ratio_argmax", "own ratio", "The share of features the generator keeps on its own (argmax), "
               "before top-k cuts it to the ratio asked for."),
    MetricInfo("teacher_agreement", "agree w/ T", "Whether the student predicts the teacher's label (over a sample: "
               "the share of inputs where it does).", HIGHER),
    MetricInfo("teacher_mask_iou", "IoU w/ T", "How far the student's rationale overlaps the teacher's: features "
               f"both picked / features either picked (over a sample: the mean over its inputs). {_OVERLAP}.",
               HIGHER),
    MetricInfo("teacher_mask_f1", "mask F1 w/ T", "Another overlap of the two rationales: 2 x features both picked "
               f"/ (teacher's + student's features). {_OVERLAP}.", HIGHER),
    MetricInfo("sufficiency", "suff.", "p(y'|x) - p(y'|rationale), y' the class predicted from the whole input: "
               "how much its probability drops when the model reads only its rationale. Near 0 or below: the "
               "rationale alone supports the prediction.", LOWER),
    MetricInfo("comprehensiveness", "comp.", "p(y'|x) - p(y'|x without the rationale): how much the probability "
               "of y' drops when the rationale is taken out and the model reads the rest. High: the rationale held "
               "what the prediction needed.", HIGHER),
    MetricInfo("plausibility_f1", "F1 human", "Plausibility: how well a model's rationale matches the words human "
               "annotators marked as evidence (ERASER): F1 of its selected words against theirs (precision: share of "
               "its words they marked; recall: share of their words it picked), over the words the model read. A "
               "word counts as selected when any of its word pieces is. Undefined (—) without a human word read or "
               "for a CLS model.", HIGHER),
    MetricInfo("plausibility_precision", "prec. human", "Plausibility precision: the share of the words a model "
               "picked that human annotators marked as evidence, over the words it read.", HIGHER),
    MetricInfo("plausibility_recall", "recall human", "Plausibility recall: the share of the words humans marked "
               "that the model picked, over the words it read.", HIGHER),
    MetricInfo("plausibility_iou_f1", "IOU-F1 human", "ERASER's IOU-F1: predicted spans matched to human spans at "
               "token IoU >= 0.5, F1 per input, averaged.", HIGHER),
    MetricInfo("random_plausibility_f1", "F1 random", "Plausibility F1 of a random selection of the same size: the "
               "chance level of plausibility_f1."),
    MetricInfo("plausibility_f1_gap", "S−T F1 human", "The student's plausibility F1 minus the teacher's: above 0, "
               "the student's rationale is closer to the humans'."),
    MetricInfo("entropy", "entropy", "Predictive entropy of the class probabilities, in nats: 0 when the model is "
               "certain, ln(classes) when it spreads its probability evenly.", LOWER),
    MetricInfo("wall_time_s", "time (s)", "Wall-clock seconds of the run.", LOWER),
)}

ROLES = ("teacher", "student")
_STATS = {"mean": ("", "mean over seeds"), "std": (" ±", "standard deviation over seeds")}


def describe(column: str) -> tuple[str, str] | None:
    """(short header, tooltip) of a metric column: a name of ``METRICS``, the same with a role in front
    (``teacher_sufficiency``: "T suff."), or either with ``_mean`` / ``_std`` behind (aggregated over seeds);
    None for a column that is no metric."""
    base, _, stat = str(column).rpartition("_")
    if stat in _STATS and base:
        found = describe(base)
        if found is None:
            return None
        suffix, what = _STATS[stat]
        return found[0] + suffix, f"{found[1]} ({what})"
    if column in METRICS:
        return METRICS[column].label, METRICS[column].help
    role, _, name = str(column).partition("_")
    if role in ROLES and name in METRICS:
        info = METRICS[name]
        return f"{role[0].upper()} {info.label}", f"The {role}'s {info.label}: {info.help}"
    return None
