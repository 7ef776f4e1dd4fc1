"""The words the page uses, explained once: tooltips (``help=``), the "How to read this" box and the table headers
share them. The metrics' meanings come from ``rekd_core.metric_info``, where each metric is named once."""
from __future__ import annotations

from typing import Iterable

from rekd_core.familiarity import ENTROPY_LIMIT
from rekd_core.metric_info import METRICS, describe

GLOSSARY = {
    "rationale": "The few features (word pieces of a review, patches of an image) a model picks. Its prediction "
                 "is made from those alone, so they show what it based the prediction on.",
    "CLS": "A plain classifier that reads every feature: it picks nothing, so it has no rationale. Shown as a "
           "reference for how accurate a model can be with everything in view.",
    "RE": "Rationale extraction: a generator picks a few features and a predictor classifies from only those; "
          "the two are trained together.",
    "REKD": "RE with knowledge distillation: a small student learns what to pick and what to predict from a "
            "big RE teacher.",
    "word pieces": "The pieces a tokenizer cuts text into ('unbelievable' -> 'un', '##believ', '##able'). The "
                   "models pick pieces; the page highlights the whole words they belong to. Special pieces such as "
                   "[CLS] and [SEP] belong to no word: they are never highlighted nor counted.",
    "ratio": "The share of an input's features each model keeps: the k = ratio x features with the highest "
             "scores. A model was trained at one ratio or over a range of ratios (marked under the slider); away "
             "from them, its predictions are untested. The two models can be read at different ratios.",
    "selection probability": "The generator's probability of keeping each feature (the softmax of its two scores). "
                             "The stronger a word's background or a patch's colour, the likelier the model was to "
                             "keep it; the outlined ones are the top k it kept.",
    "achieved ratio": METRICS["achieved_ratio"].meaning,
    "mask IoU": METRICS["teacher_mask_iou"].meaning,
    "mask F1": METRICS["teacher_mask_f1"].meaning,
    "agreement": METRICS["teacher_agreement"].meaning,
    "overlap counts": "Features picked by both models / by the teacher only / by the student only.",
    "plausibility": METRICS["plausibility_f1"].meaning,
    "sufficiency": METRICS["sufficiency"].help,
    "comprehensiveness": METRICS["comprehensiveness"].help,
    "input check": f"Two plain signals, not a detector. Entropy: how spread the model's class probabilities are "
                   f"(at its own ratio), against the {ENTROPY_LIMIT:.0%} of a sample of its test set that show less. "
                   "Unsure is not the same as unfamiliar: hard test inputs are unsure too, and a model can be "
                   "confidently wrong on an input unlike anything it saw. Image size: against the sizes of its "
                   "training images. Computed once per checkpoint from data (scripts/input_reference.py); a "
                   "checkpoint without them gets no such note.",
    "labels": "The classes the model was trained on: it gives every input one of them, whatever the input shows.",
}

HOW_TO_READ = f"""\
- **Rationale**: {GLOSSARY["rationale"]}
- **Teacher and student**: the teacher is a big model, the student a small one. How a model was trained:
  - **CLS**: {GLOSSARY["CLS"]}
  - **RE**: {GLOSSARY["RE"]}
  - **REKD**: {GLOSSARY["REKD"]}
- **Word pieces**: {GLOSSARY["word pieces"]}
- **Ratio** (the sidebar slider): {GLOSSARY["ratio"]} **Achieved ratio**: {GLOSSARY["achieved ratio"]}
- **Selection probability** (the "Show" switch): {GLOSSARY["selection probability"]}
- **Agreement**: blue = teacher only, orange = student only, green = both. **Mask IoU**: {GLOSSARY["mask IoU"]}
  **Prediction agreement**: {GLOSSARY["agreement"]}
- **Faithfulness**: **sufficiency** {GLOSSARY["sufficiency"]} **Comprehensiveness** {GLOSSARY["comprehensiveness"]}
- **Human evidence** (datasets that have it, such as ERASER movies): purple, dotted underline. **Plausibility**:
  {GLOSSARY["plausibility"]}
- **Input check**: {GLOSSARY["input check"]}
- A model that picked **no feature** saw nothing: it has no prediction, whatever numbers it outputs.
"""

# The page's own table columns; the metrics' come from rekd_core.metric_info.
_COLUMNS = {
    "task": ("task", "text (reviews) or vision (images)"),
    "role": ("role", "teacher (big) or student (small); a recipe variant is named in brackets"),
    "mode": ("mode", "CLS: reads everything. RE: " + GLOSSARY["RE"] + " REKD: " + GLOSSARY["REKD"]),
    "model": ("model", "teacher or student"),
    "backbone": ("backbone", "the network's size: layers x hidden width"),
    "ratio": ("ratio", GLOSSARY["ratio"]),
    "series": ("series", "a model trained over a range of ratios, or fixed-ratio models at or away from their ratio"),
    "family": ("family", "the recipe's family of runs"),
    "runs": ("runs", "how many runs (seeds) the mean and deviation are over"),
    "run": ("run", "the runs (checkpoints) the row is made of"),
    "n": ("n", "examples evaluated"),
    "#": ("#", "the input's place in the sample, from 1 (as in the names of dataset items)"),
    "image": ("image", "the image (a thumbnail)"),
    "input": ("input", "the review (its start) or the image"),
    "true label": ("true", "the label the dataset gives"),
    "teacher": ("teacher", "the teacher's prediction (— when it picked no feature)"),
    "p(teacher)": ("p(T)", "the teacher's probability for its prediction"),
    "student": ("student", "the student's prediction (— when it picked no feature)"),
    "p(student)": ("p(S)", "the student's probability for its prediction"),
    "agree": ("agree", GLOSSARY["agreement"]),
}


def column_labels(columns: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Column -> (short header, tooltip) for the known columns of the dashboard's tables: the page's own
    (``_COLUMNS``) and the metrics (``rekd_core.metric_info``: named once, with their ``_mean`` / ``_std``)."""
    out = {}
    for column in columns:
        found = _COLUMNS.get(column) or describe(column)
        if found:
            out[column] = found
    return out
