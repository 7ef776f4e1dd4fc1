"""What every backbone shares, whatever its kind: the frozen part (``FreezableBackbone``, ``freeze_blocks``), the
ViT-shaped reading of a selection (``VisionBackbone``: patch embeddings multiplied by a mask, or only the kept
patches gathered, padded and attention-masked: ``gather_tokens``), the bf16 rounding of frozen-block states
(``round_at_boundary``), the attention kernels, and ``BackboneKind``: what backbones.py registers for each kind.

A transformer backbone whose first blocks are frozen (``freeze_layers``) splits the generator's pass in two:
``lower_states`` (embeddings and frozen blocks, a function of the input alone, which a cache can keep per training
example) and the rest, from those states (``feature_states(inputs, lower)``).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Iterator, Literal, get_args

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .errors import ConfigError
from .model_config import BackboneConfig

# How attention is computed: PyTorch's fused scaled-dot-product kernel, or matmul, softmax, matmul. On a CPU in
# bfloat16 the second trains faster (its backward is two batched matmuls, which AMX runs; the fused kernel's
# backward is not): bench/README.md.
AttentionKernel = Literal["sdpa", "eager"]
ATTENTION_KERNELS: tuple[str, ...] = get_args(AttentionKernel)


@dataclass(frozen=True)
class BackboneKind:
    """One kind of backbone, registered in ``backbones.KINDS`` under its ``name`` (``BackboneConfig.type``):
    ``build`` makes the backbone a config describes, loading weights from a pretrained source when given;
    ``from_preset`` gives a preset's config (at the run's vocabulary, image and patch sizes) and its pretrained
    source (None: trained from scratch)."""

    name: str
    build: Callable[[BackboneConfig, str | None], nn.Module]
    from_preset: Callable[..., tuple[BackboneConfig, str | None]]


def gather_tokens(hidden: Tensor, keep: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    """The kept tokens of each row of ``hidden`` (B, T, D), in their order, left-aligned and padded to the
    row that keeps most: ``(tokens (B, K, D), their indices (B, K), valid (B, K) bool or None)``. ``valid``
    marks the real entries; it is None when every row keeps the same count (nothing padded). A padded
    entry repeats an unkept token and must be masked out of attention."""
    counts = keep.sum(dim=1)
    most = int(counts.max())
    # a stable sort puts each row's kept tokens first, in their order
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices[:, :most]
    tokens = hidden.gather(1, order.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    if bool((counts == most).all()):
        return tokens, order, None
    return tokens, order, torch.arange(most, device=keep.device) < counts.unsqueeze(1)


def round_at_boundary(states: Tensor) -> Tensor:
    """Frozen-block states as a cache keeps them: under bf16 autocast rounded to bfloat16 (and back), so that
    the live pass and the cached one feed the trainable blocks the very same numbers; unchanged in fp32."""
    device = states.device.type
    if torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16:
        return states.to(torch.bfloat16).to(states.dtype)
    return states


class FreezableBackbone(nn.Module):
    """What every backbone shares about its frozen part: how many of its first blocks are frozen, and that those
    (and its embeddings) run in eval mode, without dropout, so that their output is a function of the input
    alone, as a cache of it must be."""

    frozen_blocks = 0

    def _set_frozen(self, modules: list[nn.Module], count: int) -> None:
        self.frozen_blocks = count
        self._frozen_modules = [m for m in modules if m is not None]
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        for module in getattr(self, "_frozen_modules", []):
            module.eval()
        return self


class VisionBackbone(FreezableBackbone):
    """A ViT whose patch-embedding module's output can be multiplied by a per-patch mask.

    When the patch embedding mixes patches (a 3x3 convolutional stem, whose tokens also see the
    neighbouring patches' pixels), the pixels of unselected patches are zeroed too, so that they never
    reach the predictor. Only then: the zeroed pixels also change the straight-through gradient that
    the generator gets for an unselected patch (its embedding no longer holds the patch's content).

    A ViT's token sequence is its prefix (``num_prefix``: [CLS], registers), then one token per patch. The
    subclasses say how their model embeds (``_embed``), runs blocks (``_blocks``), normalises (``_finish``) and
    pools (``_pool``); ``_feature_states`` and ``_pooled`` are the model's own forward passes.
    """

    num_patches: int
    num_prefix = 1
    mixes_patches: bool = False

    @property
    def patch_module(self) -> nn.Module:
        """The module whose output is the (B, N, D) patch embeddings (not registered twice)."""
        raise NotImplementedError

    def feature_mask(self, inputs: dict[str, Tensor]) -> Tensor:
        pixels = inputs["pixel_values"]
        return torch.ones(pixels.shape[0], self.num_patches, dtype=torch.bool, device=pixels.device)

    def feature_states(self, inputs: dict[str, Tensor], lower: Tensor | None = None) -> Tensor:
        """Per-patch hidden states; from ``lower`` (``lower_states`` of these inputs, e.g. cached) when given."""
        if lower is None and not self.frozen_blocks:
            return self._feature_states(inputs["pixel_values"])
        if lower is None:
            lower = self.lower_states(inputs)
        return self._finish(self._blocks(lower, None, self.frozen_blocks, None))[:, self.num_prefix:]

    def lower_states(self, inputs: dict[str, Tensor]) -> Tensor:
        """The embeddings and the frozen blocks' output: what a cache keeps per training example."""
        return round_at_boundary(self._blocks(self._embed(inputs["pixel_values"]), None, 0, self.frozen_blocks))

    @contextlib.contextmanager
    def _masked_patches(self, mask: Tensor | None) -> Iterator[None]:
        if mask is None:
            yield
            return

        def multiply(module: nn.Module, args: tuple, out: Tensor) -> Tensor:
            return out * mask.reshape(out.shape[:-1]).unsqueeze(-1).to(out.dtype)

        handle = self.patch_module.register_forward_hook(multiply)
        try:
            yield
        finally:
            handle.remove()

    def pooled(self, inputs: dict[str, Tensor], mask: Tensor | None = None, keep: Tensor | None = None,
               lower: Tensor | None = None) -> Tensor:
        """The pooled state of the image whose patch embeddings were multiplied by ``mask``: every patch read
        (``keep`` None), or only the patches of ``keep`` (B, N) bool, each with its position embedding, and
        the prefix. Without a mask, from ``lower`` when given (a CLS model's cached frozen blocks)."""
        if mask is None and keep is None and (lower is not None or self.frozen_blocks):
            lower = self.lower_states(inputs) if lower is None else lower
            return self._pool(self._finish(self._blocks(lower, None, self.frozen_blocks, None)))
        pixels = inputs["pixel_values"]
        if mask is not None and self.mixes_patches:
            pixels = pixels * self._pixel_mask(mask.to(pixels.dtype))
        with self._masked_patches(mask):
            if keep is None:
                return self._pooled(pixels)
            tokens = self._embed(pixels)
        prefix = keep.new_ones(keep.shape[0], self.num_prefix)
        tokens, _, valid = gather_tokens(tokens, torch.cat([prefix, keep], dim=1))
        return self._pool(self._finish(self._blocks(tokens, valid, 0, None)))

    def grid(self) -> dict:
        """Its feature grid: image size, patch size (pixels) and number of patches."""
        raise NotImplementedError

    def _pixel_mask(self, mask: Tensor) -> Tensor:
        """(B, N) patch mask -> (B, 1, H, W) pixel mask."""
        grid = self.grid()
        side = grid["image_size"] // grid["patch_size"]
        return F.interpolate(mask.reshape(-1, 1, side, side), scale_factor=grid["patch_size"], mode="nearest")

    def _feature_states(self, pixels: Tensor) -> Tensor:
        raise NotImplementedError

    def _pooled(self, pixels: Tensor) -> Tensor:
        raise NotImplementedError

    def _embed(self, pixels: Tensor) -> Tensor:
        """(B, prefix + N, D): the input tokens with their position embeddings."""
        raise NotImplementedError

    def _blocks(self, hidden: Tensor, valid: Tensor | None, start: int, stop: int | None) -> Tensor:
        """Blocks ``start:stop`` over ``hidden``; ``valid`` (B, T) bool masks padded tokens out of attention."""
        raise NotImplementedError

    def _finish(self, hidden: Tensor) -> Tensor:
        raise NotImplementedError

    def _pool(self, hidden: Tensor) -> Tensor:
        return hidden[:, 0]

    def freeze_input_embeddings(self) -> None:
        """Vision generators train their patch embedding (METHOD.md freezes only word embeddings)."""

    def set_attention(self, kind: str) -> None:
        """``sdpa`` or ``eager`` attention (``ATTENTION_KERNELS``); a CNN has none."""

    def freeze_layers(self, count: int) -> None:
        """Keep the patch and position embeddings and the first ``count`` blocks as they are (the ViT backbones;
        a CNN's cells have no such blocks)."""
        raise ConfigError(f"--freeze-layers is for transformer backbones, not {type(self).__name__}")


def freeze_blocks(embeddings: nn.Module | list, layers: nn.ModuleList, count: int) -> list[nn.Module]:
    """``requires_grad`` off for the embeddings (a module, or a list of modules and parameters, None skipped) and
    the first ``count`` of ``layers``; returns the modules among them (none when ``count`` is 0)."""
    if count > len(layers):
        raise ConfigError(f"--freeze-layers {count}: the backbone has only {len(layers)} layers")
    if count == 0:
        return []
    parts = [p for p in [*(embeddings if isinstance(embeddings, list) else [embeddings]), *layers[:count]]
             if p is not None]
    for part in parts:  # a module or a parameter
        part.requires_grad_(False)
    return [part for part in parts if isinstance(part, nn.Module)]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_task(spec: str, backbone_task: str, task: str) -> None:
    if backbone_task != task:
        raise ConfigError(f"backbone {spec!r} is a {backbone_task} backbone, but the task is {task}")
