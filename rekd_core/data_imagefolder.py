"""``imagefolder:DIR``: ``DIR/train/<class>/*``, ``DIR/test/<class>/*`` (and ``dev/`` or ``val/``), images opened
when indexed."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from .data_types import DatasetBundle, LazySequence, RawSplit
from .errors import DataError
from .inputs import read_image


class _ImageFiles(LazySequence):
    """Image files opened on access and returned as RGB."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> Image.Image:
        # the pixels `rekd explain` and the dashboard give a model: EXIF rotation, transparency on white
        return read_image(self.paths[index], max_pixels=None, max_side=None)


def _image_folder_split(spec: str, folder: Path) -> tuple[list[str], RawSplit]:
    """One ``<class>/<image>`` folder: its class names and a split of lazily opened images."""
    from torchvision.datasets import ImageFolder  # imported here: torchvision is slow to import

    try:
        folder_set = ImageFolder(str(folder))
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"dataset spec {spec!r}: {folder}: {exc}") from exc
    paths = [sample_path for sample_path, _ in folder_set.samples]
    return list(folder_set.classes), RawSplit(_ImageFiles(paths), [int(t) for t in folder_set.targets])


def load_image_folder(spec: str, root: Path | None) -> DatasetBundle:
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
