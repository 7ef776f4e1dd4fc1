"""One interface over the encoders a select-predict model can use.

A backbone gives the generator per-feature hidden states, and gives the predictor a pooled
([CLS]) representation of the input whose feature embeddings were multiplied by a mask. Two ways to
read a selection (``pooled``'s ``keep``): every feature enters the encoder, an unselected one as a zero
vector at its position (``zero``, METHOD.md), or only the kept features do, each at its own position,
padded per batch and attention-masked (``drop``, as MAE's encoder reads its visible patches).

A transformer backbone whose first blocks are frozen (``freeze_layers``) splits the generator's pass
in two: ``lower_states`` (embeddings and frozen blocks, a function of the input alone, which a cache can
keep per training example) and the rest, from those states (``feature_states(inputs, lower)``).

A backbone is built from its ``BackboneConfig`` (model_config.py), stored in checkpoints, so a model is
rebuilt from its checkpoint without any download. By ``type``:

- ``hf_text`` (``hf_config``): any Hugging Face encoder that accepts ``inputs_embeds``
- ``hf_vision`` (``hf_config``): a Hugging Face ViT (ViT, DeiT, DINOv2); its ``image_size`` is the run's, the
  pretrained position embeddings resampled to that grid once, when the weights are loaded
- ``timm`` (``name``, ``kwargs``): a timm Vision Transformer, optionally with ``conv_stem`` widths and
  ``conv_stem_kernel``, a convolutional stem in place of the linear patch embedding
- ``timm_cnn`` (``name``, ``feature_index``, ``image_size``, ``cell_size``): a timm CNN whose feature map's cells
  are the features
"""
from __future__ import annotations

import contextlib
import os
from functools import partial
from pathlib import Path
from typing import Iterator, Literal, get_args

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .errors import ConfigError, first_line
from .model_config import BackboneConfig
from .presets import PRESETS, TIMM_BASE, pretrained_directory

HF_VISION_TYPES = {"vit", "deit", "dinov2"}
# How attention is computed: PyTorch's fused scaled-dot-product kernel, or matmul, softmax, matmul. On a CPU in
# bfloat16 the second trains faster (its backward is two batched matmuls, which AMX runs; the fused kernel's
# backward is not): bench/README.md.
AttentionKernel = Literal["sdpa", "eager"]
ATTENTION_KERNELS: tuple[str, ...] = get_args(AttentionKernel)


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


class _FreezableBackbone(nn.Module):
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


class TextBackbone(_FreezableBackbone):
    """A Hugging Face text encoder (BERT family). Its features are its tokens, [CLS] (the pooled one) among them."""

    num_prefix = 0

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.hidden_size = encoder.config.hidden_size

    def feature_mask(self, inputs: dict[str, Tensor]) -> Tensor:
        return inputs["attention_mask"].bool()

    def feature_states(self, inputs: dict[str, Tensor], lower: Tensor | None = None) -> Tensor:
        """Per-token hidden states; from ``lower`` (``lower_states`` of these inputs, e.g. cached) when given."""
        if lower is None and not self.frozen_blocks:
            out = self.encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            return out.last_hidden_state
        if lower is None:
            lower = self.lower_states(inputs)
        return self._layers(lower, inputs["attention_mask"], self.frozen_blocks, None)

    def lower_states(self, inputs: dict[str, Tensor]) -> Tensor:
        """The embeddings and the frozen layers' output: what a cache keeps per training example."""
        hidden = self.encoder.embeddings(input_ids=inputs["input_ids"])
        return round_at_boundary(self._layers(hidden, inputs["attention_mask"], 0, self.frozen_blocks))

    def pooled(self, inputs: dict[str, Tensor], mask: Tensor | None = None, keep: Tensor | None = None,
               lower: Tensor | None = None) -> Tensor:
        """The [CLS] state of the input whose word embeddings were multiplied by ``mask``: every token read
        (``keep`` None), or only the tokens of ``keep`` (B, L) bool, each at its own position id, and [CLS].
        Without a mask, from ``lower`` when given (a CLS model's cached frozen layers)."""
        attention = inputs["attention_mask"]
        if mask is None and keep is None and (lower is not None or self.frozen_blocks):
            lower = self.lower_states(inputs) if lower is None else lower
            return self._layers(lower, attention, self.frozen_blocks, None)[:, 0]
        embeds = self.encoder.get_input_embeddings()(inputs["input_ids"])
        if mask is not None:
            embeds = embeds * mask.unsqueeze(-1).to(embeds.dtype)
        if keep is None:
            return self.encoder(inputs_embeds=embeds, attention_mask=attention).last_hidden_state[:, 0]
        keep = keep & attention.bool()
        keep[:, 0] = True  # [CLS] is what is pooled
        embeds, positions, valid = gather_tokens(embeds, keep)
        out = self.encoder(inputs_embeds=embeds, position_ids=positions,
                           attention_mask=None if valid is None else valid.long())
        return out.last_hidden_state[:, 0]

    def _layers(self, hidden: Tensor, attention: Tensor, start: int, stop: int | None) -> Tensor:
        """Encoder layers ``start:stop`` over ``hidden``, as the model's own forward runs them."""
        from transformers.masking_utils import create_bidirectional_mask

        mask = create_bidirectional_mask(config=self.encoder.config, inputs_embeds=hidden, attention_mask=attention)
        for layer in self.encoder.encoder.layer[start:stop]:
            hidden = layer(hidden, mask)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        return hidden

    def freeze_input_embeddings(self) -> None:
        self.encoder.get_input_embeddings().weight.requires_grad_(False)

    def set_attention(self, kind: str) -> None:
        """``sdpa`` (PyTorch's fused kernel) or ``eager`` (matmul, softmax, matmul): ``ATTENTION_KERNELS``."""
        self.encoder.set_attn_implementation(kind)

    def freeze_layers(self, count: int) -> None:
        """Keep the embeddings and the first ``count`` encoder layers as they are (``requires_grad`` off, eval mode)."""
        self._set_frozen(_freeze(self.encoder.embeddings, self.encoder.encoder.layer, count), count)


class VisionBackbone(_FreezableBackbone):
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

    def _pixel_mask(self, mask: Tensor) -> Tensor:
        """(B, N) patch mask -> (B, 1, H, W) pixel mask."""
        grid = feature_grid(self)
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


class TimmViTBackbone(VisionBackbone):
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
        self._set_frozen(_freeze(embeddings, model.blocks, count), count)


class HFViTBackbone(VisionBackbone):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.num_patches = model.embeddings.patch_embeddings.num_patches
        self.hidden_size = model.config.hidden_size

    @property
    def patch_module(self) -> nn.Module:
        return self.model.embeddings.patch_embeddings

    def _feature_states(self, pixels: Tensor) -> Tensor:
        return self.model(pixel_values=pixels).last_hidden_state[:, 1:]

    def _pooled(self, pixels: Tensor) -> Tensor:
        return self.model(pixel_values=pixels).last_hidden_state[:, 0]

    def _embed(self, pixels: Tensor) -> Tensor:
        return self.model.embeddings(pixels.to(self.patch_module.projection.weight.dtype))

    def _blocks(self, hidden: Tensor, valid: Tensor | None, start: int, stop: int | None) -> Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        mask = None if valid is None else create_bidirectional_mask(
            config=self.model.config, inputs_embeds=hidden, attention_mask=valid.long())
        for layer in self.model.encoder.layer[start:stop]:
            hidden = layer(hidden, mask)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        return hidden

    def _finish(self, hidden: Tensor) -> Tensor:
        return self.model.layernorm(hidden)

    def set_attention(self, kind: str) -> None:
        self.model.set_attn_implementation(kind)

    def freeze_layers(self, count: int) -> None:
        self._set_frozen(_freeze(self.model.embeddings, self.model.encoder.layer, count), count)


class TimmCNNBackbone(VisionBackbone):
    """A timm convolutional network over a grid of square cells: the features a rationale selects are the
    cells of one of its intermediate feature maps (``feature_index``: for EfficientNet, index 3 is the
    stride-16 map, so 8x8 cells of 16 pixels at 128 px), whose states the generator scores; the predictor
    pools the network's last map. Convolutions see across cell borders, so the predictor zeroes the pixels
    of unselected cells (the normalised mean colour): nothing of them reaches it. Its batch norms keep
    their pretrained statistics while training: re-estimated on small batches of upsampled images, they cost a
    brief CIFAR-10 fine-tune of EfficientNet-Lite0 a quarter of its test accuracy (0.51 against 0.75)."""

    mixes_patches = True

    def __init__(self, model: nn.Module, feature_index: int, image_size: int, cell_size: int):
        super().__init__()
        self.model = model
        self.feature_index = feature_index
        self.image_size, self.cell_size = image_size, cell_size
        self.num_patches = (image_size // cell_size) ** 2
        self.hidden_size = model.num_features
        self.feature_size = model.feature_info[feature_index]["num_chs"]

    def feature_states(self, inputs: dict[str, Tensor], lower: Tensor | None = None) -> Tensor:
        [cells] = self.model.forward_intermediates(inputs["pixel_values"], indices=[self.feature_index],
                                                   intermediates_only=True)
        return cells.flatten(2).transpose(1, 2)  # (B, cells, channels), row-major

    def pooled(self, inputs: dict[str, Tensor], mask: Tensor | None = None, keep: Tensor | None = None,
               lower: Tensor | None = None) -> Tensor:
        if keep is not None:
            raise ConfigError("a CNN reads every cell of its image: drop masking is for transformer backbones")
        pixels = inputs["pixel_values"]
        if mask is not None:
            pixels = pixels * self._pixel_mask(mask.to(pixels.dtype))
        return self.model(pixels)

    def train(self, mode: bool = True) -> "TimmCNNBackbone":
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self


Backbone = TextBackbone | VisionBackbone


def _freeze(embeddings: nn.Module | list, layers: nn.ModuleList, count: int) -> list[nn.Module]:
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


def resolve_backbone(spec: str, task: str, *, vocab_size: int | None = None,
                     image_size: int | None = None, patch_size: int | None = None) -> tuple[BackboneConfig, str | None]:
    """Turn a backbone SPEC into ``(backbone config, pretrained source or None)``.

    SPEC is a preset name, ``timm:NAME`` or a Hugging Face hub id / local directory. The config
    records the spec as ``source``.
    """
    if spec in PRESETS:
        preset = PRESETS[spec]
        _check_task(spec, preset.task, task)
        if preset.cnn:
            size = image_size or preset.image_size
            return BackboneConfig("timm_cnn", spec, name=preset.cnn, feature_index=preset.feature_index,
                                  image_size=size, cell_size=patch_size or preset.patch_size), spec
        if preset.packaged:
            directory = str(pretrained_directory(preset))
            hf_config = _load_hf_config(directory).to_dict() | preset.overrides
            if task == "vision":
                hf_config = _at_image_size(spec, hf_config, image_size or preset.image_size,
                                           patch_size or preset.patch_size)
            return BackboneConfig(f"hf_{task}", spec, hf_config=hf_config), directory
        if task == "text":
            if vocab_size is None:
                raise ConfigError(f"text preset {spec!r} needs a tokenizer vocabulary size")
            from transformers import BertConfig

            hf_config = BertConfig(vocab_size=vocab_size, **preset.arch).to_dict()
            return BackboneConfig("hf_text", spec, hf_config=hf_config), None
        kwargs = dict(preset.arch, img_size=image_size or preset.image_size, patch_size=patch_size or preset.patch_size)
        if not preset.conv_stem:
            return BackboneConfig("timm", spec, name=TIMM_BASE, kwargs=kwargs), None
        return BackboneConfig("timm", spec, name=TIMM_BASE, kwargs=kwargs, conv_stem=list(preset.conv_stem),
                              conv_stem_kernel=preset.conv_stem_kernel), None
    if spec.startswith("timm:"):
        _check_task(spec, "vision", task)
        kwargs = {k: v for k, v in (("img_size", image_size), ("patch_size", patch_size)) if v}
        return BackboneConfig("timm", spec, name=spec[len("timm:"):], kwargs=kwargs), spec
    hf_config = _load_hf_config(spec)
    kind = "hf_vision" if hf_config.model_type in HF_VISION_TYPES else "hf_text"
    _check_task(spec, "vision" if kind == "hf_vision" else "text", task)
    # a local directory with a config and no weights describes an architecture to train from scratch
    from_scratch = os.path.isdir(spec) and not _has_weights(spec)
    hf_config = hf_config.to_dict()
    if kind == "hf_vision":
        hf_config = _at_image_size(spec, hf_config, image_size, patch_size)
    return BackboneConfig(kind, spec, hf_config=hf_config), None if from_scratch else spec


def create_backbone(config: BackboneConfig, pretrained: str | None = None) -> Backbone:
    """Build the backbone described by ``config``; load weights from ``pretrained`` when given."""
    kind = config.type
    if kind == "timm_cnn":
        return _cnn_backbone(config, pretrained)
    if kind == "timm":
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
    from transformers import AutoModel

    if pretrained:
        hf_config = _hf_config(config)
        if kind == "hf_vision":  # load at the size its position embeddings were trained for, then resample
            hf_config.image_size = _load_hf_config(pretrained).image_size
        try:
            model = AutoModel.from_pretrained(pretrained, config=hf_config, attn_implementation="sdpa",
                                              **_no_pooler(config))
        except Exception as exc:
            raise ConfigError(f"cannot load pretrained backbone {pretrained!r}: {first_line(exc)}") from exc
        if kind == "hf_vision":
            resample_positions(model, config.hf_config["image_size"])
    else:
        model = AutoModel.from_config(_hf_config(config), attn_implementation="sdpa", **_no_pooler(config))
    return HFViTBackbone(model) if kind == "hf_vision" else TextBackbone(model)


def packaged_weights(config: BackboneConfig) -> str | None:
    """What ``create_backbone(config, ...)`` loads a packaged preset's pretrained weights from (its installed
    package's directory, its sha256 checked, or the preset's name for a CNN); None for any other backbone."""
    preset = PRESETS.get(config.source)
    if preset is None or preset.packaged is None:
        return None
    return preset.name if preset.cnn else str(pretrained_directory(preset))


def _cnn_backbone(config: BackboneConfig, pretrained: str | None) -> TimmCNNBackbone:
    """A packaged pretrained CNN preset (its weights from vision_weights), or the same network from scratch."""
    import timm

    from .vision_weights import efficientnet_lite0_pretrained

    loaders = {"tf_efficientnet_lite0": efficientnet_lite0_pretrained}
    if pretrained and config.name not in loaders:
        raise ConfigError(f"no packaged weights for the CNN {config.name!r}")
    model = (loaders[config.name](num_classes=0) if pretrained
             else timm.create_model(config.name, pretrained=False, num_classes=0))
    size, cell = config.image_size, config.cell_size
    reduction = model.feature_info[config.feature_index]["reduction"]
    if cell != reduction or size % cell:
        raise ConfigError(f"{config.source}: its feature map {config.feature_index} has cells of {reduction} "
                          f"pixels, so --patch-size must be {reduction} and --image-size a multiple of it "
                          f"(got {cell} and {size})")
    return TimmCNNBackbone(model, config.feature_index, size, cell)


def resample_positions(model: nn.Module, image_size: int) -> None:
    """Make a Hugging Face ViT take ``image_size`` px images natively: its position embeddings resampled
    once (bicubic, by the model's own ``interpolate_pos_encoding``) to the new patch grid, then trained as
    they are, rather than resampled from the pretrained grid on every forward pass."""
    embeddings = model.embeddings
    side = image_size // model.config.patch_size
    if embeddings.position_embeddings.shape[1] != side * side + 1:
        with torch.no_grad():
            grid = torch.zeros(1, side * side + 1, model.config.hidden_size)
            resampled = embeddings.interpolate_pos_encoding(grid, image_size, image_size)
        embeddings.position_embeddings = nn.Parameter(resampled.detach().clone())
    patches = embeddings.patch_embeddings
    patches.image_size, patches.num_patches = (image_size, image_size), side * side
    model.config.image_size = image_size


def _at_image_size(spec: str, hf_config: dict, image_size: int | None, patch_size: int | None) -> dict:
    """A Hugging Face ViT config for the run's image size (its patch size is the model's own)."""
    patch = hf_config["patch_size"]
    if patch_size and patch_size != patch:
        raise ConfigError(f"backbone {spec!r} has patches of {patch} px, not --patch-size {patch_size}")
    if image_size and image_size % patch:
        raise ConfigError(f"--image-size {image_size} is not a multiple of {spec!r}'s {patch} px patches")
    return hf_config | ({"image_size": image_size} if image_size else {})


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


def feature_grid(backbone: Backbone) -> dict:
    """The vision feature grid of a backbone: image size, patch size (pixels) and number of patches."""
    if isinstance(backbone, TimmCNNBackbone):
        return {"image_size": backbone.image_size, "patch_size": backbone.cell_size,
                "num_patches": backbone.num_patches}
    if isinstance(backbone, TimmViTBackbone):
        embed = backbone.model.patch_embed
        return {"image_size": int(embed.img_size[0]), "patch_size": int(embed.img_size[0] // embed.grid_size[0]),
                "num_patches": int(embed.num_patches)}
    cfg = backbone.model.config
    return {"image_size": int(cfg.image_size), "patch_size": int(cfg.patch_size),
            "num_patches": int(backbone.num_patches)}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _no_pooler(config: BackboneConfig) -> dict:
    model_type = (config.hf_config or {}).get("model_type")
    # the pooler is unused (the predictor reads the [CLS] state) and would get no gradient
    return {"add_pooling_layer": False} if model_type in {"bert", "roberta", "vit"} else {}


def _load_hf_config(spec: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(spec)
    except Exception as exc:
        where = "local directory" if os.path.isdir(spec) else "hub id (is the hub reachable?)"
        raise ConfigError(f"unknown backbone {spec!r}: not a preset, not timm:NAME, and not a loadable "
                          f"Hugging Face {where}: {first_line(exc)}") from exc


def _hf_config(config: BackboneConfig):
    """The Hugging Face config object of a backbone config."""
    from transformers import AutoConfig

    hf_config = dict(config.hf_config)
    return AutoConfig.for_model(hf_config.pop("model_type"), **hf_config)


def starts_pretrained(spec: str, pretrained: bool = True) -> bool:
    """Whether a backbone SPEC that is not a preset loads pretrained weights: a ``timm:`` name or a hub id unless
    ``pretrained`` is off, a local Hugging Face directory when it holds weights (a config alone is trained from
    scratch)."""
    if os.path.isdir(spec):
        return pretrained and _has_weights(spec)
    return pretrained


def _has_weights(directory: str) -> bool:
    """Whether a local Hugging Face model directory holds weights (safetensors or PyTorch, sharded or not)."""
    patterns = ("*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json")
    return any(next(Path(directory).glob(pattern), None) is not None for pattern in patterns)


def _check_task(spec: str, backbone_task: str, task: str) -> None:
    if backbone_task != task:
        raise ConfigError(f"backbone {spec!r} is a {backbone_task} backbone, but the task is {task}")

