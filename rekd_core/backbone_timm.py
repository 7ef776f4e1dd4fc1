"""timm Vision Transformers (``timm``): the vision presets from scratch, at their own sizes, optionally behind a
convolutional stem, and any ``timm:NAME``."""
from __future__ import annotations

from functools import partial

from torch import Tensor, nn

from .backbone_base import BackboneKind, VisionBackbone, freeze_blocks
from .errors import ConfigError, first_line
from .model_config import BackboneConfig
from .presets import TIMM_BASE, Preset


class TimmViTBackbone(VisionBackbone):
    """A timm Vision Transformer (``timm``)."""

    def __init__(self, model: nn.Module, mixes_patches: bool = False):
        super().__init__()
        self.model = model
        self.mixes_patches = mixes_patches
        self.num_patches = model.patch_embed.num_patches
        self.num_prefix = model.num_prefix_tokens
        self.hidden_size = model.num_features

    @property
    def patch_module(self) -> nn.Module:
        return self.model.patch_embed

    def _feature_states(self, pixels: Tensor) -> Tensor:
        return self.model.forward_features(pixels)[:, self.num_prefix:]

    def _pooled(self, pixels: Tensor) -> Tensor:
        return self.model.forward_head(self.model.forward_features(pixels), pre_logits=True)

    def _embed(self, pixels: Tensor) -> Tensor:
        model = self.model
        return model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(pixels))))

    def _blocks(self, hidden: Tensor, valid: Tensor | None, start: int, stop: int | None) -> Tensor:
        attn_mask = None if valid is None else valid[:, None, None, :]
        for block in self.model.blocks[start:stop]:
            hidden = block(hidden) if attn_mask is None else block(hidden, attn_mask=attn_mask)
        return hidden

    def _finish(self, hidden: Tensor) -> Tensor:
        return self.model.norm(hidden)

    def set_attention(self, kind: str) -> None:
        for module in self.model.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = kind == "sdpa"

    def _pool(self, hidden: Tensor) -> Tensor:
        if self.model.global_pool != "token":  # a mean over tokens would take in the padding
            raise ConfigError(f"a timm ViT pooled by {self.model.global_pool!r} cannot read dropped patches; "
                              "drop masking needs one pooled by its class token")
        return self.model.forward_head(hidden, pre_logits=True)

    def freeze_layers(self, count: int) -> None:
        model = self.model
        embeddings = [model.patch_embed, model.pos_drop, model.patch_drop, model.norm_pre] + [
            getattr(model, name, None) for name in ("cls_token", "reg_token", "pos_embed")]
        self._set_frozen(freeze_blocks(embeddings, model.blocks, count), count)

    def grid(self) -> dict:
        embed = self.model.patch_embed
        return {"image_size": int(embed.img_size[0]), "patch_size": int(embed.img_size[0] // embed.grid_size[0]),
                "num_patches": int(embed.num_patches)}


def timm_preset_config(preset: Preset, vocab_size: int | None = None, image_size: int | None = None,
                       patch_size: int | None = None) -> tuple[BackboneConfig, None]:
    """A ViT preset's config at the run's image and patch sizes (trained from scratch)."""
    kwargs = dict(preset.arch, img_size=image_size or preset.image_size, patch_size=patch_size or preset.patch_size)
    if not preset.conv_stem:
        return BackboneConfig("timm", preset.name, name=TIMM_BASE, kwargs=kwargs), None
    return BackboneConfig("timm", preset.name, name=TIMM_BASE, kwargs=kwargs, conv_stem=list(preset.conv_stem),
                          conv_stem_kernel=preset.conv_stem_kernel), None


def timm_spec_config(spec: str, image_size: int | None = None,
                     patch_size: int | None = None) -> tuple[BackboneConfig, str]:
    """The config of ``timm:NAME`` (timm's pretrained weights, at the run's sizes when given)."""
    kwargs = {k: v for k, v in (("img_size", image_size), ("patch_size", patch_size)) if v}
    return BackboneConfig("timm", spec, name=spec[len("timm:"):], kwargs=kwargs), spec


def build_timm(config: BackboneConfig, pretrained: str | None = None) -> TimmViTBackbone:
    """A timm Vision Transformer (a convolutional stem in place of its patch embedding when the config has one);
    timm's pretrained weights when ``pretrained`` is set."""
    import timm

    kwargs = dict(config.kwargs)
    stem, kernel = config.conv_stem, config.conv_stem_kernel
    if stem:
        kwargs.update(patch_size=1, embed_layer=_conv_stem_embedding(stem, kernel, kwargs.get("patch_size")))
    try:
        model = timm.create_model(config.name, pretrained=bool(pretrained), num_classes=0, **kwargs)
    except Exception as exc:  # unknown name, unreachable hub, bad kwargs
        raise ConfigError(f"cannot create timm model {config.name!r}: {first_line(exc)}") from exc
    return TimmViTBackbone(model, mixes_patches=bool(stem) and kernel > 2)


def _conv_stem_embedding(widths: list[int], kernel_size: int, patch_size: int | None):
    """timm's ConvStem (stride-2 convolutions, the last without norm and activation) inside its
    HybridEmbed, whose 1x1 projection maps the stem's last width to the ViT's embedding. A 2x2 kernel
    is unpadded, so that each token depends on its own patch's pixels alone."""
    from timm.layers import HybridEmbed
    from timm.models.vision_transformer_hybrid import ConvStem

    if patch_size != 2 ** len(widths):
        raise ConfigError(f"a convolutional stem of {len(widths)} stride-2 layers makes patches of "
                          f"{2 ** len(widths)} pixels, not {patch_size}")
    stem = ConvStem(in_chans=3, depth=len(widths), channels=tuple(widths), kernel_size=kernel_size,
                    stride=(2,) * len(widths), padding="" if kernel_size % 2 else 0)
    return partial(HybridEmbed, backbone=stem)


TIMM_VIT = BackboneKind("timm", build_timm, timm_preset_config)
