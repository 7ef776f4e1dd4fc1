"""The backbones a select-predict model can use, by kind, behind one registry (``KINDS``).

A backbone gives the generator per-feature hidden states, and gives the predictor a pooled ([CLS]) representation
of the input whose feature embeddings were multiplied by a mask. Two ways to read a selection (``pooled``'s
``keep``): every feature enters the encoder, an unselected one as a zero vector at its position (``zero``,
METHOD.md), or only the kept features do, each at its own position, padded per batch and attention-masked
(``drop``, as MAE's encoder reads its visible patches). What every kind shares is in backbone_base.py.

Each kind is one module and one entry of ``KINDS``, keyed by the ``type`` of its ``BackboneConfig`` (stored in
checkpoints, so a model is rebuilt from its checkpoint without any download): ``hf_text`` and ``hf_vision``
(backbone_hf.py: Hugging Face encoders and ViTs, from a hub id, a local directory or a packaged preset),
``timm`` (backbone_timm.py: timm ViTs), ``timm_cnn`` (backbone_cnn.py: timm CNNs with packaged weights). A
preset names its kind (presets.py); ``resolve_backbone`` turns a ``--backbone`` spec into a config and
``create_backbone`` builds it.
"""
from __future__ import annotations

from .backbone_base import (
    ATTENTION_KERNELS,
    AttentionKernel,
    BackboneKind,
    VisionBackbone,
    check_task,
    count_parameters,
)
from .backbone_cnn import TIMM_CNN
from .backbone_hf import HF_TEXT, HF_VISION, TextBackbone, hf_spec_config, starts_pretrained
from .backbone_timm import TIMM_VIT, timm_spec_config
from .errors import ConfigError
from .model_config import BackboneConfig
from .presets import PRESETS, pretrained_directory

__all__ = ["ATTENTION_KERNELS", "KINDS", "AttentionKernel", "Backbone", "count_parameters", "create_backbone",
           "feature_grid", "packaged_weights", "resolve_backbone", "starts_pretrained"]

KINDS: dict[str, BackboneKind] = {kind.name: kind for kind in (HF_TEXT, HF_VISION, TIMM_VIT, TIMM_CNN)}

Backbone = TextBackbone | VisionBackbone


def resolve_backbone(spec: str, task: str, *, vocab_size: int | None = None,
                     image_size: int | None = None, patch_size: int | None = None) -> tuple[BackboneConfig, str | None]:
    """Turn a backbone SPEC into ``(backbone config, pretrained source or None)``.

    SPEC is a preset name (its kind's config), ``timm:NAME`` or a Hugging Face hub id / local directory. The config
    records the spec as ``source``.
    """
    if spec in PRESETS:
        preset = PRESETS[spec]
        check_task(spec, preset.task, task)
        return KINDS[preset.kind].from_preset(preset, vocab_size=vocab_size, image_size=image_size,
                                              patch_size=patch_size)
    if spec.startswith("timm:"):
        check_task(spec, "vision", task)
        return timm_spec_config(spec, image_size, patch_size)
    return hf_spec_config(spec, task, image_size, patch_size)


def create_backbone(config: BackboneConfig, pretrained: str | None = None) -> Backbone:
    """Build the backbone described by ``config``; load weights from ``pretrained`` when given."""
    if config.type not in KINDS:
        raise ConfigError(f"unknown backbone type {config.type!r}: expected one of {', '.join(KINDS)}")
    return KINDS[config.type].build(config, pretrained)


def packaged_weights(config: BackboneConfig) -> str | None:
    """What ``create_backbone(config, ...)`` loads a packaged preset's pretrained weights from (its installed
    package's directory, its sha256 checked, or the preset's name for a CNN); None for any other backbone."""
    preset = PRESETS.get(config.source)
    if preset is None or preset.packaged is None:
        return None
    return preset.name if preset.cnn else str(pretrained_directory(preset))


def feature_grid(backbone: VisionBackbone) -> dict:
    """The vision feature grid of a backbone: image size, patch size (pixels) and number of patches."""
    return backbone.grid()
