"""The models of the page: checkpoints found under the checkpoints folder and described for their cards (no weights
loaded), the pair the page opens on, the ratios each model was trained at (and the warning when it is read away
from them), loading a model, and what of a teacher and a student can be shown together. No Streamlit here.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image

from dashboard.environment import is_allowed_path, local_dataset_spec
from rekd_core.checkpoint import load_checkpoint, read_config, read_metrics
from rekd_core.compatibility import PairFit
from rekd_core.compatibility import check_pair as fit_of
from rekd_core.errors import CheckpointError, RekdError, first_line
from rekd_core.explain import explain
from rekd_core.results import run_family

TASKS = {"text": "Movie reviews (text)", "vision": "Images (vision)"}
MODES = {"cls": "CLS", "re": "RE", "rekd": "REKD"}
ROLES = ("teacher", "student")
RATIO_STEP = 0.01  # the ratio slider's step: a trained ratio such as 0.125 lies between two of its values


@dataclass
class CheckpointInfo:
    """What a model card shows, read from ``config.json`` and ``metrics.json`` (no weights loaded)."""

    path: str
    name: str
    task: str
    mode: str
    ratio: float
    labels: list[str]
    backbone: str
    parameters: int | None = None  # generator + predictor
    parameters_detail: dict = field(default_factory=dict)
    test_accuracy: float | None = None
    test_ratio: float | None = None
    dataset: str = ""
    teacher: str | None = None
    status: str = ""
    grid: dict = field(default_factory=dict)
    ratio_range: tuple[float, float] | None = None  # the ratios it was trained over (None: CLS, reads all)
    generator_embeddings: str = ""  # text RE/REKD: "frozen" (pretrained) or "trained" word embeddings
    masking: str = ""  # RE/REKD: how the predictor reads the selection, "zero" (also older checkpoints) or "drop"
    warnings: list[str] = field(default_factory=list)  # a degenerate generator, from its test metrics

    @property
    def mode_name(self) -> str:
        return MODES.get(self.mode, self.mode.upper())

    @property
    def option_label(self) -> str:
        accuracy = f", test acc {self.test_accuracy:.3f}" if self.test_accuracy is not None else ""
        return f"{self.name} ({self.mode_name}, {self.backbone}{accuracy})"


def describe_checkpoint(path: str | Path, root: str | Path | None = None) -> CheckpointInfo:
    """The model card of the checkpoint directory ``path``; ``CheckpointError`` if it is not one."""
    path = Path(path).expanduser()
    config = read_config(path)
    metrics = read_metrics(path)
    test = metrics.get("test", {}) if isinstance(metrics.get("test"), dict) else {}
    params = config.get("parameters") if isinstance(config.get("parameters"), dict) else {}
    total = sum(v for v in params.values() if isinstance(v, (int, float))) if params else None
    backbone = config.get("backbone", {})
    backbone_name = ((backbone.get("source") or backbone.get("name") or backbone.get("type", "?"))
                     if isinstance(backbone, dict) else str(backbone))
    teacher = config.get("teacher")
    name = str(path)
    if root is not None:
        try:
            name = str(path.resolve().relative_to(Path(root).resolve())) or path.name
        except ValueError:
            name = str(path)
    return CheckpointInfo(
        path=str(path), name=name, task=str(config["task"]), mode=str(config["mode"]),
        ratio=float(config["ratio"]), labels=[str(label) for label in config["labels"]], backbone=str(backbone_name),
        parameters=int(total) if total is not None else None, parameters_detail=params,
        test_accuracy=_number(test.get("accuracy")), test_ratio=_number(test.get("ratio")),
        dataset=str(config.get("dataset", "")),
        teacher=str(teacher.get("path")) if isinstance(teacher, dict) and teacher.get("path") else None,
        status=str(config.get("status", "")), grid=config.get("feature_grid") or {},
        ratio_range=trained_range(config), generator_embeddings=str(config.get("generator_embeddings", "")),
        masking="" if str(config["mode"]) == "cls" else str(config.get("masking", "zero")),
        warnings=[str(w) for w in test.get("warnings", []) if isinstance(w, str)])


def trained_range(config: dict) -> tuple[float, float] | None:
    """The rationale ratios a model was trained at, as (lowest, highest): its config's ``ratio_range``
    [lo, hi] when it has a valid one (a model trained over several ratios), else its single ``ratio``;
    None for a CLS model, which reads every feature at any ratio."""
    if str(config.get("mode", "")).lower() == "cls":
        return None
    span = config.get("ratio_range")
    if isinstance(span, (list, tuple)) and len(span) == 2:
        low, high = (_number(v) for v in span)
        if low is not None and high is not None and 0 < low <= high <= 1:
            return low, high
    ratio = _number(config.get("ratio"))
    return (ratio, ratio) if ratio is not None else None


def outside_trained_range(ratio: float, span: tuple[float, float] | None) -> bool:
    """Whether ``ratio`` is away from the ratios a model was trained at (by more than half a slider step,
    so that a model trained at 0.125 is in range at 0.12 and 0.13). Never for a CLS model (``span`` None)."""
    if span is None:
        return False
    slack = RATIO_STEP / 2 + 1e-9
    return not span[0] - slack <= ratio <= span[1] + slack


def range_warning(role: str, ratio: float, span: tuple[float, float] | None) -> str | None:
    """One line saying that the ``role`` model runs outside its trained ratios, or None when it does not."""
    if not outside_trained_range(ratio, span):
        return None
    trained = f"at {span[0]:g}" if span[0] == span[1] else f"over {span[0]:g} to {span[1]:g}"
    return (f"Out of range: the {role} was trained {trained}, not at {ratio:g}. It never learned to predict from "
            f"{'fewer' if ratio < span[0] else 'more'} features than that, so its prediction and confidence here "
            "are untested and may be wrong however sure they look.")


def discover_checkpoints(root: str | Path) -> tuple[list[CheckpointInfo], list[str]]:
    """Every checkpoint directory (one with a ``config.json``) under ``root``, recursively, and one
    line per directory that has a ``config.json`` but is not a readable rekd checkpoint."""
    root = Path(root).expanduser()
    found: list[CheckpointInfo] = []
    problems: list[str] = []
    if not root.is_dir():
        return found, problems
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # skips half-written .tmp dirs
        if "config.json" in filenames:
            dirnames[:] = []  # a checkpoint's own sub-folders (tokenizer/) hold no models
            try:
                found.append(describe_checkpoint(dirpath, root))
            except RekdError as exc:
                problems.append(str(exc))
    found.sort(key=lambda info: (info.task, info.name))
    return found, problems


def default_pair(infos: Sequence[CheckpointInfo], headlines: dict[str, dict] | None = None
                 ) -> tuple[int | None, int | None]:
    """Indices of a sensible default teacher and student among the checkpoints of one task.

    The teacher is a selecting model (not CLS), of the recipe's headline family (``headlines``, see
    ``recipe_headlines``; without them, a checkpoint that is no recipe variant), preferably named
    "teacher", preferably RE, the largest, and among equals one trained over a range of ratios (it holds
    wherever the slider goes); the student, among the others, preferably one distilled from
    (or scored against) that teacher, of the headline family, named "student", REKD, a selecting model,
    the smallest."""
    if not infos:
        return None, None
    size = lambda i: infos[i].parameters or 0  # noqa: E731
    name = lambda i: Path(infos[i].name).name.lower()  # noqa: E731
    headline = lambda i: run_family(infos[i].name, headlines or {})[1]  # noqa: E731
    teacher = max(range(len(infos)), key=lambda i: (infos[i].mode != "cls", headline(i), "teacher" in name(i),
                                                    infos[i].mode == "re", size(i), infos[i].ratio_range is not None))
    others = [i for i in range(len(infos)) if i != teacher] or [teacher]
    student = max(others, key=lambda i: (trained_against(infos[i], infos[teacher]), headline(i), "student" in name(i),
                                         infos[i].mode == "rekd", infos[i].mode != "cls", -size(i)))
    return teacher, student


def trained_against(student: CheckpointInfo, teacher: CheckpointInfo) -> bool:
    """Whether ``student`` records ``teacher`` as the teacher it was distilled from (or scored against).
    A student records its teacher's path as it was when it trained: under another root (``runs/``)
    when both were shipped later, so the teacher's name under its root matching the end counts too."""
    recorded = student.teacher
    return bool(recorded) and (recorded == teacher.path or recorded.endswith("/" + teacher.name))


def teacher_note(student: CheckpointInfo, infos: Sequence[CheckpointInfo]) -> str | None:
    """How a model card names the teacher ``student`` recorded: the checkpoint among ``infos`` that it
    is, or the recorded path with the remark that no such checkpoint was found; None if it has none."""
    if not student.teacher:
        return None
    found = next((info for info in infos if trained_against(student, info)), None)
    return f"{found.name} (found here)" if found else f"{student.teacher} (not among these checkpoints)"


def weights_mtime(path: str | Path) -> float:
    """Modification time of the checkpoint's weights (0 when absent): part of the model cache key."""
    try:
        return (Path(path).expanduser() / "model.safetensors").stat().st_mtime
    except OSError:
        return 0.0


# Streamlit starts a rerun's script while the interrupted one may still be running (fast reruns), so two sessions'
# threads can load models at once; transformers imports its model classes lazily, and two threads importing the
# same one can fail ("cannot import name 'AutoModel'": seen when switching tasks while the first pair loaded).
_LOADING = threading.Lock()


def load_model(path: str | Path, device="cpu"):
    """Load a checkpoint for inference (one at a time); every failure is a ``CheckpointError`` with one line."""
    path = Path(str(path).strip()).expanduser()
    if not str(path).strip() or str(path) == ".":
        raise CheckpointError("no checkpoint directory given")
    try:
        with _LOADING:
            return load_checkpoint(path, device)
    except RekdError:
        raise
    except Exception as exc:  # a broken file can fail deep inside torch, safetensors or tokenizers
        raise CheckpointError(f"{path}: cannot load this checkpoint ({type(exc).__name__}: {first_line(exc)})") from exc


def warm_up(model) -> None:
    """One throw-away explanation, so that the user's first one does not pay torch's first-call costs."""
    if model.task == "text":
        explain(model, ["warm up"])
    else:
        size = model.processor.image_size
        explain(model, [Image.new("RGB", (size, size))])


@dataclass
class PairCheck(PairFit):
    """What of a teacher and a student the page can show together (``rekd_core.compatibility.PairFit``), and the
    lines that say so: ``fatal`` when nothing can be compared, ``notes`` shown as warnings."""

    fatal: str | None = None
    notes: list[str] = field(default_factory=list)


def check_pair(teacher, student, task: str | None = None) -> PairCheck:
    """Tasks must match (and match the task picked); different label sets or feature grids, or a CLS
    model, still show each model's own explanation, without (all of) the agreement view."""
    for role, model in (("teacher", teacher), ("student", student)):
        if task is not None and model.task != task:
            return PairCheck(fatal=f"The {role} is a {model.task} model ({TASKS[model.task].lower()}), but the task "
                                   f"picked is {TASKS[task].lower()}: pick a {task} checkpoint.")
    check = PairCheck(**vars(fit_of(teacher, student)))
    if check.task:
        check.fatal = f"{_capital(check.task)}: pick two models of the same task."
        return check
    if check.labels:
        check.notes.append(f"{_capital(check.labels)}: each model's prediction is shown, but their agreement is not.")
    if check.grid:
        check.notes.append(f"{_capital(check.grid)}: their rationales cannot be compared feature by feature.")
    for role in check.cls_roles:
        check.notes.append(f"The {role} is a CLS model: it reads every feature, so it has no rationale to "
                           "compare; only the predictions are compared.")
    return check


def _capital(line: str) -> str:
    return line[:1].upper() + line[1:]



def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number



def default_dataset_spec(student_path: str) -> str:
    """The dataset the student at ``student_path`` was trained on, as the dataset fields' default, when the page
    may read both the checkpoint and the dataset and the dataset is on this machine; else ""."""
    if not student_path or not is_allowed_path(student_path):
        return ""
    try:
        return local_dataset_spec(describe_checkpoint(student_path).dataset)
    except RekdError:
        return ""
