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

import torch
from torch import Tensor, nn

from .backbones import Backbone, create_backbone
from .errors import ConfigError
from .losses import argmax_mask, gumbel_topk_mask, reverse_gradient, straight_through_gumbel, topk_mask
from .model_config import SELECTIONS, ModelConfig


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

    Built whole from its ``ModelConfig`` (model_config.py): the special tokens (text: [CLS], [SEP] and the like,
    read but never selected nor counted as features), the generator's word embeddings frozen or not, a complement
    adversary (``complement_weight`` > 0: a second predictor that reads what the generator left out; the generator
    receives its gradient reversed and scaled by this weight), the masking (module docstring) with its training
    probes (``drop_probes``: this many unselected features per selected one, drawn at random, read as zero vectors
    at their positions, so that their straight-through gradient tells the generator what selecting them would
    do), and the frozen blocks (``freeze_layers`` of ``freeze_parts``).
    """

    def __init__(self, config: ModelConfig, processor=None, pretrained: str | None = None):
        super().__init__()
        self.config = config
        self.processor = processor
        num_labels, dropout = len(config.labels), config.dropout
        self.predictor = Predictor(create_backbone(config.backbone, pretrained), num_labels, dropout)
        self.generator = None
        if config.mode != "cls":
            self.generator = Generator(create_backbone(config.backbone, pretrained), config.task, dropout,
                                       config.generator_embeddings == "frozen")
        self.complement = None
        if self.generator is not None and config.complement_weight > 0:
            self.complement = Predictor(create_backbone(config.backbone, pretrained), num_labels, dropout)
        self.register_buffer("unselectable_ids", torch.tensor(config.unselectable_token_ids, dtype=torch.long),
                             persistent=False)
        self._freeze_layers(config.freeze_layers, config.freeze_parts)

    @property
    def masking(self) -> str:
        return self.config.masking

    def _freeze_layers(self, count: int, parts: str) -> None:
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
        return self.config.task

    @property
    def labels(self) -> list[str]:
        return self.config.labels

    @property
    def ratio(self) -> float:
        return float(self.config.ratio)

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
        probes = self.config.drop_probes
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
                                           reverse_gradient(left_out, self.config.complement_weight))
        return RationaleOutput(self.predict(inputs, mask), feature_mask, gen_logits, mask, complement_logits)
