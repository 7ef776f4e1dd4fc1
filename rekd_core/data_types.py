"""What every data source gives: a ``DatasetBundle`` of raw splits (``RawSplit``: inputs not yet featurised,
integer targets, optional human evidence), its inputs texts or lazily loaded images (``LazySequence``: vision inputs
are decoded only when indexed, so that loading a spec is cheap and a 50,000-image split never sits in memory as PIL
images)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

POLARITY_LABELS = ["neg", "pos"]  # IMDB, aclImdb and ERASER movies share these, in this order


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
            inputs = SubsetView(self.inputs, indices)
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


class LazySequence(Sequence):
    """A read-only sequence whose items are produced on access by ``_load(i)``."""

    def __len__(self) -> int:
        raise NotImplementedError

    def _load(self, index: int) -> Any:
        raise NotImplementedError

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return SubsetView(self, range(len(self))[index])
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} inputs")
        return self._load(index)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {len(self)} inputs>"


class SubsetView(LazySequence):
    """The items of ``base`` at ``indices`` (a view: nothing is loaded until indexed)."""

    def __init__(self, base: Sequence, indices: Sequence[int]) -> None:
        if isinstance(base, SubsetView):  # collapse views of views into one level
            indices = [base.indices[i] for i in indices]
            base = base.base
        self.base = base
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, index: int) -> Any:
        return self.base[self.indices[index]]
