"""Select-predict rationale models (METHOD.md).

A ``RationaleModel`` is a generator, which scores every feature (word piece or patch) and picks a
hard 0/1 mask, and a predictor, which classifies the input whose feature embeddings were
multiplied by that mask. In CLS mode there is no generator: the predictor reads the whole input.

How the predictor reads a selection (``masking``): ``zero`` (the paper's) passes every feature, an
unselected one as a zero vector at its position; ``drop`` passes only the selected ones (and the special
tokens, or a ViT's class token), each at its own position, so that its cost follows the rationale's size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from .backbones import Backbone, create_backbone
from .errors import ConfigError
from .losses import argmax_mask, gumbel_topk_mask, reverse_gradient, straight_through_gumbel, topk_mask

# How a mask is read from the generator's logits (``RationaleModel.select``)
Selection = Literal["topk", "argmax", "gumbel", "gumbel_topk"]
SELECTIONS: tuple[str, ...] = get_args(Selection)
# How the predictor reads it (module docstring)
Masking = Literal["zero", "drop"]
MASKINGS: tuple[str, ...] = get_args(Masking)


class Generator(nn.Module):
    """Backbone + per-feature head emitting two logits (not selected, selected)."""

    def __init__(self, backbone: Backbone, task: str, dropout: float, freeze_embeddings: bool = True):
        super().__init__()
        self.backbone = backbone
        hidden = getattr(backbone, "feature_size", backbone.hidden_size)  # a CNN's cells: an intermediate map's
        if task == "text":
            self.head = nn.Sequential(nn.Linear(hidden, 256), nn.ReLU(), nn.Dropout(dropout), nn.Linear(256, 2))
            if freeze_embeddings:  # pretrained word embeddings (METHOD.md); random ones must learn
                backbone.freeze_input_embeddings()
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, 2))

    def forward(self, inputs: dict[str, Tensor], lower: Tensor | None = None) -> Tensor:
        """(B, L, 2) logits; ``lower``: the backbone's frozen-block states of these inputs, when cached."""
        return self.head(self.backbone.feature_states(inputs, lower))


class Predictor(nn.Module):
    """Backbone + dropout + linear classifier on the [CLS] state of the masked input."""

    def __init__(self, backbone: Backbone, num_labels: int, dropout: float):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(backbone.hidden_size, num_labels)

    def forward(self, inputs: dict[str, Tensor], mask: Tensor | None = None, keep: Tensor | None = None,
                lower: Tensor | None = None) -> Tensor:
        """Class logits; ``mask`` multiplies the feature embeddings, ``keep`` (bool) names the features read when
        not all are (drop masking), ``lower`` holds cached frozen-block states of an unmasked input."""
        return self.classifier(self.dropout(self.backbone.pooled(inputs, mask, keep, lower)))


@dataclass
class RationaleOutput:
    logits: Tensor  # (B, C) class logits of the predictor
    feature_mask: Tensor  # (B, L) bool, the selectable features (real tokens or patches, no special tokens)
    gen_logits: Tensor | None = None  # (B, L, 2) generator logits; None in CLS mode
    mask: Tensor | None = None  # (B, L) hard 0/1 selection used by the predictor; None in CLS mode
    complement_logits: Tensor | None = None  # (B, C) the complement adversary's, in training (complement_weight)


class RationaleModel(nn.Module):
    """A select-predict classifier (``mode`` "re" or "rekd") or its CLS baseline (``mode`` "cls").

    ``config`` is the plain dict stored in the checkpoint: at least ``task``, ``mode``, ``ratio``,
    ``labels``, ``backbone`` (see backbones.py), ``dropout`` and ``processor``. Optional:
    ``generator_embeddings`` ("frozen", the default of checkpoints that predate it, or "trained") and
    ``unselectable_token_ids`` (text: the special tokens, [CLS], [SEP] and the like, that are never
    selected nor counted as features, but always reach the predictor; absent: every token is a feature);
    ``complement_weight`` (> 0: a complement adversary, a second predictor that reads what the generator left
    out, is trained with it; the generator receives its gradient reversed and scaled by this weight);
    ``masking`` ("zero", the default of checkpoints that predate it, or "drop": module docstring) and
    ``drop_probes`` (drop masking, training only: this many unselected features per selected one, drawn at
    random, are read too, as zero vectors at their positions, so that their straight-through gradient tells the
    generator what selecting them would do; 0: none).
    """

    def __init__(self, config: dict, processor=None, pretrained: str | None = None):
        super().__init__()
        if config["mode"] not in ("cls", "re", "rekd"):
            raise ConfigError(f"unknown mode {config['mode']!r}: expected cls, re or rekd")
        self.config = config
        self.processor = processor
        task, dropout = config["task"], config["dropout"]
        self.predictor = Predictor(create_backbone(config["backbone"], pretrained), len(config["labels"]), dropout)
        self.generator = None
        if config["mode"] != "cls":
            frozen = config.get("generator_embeddings", "frozen") == "frozen"
            self.generator = Generator(create_backbone(config["backbone"], pretrained), task, dropout, frozen)
        self.complement = None
        if self.generator is not None and config.get("complement_weight", 0.0) > 0:
            self.complement = Predictor(create_backbone(config["backbone"], pretrained), len(config["labels"]),
                                        dropout)
        self.register_buffer("unselectable_ids", torch.tensor(config.get("unselectable_token_ids", []),
                                                               dtype=torch.long), persistent=False)
        if self.masking not in MASKINGS:
            raise ConfigError(f"unknown masking {self.masking!r}: expected one of {', '.join(MASKINGS)}")

    @property
    def masking(self) -> str:
        return self.config.get("masking", "zero")

    def freeze_layers(self, count: int, parts: str = "all") -> None:
        """Keep the input embeddings and first ``count`` blocks of some backbones as they are (``requires_grad`` off,
        eval mode): those of every part (``parts`` "all") or of the generator alone ("generator": under drop
        masking its predictor is cheap to train whole, and the generator's frozen blocks are what a cache keeps)."""
        if not count:
            return
        for part in (self.generator,) if parts == "generator" else (self.predictor, self.generator, self.complement):
            if part is not None:
                part.backbone.freeze_layers(count)

    @property
    def task(self) -> str:
        return self.config["task"]

    @property
    def labels(self) -> list[str]:
        return self.config["labels"]

    @property
    def ratio(self) -> float:
        return float(self.config["ratio"])

    @property
    def num_features(self) -> int:
        """L, the length of the feature grid: the padded max length (text) or the patch count."""
        grid = self.processor.grid()
        return grid["max_length"] if grid["type"] == "text" else grid["num_patches"]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def structural_mask(self, inputs: dict[str, Tensor]) -> Tensor | None:
        """(B, L) bool: the real tokens that are not features (special tokens), or None when there are none."""
        if "input_ids" not in inputs or self.unselectable_ids.numel() == 0:
            return None
        return torch.isin(inputs["input_ids"], self.unselectable_ids) & inputs["attention_mask"].bool()

    def feature_mask(self, inputs: dict[str, Tensor]) -> Tensor:
        """(B, L) bool: the features a rationale selects from (real tokens or patches, special tokens excluded)."""
        real = self.predictor.backbone.feature_mask(inputs)
        structural = self.structural_mask(inputs)
        return real if structural is None else real & ~structural

    def predict(self, inputs: dict[str, Tensor], mask: Tensor | None = None) -> Tensor:
        """Class logits of the predictor reading the features selected by ``mask`` (all when None). The
        special tokens are always read: they carry nothing of the input, and [CLS] is what is pooled."""
        return self._read(self.predictor, inputs, mask)

    def _read(self, predictor: Predictor, inputs: dict[str, Tensor], mask: Tensor | None) -> Tensor:
        structural = self.structural_mask(inputs) if mask is not None else None
        if structural is not None:
            mask = mask + structural.to(mask.dtype)
        if mask is None or self.masking == "zero":
            return predictor(inputs, mask)
        keep = mask.detach() > 0
        probes = self.config.get("drop_probes", 0.0)
        if self.training and probes > 0:
            keep = keep | self._probes(keep, self.feature_mask(inputs), probes)
        return predictor(inputs, mask, keep)

    @staticmethod
    def _probes(keep: Tensor, feature_mask: Tensor, per_selected: float) -> Tensor:
        """(B, L) bool: ``round(per_selected x kept)`` unkept features of each example, drawn uniformly."""
        candidates = feature_mask & ~keep
        count = torch.round(keep.sum(dim=1, keepdim=True) * per_selected)
        scores = torch.rand(keep.shape, device=keep.device).masked_fill(~candidates, -1.0)
        rank = scores.argsort(dim=1, descending=True).argsort(dim=1)
        return (rank < count) & candidates

    def select(self, gen_logits: Tensor, feature_mask: Tensor, selection: str = "topk", tau: float = 1.0,
               ratio: float | None = None) -> Tensor:
        """Hard mask from generator logits.

        ``gumbel``: straight-through Gumbel-softmax sample at ``tau`` (training; the reference code's
        noisy evaluation); ``gumbel_topk``: the same with exactly round(ratio x real features) sampled
        (training at many ratios, ``--ratio-range``); ``argmax``: the generator's own deterministic
        choice; ``topk``: exactly round(ratio x real features) by score (``ratio`` defaults to the
        model's training ratio).
        Padding is never selected.
        """
        if selection == "gumbel":
            return straight_through_gumbel(gen_logits, tau) * feature_mask
        if selection == "gumbel_topk":
            return gumbel_topk_mask(gen_logits, feature_mask, self.ratio if ratio is None else ratio, tau)
        if selection == "argmax":
            return argmax_mask(gen_logits, feature_mask)
        if selection == "topk":
            return topk_mask(gen_logits, feature_mask, self.ratio if ratio is None else ratio)
        raise ConfigError(f"unknown selection {selection!r}: expected one of {', '.join(SELECTIONS)}")

    def forward(self, inputs: dict[str, Tensor], selection: str = "topk", tau: float = 1.0,
                ratio: float | None = None, mask: Tensor | None = None,
                lower: Tensor | None = None) -> RationaleOutput:
        """Select (unless ``mask`` is given or the model is CLS), then predict from the selection. ``lower``:
        the frozen-block states of these inputs (a cache's), for the generator, or a CLS model's predictor."""
        feature_mask = self.feature_mask(inputs)
        if self.generator is None:
            return RationaleOutput(self.predictor(inputs, lower=lower), feature_mask)
        gen_logits = self.generator(inputs, lower).float()  # sampled and compared in float32 under autocast too
        if mask is None:
            mask = self.select(gen_logits, feature_mask, selection, tau, ratio)
        complement_logits = None
        if self.complement is not None and self.training:
            # the adversary learns from the unselected features; the generator, through the reversed
            # gradient, learns to leave it nothing to learn from (Yu et al. 2019)
            left_out = feature_mask.to(mask.dtype) - mask
            complement_logits = self._read(self.complement, inputs,
                                           reverse_gradient(left_out, self.config["complement_weight"]))
        return RationaleOutput(self.predict(inputs, mask), feature_mask, gen_logits, mask, complement_logits)
