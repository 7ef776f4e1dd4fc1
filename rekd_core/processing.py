"""Raw inputs -> model features, and the feature grid a model selects over.

``TextProcessor`` wraps a tokenizer and a fixed max length (every input is padded to it, so L is
the same for teacher and student); ``VisionProcessor`` resizes and normalises images for a patch
grid. Both describe their grid with ``grid()``; REKD requires the teacher's and the student's to be
equal.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from torch import Tensor

from .errors import CheckpointError, DataError, first_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TextProcessor:
    task = "text"

    def __init__(self, tokenizer, max_length: int = 256):
        self.tokenizer = tokenizer
        self.max_length = int(max_length)

    def __call__(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Tokenize, truncate and pad to ``max_length``."""
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise DataError("empty text: there is nothing to explain or classify")
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def encode_words(self, words: Sequence[Sequence[str]]) -> tuple[dict[str, Tensor], Tensor]:
        """Tokenize pre-split words; also return each token's word index (-1 for special/padding),
        which aligns word-level human rationales (ERASER) with word pieces."""
        enc = self.tokenizer([list(w) for w in words], is_split_into_words=True, padding="max_length",
                             truncation=True, max_length=self.max_length, return_tensors="pt")
        word_ids = torch.tensor([[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(words))])
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}, word_ids

    def tokens_with_offsets(self, text: str) -> tuple[list[str], list[tuple[int, int]]]:
        """The word pieces of ``text`` (as the model sees them, truncated) and their character spans."""
        enc = self.tokenizer(text, truncation=True, max_length=self.max_length, return_offsets_mapping=True)
        tokens = self.tokenizer.convert_ids_to_tokens(enc["input_ids"])
        return tokens, [tuple(span) for span in enc["offset_mapping"]]

    def grid(self) -> dict:
        vocab = sorted(self.tokenizer.get_vocab().items())
        digest = hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]
        return {"type": "text", "max_length": self.max_length, "vocab_size": len(vocab), "vocab_sha256": digest,
                "lowercase": bool(getattr(self.tokenizer, "do_lower_case", False))}

    def to_config(self) -> dict:
        return {"type": "text", "max_length": self.max_length, "tokenizer_dir": "tokenizer"}

    def save(self, directory: Path) -> None:
        self.tokenizer.save_pretrained(str(Path(directory) / "tokenizer"))


class VisionProcessor:
    task = "vision"

    def __init__(self, image_size: int, patch_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD):
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    @property
    def grid_side(self) -> int:
        return self.image_size // self.patch_size

    def transform(self, train: bool = False):
        """Resize to the model's size, then (training) random-crop with padding and flip, as the paper
        does for CIFAR; normalise."""
        from torchvision import transforms as T

        steps = [T.Lambda(_to_rgb), T.Resize((self.image_size, self.image_size))]
        if train:
            steps += [T.RandomCrop(self.image_size, padding=max(1, self.image_size // 8)), T.RandomHorizontalFlip()]
        steps += [T.ToTensor(), T.Normalize(self.mean, self.std)]
        return T.Compose(steps)

    def __call__(self, images: Sequence[Image.Image]) -> dict[str, Tensor]:
        transform = self.transform(train=False)
        return {"pixel_values": torch.stack([transform(img) for img in images])}

    def resized(self, image: Image.Image) -> Image.Image:
        """The image as the model sees it (before normalisation): for overlays."""
        return _to_rgb(image).resize((self.image_size, self.image_size), Image.BICUBIC)

    def grid(self) -> dict:
        return {"type": "vision", "image_size": self.image_size, "patch_size": self.patch_size,
                "num_patches": self.grid_side**2}

    def to_config(self) -> dict:
        return {"type": "vision", "image_size": self.image_size, "patch_size": self.patch_size,
                "mean": list(self.mean), "std": list(self.std)}

    def save(self, directory: Path) -> None:
        """Everything is in ``to_config``."""


Processor = TextProcessor | VisionProcessor


def load_processor(config: dict, directory: Path) -> Processor:
    """Rebuild the processor stored in a checkpoint directory (no download)."""
    if config["type"] == "vision":
        return VisionProcessor(config["image_size"], config["patch_size"], config["mean"], config["std"])
    from transformers import AutoTokenizer

    path = Path(directory) / config.get("tokenizer_dir", "tokenizer")
    if not path.is_dir():
        raise CheckpointError(f"{path}: the checkpoint's tokenizer is missing")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot load the tokenizer ({first_line(exc)})") from exc
    return TextProcessor(tokenizer, config["max_length"])


def train_wordpiece_tokenizer(texts: Sequence[str], vocab_size: int = 8000, lowercase: bool = True):
    """A BERT WordPiece tokenizer trained on ``texts`` (for from-scratch presets)."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    wordpiece = BertWordPieceTokenizer(lowercase=lowercase)
    wordpiece.train_from_iterator(iter(texts), vocab_size=vocab_size, min_frequency=2, show_progress=False)
    return BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, do_lower_case=lowercase)


def load_tokenizer(source: str):
    """The tokenizer of a rekd checkpoint directory, a tokenizer directory or a Hugging Face hub id."""
    from transformers import AutoTokenizer

    if (Path(source) / "tokenizer").is_dir():
        source = str(Path(source) / "tokenizer")
    try:
        return AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        raise DataError(f"cannot load a tokenizer from {source!r}: {first_line(exc)}") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


class FeatureDataset(torch.utils.data.Dataset):
    """A raw split turned into model features, one example a dict with ``label`` and ``index``.

    Text is tokenized once, up front (it is never augmented); with human rationales (ERASER) each
    example also carries ``human_mask`` over its word pieces. Images are transformed on the fly, with
    augmentation when ``train`` and ``augment`` are set: a random crop and flip, or with ``flip_only`` a random
    flip alone, recorded as ``variant`` (0 as it is, 1 mirrored), so that a cache of what the image gives can
    keep both (frozen_cache.py).
    """

    def __init__(self, split, processor: Processor, train: bool = False, augment: bool = True,
                 flip_only: bool = False):
        self.split = split
        self.processor = processor
        self.targets = torch.as_tensor(list(split.targets), dtype=torch.long)
        self.features: dict[str, Tensor] = {}
        self.variants = 1  # the distinct inputs an example can give (a cache keeps each)
        if processor.task == "text":
            if split.evidence is not None:
                words = [text.split() for text in split.inputs]
                self.features, word_ids = processor.encode_words(words)
                self.features["human_mask"] = _evidence_mask(word_ids, split.evidence)
            else:
                self.features = processor(list(split.inputs))
        else:
            self.flip = train and augment and flip_only
            self.variants = 2 if self.flip else 1
            self.transform = processor.transform(train=train and augment and not flip_only)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        if self.features:
            item = {k: v[i] for k, v in self.features.items()}
        else:
            item = {"pixel_values": self.transform(self.split.inputs[i])}
            if self.flip:  # the draw RandomHorizontalFlip makes
                mirrored = bool(torch.rand(1) < 0.5)
                item["variant"] = torch.tensor(int(mirrored))
                if mirrored:
                    item["pixel_values"] = item["pixel_values"].flip(-1)
        item["label"] = self.targets[i]
        item["index"] = torch.tensor(i)
        return item


def collate(examples: list[dict[str, Tensor]], trim_padding: bool = True) -> dict[str, Tensor]:
    """Stack examples; for text, cut the padding columns that no example of the batch uses.

    Trimming changes nothing but speed: padding is never attended to nor selected, and the
    selection cost keeps the full padded length L.
    """
    batch = torch.utils.data.default_collate(examples)
    if trim_padding and "attention_mask" in batch:
        length = int(batch["attention_mask"].sum(dim=1).max())
        for key in ("input_ids", "attention_mask", "human_mask"):
            if key in batch:
                batch[key] = batch[key][:, :length]
    return batch


def model_inputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The part of a batch that the backbone reads."""
    return {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values") if k in batch}


def _evidence_mask(word_ids: Tensor, evidence: Sequence[Sequence[tuple[int, int]]]) -> Tensor:
    mask = torch.zeros(word_ids.shape, dtype=torch.bool)
    for row, spans in enumerate(evidence):
        for start, end in spans:
            mask[row] |= (word_ids[row] >= start) & (word_ids[row] < end)
    return mask
