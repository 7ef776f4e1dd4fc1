"""Planted-feature toy tasks: the label is decided by one planted token (text) or one planted patch
(vision) among random filler, so a working rationale model must select exactly that feature.
Used by the tests and for quick demos; written in the csv and imagefolder layouts of data.py."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

POS_CUES = ("splendid", "superb", "wonderful", "brilliant", "delightful", "masterful", "moving", "gorgeous")
NEG_CUES = ("dreadful", "awful", "terrible", "dismal", "tedious", "clumsy", "lifeless", "insipid")
CUE_WORDS = (POS_CUES[0], NEG_CUES[0])  # label 1 = "pos" is cued by the first word, "neg" by the second
LABELS = ("neg", "pos")


def write_text_task(directory: str | Path, n_train: int = 600, n_test: int = 200, length: int = 30,
                    vocab: int = 60, seed: int = 0, cues_per_class: int = 1) -> Path:
    """``DIR/train.csv`` and ``DIR/test.csv`` (columns text, label, cue, cue_word): ``length`` words
    drawn from ``vocab`` fillers, one of which is replaced by a cue word of the label (one of the first
    ``cues_per_class`` of POS_CUES or NEG_CUES) at a random position; ``cue`` is that position in
    ``text.split()``."""
    if not 1 <= cues_per_class <= len(POS_CUES):
        raise ValueError(f"cues_per_class must be 1 to {len(POS_CUES)}")
    rng = np.random.default_rng(seed)
    cues = {1: POS_CUES[:cues_per_class], 0: NEG_CUES[:cues_per_class]}
    fillers = [f"filler{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{i // 676 or ''}" for i in range(vocab)]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        with open(directory / f"{name}.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label", "cue", "cue_word"])
            for i in range(n):
                label = i % 2
                words = list(rng.choice(fillers, size=length))
                position = int(rng.integers(length))
                # one cue per class draws nothing, so the tasks written before several cues stay the same
                pick = int(rng.integers(cues_per_class)) if cues_per_class > 1 else 0
                words[position] = cues[label][pick]
                writer.writerow([" ".join(words), LABELS[label], position, words[position]])
    return directory


def write_image_task(directory: str | Path, n_train: int = 400, n_test: int = 100, size: int = 16,
                     patch: int = 4, seed: int = 0) -> Path:
    """``DIR/{train,test}/{neg,pos}/*.png``: grey noise with one bright patch, red for "pos" and blue
    for "neg", at a random cell of the ``size/patch`` grid (its index is in the file name)."""
    rng = np.random.default_rng(seed)
    side = size // patch
    directory = Path(directory)
    for split, n in (("train", n_train), ("test", n_test)):
        for label in LABELS:
            (directory / split / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            label = i % 2
            pixels = rng.integers(60, 140, size=(size, size, 1)).repeat(3, axis=2).astype(np.uint8)
            cell = int(rng.integers(side * side))
            r, c = divmod(cell, side)
            pixels[r * patch:(r + 1) * patch, c * patch:(c + 1) * patch] = (230, 30, 30) if label else (30, 30, 230)
            Image.fromarray(pixels).save(directory / split / LABELS[label] / f"{i:05d}_cell{cell}.png")
    return directory
