"""``cifar10``, ``cifar100`` (the 20 coarse classes, the task the REKD paper reports) and ``cifar100-fine``: from the
Hugging Face hub, torchvision's pickle layout (read by an unpickler that loads arrays and nothing else) or an
ImageFolder layout."""
from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .data_hub import load_hub
from .data_imagefolder import load_image_folder
from .data_types import DatasetBundle, LazySequence, RawSplit
from .errors import DataError
from .inputs import read_image


class _CifarRows(LazySequence):
    """Rows of a CIFAR pickle batch (3072 bytes: the R, G and B planes of 32x32) as RGB images."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def _load(self, index: int) -> Image.Image:
        pixels = np.ascontiguousarray(self.data[index].reshape(3, 32, 32).transpose(1, 2, 0))
        return Image.fromarray(pixels, mode="RGB")


class _HFImages(LazySequence):
    """An image column of a Hugging Face dataset, decoded on access and returned as RGB."""

    def __init__(self, dataset: Any, column: str) -> None:
        self.dataset = dataset
        self.column = column

    def __len__(self) -> int:
        return len(self.dataset)

    def _load(self, index: int) -> Image.Image:
        return read_image(self.dataset[index][self.column], max_side=None)


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
CIFAR_VARIANTS = {
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


def load_cifar(spec: str, path: Path | None, variant: _CifarVariant) -> DatasetBundle:
    """CIFAR-10 or CIFAR-100 (coarse or fine) from the hub, torchvision pickles or an ImageFolder."""
    if path is None:
        hub = load_hub(spec, variant.hub_name)
        labels = list(hub["train"].features[variant.hub_label_column].names)
        train, test = (
            RawSplit(_HFImages(hub[name], "img"), [int(t) for t in hub[name][variant.hub_label_column]])
            for name in ("train", "test")
        )
        return DatasetBundle("vision", labels, train, test)
    layout, root = _cifar_source(spec, path, variant)
    if layout == "pickle":
        return _load_cifar_pickles(spec, root, variant)
    bundle = load_image_folder(spec, root)
    if bundle.num_labels != variant.num_classes:
        raise DataError(
            f"dataset spec {spec!r}: {root} has {bundle.num_labels} class folders, expected "
            f"{variant.num_classes} (cifar100 is the 20 coarse classes, cifar100-fine the 100 fine ones; "
            "use imagefolder:DIR for any other image dataset)"
        )
    return bundle
