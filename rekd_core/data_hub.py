"""Datasets from the Hugging Face hub (online): ``imdb``, and the hub download of ``cifar10`` / ``cifar100``
(data_cifar.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .data_types import POLARITY_LABELS, DatasetBundle, RawSplit
from .errors import DataError, first_line


def load_hub(spec: str, hub_name: str) -> Any:
    """``datasets.load_dataset(hub_name)``, with any failure (offline, unknown name) as a DataError."""
    import datasets  # imported here: it is slow to import and only the online specs need it

    try:
        return datasets.load_dataset(hub_name)
    except Exception as exc:  # network, hub and cache errors come in many types
        raise DataError(f"dataset spec {spec!r}: cannot load {hub_name!r} from the Hugging Face hub: "
                        f"{first_line(exc)}") from exc


def load_imdb_hub(spec: str, path: Path | None) -> DatasetBundle:
    """IMDB from the Hugging Face hub: columns text, label (0 = neg, 1 = pos)."""
    hub = load_hub(spec, "imdb")
    splits = {
        name: RawSplit(list(hub[name]["text"]), [int(t) for t in hub[name]["label"]]) for name in ("train", "test")
    }
    return DatasetBundle("text", list(POLARITY_LABELS), splits["train"], splits["test"])
