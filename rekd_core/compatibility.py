"""Whether two models, or a model and a dataset, fit together: one check, shared by training (a REKD student and
its teacher), ``rekd explain --teacher``, ``rekd eval`` and the dashboard.

Two models fit in steps: of the same task, their predictions can be compared if they share their labels (case
aside); their rationales feature by feature if they also select over the same grid (text: vocabulary, lowercasing
and max length; images: image size, patch size and patch count) and both select (a CLS model reads everything);
one featurisation of an input serves both if the grid and the image normalisation are the same. REKD distils per
feature and per class, so it needs all of it (``require_distillable``).
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError, DataError


@dataclass
class PairFit:
    """What of a teacher and a student fit together: each field is the one line that says what differs, or None."""

    task: str | None = None  # different tasks: nothing of the two can be compared
    labels: str | None = None  # different label sets: their predictions cannot be compared
    grid: str | None = None  # different feature grids: their rationales cannot be compared feature by feature
    normalisation: str | None = None  # images normalised differently: each must featurise an input itself
    cls_roles: tuple[str, ...] = ()  # the roles that are CLS models: they read every feature, no rationale

    @property
    def same_labels(self) -> bool:
        return self.task is None and self.labels is None

    @property
    def same_grid(self) -> bool:
        return self.task is None and self.grid is None

    @property
    def both_select(self) -> bool:
        return not self.cls_roles

    @property
    def agreement(self) -> bool:
        """Whether both their predictions and their rationales (masks) can be compared."""
        return self.same_labels and self.same_grid and self.both_select

    @property
    def shared_features(self) -> bool:
        """Whether one featurisation of an input serves both (the same grid, the same image normalisation)."""
        return self.same_grid and self.normalisation is None

    def problems(self) -> list[str]:
        """Every difference that rules out distillation, the task first."""
        return [line for line in (self.task, self.grid, self.normalisation, self.labels) if line]


def check_pair(teacher, student) -> PairFit:
    """How far ``teacher`` and ``student`` (``RationaleModel``s) fit together (``PairFit``)."""
    fit = PairFit()
    if teacher.task != student.task:
        fit.task = f"the teacher is a {teacher.task} model but the student is a {student.task} model"
        return fit
    if [label.lower() for label in teacher.labels] != [label.lower() for label in student.labels]:
        fit.labels = (f"the teacher's labels ({_short(teacher.labels)}) differ from the student's "
                      f"({_short(student.labels)})")
    t_grid, s_grid = teacher.processor.grid(), student.processor.grid()
    if t_grid != s_grid:
        diff = ", ".join(f"{k}: {t_grid.get(k)} vs {s_grid.get(k)}" for k in sorted(set(t_grid) | set(s_grid))
                         if t_grid.get(k) != s_grid.get(k))
        fit.grid = f"the teacher and the student select over different feature grids ({diff})"
    if teacher.task == "vision" and _normalisation(teacher) != _normalisation(student):
        fit.normalisation = (f"the teacher and the student normalise images differently (mean, std: "
                             f"{_normalisation(teacher)} against {_normalisation(student)})")
    fit.cls_roles = tuple(role for role, model in (("teacher", teacher), ("student", student))
                          if model.generator is None)
    return fit


def require_distillable(teacher, student) -> None:
    """``ConfigError`` naming the first difference when ``student`` cannot be distilled from (or scored against)
    ``teacher`` feature by feature and class by class; REKD reads the student's inputs with the teacher."""
    problems = check_pair(teacher, student).problems()
    if problems:
        raise ConfigError(problems[0])


def check_dataset_fits(bundle, model) -> None:
    """``DataError`` unless the dataset ``bundle`` can score ``model``: the same task, and its labels (case aside,
    the same order)."""
    if bundle.task != model.task:
        raise DataError(f"{bundle.name} is a {bundle.task} dataset, but the models are {model.task} models")
    if [label.lower() for label in bundle.labels] != [label.lower() for label in model.labels]:
        raise DataError(f"the labels of {bundle.name} ({_short(bundle.labels)}) differ from the models' "
                        f"({_short(model.labels)})")


def _normalisation(model) -> tuple:
    return tuple(model.processor.mean), tuple(model.processor.std)


def _short(values, limit: int = 6) -> str:
    return ", ".join(values[:limit]) + (", …" if len(values) > limit else "")
