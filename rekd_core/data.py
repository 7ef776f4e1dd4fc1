"""Dataset specs -> a `DatasetBundle` of raw splits; stratified seeded subsets and splits.

A *spec* names where a dataset comes from: ``imdb`` and ``cifar10`` fetch from the Hugging Face
hub, ``aclimdb:PATH`` or ``cifar10:PATH`` read the files as their authors distribute them,
``imagefolder:DIR``, ``csv:DIR`` and ``jsonl:DIR`` read a user's own data, and
``eraser-movies:DIR`` reads ERASER movie reviews with their human rationales.
Every spec gives the same thing: texts (``str``) or lazily loaded RGB ``PIL.Image`` inputs,
integer targets that index ``DatasetBundle.labels``, and, for ERASER, evidence spans.
Inputs stay raw here; turning them into model features is `processing`'s job.

Each source is one module (``data_hub``, ``data_aclimdb``, ``data_cifar``, ``data_imagefolder``, ``data_table``,
``data_eraser``), registered in ``_LOADERS`` under its spec prefix; what they all give is data_types.py.
Anything wrong with a spec or its files raises `DataError` with one line naming the spec or path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from .data_aclimdb import load_aclimdb
from .data_cifar import CIFAR_VARIANTS, load_cifar
from .data_eraser import load_eraser_movies
from .data_hub import load_imdb_hub
from .data_imagefolder import load_image_folder
from .data_table import load_table
from .data_types import DatasetBundle, RawSplit
from .errors import DataError

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

# The seed of a run (``TrainConfig.seed``, re-exported by config.py) and so of its splits and samples,
# unless one is given: defined here, the lowest module that draws with it.
DEFAULT_SEED = 2026


# Spec prefix -> (whether it takes a path: "required" | "optional" | "none", loader).
_LOADERS: dict[str, tuple[str, Callable[[str, Path | None], DatasetBundle]]] = {
    "imdb": ("none", load_imdb_hub),
    "aclimdb": ("required", load_aclimdb),
    **{name: ("optional", partial(load_cifar, variant=variant)) for name, variant in CIFAR_VARIANTS.items()},
    "imagefolder": ("required", load_image_folder),
    "csv": ("required", partial(load_table, extension="csv")),
    "jsonl": ("required", partial(load_table, extension="jsonl")),
    "eraser-movies": ("required", load_eraser_movies),
}


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
