"""Hugging Face backbones: text encoders (``hf_text``: the BERT family, from scratch or pretrained) and ViTs
(``hf_vision``: ViT, DeiT, DINOv2), from a hub id, a local directory or a packaged preset (packaged.py,
vision_weights.py). A ViT reads images of the run's size: its pretrained position embeddings are resampled to that
grid once, when the weights are loaded."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from .backbone_base import (
    BackboneKind,
    FreezableBackbone,
    VisionBackbone,
    check_task,
    freeze_blocks,
    gather_tokens,
    round_at_boundary,
)
from .errors import ConfigError, first_line
from .model_config import BackboneConfig
from .presets import Preset, pretrained_directory

HF_VISION_TYPES = {"vit", "deit", "dinov2"}


class TextBackbone(FreezableBackbone):
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
        self._set_frozen(freeze_blocks(self.encoder.embeddings, self.encoder.encoder.layer, count), count)


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
        self._set_frozen(freeze_blocks(self.model.embeddings, self.model.encoder.layer, count), count)

    def grid(self) -> dict:
        cfg = self.model.config
        return {"image_size": int(cfg.image_size), "patch_size": int(cfg.patch_size),
                "num_patches": int(self.num_patches)}


def hf_preset_config(preset: Preset, vocab_size: int | None = None, image_size: int | None = None,
                     patch_size: int | None = None) -> tuple[BackboneConfig, str | None]:
    """A preset's Hugging Face config: a packaged model's own (with the preset's overrides; a ViT at the run's
    image size) and its directory, or a BERT from scratch at the tokenizer's ``vocab_size``."""
    spec, task = preset.name, preset.task
    if preset.packaged:
        directory = str(pretrained_directory(preset))
        hf_config = _load_hf_config(directory).to_dict() | preset.overrides
        if task == "vision":
            hf_config = _at_image_size(spec, hf_config, image_size or preset.image_size,
                                       patch_size or preset.patch_size)
        return BackboneConfig(f"hf_{task}", spec, hf_config=hf_config), directory
    if task != "text":
        raise ConfigError(f"preset {spec!r}: a Hugging Face vision preset needs a packaged model")
    if vocab_size is None:
        raise ConfigError(f"text preset {spec!r} needs a tokenizer vocabulary size")
    from transformers import BertConfig

    hf_config = BertConfig(vocab_size=vocab_size, **preset.arch).to_dict()
    return BackboneConfig("hf_text", spec, hf_config=hf_config), None


def hf_spec_config(spec: str, task: str, image_size: int | None = None,
                   patch_size: int | None = None) -> tuple[BackboneConfig, str | None]:
    """The config of a Hugging Face hub id or local directory (a text encoder or a ViT, by its model type) and the
    source of its weights: itself, or None for a local directory without weights (an architecture to train from
    scratch)."""
    hf_config = _load_hf_config(spec)
    kind = "hf_vision" if hf_config.model_type in HF_VISION_TYPES else "hf_text"
    check_task(spec, "vision" if kind == "hf_vision" else "text", task)
    # a local directory with a config and no weights describes an architecture to train from scratch
    from_scratch = os.path.isdir(spec) and not _has_weights(spec)
    hf_config = hf_config.to_dict()
    if kind == "hf_vision":
        hf_config = _at_image_size(spec, hf_config, image_size, patch_size)
    return BackboneConfig(kind, spec, hf_config=hf_config), None if from_scratch else spec


def build_hf(config: BackboneConfig, pretrained: str | None = None) -> TextBackbone | HFViTBackbone:
    """A Hugging Face encoder (``hf_text``) or ViT (``hf_vision``) from its config; its weights from the model
    directory or hub id ``pretrained`` when given."""
    from transformers import AutoModel

    kind = config.type
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


HF_TEXT = BackboneKind("hf_text", build_hf, hf_preset_config)
HF_VISION = BackboneKind("hf_vision", build_hf, hf_preset_config)
