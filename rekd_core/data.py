"""Dataset specs -> a `DatasetBundle` of raw splits; stratified seeded subsets and splits.

A *spec* names where a dataset comes from: ``imdb`` and ``cifar10`` fetch from the Hugging Face
hub, ``aclimdb:PATH`` or ``cifar10:PATH`` read the files as their authors distribute them,
``imagefolder:DIR``, ``csv:DIR`` and ``jsonl:DIR`` read a user's own data, and
``eraser-movies:DIR`` reads ERASER movie reviews with their human rationales.
Every spec gives the same thing: texts (``str``) or lazily loaded RGB ``PIL.Image`` inputs,
integer targets that index ``DatasetBundle.labels``, and, for ERASER, evidence spans.
Inputs stay raw here; turning them into model features is `processing`'s job.

Anything wrong with a spec or its files raises `DataError` with one line naming the spec or path.
"""

from __future__ import annotations

import csv
import json
import pickle
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import DataError, first_line
from .inputs import read_image

__all__ = [
    "RawSplit",
    "DatasetBundle",
    "load_dataset_spec",
    "stratified_split",
    "stratified_subset",
    "VALID_SPECS",
    "DEFAULT_SEED",
]

# How each spec prefix is written, for help texts and the unknown-spec error.
VALID_SPECS = (
    "imdb",
    "aclimdb:PATH",
    "cifar10[:PATH]",
    "cifar100[:PATH]",
    "cifar100-fine[:PATH]",
    "imagefolder:DIR",
    "csv:DIR",
    "jsonl:DIR",
    "eraser-movies:DIR",
)

POLARITY_LABELS = ["neg", "pos"]  # IMDB, aclImdb and ERASER movies share these, in this order

# The seed of a run (``TrainConfig.seed``, re-exported by config.py) and so of its splits and samples,
# unless one is given: defined here, the lowest module that draws with it.
DEFAULT_SEED = 2026


# --------------------------------------------------------------------------------------------
# Data containers
# --------------------------------------------------------------------------------------------


@dataclass
class RawSplit:
    """One split, inputs not yet featurised.

    ``inputs`` holds ``str`` (text) or lazily loaded RGB ``PIL.Image`` (vision) and supports
    ``len()`` and ``[i]``; ``targets[i]`` indexes ``DatasetBundle.labels``; ``evidence[i]`` (ERASER
    only) lists human rationale spans ``(start, end)`` over ``inputs[i].split()``, end exclusive.
    """

    inputs: Sequence
    targets: list[int]
    evidence: list[list[tuple[int, int]]] | None = None

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.targets):
            raise ValueError(f"RawSplit: {len(self.inputs)} inputs but {len(self.targets)} targets")
        if self.evidence is not None and len(self.evidence) != len(self.targets):
            raise ValueError(f"RawSplit: {len(self.evidence)} evidence lists for {len(self.targets)} examples")

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, indices: Sequence[int]) -> RawSplit:
        """The examples at ``indices``, in that order; lazy inputs stay lazy, evidence stays aligned."""
        indices = [int(i) for i in indices]
        if isinstance(self.inputs, list):
            inputs: Sequence = [self.inputs[i] for i in indices]
        else:
            inputs = _SubsetView(self.inputs, indices)
        evidence = None if self.evidence is None else [self.evidence[i] for i in indices]
        return RawSplit(inputs, [self.targets[i] for i in indices], evidence)


@dataclass
class DatasetBundle:
    """A whole dataset: its task, class names and raw splits (``dev`` only when the source ships one)."""

    task: str  # "text" | "vision"
    labels: list[str]
    train: RawSplit
    test: RawSplit
    dev: RawSplit | None = None
    name: str = ""  # the spec it came from

    @property
    def num_labels(self) -> int:
        """How many classes there are (``len(labels)``)."""
        return len(self.labels)


# --------------------------------------------------------------------------------------------
# Lazy input sequences: vision inputs are decoded only when indexed, so that loading a spec is
# cheap and a 50,000-image split never sits in memory as PIL images.
# --------------------------------------------------------------------------------------------


class _LazySequence(Sequence):
    """A read-only sequence whose items are produced on access by ``_load(i)``."""

    def __len__(self) -> int:
        raise NotImplementedError

    def _load(self, index: int) -> Any:
        raise NotImplementedError

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return _SubsetView(self, range(len(self))[index])
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} inputs")
        return self._load(index)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {len(self)} inputs>"


class _SubsetView(_LazySequence):
    """The items of ``base`` at ``indices`` (a view: nothing is loaded until indexed)."""

    def __init__(self, base: Sequence, indices: Sequence[int]) -> None:
        if isinstance(base, _SubsetView):  # collapse views of views into one level
            indices = [base.indices[i] for i in indices]
            base = base.base
        self.base = base
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, index: int) -> Any:
        return self.base[self.indices[index]]


class _ImageFiles(_LazySequence):
    """Image files opened on access and returned as RGB."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> Image.Image:
        # the pixels `rekd explain` and the dashboard give a model: EXIF rotation, transparency on white
        return read_image(self.paths[index], max_pixels=None, max_side=None)


class _CifarRows(_LazySequence):
    """Rows of a CIFAR pickle batch (3072 bytes: the R, G and B planes of 32x32) as RGB images."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def _load(self, index: int) -> Image.Image:
        pixels = np.ascontiguousarray(self.data[index].reshape(3, 32, 32).transpose(1, 2, 0))
        return Image.fromarray(pixels, mode="RGB")


class _HFImages(_LazySequence):
    """An image column of a Hugging Face dataset, decoded on access and returned as RGB."""

    def __init__(self, dataset: Any, column: str) -> None:
        self.dataset = dataset
        self.column = column

    def __len__(self) -> int:
        return len(self.dataset)

    def _load(self, index: int) -> Image.Image:
        return read_image(self.dataset[index][self.column], max_side=None)


# --------------------------------------------------------------------------------------------
# Spec parsing
# --------------------------------------------------------------------------------------------


def load_dataset_spec(spec: str) -> DatasetBundle:
    """Load the dataset a spec names (see `VALID_SPECS`) as a `DatasetBundle` whose name is the spec.

    Raises `DataError` for an unknown spec, a missing path or unreadable files.
    """
    prefix, has_path, raw_path = spec.strip().partition(":")
    prefix = prefix.lower()
    if prefix not in _LOADERS:
        raise DataError(f"unknown dataset spec {spec!r}; valid specs: {', '.join(VALID_SPECS)}")
    path_rule, loader = _LOADERS[prefix]
    if has_path and not raw_path.strip():
        raise DataError(f"dataset spec {spec!r} has an empty path after ':'")
    if path_rule == "required" and not has_path:
        raise DataError(f"dataset spec {spec!r} needs a path: {prefix}:PATH")
    if path_rule == "none" and has_path:
        raise DataError(f"dataset spec {spec!r} takes no path (for local IMDB files use aclimdb:PATH)")
    path = None
    if has_path:
        path = Path(raw_path.strip()).expanduser()
        if not path.exists():
            raise DataError(f"dataset spec {spec!r}: path not found: {path}")
    bundle = loader(spec, path)
    bundle.name = spec
    return bundle


# --------------------------------------------------------------------------------------------
# Hugging Face hub (online)
# --------------------------------------------------------------------------------------------


def _load_hf(spec: str, hub_name: str) -> Any:
    """``datasets.load_dataset(hub_name)``, with any failure (offline, unknown name) as a DataError."""
    import datasets  # imported here: it is slow to import and only the online specs need it

    try:
        return datasets.load_dataset(hub_name)
    except Exception as exc:  # network, hub and cache errors come in many types
        raise DataError(f"dataset spec {spec!r}: cannot load {hub_name!r} from the Hugging Face hub: "
                        f"{first_line(exc)}") from exc


def _load_imdb_hub(spec: str, path: Path | None) -> DatasetBundle:
    """IMDB from the Hugging Face hub: columns text, label (0 = neg, 1 = pos)."""
    hub = _load_hf(spec, "imdb")
    splits = {
        name: RawSplit(list(hub[name]["text"]), [int(t) for t in hub[name]["label"]]) for name in ("train", "test")
    }
    return DatasetBundle("text", list(POLARITY_LABELS), splits["train"], splits["test"])


# --------------------------------------------------------------------------------------------
# aclImdb (the Large Movie Review Dataset as distributed: a folder or its .tar.gz)
# --------------------------------------------------------------------------------------------

_ACLIMDB_FILE = re.compile(r"(?:^|/)(train|test)/(pos|neg)/([^/]+\.txt)$")


def _aclimdb_files(path: Path) -> Iterator[tuple[str, str, str, bytes]]:
    """Yield ``(split, polarity, file name, raw bytes)`` for every review under ``path``.

    ``path`` is the tarball (read in one streaming pass, since random access into a 50,000-member
    gzip stream is slow), the ``aclImdb`` folder, or a folder holding ``aclImdb/``.
    """
    if path.is_file():
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                match = _ACLIMDB_FILE.search(member.name)
                if match and member.isfile():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        yield match.group(1), match.group(2), match.group(3), handle.read()
        return
    root = path / "aclImdb" if (path / "aclImdb").is_dir() else path
    for split in ("train", "test"):
        for polarity in POLARITY_LABELS:
            for file in sorted((root / split / polarity).glob("*.txt")):
                yield split, polarity, file.name, file.read_bytes()


def _load_aclimdb(spec: str, path: Path | None) -> DatasetBundle:
    """aclImdb reviews; examples sorted by ``<polarity>/<file name>`` so the order never depends on the source."""
    assert path is not None
    examples: dict[str, list[tuple[str, str, int]]] = {"train": [], "test": []}
    try:
        for split, polarity, name, raw in _aclimdb_files(path):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}: {split}/{polarity}/{name} is not UTF-8 text") from exc
            examples[split].append((f"{polarity}/{name}", text, POLARITY_LABELS.index(polarity)))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"cannot read aclImdb archive {path}: {exc}") from exc
    splits = {}
    for split, rows in examples.items():
        if not rows:
            raise DataError(f"{path}: no aclImdb reviews found under {split}/pos or {split}/neg")
        rows.sort(key=lambda row: row[0])
        splits[split] = RawSplit([text for _, text, _ in rows], [target for _, _, target in rows])
    return DatasetBundle("text", list(POLARITY_LABELS), splits["train"], splits["test"])


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100: hub, torchvision's pickle layout, or an ImageFolder layout
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CifarVariant:
    """What one CIFAR spec reads from each kind of source."""

    hub_name: str  # Hugging Face dataset
    hub_label_column: str
    pickle_folder: str  # torchvision's extracted archive folder
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: bytes  # in each batch
    names_key: bytes  # in the meta file
    num_classes: int


_CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_VARIANTS = {
    "cifar10": _CifarVariant(
        "cifar10", "label", "cifar-10-batches-py", _CIFAR10_BATCHES, "test_batch", "batches.meta",
        b"labels", b"label_names", 10,
    ),
    # "cifar100" is the 20 coarse superclasses, the task the REKD paper reports.
    "cifar100": _CifarVariant(
        "cifar100", "coarse_label", "cifar-100-python", ("train",), "test", "meta",
        b"coarse_labels", b"coarse_label_names", 20,
    ),
    "cifar100-fine": _CifarVariant(
        "cifar100", "fine_label", "cifar-100-python", ("train",), "test", "meta",
        b"fine_labels", b"fine_label_names", 100,
    ),
}


def _numpy_reconstruct() -> Callable:
    """numpy's array-unpickling helper, found without touching the deprecated ``numpy.core`` alias."""
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch and nothing else.

    A pickle can call any importable function while loading, so a plain ``pickle.load`` of a
    downloaded file can run arbitrary code. A CIFAR batch only needs numpy's array reconstruction
    (the real files name it ``numpy.core.multiarray._reconstruct``; numpy 2 writes
    ``numpy._core.multiarray._reconstruct``); every other global is refused.
    """

    _ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        resolve = self._ALLOWED.get((module, name))
        if resolve is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}, which a CIFAR batch never contains")
        return resolve()


def _read_cifar_pickle(file: Path) -> dict:
    """One CIFAR pickle file as a dict with bytes keys, read with `_CifarUnpickler`."""
    if not file.is_file():
        raise DataError(f"CIFAR file not found: {file}")
    try:
        with open(file, "rb") as handle:
            content = _CifarUnpickler(handle, encoding="bytes").load()
    except Exception as exc:  # a damaged or hostile pickle can fail in any way; all of them mean a bad file
        raise DataError(f"cannot read CIFAR pickle {file}: {exc}") from exc
    if not isinstance(content, dict):
        raise DataError(f"cannot read CIFAR pickle {file}: expected a dict, found {type(content).__name__}")
    return content


def _cifar_pickle_split(files: Sequence[Path], label_key: bytes) -> RawSplit:
    """Concatenate CIFAR batches into one split of lazily decoded images."""
    datas, targets = [], []
    for file in files:
        batch = _read_cifar_pickle(file)
        data, labels = batch.get(b"data"), batch.get(label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{file}: b'data' must be a uint8 array of shape (N, 3072)")
        if labels is None or len(labels) != len(data):
            raise DataError(f"{file}: {label_key!r} must hold one label per row of b'data'")
        datas.append(data)
        targets.extend(int(label) for label in labels)
    return RawSplit(_CifarRows(np.concatenate(datas)), targets)


def _load_cifar_pickles(spec: str, folder: Path, variant: _CifarVariant) -> DatasetBundle:
    """torchvision's CIFAR pickle layout (``cifar-10-batches-py`` or ``cifar-100-python``)."""
    meta = _read_cifar_pickle(folder / variant.meta_file)
    names = meta.get(variant.names_key)
    if not names:
        raise DataError(f"{folder / variant.meta_file}: no {variant.names_key!r} class names")
    labels = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    train = _cifar_pickle_split([folder / f for f in variant.train_files], variant.label_key)
    test = _cifar_pickle_split([folder / variant.test_file], variant.label_key)
    for split_name, split in (("train", train), ("test", test)):
        if split.targets and not 0 <= min(split.targets) <= max(split.targets) < len(labels):
            raise DataError(f"{folder}: {split_name} labels fall outside the {len(labels)} class names")
    return DatasetBundle("vision", labels, train, test)


def _cifar_source(spec: str, path: Path, variant: _CifarVariant) -> tuple[str, Path]:
    """Which layout ``path`` holds: ``("pickle", folder)`` or ``("imagefolder", root)``."""
    if (path / variant.pickle_folder).is_dir():
        return "pickle", path / variant.pickle_folder
    if (path / variant.meta_file).is_file():  # the pickle folder itself
        return "pickle", path
    if (path / "train").is_dir():
        return "imagefolder", path
    raise DataError(
        f"dataset spec {spec!r}: {path} holds neither {variant.pickle_folder}/ (torchvision pickles) "
        "nor an ImageFolder layout (train/<class>/, test/<class>/)"
    )


def _load_cifar(spec: str, path: Path | None, variant: _CifarVariant) -> DatasetBundle:
    """CIFAR-10 or CIFAR-100 (coarse or fine) from the hub, torchvision pickles or an ImageFolder."""
    if path is None:
        hub = _load_hf(spec, variant.hub_name)
        labels = list(hub["train"].features[variant.hub_label_column].names)
        train, test = (
            RawSplit(_HFImages(hub[name], "img"), [int(t) for t in hub[name][variant.hub_label_column]])
            for name in ("train", "test")
        )
        return DatasetBundle("vision", labels, train, test)
    layout, root = _cifar_source(spec, path, variant)
    if layout == "pickle":
        return _load_cifar_pickles(spec, root, variant)
    bundle = _load_image_folder(spec, root)
    if bundle.num_labels != variant.num_classes:
        raise DataError(
            f"dataset spec {spec!r}: {root} has {bundle.num_labels} class folders, expected "
            f"{variant.num_classes} (cifar100 is the 20 coarse classes, cifar100-fine the 100 fine ones; "
            "use imagefolder:DIR for any other image dataset)"
        )
    return bundle


# --------------------------------------------------------------------------------------------
# ImageFolder
# --------------------------------------------------------------------------------------------


def _image_folder_split(spec: str, folder: Path) -> tuple[list[str], RawSplit]:
    """One ``<class>/<image>`` folder: its class names and a split of lazily opened images."""
    from torchvision.datasets import ImageFolder  # imported here: torchvision is slow to import

    try:
        folder_set = ImageFolder(str(folder))
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"dataset spec {spec!r}: {folder}: {exc}") from exc
    paths = [sample_path for sample_path, _ in folder_set.samples]
    return list(folder_set.classes), RawSplit(_ImageFiles(paths), [int(t) for t in folder_set.targets])


def _load_image_folder(spec: str, root: Path | None) -> DatasetBundle:
    """``root/train/<class>/*`` and ``root/test/<class>/*`` (and ``dev/`` or ``val/`` when present)."""
    assert root is not None
    splits: dict[str, RawSplit] = {}
    labels: list[str] | None = None
    dev_folder = next((root / name for name in ("dev", "val") if (root / name).is_dir()), None)
    for split_name, folder in (("train", root / "train"), ("test", root / "test"), ("dev", dev_folder)):
        if folder is None:
            continue
        if not folder.is_dir():
            raise DataError(f"dataset spec {spec!r}: folder not found: {folder}")
        classes, splits[split_name] = _image_folder_split(spec, folder)
        if labels is None:
            labels = classes
        elif classes != labels:
            raise DataError(
                f"dataset spec {spec!r}: the classes of {folder} ({', '.join(classes)}) differ from "
                f"those of {root / 'train'} ({', '.join(labels)})"
            )
    assert labels is not None
    return DatasetBundle("vision", labels, splits["train"], splits["test"], splits.get("dev"))


# --------------------------------------------------------------------------------------------
# CSV / JSON Lines (text, label)
#
# Read with the standard library's csv and json rather than `datasets.load_dataset("csv"/"json")`:
# the latter infers column types (a CSV text column of numbers comes back as float64), writes an
# Arrow cache under ~/.cache and prints progress bars, and its errors do not say which row is bad.
# --------------------------------------------------------------------------------------------

_INTEGER = re.compile(r"[+-]?\d+")


def _read_jsonl(file: Path) -> list[dict]:
    """The JSON objects of a JSON Lines file (blank lines skipped)."""
    records = []
    try:
        with open(file, encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{file}: line {line_number} is not valid JSON: {exc.msg}") from exc
                if not isinstance(record, dict):
                    raise DataError(f"{file}: line {line_number} is not a JSON object")
                records.append(record)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {file}: {exc}") from exc
    return records


def _read_csv(file: Path) -> list[dict]:
    """The rows of a CSV file with a header line, as dicts."""
    try:
        with open(file, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None:
                raise DataError(f"{file}: empty file (a header line 'text,label' is needed)")
            return list(reader)
    except csv.Error as exc:
        raise DataError(f"{file}: malformed CSV: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {file}: {exc}") from exc


def _label_name(value: Any, where: str) -> str:
    """A label as the string it is shown as: ints (or CSV cells holding an int) as their decimal form."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DataError(f"{where}: label must be a string or an integer, got {value!r}")
    if isinstance(value, int):
        return str(value)
    value = value.strip()
    if not value:
        raise DataError(f"{where}: empty label")
    return str(int(value)) if _INTEGER.fullmatch(value) else value


def _label_order(name: str) -> tuple:
    """Sort key: integer labels numerically, then string labels alphabetically."""
    return (0, int(name), "") if _INTEGER.fullmatch(name) else (1, 0, name)


def _load_table(spec: str, root: Path | None, extension: str) -> DatasetBundle:
    """``root/{train,test,dev}.<extension>`` with columns text and label; dev is optional."""
    assert root is not None
    read = _read_csv if extension == "csv" else _read_jsonl
    rows_by_split: dict[str, tuple[Path, list[tuple[str, str]]]] = {}
    for split in ("train", "test", "dev"):
        file = root / f"{split}.{extension}"
        if not file.is_file():
            if split == "dev":
                continue
            raise DataError(f"dataset spec {spec!r}: file not found: {file}")
        records = read(file)
        if not records:
            raise DataError(f"{file}: no examples")
        examples = []
        for number, record in enumerate(records, start=1):
            where = f"{file}: example {number}"
            missing = [column for column in ("text", "label") if column not in record]
            if missing:
                raise DataError(f"{where}: missing column {', '.join(repr(c) for c in missing)}")
            text = record["text"]
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}: empty or non-string text")
            examples.append((text, _label_name(record["label"], where)))
        rows_by_split[split] = (file, examples)

    labels = sorted({label for _, label in rows_by_split["train"][1]}, key=_label_order)
    index = {label: i for i, label in enumerate(labels)}
    splits = {}
    for split, (file, examples) in rows_by_split.items():
        unknown = sorted({label for _, label in examples} - index.keys(), key=_label_order)
        if unknown:
            raise DataError(
                f"{file}: label(s) {', '.join(unknown)} do not occur in train (labels: {', '.join(labels)})"
            )
        splits[split] = RawSplit([text for text, _ in examples], [index[label] for _, label in examples])
    return DatasetBundle("text", labels, splits["train"], splits["test"], splits.get("dev"))


# --------------------------------------------------------------------------------------------
# ERASER movies (reviews with human rationales)
# --------------------------------------------------------------------------------------------


def _merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted union of ``[start, end)`` spans: overlapping or touching spans become one."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _eraser_split(file: Path, docs: Path) -> RawSplit:
    """One ERASER ``.jsonl`` annotation file: document texts, neg/pos targets and merged evidence."""
    texts, targets, evidence = [], [], []
    for record in _read_jsonl(file):
        annotation = record.get("annotation_id")
        where = f"{file}: annotation {annotation!r}"
        docid = (record.get("docids") or [annotation])[0]
        if not isinstance(docid, str) or not docid or Path(docid).name != docid or docid.startswith("."):
            raise DataError(f"{where}: invalid document id {docid!r}")
        try:
            tokens = (docs / docid).read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{where}: cannot read document {docs / docid}") from exc
        label = str(record.get("classification", "")).lower()
        if label not in POLARITY_LABELS:
            raise DataError(f"{where}: classification must be POS or NEG, got {record.get('classification')!r}")
        spans = []
        for group in record.get("evidences") or []:
            for item in group:
                if item.get("docid", docid) != docid:
                    continue
                start, end = item.get("start_token"), item.get("end_token")
                if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= len(tokens)):
                    raise DataError(f"{where}: evidence span ({start}, {end}) is outside the {len(tokens)} tokens")
                if start < end:  # the real data holds a few empty spans; they mark nothing
                    spans.append((start, end))
        texts.append(" ".join(tokens))
        targets.append(POLARITY_LABELS.index(label))
        evidence.append(_merge_spans(spans))
    if not texts:
        raise DataError(f"{file}: no examples")
    return RawSplit(texts, targets, evidence)


def _load_eraser_movies(spec: str, root: Path | None) -> DatasetBundle:
    """ERASER layout: ``root/docs/<docid>`` and ``root/{train,val,test}.jsonl``; val becomes dev."""
    assert root is not None
    docs = root / "docs"
    if not docs.is_dir():
        raise DataError(f"dataset spec {spec!r}: folder not found: {docs}")
    splits = {}
    for split, file_name in (("train", "train.jsonl"), ("test", "test.jsonl"), ("dev", "val.jsonl")):
        file = root / file_name
        if file.is_file():
            splits[split] = _eraser_split(file, docs)
        elif split != "dev":
            raise DataError(f"dataset spec {spec!r}: file not found: {file}")
    return DatasetBundle("text", list(POLARITY_LABELS), splits["train"], splits["test"], splits.get("dev"))


# Spec prefix -> (whether it takes a path: "required" | "optional" | "none", loader).
_LOADERS: dict[str, tuple[str, Callable[[str, Path | None], DatasetBundle]]] = {
    "imdb": ("none", _load_imdb_hub),
    "aclimdb": ("required", _load_aclimdb),
    **{name: ("optional", partial(_load_cifar, variant=variant)) for name, variant in _CIFAR_VARIANTS.items()},
    "imagefolder": ("required", _load_image_folder),
    "csv": ("required", partial(_load_table, extension="csv")),
    "jsonl": ("required", partial(_load_table, extension="jsonl")),
    "eraser-movies": ("required", _load_eraser_movies),
}


# --------------------------------------------------------------------------------------------
# Stratified, seeded subsets and splits
# --------------------------------------------------------------------------------------------


def _class_permutations(targets: Sequence[int], seed: int) -> dict[int, np.ndarray]:
    """For each class (in sorted order), its example indices in a seeded random order.

    Both `stratified_split` and `stratified_subset` take prefixes of these, so the same seed always
    picks the same examples, independent of how the other classes are laid out in the list.
    """
    targets_array = np.asarray(list(targets), dtype=np.int64)
    rng = np.random.default_rng(seed)
    return {
        int(label): rng.permutation(np.flatnonzero(targets_array == label))
        for label in np.unique(targets_array)
    }


def stratified_split(targets: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split example indices into ``(kept, held_out)``, both sorted, holding out ``fraction`` of each class.

    Each class gives ``round(fraction * n_class)`` (halves round up) examples to ``held_out``, chosen by
    a seeded permutation; a class with at least 2 examples gives at least one when ``fraction > 0``
    and keeps at least one when ``fraction < 1``, so both sides see every such class.
    Used to carve a dev split out of train when the source ships none.
    """
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"split fraction must be between 0 and 1, got {fraction}")
    kept: list[int] = []
    held_out: list[int] = []
    for order in _class_permutations(targets, seed).values():
        n = len(order)
        count = int(fraction * n + 0.5)
        if n >= 2 and 0.0 < fraction < 1.0:
            count = min(max(count, 1), n - 1)
        held_out.extend(int(i) for i in order[:count])
        kept.extend(int(i) for i in order[count:])
    return sorted(kept), sorted(held_out)


def stratified_subset(targets: Sequence[int], n: int, seed: int) -> list[int]:
    """``n`` sorted example indices with the class proportions of ``targets`` (largest remainder method).

    Each class gets the floor of its exact share, and the examples still missing go to the classes with
    the largest fractional remainders (ties: smaller class id first). ``n >= len(targets)`` gives all
    indices. Used to train or evaluate on a smaller, still balanced sample.
    """
    total = len(targets)
    if n < 0:
        raise DataError(f"subset size must be non-negative, got {n}")
    if n >= total:
        return list(range(total))
    permutations = _class_permutations(targets, seed)
    shares = {label: n * len(order) / total for label, order in permutations.items()}
    quotas = {label: int(share) for label, share in shares.items()}
    by_remainder = sorted(shares, key=lambda label: (-(shares[label] - quotas[label]), label))
    for label in by_remainder[: n - sum(quotas.values())]:
        quotas[label] += 1
    return sorted(int(i) for label, order in permutations.items() for i in order[: quotas[label]])


def train_and_dev(bundle: DatasetBundle, seed: int, dev_fraction: float = 0.2,
                  train_limit: int | None = None) -> tuple[RawSplit, RawSplit]:
    """The examples a run trains on and its dev split: the seeded stratified ``train_limit`` sample
    of train, then, unless the source ships a dev split, its stratified ``dev_fraction`` held out.
    Training and ``rekd eval --split dev`` both draw them here, so they score the same examples."""
    train = bundle.train
    if train_limit:
        train = train.subset(stratified_subset(train.targets, train_limit, seed))
    if bundle.dev is not None:
        return train, bundle.dev
    kept, held_out = stratified_split(train.targets, dev_fraction, seed)
    return train.subset(kept), train.subset(held_out)


def pick_split(bundle: DatasetBundle, name: str, seed: int = DEFAULT_SEED, limit: int | None = None,
               dev_fraction: float = 0.2, train_limit: int | None = None) -> RawSplit:
    """One split of a bundle by name (train / dev / test), optionally a seeded stratified sample of
    ``limit`` examples. Train and dev are those a run with this split seed, dev fraction and train
    limit used (see ``train_and_dev``)."""
    if name not in ("train", "dev", "test"):
        raise DataError(f"unknown split {name!r}: expected train, dev or test")
    if name == "test":
        split = bundle.test
    else:
        train, dev = train_and_dev(bundle, seed, dev_fraction, train_limit)
        split = dev if name == "dev" else train
    if len(split) == 0:
        raise DataError(f"{bundle.name}: no {name} split")
    return split.subset(stratified_subset(split.targets, limit, seed)) if limit else split
