"""The report's tables: the main table in the paper's shape, the variants at the headline ratio, and
plausibility against human rationales."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .common import GROUPS, at_ratio, cell, family_label, mean_ci, model_runs

# The paper's students by a text in the backbone's name; any other student is set beside the paper's
# smallest student of its dataset (the from-scratch presets are the analogue of the smallest).
PAPER_STUDENTS = {"bert-small": "BERT-Small", "bert-mini": "BERT-Mini", "vit_small": "ViT-Small",
                  "vit_tiny": "ViT-Tiny"}
SMALLEST_PAPER_STUDENT = {"IMDB": "BERT-Mini", "CIFAR-10": "ViT-Tiny", "CIFAR-100 (coarse)": "ViT-Tiny"}


def paper_table(method: Path) -> pd.DataFrame:
    """The paper's main table (dataset, student, CLS, RE, REKD) as METHOD.md quotes it; empty if absent."""
    rows = []
    if method.is_file():
        body = method.read_text(encoding="utf-8").split("## The paper's main result", 1)[-1].split("\n\n", 2)[1]
        for line in body.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 5 and re.fullmatch(r"\.\d+", cells[2]):
                rows.append({"dataset": cells[0], "student": cells[1], "cls": float(cells[2]), "re": float(cells[3]),
                             "rekd": float(cells[4])})
    return pd.DataFrame(rows, columns=["dataset", "student", "cls", "re", "rekd"])


def main_table(runs: pd.DataFrame, paper: pd.DataFrame) -> str:
    """Each group's headline models (and, where a variant is the headline, the runs without a variant):
    CLS, RE and REKD test accuracy with 95% intervals over seeds, beside the paper's student."""
    lines = ["## Main table", "",
             "Test accuracy, mean ± half-width of the 95% confidence interval over seeds (Student's t), RE and REKD "
             "at the headline ratio (IMDB 0.10, CIFAR-10 0.15). Paper: METHOD.md, the student of that name, or for a "
             "from-scratch preset the paper's smallest student on the dataset (mean of 10 seeds, pretrained "
             "backbones at full scale). A single run's interval is the binomial one of its test set. A family in "
             "brackets is not the recipe's headline; a CLS cell that names a family reads that family's CLS runs "
             "(the base of a variant with none of its own).", "",
             "| dataset | model | CLS | RE | REKD | REKD − RE | paper: student | CLS | RE | REKD |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for group in runs.group.unique():
        dataset = GROUPS[group][0]
        in_group = runs[runs.group == group]
        families = [in_group[in_group.headline]]
        unnamed = in_group[in_group.variant == ""]
        if len(unnamed) and not unnamed.headline.any():  # a variant is the headline: the runs without one follow
            families.append(unnamed)
        for rows in (f for f in families if len(f)):
            # a family without CLS runs of its own (minilm-range) reads those of its base family (minilm)
            base = base_family(rows.family.iloc[0], set(in_group.family))
            for role in ("student", "teacher"):
                for backbone in rows[rows.role == role].backbone.unique():
                    cls, re_, rekd = (model_runs(rows, group, role, mode, backbone)
                                      for mode in ("cls", "re", "rekd"))
                    borrowed = not len(cls) and base
                    if borrowed:
                        cls = model_runs(in_group[in_group.family == base], group, role, "cls", backbone)
                    cls_cell = _accuracy(cls) + (f" ({base})" if borrowed and len(cls) else "")
                    gain = f"{rekd.accuracy.mean() - re_.accuracy.mean():+.3f}" if len(rekd) and len(re_) else ""
                    cells = [dataset, f"{role} {backbone}{family_label(rows)}", cls_cell, _accuracy(re_),
                             _accuracy(rekd) if role == "student" else "", gain]
                    name = _paper_student(dataset, backbone) if role == "student" else ""
                    paper_row = paper[(paper.dataset == dataset) & (paper.student == name)]
                    cells += ([name, *(f"{paper_row.iloc[0][k]:.3f}" for k in ("cls", "re", "rekd"))]
                              if len(paper_row) else [""] * 4)
                    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _accuracy(runs: pd.DataFrame) -> str:
    """A main-table cell: mean and interval over seeds, or one run's interval over its test set."""
    return mean_ci(runs.accuracy, examples=runs.test_examples.iloc[0] if len(runs) == 1 else None)


def variants_table(runs: pd.DataFrame) -> str:
    """Every family's student RE and REKD at the headline ratio, REKD set against the RE of its base family
    (``base_family``), so that each variant reads as one change from its base."""
    lines = ["## Variants at the headline ratio", "",
             "Each family of the recipe (its settings are in the recipe's comments) with student RE or REKD runs at "
             "the headline ratio; mean ± 95% interval over seeds. REKD − RE sets the family's REKD against the RE "
             "of "
             "its base: the family itself, else the longest family whose name its own extends (`pconv-kd-r-topk` → "
             "`pconv`), else the runs without a variant.", "",
             "| dataset | family | student RE | student REKD | REKD − RE (base) |", "| --- | --- | --- | --- | --- |"]
    for group in runs.group.unique():
        students = at_ratio(runs[(runs.group == group) & (runs.role == "student")], GROUPS[group][1])
        re_by_family = {name: rows.accuracy for name, rows in students[students["mode"] == "re"].groupby("family")}
        unnamed = runs[(runs.group == group) & (runs.variant == "")].family  # the family of the runs without a variant
        for family, rows in students[students["mode"].isin(["re", "rekd"])].groupby("family", sort=False):
            rekd = rows[rows["mode"] == "rekd"].accuracy
            base = (family if family in re_by_family
                    else base_family(family, re_by_family) or (unnamed.iloc[0] if len(unnamed) else ""))
            gain = (f"{rekd.mean() - re_by_family[base].mean():+.3f} ({base or 'no variant'})"
                    if len(rekd) and base in re_by_family else "")
            name = f"{family or 'no variant'}" + (" (headline)" if rows.headline.all() else "")
            lines.append(f"| {GROUPS[group][0]} | {name} | {mean_ci(re_by_family.get(family, pd.Series(dtype=float)))} "
                         f"| {mean_ci(rekd)} | {gain} |")
    return "\n".join(lines)


def base_family(family: str, families) -> str:
    """The family a variant is compared with: the longest other one among ``families`` that its name extends
    by "-..." (the same settings plus one change), else "" (the runs without a variant)."""
    return max((f for f in families if f and f != family and family.startswith(f + "-")), key=len, default="")


def plausibility_table(runs: pd.DataFrame) -> str:
    """Token-level plausibility of the runs scored against ERASER's human rationales."""
    rows = runs.dropna(subset=["plausibility_f1"])
    if rows.empty:
        return ""
    lines = ["## Plausibility against human rationales (ERASER movies)", "",
             "Test split of ERASER movies (each review cut to its model's maximum length), the top-k selection at the "
             "model's ratio against the annotated evidence; random: the same number of word pieces drawn uniformly "
             "(seed 0).", "",
             "| run | ratio | examples | token F1 | IOU-F1 | random token F1 |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows.itertuples():
        lines.append(f"| {r.run} | {r.ratio:.2f} | {r.plausibility_examples:.0f} | {cell(r.plausibility_f1)} | "
                     f"{cell(r.plausibility_iou_f1)} | {cell(r.random_plausibility_f1)} |")
    return "\n".join(lines)


def _paper_student(dataset: str, backbone: str) -> str:
    return next((name for key, name in PAPER_STUDENTS.items() if key in backbone.lower()),
                SMALLEST_PAPER_STUDENT.get(dataset, ""))
