"""Everything the dashboard does that is not drawing: the folders a page served to a lab may read
(``$REKD_ALLOWED_ROOTS``) and uploads kept off the server's disk, finding checkpoints and describing them,
reading the user's inputs (typed reviews, uploaded files, bundled examples, dataset samples),
running a teacher and a student on them, scoring their rationales against human evidence (ERASER),
ranking a sample by disagreement or plausibility, evaluating the pair
over rationale ratios, and reading the results file of the ratios view.

No Streamlit here: ``app.py`` wraps these functions in widgets and caches, and the tests call them
directly. Every problem the user can fix raises a ``RekdError`` with one clear line.
"""
from __future__ import annotations

import csv
import io
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import pandas as pd
from PIL import Image, ImageOps

from dashboard.render import UNDEFINED, saw_no_features
from rekd_core import results
from rekd_core.checkpoint import load_checkpoint, read_config, read_metrics
from rekd_core.compatibility import PairFit
from rekd_core.compatibility import check_pair as fit_of
from rekd_core.config import DEFAULT_SEED, load_config_file
from rekd_core.errors import CheckpointError, ConfigError, DataError, RekdError, first_line
from rekd_core.explain import Explanation, compare, explain
from rekd_core.inputs import decode_text, decoding_notice, read_image, resolve_device, to_rgb
from rekd_core.results import recipe_headline, run_family
from rekd_core.sweep import recipe_outputs
from rekd_core.words import word_plausibility

if TYPE_CHECKING:
    import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"

TASKS = {"text": "Movie reviews (text)", "vision": "Images (vision)"}
MODES = {"cls": "CLS", "re": "RE", "rekd": "REKD"}
TEXT_UPLOAD_TYPES = ("txt", "csv")
IMAGE_UPLOAD_TYPES = ("png", "jpg", "jpeg", "webp", "bmp")

MAX_REVIEW_CHARS = 50_000  # a review is cut here before tokenizing (a 256-piece model reads ~1,500)
MAX_CSV_REVIEWS = 1_000  # reviews read from one uploaded CSV file
MAX_SAMPLE = 2_000  # rows of a dataset sample (browser, live evaluation)
RATIO_STEP = 0.01  # the ratio slider's step: a trained ratio such as 0.125 lies between two of its values
# How an image is fitted to a model's square input. "squash" is what the models' own transform does.
FIT_MODES = {"squash": "squash: resized to the square, its aspect ratio changed",
             "centre-crop": "centre-crop: the middle square kept, the rest cut",
             "pad": "pad: black borders added to make it square, nothing cut"}

TEXT_COLUMNS = ("text", "review", "content", "sentence", "body")
LABEL_COLUMNS = ("label", "sentiment", "polarity", "class")


# ----------------------------------------------------------------------------------------------
# Paths and devices
# ----------------------------------------------------------------------------------------------


def checkpoints_root() -> Path:
    """Where checkpoints are looked for: ``$REKD_CHECKPOINTS``, else the repository's ``checkpoints/``."""
    value = os.environ.get("REKD_CHECKPOINTS", "").strip()
    return Path(value).expanduser() if value else REPO_ROOT / "checkpoints"


def default_recipe_path() -> Path:
    """The recipe of the shipped checkpoints: ``$REKD_RECIPE``, else the repository's configs/embedded.yaml."""
    value = os.environ.get("REKD_RECIPE", "").strip()
    return Path(value).expanduser() if value else REPO_ROOT / "configs" / "embedded.yaml"


def recipe_headlines(written: str | Path, what: str) -> dict[str, dict]:
    """The ``headline`` of the recipe at ``default_recipe_path()`` (group -> {"variant", "unnamed"}: which
    family of a group its shipped models are) when that recipe writes ``written``, its results file
    (``what`` "results") or its checkpoints root ("checkpoints"); {} otherwise, or when no readable
    recipe is there: then a group's runs without a variant are its headline. The recipe's relative paths
    are read from the repository root, where ``rekd sweep`` runs."""
    path = default_recipe_path()
    try:
        recipe = load_config_file(str(path), known=None) if path.is_file() else {}
        roots, results = recipe_outputs(recipe)
        headline = recipe_headline(recipe)
    except (ConfigError, TypeError):
        return {}
    mine = results if what == "results" else roots.shipped
    return headline if (REPO_ROOT / mine).resolve() == Path(written).expanduser().resolve() else {}


def recipe_mtime() -> float:
    """Modification time of the recipe (0 when absent): part of the cache keys of what it labels."""
    try:
        return default_recipe_path().stat().st_mtime
    except OSError:
        return 0.0


def default_results_path() -> Path:
    """The results file of the ratios view: ``$REKD_RESULTS``, else ``<checkpoints root>/results.csv``."""
    value = os.environ.get("REKD_RESULTS", "").strip()
    return Path(value).expanduser() if value else checkpoints_root() / "results.csv"


def pick_device(choice: str) -> tuple["torch.device", str | None]:
    """``(torch.device, warning or None)``: the device asked for, or the CPU when it is absent here (the
    dashboard keeps working and says so, where the CLI stops with ``resolve_device``'s error)."""
    import torch

    try:
        return resolve_device(choice), None
    except ConfigError as exc:
        return torch.device("cpu"), f"{exc}; running on the CPU instead"


def configure_torch_threads() -> int:
    """Set torch's CPU threads for interactive use: ``$REKD_DASHBOARD_THREADS``, else half the cores.

    One explanation is a batch of one, which gains little from many threads, while a thread per
    core stalls badly as soon as anything else runs (on a busy 2-core machine, 2 threads made one
    explanation 5 to 40 times slower than 1). Half the cores leaves room for the server and others.
    """
    import torch

    value = os.environ.get("REKD_DASHBOARD_THREADS", "").strip()
    threads = int(value) if value.isdigit() and int(value) > 0 else max(1, (os.cpu_count() or 2) // 2)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def device_description(device: "torch.device") -> str:
    """The device as the page shows it: the GPU's name, or the CPU with its torch thread count."""
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads != 1 else ''})"


# ----------------------------------------------------------------------------------------------
# Serving the page to several people: the folders it may read, and uploads kept off the disk
# ----------------------------------------------------------------------------------------------

ALLOWED_ROOTS_ENV = "REKD_ALLOWED_ROOTS"


def allowed_roots() -> list[Path] | None:
    """The folders ``$REKD_ALLOWED_ROOTS`` names (separated by ``os.pathsep``, as in ``PATH``), each with ``~``,
    symlinks and ``..`` resolved; None when it is unset or names none: then the page reads any path, as it
    should for one person on their own machine. Read on every call, so that the check never hides in a cache."""
    value = os.environ.get(ALLOWED_ROOTS_ENV, "")
    roots = [Path(part.strip()).expanduser().resolve() for part in value.split(os.pathsep) if part.strip()]
    return roots or None


def is_allowed_path(path: str | Path) -> bool:
    """Whether the page may read ``path``: always when ``allowed_roots()`` is None, else when ``path``, once
    ``~``, symlinks and ``..`` are resolved, lies inside one of the roots. Only the name is resolved (symlinks
    followed): nothing is read from the path. An unresolvable path (a symlink loop, a NUL byte) is outside."""
    roots = allowed_roots()
    if roots is None:
        return True
    try:
        resolved = Path(str(path).strip()).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return any(resolved.is_relative_to(root) for root in roots)


def check_allowed_path(path: str | Path, what: str) -> None:
    """``ConfigError`` with one line when the page may not read ``path`` (``is_allowed_path``). ``what`` names
    the field ("This results file"). The line names the allowed roots, never the path: resolved, it would
    show where a symlink points. An empty path passes: it names nothing, and the caller says so."""
    if str(path).strip() and not is_allowed_path(path):
        roots = ", ".join(str(root) for root in allowed_roots() or [])
        raise ConfigError(f"{what} is outside the folders this server may read ({ALLOWED_ROOTS_ENV}: {roots}); "
                          "nothing was read from it")


def dataset_spec_path(spec: str | None) -> str:
    """The path of a dataset spec as ``rekd_core.data.load_dataset_spec`` reads it (``csv:DIR`` -> ``DIR``);
    "" for a spec that names none (``imdb``, ``cifar10``: the Hugging Face hub)."""
    _, _, raw = (spec or "").strip().partition(":")
    return raw.strip()


def check_dataset_allowed(spec: str) -> None:
    """``check_allowed_path`` on the path of a dataset spec (``dataset_spec_path``)."""
    check_allowed_path(dataset_spec_path(spec), "This dataset's path")


def keep_uploads_in_memory(max_upload_mb: float) -> None:
    """Make Streamlit's server keep every upload of up to ``max_upload_mb`` MB (its ``server.maxUploadSize``) in
    memory from the socket on. It parses an upload with Starlette, whose multipart parser spools a file of more
    than 1 MB into an anonymous temporary file in the system's temporary folder before Streamlit reads it into
    memory, where every upload is kept anyway (and where it is dropped when its session ends). Raising the
    parser's spool size above the upload limit means that no byte of an upload is written to the server's disk.
    Process-wide and idempotent; never lowers the spool size."""
    from starlette.formparsers import MultiPartParser

    # A multipart body is a little larger than the file it carries: 1 MB of room for its framing.
    limit = int((float(max_upload_mb) + 1) * 1024 * 1024)
    if MultiPartParser.spool_max_size < limit:
        MultiPartParser.spool_max_size = limit



# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


@dataclass
class InputItem:
    """One thing to explain: a review (``str``) or an RGB image."""

    name: str
    kind: str  # "text" | "image"
    value: object  # str or PIL.Image.Image
    label: str | None = None  # the true label, when known
    source: str = ""
    notice: str | None = None  # e.g. "the review was cut at 50,000 characters"
    evidence: list[tuple[int, int]] | None = None  # human rationale: (start, end) spans over text.split() words

    @property
    def task(self) -> str:
        return "text" if self.kind == "text" else "vision"

    def preview(self, width: int = 90) -> str:
        if self.kind != "text":
            return f"{self.name} ({self.value.width}x{self.value.height})"
        text = " ".join(str(self.value).split())
        return text if len(text) <= width else text[: width - 1] + "…"


def prepare_review(text: str, name: str = "review", source: str = "typed", label: str | None = None) -> InputItem:
    """A review ready to explain: non-empty, cut at ``MAX_REVIEW_CHARS`` with a notice."""
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{name}: the review is empty; there is nothing to explain")
    notice = None
    if len(text) > MAX_REVIEW_CHARS:
        notice = (f"{name}: the review is {len(text):,} characters long; only its first {MAX_REVIEW_CHARS:,} "
                  "characters are used (the models read far fewer word pieces than that anyway).")
        text = text[:MAX_REVIEW_CHARS]
    return InputItem(name, "text", text, label=label, source=source, notice=notice)


def parse_text_upload(name: str, data: bytes) -> list[InputItem]:
    """A ``.txt`` file is one review; a ``.csv`` file holds one review per row in a column named
    text/review/content (or its only column), with an optional label/sentiment column. A file that is
    not UTF-8 is decoded in the encoding that fits it best, and its first item's notice names it."""
    text, encoding = decode_text(data, name)
    decoded = decoding_notice(name, encoding)
    if not name.lower().endswith(".csv"):
        item = prepare_review(text, name, source=name)
        item.notice = "; ".join(filter(None, [decoded, item.notice])) or None
        return [item]
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, on_bad_lines="error")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, ValueError) as exc:
        raise DataError(f"{name}: not a readable CSV file ({first_line(exc)})") from exc
    columns = {str(c).strip().lower(): c for c in frame.columns}
    text_column = next((columns[c] for c in TEXT_COLUMNS if c in columns), None)
    if text_column is None:
        if len(frame.columns) != 1:
            raise DataError(f"{name}: no review column: name one of {', '.join(TEXT_COLUMNS)} "
                            f"(columns found: {', '.join(map(str, frame.columns))})")
        text_column = frame.columns[0]
    label_column = next((columns[c] for c in LABEL_COLUMNS if c in columns), None)
    items: list[InputItem] = []
    skipped = 0
    texts = frame[text_column].tolist()
    labels = frame[label_column].tolist() if label_column is not None else [""] * len(texts)
    for number, (review, label) in enumerate(zip(texts, labels), start=1):
        if not str(review).strip():
            skipped += 1
            continue
        if len(items) >= MAX_CSV_REVIEWS:
            break
        items.append(prepare_review(str(review), f"{name} row {number}", source=name, label=str(label).strip() or None))
    if not items:
        raise DataError(f"{name}: no review in the file (every row of column {text_column!r} is empty)")
    notes = []
    if len(frame) > MAX_CSV_REVIEWS:
        notes.append(f"only its first {MAX_CSV_REVIEWS:,} reviews are read")
    if skipped:
        notes.append(f"{skipped} empty row(s) skipped")
    summary = f"{name}: " + ", ".join(notes) if notes else None
    items[0].notice = "; ".join(filter(None, [decoded, items[0].notice, summary])) or None
    return items


def fit_image(image: Image.Image, size: int, mode: str = "squash") -> Image.Image:
    """``image`` as the ``size`` x ``size`` square a vision model reads (see ``FIT_MODES``). Resampled
    bilinearly, as the models' own transform (torchvision's Resize) does, so that "squash" gives them
    exactly what they were trained on; the result is also what the overlays are drawn on."""
    check_fit(mode)
    square = (int(size), int(size))
    if mode == "squash":
        return image.resize(square, Image.BILINEAR)
    if mode == "centre-crop":
        return ImageOps.fit(image, square, method=Image.BILINEAR, centering=(0.5, 0.5))
    return ImageOps.pad(image, square, method=Image.BILINEAR, color=(0, 0, 0), centering=(0.5, 0.5))


def check_fit(mode: str) -> None:
    """``ConfigError`` unless ``mode`` is one of ``FIT_MODES``."""
    if mode not in FIT_MODES:
        raise ConfigError(f"unknown image fit {mode!r}: pick one of {', '.join(FIT_MODES)}")


def cell_boxes(width: int, height: int, grid_side: int, mode: str = "squash") -> list[tuple[float, ...]]:
    """Where each cell of a model's ``grid_side`` x ``grid_side`` grid lies on the original ``width`` x ``height``
    image that ``fit_image`` fitted with ``mode``: (left, top, right, bottom) in the original's pixels, row-major,
    clipped to the image (a cell of a padded border is empty; a cropped-off strip is in no cell)."""
    check_fit(mode)
    if mode == "squash":
        cell_w, cell_h, left, top = width / grid_side, height / grid_side, 0.0, 0.0
    else:  # the square the model reads, centred on the image: cropped inside it, or padded around it
        side = min(width, height) if mode == "centre-crop" else max(width, height)
        cell_w = cell_h = side / grid_side
        left, top = (width - side) / 2, (height - side) / 2

    def clip(value: float, limit: int) -> float:
        return min(max(value, 0.0), float(limit))

    return [(clip(left + c * cell_w, width), clip(top + r * cell_h, height),
             clip(left + (c + 1) * cell_w, width), clip(top + (r + 1) * cell_h, height))
            for r in range(grid_side) for c in range(grid_side)]


def describe_fit(width: int, height: int, size: int, mode: str = "squash") -> str:
    """One line saying how a ``width`` x ``height`` image becomes the model's ``size`` square."""
    side = min(width, height)
    if width == height:
        how = "already square: resized" if (width, height) != (size, size) else "already the model's size: unchanged"
    elif mode == "squash":
        how = f"squashed (its {width}:{height} shape is distorted to 1:1)"
    elif mode == "centre-crop":
        cut, side_cut = 100 * (1 - side / max(width, height)), "width" if width > height else "height"
        how = f"centre-cropped to {side}x{side} ({cut:.0f}% of its {side_cut} cut), then resized"
    else:
        how = f"padded to {max(width, height)}x{max(width, height)} with black borders, then resized"
    return f"{width}x{height} -> {size}x{size}: {how}."


def small_image_warning(name: str, width: int, height: int, size: int) -> str | None:
    """A warning when an image is smaller than the model's ``size`` square (it is enlarged: the model sees
    blurred pixels it was not trained on); None otherwise."""
    if width >= size and height >= size:
        return None
    return (f"{name} is only {width}x{height} pixels, smaller than the {size}x{size} images the model reads: it is "
            "enlarged, so the model sees a blur of a few pixels and its explanation says little.")


def parse_image_upload(name: str, data: bytes) -> InputItem:
    """An uploaded image as an input item, read by ``rekd_core.inputs.read_image`` as ``rekd explain --image``
    reads a file: EXIF rotation applied, transparency on white, at most 40 megapixels, shrunk to 2048 pixels."""
    return InputItem(name, "image", read_image(data, name), source=name)


def load_examples(task: str) -> list[InputItem]:
    """The bundled examples of a task (``examples/index.csv``), with their true labels."""
    items = []
    with open(EXAMPLES_DIR / "index.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["task"] != task:
                continue
            path = EXAMPLES_DIR / row["file"]
            if task == "text":
                item = prepare_review(decode_text(path.read_bytes(), row["file"])[0], row["title"], source="example",
                                      label=row["label"])
            else:
                item = InputItem(row["title"], "image", read_image(path, row["file"]),
                                 label=row["label"], source="example")
            items.append(item)
    return items


def sample_split(bundle, split_name: str, n: int, seed: int = DEFAULT_SEED):
    """A seeded stratified sample of ``n`` examples (a ``RawSplit``) of one split of a ``DatasetBundle``;
    ``dev`` is carved from train (20%, as in training) when the source ships none."""
    from rekd_core.data import pick_split

    return pick_split(bundle, split_name, seed, limit=max(1, min(int(n), MAX_SAMPLE)))


def dataset_items(bundle, split_name: str, n: int, seed: int = DEFAULT_SEED) -> list[InputItem]:
    """``sample_split`` as input items, with their true labels and, where the dataset has them (ERASER),
    their human evidence spans."""
    split = sample_split(bundle, split_name, n, seed)
    items = []
    for i in range(len(split)):
        label = bundle.labels[split.targets[i]]
        name = f"{bundle.name} {split_name} #{i + 1}"
        if bundle.task == "text":
            item = prepare_review(split.inputs[i], name, source=bundle.name, label=label)
            if split.evidence is not None:
                item.evidence = [(int(start), int(end)) for start, end in split.evidence[i]]
            items.append(item)
        else:
            items.append(InputItem(name, "image", to_rgb(split.inputs[i]), label=label, source=bundle.name))
    return items


def load_dataset(spec: str):
    """``load_dataset_spec`` with every failure as a ``DataError``."""
    from rekd_core.data import load_dataset_spec

    spec = spec.strip()
    if not spec:
        raise DataError("no dataset given: type a spec such as csv:DIR, imagefolder:DIR, aclimdb:PATH or cifar10:PATH")
    try:
        return load_dataset_spec(spec)
    except RekdError:
        raise
    except Exception as exc:
        raise DataError(f"dataset {spec!r}: cannot be read ({type(exc).__name__}: {first_line(exc)})") from exc


# ----------------------------------------------------------------------------------------------
# Running the models
# ----------------------------------------------------------------------------------------------


@dataclass
class PairResult:
    teacher: Explanation
    student: Explanation
    comparison: dict | None  # compare_selections(); None when the pair has no agreement view
    seconds: float
    views: dict[str, Image.Image] = field(default_factory=dict)  # images: what each model read ("teacher", "student")
    # Against the input's human evidence, per role ("teacher", "student"): word_plausibility(); {} without evidence.
    plausibility: dict[str, dict | None] = field(default_factory=dict)


def compare_selections(t_exp: Explanation, s_exp: Explanation) -> dict:
    """``rekd_core.explain.compare``, with mask IoU and F1 None (undefined) when neither model selected
    anything: two empty selections do not agree perfectly, there is nothing to compare."""
    comparison = compare(t_exp, s_exp)
    if not t_exp.selected and not s_exp.selected:
        comparison["iou"] = comparison["f1"] = None
    return comparison


def explain_pair(teacher, student, item: InputItem, ratio: float | None, agreement: bool = True,
                 fit: str = "squash") -> PairResult:
    """Both models' explanations of one input at the rationale ratio ``ratio`` (None: each model's own);
    an image is first fitted to each model's square (``fit_image``), and ``views`` holds what each read."""
    want = "text" if teacher.task == "text" else "image"
    if item.kind != want:
        raise DataError(f"{item.name}: a {teacher.task} model cannot read "
                        f"{'a review' if item.kind == 'text' else 'an image'}")
    started = time.perf_counter()
    views = {}
    if item.kind == "image":
        views = {role: fit_image(item.value, model.processor.image_size, fit)
                 for role, model in (("teacher", teacher), ("student", student))}
    t_exp = explain(teacher, [views.get("teacher", item.value)], ratio=ratio)[0]
    s_exp = explain(student, [views.get("student", item.value)], ratio=ratio)[0]
    comparison = compare_selections(t_exp, s_exp) if agreement and t_exp.num_features == s_exp.num_features else None
    scores = {}
    if item.evidence is not None and item.kind == "text":
        scores = {role: word_plausibility(item.value, exp, item.evidence)
                  for role, exp in (("teacher", t_exp), ("student", s_exp))}
    return PairResult(t_exp, s_exp, comparison, time.perf_counter() - started, views, scores)


ProgressFn = Callable[[float, str], None]


def rank_by_disagreement(teacher, student, items: Sequence[InputItem], ratio: float | None, agreement: bool = True,
                         progress: ProgressFn | None = None, batch_size: int = 16) -> pd.DataFrame:
    """Explain every item with both models; one row per item, most disagreeing first: rows whose
    predictions differ, then by lowest mask IoU, then by the largest gap in the teacher label's
    probability. ``row`` indexes ``items``. A model that selected nothing has no prediction ("—",
    probability NaN, ``agree`` None), and two empty selections have no mask IoU (NaN). When any item has
    human evidence, ``PLAUSIBILITY_COLUMNS`` hold each model's ``word_plausibility`` F1 and the student's
    minus the teacher's (NaN where undefined); ``sort_ranking`` re-orders by them."""
    values = [item.value for item in items]
    t_exps: list[Explanation] = []
    s_exps: list[Explanation] = []
    total = max(1, 2 * len(values))
    for start in range(0, len(values), batch_size):
        chunk = values[start:start + batch_size]
        t_exps += explain(teacher, chunk, ratio=ratio, batch_size=batch_size)
        if progress:
            progress((len(t_exps) + len(s_exps)) / total, f"teacher: {len(t_exps)}/{len(values)}")
        s_exps += explain(student, chunk, ratio=ratio, batch_size=batch_size)
        if progress:
            progress((len(t_exps) + len(s_exps)) / total, f"student: {len(s_exps)}/{len(values)}")
    human = any(item.evidence is not None for item in items)
    rows = []
    for i, (item, t_exp, s_exp) in enumerate(zip(items, t_exps, s_exps)):
        cmp = compare_selections(t_exp, s_exp) if agreement and t_exp.num_features == s_exp.num_features else None
        iou = cmp["iou"] if cmp and cmp["iou"] is not None else float("nan")
        blind = saw_no_features(t_exp) or saw_no_features(s_exp)  # no prediction to compare
        labels_agree = None if blind else t_exp.label.lower() == s_exp.label.lower()
        gap = 0.0 if blind else abs(t_exp.probs.get(t_exp.label, 0.0)
                                     - s_exp.probs.get(t_exp.label, s_exp.probs.get(s_exp.label, 0.0)))
        (t_label, t_p), (s_label, s_p) = _verdict(t_exp), _verdict(s_exp)
        rows.append({"row": i, "input": item.preview(70), "true label": item.label or "",
                     "teacher": t_label, "p(teacher)": t_p, "student": s_label, "p(student)": s_p,
                     "agree": labels_agree, "teacher_mask_iou": iou,
                     "disagreement": (1.0 if labels_agree is False else 0.0) + (0.0 if iou != iou else 1.0 - iou)
                                     + 0.1 * gap})
        if human:
            for role, exp in (("teacher", t_exp), ("student", s_exp)):
                scores = (word_plausibility(item.value, exp, item.evidence)
                          if item.evidence is not None and item.kind == "text" else None)
                f1 = scores["f1"] if scores else None
                rows[-1][f"{role}_plausibility_f1"] = float("nan") if f1 is None else f1
            rows[-1]["plausibility_f1_gap"] = rows[-1]["student_plausibility_f1"] - rows[-1]["teacher_plausibility_f1"]
    columns = ["row", "input", "true label", "teacher", "p(teacher)", "student", "p(student)", "agree",
               "teacher_mask_iou"]
    if human:
        columns += list(PLAUSIBILITY_COLUMNS)
    frame = pd.DataFrame(rows, columns=columns + ["disagreement"])
    return sort_ranking(frame, "disagreement")


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
    """A ranking (``rank_by_disagreement``) re-ordered by one of ``RANKING_SORTS``, ties in sample order;
    rows without a score (NaN: no human word read, or no rationale) go last. ``DataError`` for an order
    the ranking does not support."""
    if sort not in RANKING_SORTS:
        raise DataError(f"unknown order {sort!r}: pick one of {', '.join(RANKING_SORTS)}")
    column, highest_first = RANKING_SORTS[sort]
    if column not in frame.columns:
        raise DataError(f"cannot sort by {sort}: this sample has no human evidence (rank an ERASER dataset, "
                        "eraser-movies:DIR)")
    return frame.sort_values([column, "row"], ascending=[not highest_first, True], kind="stable",
                             na_position="last").reset_index(drop=True)


def _verdict(exp: Explanation) -> tuple[str, float]:
    """(label, probability) of a prediction; ("—", NaN) for a model that saw no feature: it has none."""
    return (UNDEFINED, float("nan")) if saw_no_features(exp) else (exp.label, exp.probs[exp.label])


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
            rows.append({"model": role, "mode": MODES.get(model.config["mode"], model.config["mode"]),
                         "backbone": str(model.config["backbone"].get("source", "")), "ratio": ratio,
                         "accuracy": metrics["accuracy"], "f1": metrics.get("f1", float("nan")),
                         "achieved_ratio": metrics.get("ratio", 1.0),
                         "teacher_mask_iou": metrics.get("teacher_mask_iou", float("nan")),
                         "teacher_agreement": metrics.get("teacher_agreement", float("nan")), "n": metrics["n"]})
    return LiveEvaluation(pd.DataFrame(rows), confusion, {role: list(m.labels) for role, m in models.items()})


# ----------------------------------------------------------------------------------------------
# The results file (ratios view)
# ----------------------------------------------------------------------------------------------

RESULT_COLUMNS = ("task", "role", "mode", "backbone", "ratio", "seed", "accuracy", "f1", "achieved_ratio",
                  "teacher_agreement", "wall_time_s")
REQUIRED_RESULT_COLUMNS = ("mode", "ratio", "accuracy")
# The metrics the results table aggregates (names of rekd_core.metric_info.METRICS)
RESULT_METRICS = ("accuracy", "f1", "achieved_ratio", "teacher_agreement", "teacher_mask_iou", "sufficiency",
                  "comprehensiveness", "plausibility_f1")
TASK_ALIASES = {"text": ("text", "imdb", "movie", "review", "aclimdb", "eraser", "sst"),
                "vision": ("vision", "image", "cifar", "imagenet", "mnist")}


def load_results(path: str | Path, headlines: dict[str, dict] | None = None, readings: bool = False) -> pd.DataFrame:
    """The results file (``rekd_core.results.load_results``: older layouts filled in) as the ratios view
    plots it: one row per trained run (``readings``: the ``read_at`` rows instead), ``mode`` and ``role``
    lower-cased, an empty task read as "all" and an empty role as "model". Column ``series_family`` names a
    run's family when it is not its group's headline (``headlines``, see ``recipe_headlines``, for rows that
    do not record it), and a model trained over a range of ratios; the role names it too (``student
    (example-cost)``), so that it is plotted as a series of its own. Rows without an accuracy are dropped.
    ``DataError`` when the file is missing, empty or lacks mode/ratio/accuracy."""
    path = Path(str(path).strip()).expanduser()
    frame = results.load_results(path, headlines)
    missing = [c for c in REQUIRED_RESULT_COLUMNS if c not in frame.attrs["file_columns"]]
    if missing:
        raise DataError(f"{path}: the results file lacks column(s) {', '.join(missing)} "
                        f"(expected: {', '.join(RESULT_COLUMNS)})")
    frame = frame[(frame.source == results.READ_AT) == readings].copy()
    for column, default in (("task", "all"), ("role", "model")):
        frame[column] = frame[column].str.strip().replace("", default)
    frame["mode"] = frame["mode"].str.strip().str.lower()
    frame["role"] = frame["role"].str.lower()
    trained_over = ("ratio range " + frame.ratio_range).where(frame.ratio_range != "", "")
    shown = frame.family.where(~frame.headline, "")
    both = (shown != "") & (trained_over != "")
    frame["series_family"] = (shown + ", " + trained_over).where(both, shown + trained_over)
    # A family other than the headline is its own series, not more seeds of the headline one.
    frame["role"] = frame["role"].where(frame.series_family == "", frame["role"] + " (" + frame.series_family + ")")
    frame = frame.dropna(subset=["accuracy"]).reset_index(drop=True)
    if frame.empty:
        raise DataError(f"{path}: the results file has no row with an accuracy")
    return frame


def series_family(run_name: str, headlines: dict[str, dict]) -> str:
    """The family a run (or a checkpoint of that name) is plotted as, apart from its group's headline: ""
    for the headline's runs, else the family's name (``rekd_core.results.name_columns``)."""
    family, is_headline = run_family(run_name, headlines)
    return "" if is_headline else family


def base_role(role: str) -> str:
    """The role without its recipe variant: ``student (example-cost)`` -> ``student``."""
    return role.partition(" (")[0]


def results_task_for(values: Sequence[str], task: str) -> str | None:
    """The value of the results file's task column that belongs to the dashboard task (None if none)."""
    for value in values:
        if any(alias in str(value).lower() for alias in TASK_ALIASES.get(task, ())):
            return value
    return None


def ratio_range_comparison(path: str | Path, task: str | None = None,
                           headlines: dict[str, dict] | None = None) -> pd.DataFrame:
    """The comparison of the Ratios tab for models read at many ratios (``rekd_core.results.range_comparison``):
    accuracy against the ratio read at of each model trained over a range of ratios, of the fixed-ratio models
    of its kind at their own ratios, and of fixed-ratio models read away from theirs; only the rows of the
    results file's task value ``task`` when given. Empty while nothing was read."""
    frame = results.load_results(Path(str(path).strip()).expanduser(), headlines)
    comparison = results.range_comparison(frame)
    return comparison if task is None else comparison[comparison.task == task].reset_index(drop=True)


def aggregate_results(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and number of seeds per (task, role, mode, backbone, ratio)."""
    keys = ["task", "role", "mode", "backbone", "ratio"]
    metrics = [c for c in RESULT_METRICS if c in frame.columns]
    grouped = frame.groupby(keys, dropna=False)
    out = grouped[metrics].agg(["mean", "std"])
    out.columns = [f"{metric}_{stat}" for metric, stat in out.columns]
    out["runs"] = grouped.size()
    return out.reset_index()


# ----------------------------------------------------------------------------------------------


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def local_dataset_spec(spec: str | None) -> str:
    """``spec`` when it names a dataset on this machine that the page may read (``prefix:PATH`` with an
    existing, allowed path), else "" (hub specs such as ``imdb`` would need the network)."""
    raw = dataset_spec_path(spec)
    return spec if raw and is_allowed_path(raw) and Path(raw).expanduser().exists() else ""


def default_dataset_spec(student_path: str) -> str:
    """The dataset the student at ``student_path`` was trained on, as the dataset fields' default, when the page
    may read both the checkpoint and the dataset and the dataset is on this machine; else ""."""
    if not student_path or not is_allowed_path(student_path):
        return ""
    try:
        return local_dataset_spec(describe_checkpoint(student_path).dataset)
    except RekdError:
        return ""
