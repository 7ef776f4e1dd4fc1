"""Whether an input is like the data a model was tested on: two plain signals, each stated for what it measures.

- **Predictive entropy** ``H(p) = -sum_c p_c ln p_c`` (nats) of the model's class probabilities, read at its own
  ratio (the prediction from its rationale, top-k), against the same entropy over a seeded stratified sample of
  its test split. Above that sample's 95th percentile the model is less sure than on 95% of those test inputs.
  Unsure is not the same as unfamiliar: hard test inputs are unsure too, and a model can be confidently wrong
  on an input unlike anything it saw. It is a hint, not a detector.
- **Image size** (images): the input's width and height against the sizes of a sample of its training images.
  An image more than ``SIZE_FACTOR`` times larger or smaller than every one of them is resampled far more than
  anything the model saw in training.

The reference statistics are computed from data, once per checkpoint (``build_reference``, run by
``scripts/input_reference.py``), and kept beside its ``config.json`` as ``input_reference.json``. A checkpoint
without that file has no such signal: ``read_reference`` returns None and callers say the check is unavailable.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .explain import explain

REFERENCE_FILE = "input_reference.json"
REFERENCE_FORMAT = "rekd-input-reference"
ENTROPY_QUANTILES = (0.5, 0.9, 0.95, 0.99)
ENTROPY_LIMIT = 0.95  # the quantile an input's entropy is compared with
SIZE_FACTOR = 2.0  # an image this many times smaller or larger than every training image is "far" from them


def predictive_entropy(probs: Sequence[float]) -> float:
    """Entropy in nats of one probability distribution (0: certain; ln C: uniform over C classes)."""
    p = np.asarray(list(probs), dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def build_reference(model, test_split, train_split=None, *, dataset: str = "", seed: int | None = None,
                    batch_size: int = 32, progress=None) -> dict:
    """The reference statistics of ``model`` (see the module docstring): the entropy quantiles of its
    predictions over ``test_split`` (a ``RawSplit``, already sampled) at its own ratio, and for a vision model
    the range of sizes of ``train_split``'s images. ``dataset`` and ``seed`` are recorded as where they came
    from; ``progress(done, total)`` is called after each batch."""
    entropies = []
    inputs = test_split.inputs
    for start in range(0, len(test_split), batch_size):
        chunk = [inputs[i] for i in range(start, min(start + batch_size, len(test_split)))]
        entropies += [predictive_entropy(exp.probs.values()) for exp in explain(model, chunk, batch_size=batch_size)]
        if progress:
            progress(len(entropies), len(test_split))
    values = np.asarray(entropies)
    reference = {
        "format": REFERENCE_FORMAT, "version": 1, "dataset": dataset, "seed": seed,
        "ratio": model.ratio if model.generator is not None else None, "selection": "topk",
        "entropy": {"unit": "nats", "split": "test", "examples": len(values),
                    "quantiles": {f"{q:g}": float(np.quantile(values, q)) for q in ENTROPY_QUANTILES},
                    "max": float(values.max()), "uniform": math.log(len(model.labels))},
    }
    if model.task == "vision" and train_split is not None:
        sizes = np.asarray([train_split.inputs[i].size for i in range(len(train_split))], dtype=np.int64)
        reference["image_sizes"] = {"split": "train", "examples": len(sizes),
                                    "width": _spread(sizes[:, 0]), "height": _spread(sizes[:, 1])}
    return reference


def _spread(values: np.ndarray) -> dict:
    return {"min": int(values.min()), "median": float(np.median(values)), "max": int(values.max())}


def write_reference(checkpoint: str | Path, reference: dict) -> Path:
    """Write ``reference`` into the checkpoint directory as ``REFERENCE_FILE`` (atomically)."""
    path = Path(checkpoint) / REFERENCE_FILE
    partial = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    partial.write_text(json.dumps(reference, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def read_reference(checkpoint: str | Path) -> dict | None:
    """The reference statistics kept in the checkpoint directory, or None when it has none (or an unreadable
    or foreign file): then there is no signal to give, rather than an invented one."""
    try:
        reference = json.loads((Path(checkpoint) / REFERENCE_FILE).read_text(encoding="utf-8"))
        float(reference["entropy"]["quantiles"][f"{ENTROPY_LIMIT:g}"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return reference if reference.get("format") == REFERENCE_FORMAT else None


def entropy_note(reference: dict, entropy: float, what: str = "input") -> tuple[bool, str]:
    """Whether ``entropy`` (nats, of a prediction at the model's own ratio) is above the reference's 95th percentile,
    and one line that says how it compares; ``what`` names the test inputs ("review", "image")."""
    stats = reference["entropy"]
    limit = float(stats["quantiles"][f"{ENTROPY_LIMIT:g}"])
    sample = f"{stats['examples']:,} test {what}s"
    if entropy > limit:
        return True, (f"Less sure than on {ENTROPY_LIMIT:.0%} of {sample}: predictive entropy {entropy:.2f} nats, "
                      f"above their 95th percentile {limit:.2f}. Inputs unlike the training data often do this; so "
                      "do hard ones.")
    return False, (f"Predictive entropy {entropy:.2f} nats, within the {ENTROPY_LIMIT:.0%} of {sample} that show "
                   f"{limit:.2f} or less.")


def image_size_note(reference: dict, width: int, height: int) -> str | None:
    """A line when a ``width`` x ``height`` image is more than ``SIZE_FACTOR`` times smaller or larger than every
    training image of the sample (on either side); None when it is within that, or the reference has no sizes."""
    sizes = reference.get("image_sizes")
    if not sizes:
        return None
    low_w, high_w = sizes["width"]["min"], sizes["width"]["max"]
    low_h, high_h = sizes["height"]["min"], sizes["height"]["max"]
    trained = (f"{low_w}x{low_h}" if (low_w, low_h) == (high_w, high_h)
               else f"{low_w}-{high_w} x {low_h}-{high_h}")
    if width > SIZE_FACTOR * high_w or height > SIZE_FACTOR * high_h:
        factor = max(width / high_w, height / high_h)
        return (f"Far larger than its training images: this one is {width}x{height}, the "
                f"{sizes['examples']:,} sampled training images are {trained} pixels ({factor:.0f}x): it is shrunk "
                "far more than anything the model saw.")
    if width * SIZE_FACTOR < low_w or height * SIZE_FACTOR < low_h:
        return (f"Far smaller than its training images: this one is {width}x{height}, the "
                f"{sizes['examples']:,} sampled training images are {trained} pixels: it is enlarged far more "
                "than anything the model saw.")
    return None
