"""What a run builds from its ``TrainConfig``: the model (``create_model``), its teacher, the
parameter groups of its optimizer and its batches.

Beside model.py rather than in it: model.py is the bare ``nn.Module`` definitions that
``checkpoint.load_checkpoint`` rebuilds from a stored config, while building a model for a run needs
the run's settings, tokenizers and presets, and loading a teacher needs checkpoint.py itself (which
imports model.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .backbones import feature_grid, resolve_backbone
from .checkpoint import load_checkpoint
from .compatibility import require_distillable
from .config import TrainConfig
from .data import RawSplit
from .errors import ConfigError, first_line
from .model import RationaleModel
from .model_config import BackboneConfig, ModelConfig
from .presets import PRESETS, pretrained_directory
from .processing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TextProcessor,
    VisionProcessor,
    collate,
    load_tokenizer,
    train_wordpiece_tokenizer,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["check_teacher_compatible", "create_model", "data_loader", "generator_embeddings", "init_backbones_from",
           "load_teacher", "model_config", "model_directory", "parameter_groups", "special_token_ids"]


def create_model(cfg: TrainConfig, labels: list[str], train_split: RawSplit,
                 tokenizer_source: RationaleModel | None = None,
                 saved_vocabulary: str | Path | None = None) -> RationaleModel:
    """The freshly initialised model a run trains, with its processor. ``cfg`` is resolved.

    A text preset takes the tokenizer of ``tokenizer_source`` (the teacher, or the --init-from
    model: their grids must match), else the vocabulary saved in ``saved_vocabulary`` (a cut run's own,
    which its saved weights index), else a WordPiece vocabulary trained on the training texts; other
    backbones bring their own. An explicit ``cfg.tokenizer`` wins (to share one vocabulary between
    the runs of a recipe). Building the backbones draws from torch's global random generator."""
    processor = None
    vocab_size = None
    preset = PRESETS.get(cfg.backbone)
    if cfg.task == "text":
        if cfg.tokenizer:  # a checkpoint, a tokenizer directory, a hub id, or a pretrained preset's name
            tokenizer = load_tokenizer(model_directory(cfg.tokenizer))
        elif preset is not None and not preset.packaged:
            if tokenizer_source is not None:
                tokenizer = tokenizer_source.processor.tokenizer
            elif saved_vocabulary is not None:
                tokenizer = load_tokenizer(str(saved_vocabulary))
            else:
                tokenizer = train_wordpiece_tokenizer(train_split.inputs, cfg.vocab_size)
        else:  # a packaged pretrained preset, a hub id or a local directory brings its own
            tokenizer = load_tokenizer(model_directory(cfg.backbone))
        processor = TextProcessor(tokenizer, cfg.max_length)
        vocab_size = len(tokenizer)
    backbone, pretrained = resolve_backbone(cfg.backbone, cfg.task, vocab_size=vocab_size,
                                            image_size=cfg.image_size, patch_size=cfg.patch_size)
    pretrained = pretrained if cfg.pretrained else None
    if cfg.task == "text":
        max_positions = backbone.hf_config.get("max_position_embeddings", cfg.max_length)
        if cfg.max_length > max_positions:
            raise ConfigError(f"--max-length {cfg.max_length} exceeds the backbone's {max_positions} positions")
    if cfg.masking == "drop" and backbone.type == "timm_cnn":
        raise ConfigError(f"--masking drop: {cfg.backbone!r} is a CNN, which reads every cell of its image; "
                          "drop masking is for transformer backbones")
    model = RationaleModel(model_config(cfg, labels, backbone, pretrained, processor), processor, pretrained)
    for part in (model.predictor, model.generator, model.complement):
        if part is not None:
            part.backbone.set_attention(cfg.attention)
    if cfg.task == "vision":
        grid = feature_grid(model.predictor.backbone)
        if cfg.image_size and cfg.image_size != grid["image_size"]:
            raise ConfigError(f"backbone {cfg.backbone!r} takes {grid['image_size']}px images, "
                              f"not --image-size {cfg.image_size}")
        mean, std = _image_normalisation(model)
        model.processor = VisionProcessor(grid["image_size"], grid["patch_size"], mean, std)
    return model


def model_config(cfg: TrainConfig, labels: list[str], backbone: BackboneConfig, pretrained: str | None,
                 processor: TextProcessor | None) -> ModelConfig:
    """The model a run trains: the settings of ``cfg`` (resolved) that the model keeps (a CLS model has no
    selection: its ratio is 1), on ``backbone``. A ratio range trains on exact counts (``gumbel_topk``)."""
    rationale, text = cfg.mode != "cls", cfg.task == "text"
    return ModelConfig(
        task=cfg.task, mode=cfg.mode, ratio=cfg.ratio if rationale else 1.0, labels=list(labels), backbone=backbone,
        dropout=cfg.dropout,
        unselectable_token_ids=special_token_ids(processor.tokenizer) if text and cfg.special_tokens == "exclude"
        else [],
        generator_embeddings=generator_embeddings(cfg, pretrained) if text and rationale else "frozen",
        ratio_range=list(cfg.ratio_range) if cfg.ratio_range is not None else None,
        complement_weight=cfg.complement_weight if rationale else 0.0,
        train_selection="gumbel_topk" if cfg.ratio_range is not None else cfg.train_selection,
        freeze_layers=cfg.freeze_layers, freeze_parts=cfg.freeze_parts if cfg.freeze_layers else "all",
        masking=cfg.masking if rationale else "zero", drop_probes=cfg.drop_probes if rationale else 0.0)


def model_directory(name: str) -> str:
    """Where a Hugging Face model named ``name`` lives: a pretrained preset's installed package directory,
    else the name itself (a checkpoint or local directory, or a hub id)."""
    preset = PRESETS.get(name)
    return str(pretrained_directory(preset)) if preset and preset.packaged else name


def special_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids of the tokenizer's special tokens ([CLS], [SEP], [PAD], [MASK], ...) but its unknown-word
    token: [UNK] stands for a word of the input, so it stays a feature."""
    return sorted(set(tokenizer.all_special_ids) - {tokenizer.unk_token_id})


def generator_embeddings(cfg: TrainConfig, pretrained: str | None) -> str:
    """"frozen" or "trained": the generator's word embeddings are frozen when they start from pretrained
    weights (METHOD.md: the paper freezes BERT's), i.e. a hub id or local directory with weights, a
    packaged preset, or --init-from; random ones are trained, or the generator cannot learn which
    tokens to prefer. An explicit --generator-embeddings wins."""
    if cfg.generator_embeddings != "auto":
        return cfg.generator_embeddings
    return "frozen" if pretrained or cfg.init_from else "trained"


def load_teacher(cfg: TrainConfig, device: torch.device | str | None) -> RationaleModel:
    """The frozen teacher checkpoint ``cfg.teacher`` on ``device``: an RE (or REKD) model of the run's task,
    every parameter with ``requires_grad`` off."""
    teacher = load_checkpoint(cfg.teacher, device)
    if teacher.task != cfg.task:
        raise ConfigError(f"teacher {cfg.teacher} is a {teacher.task} model, but --task is {cfg.task}")
    if teacher.generator is None:
        raise ConfigError(f"teacher {cfg.teacher} is a CLS model; REKD needs an RE (or REKD) teacher")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def check_teacher_compatible(teacher: RationaleModel, student: RationaleModel) -> None:
    """REKD distils per feature and per class: the grids, the image normalisation and the label sets must be
    identical (``ConfigError`` naming the first difference otherwise; ``compatibility.require_distillable``)."""
    require_distillable(teacher, student)


def init_backbones_from(model: RationaleModel, source: RationaleModel) -> None:
    """Start the generator and predictor backbones from a trained model's predictor backbone
    (e.g. a CLS model: the small-model analogue of starting from a pretrained encoder).

    A source of the run's own mode is continued instead: all of it (generator, heads) carries over,
    so that an RE model can be trained further on more data without relearning its selection."""
    path = getattr(source, "checkpoint_path", "the source model")
    if (source.config.backbone.type != model.config.backbone.type
            or source.processor.grid() != model.processor.grid()):
        raise ConfigError(f"--init-from {path}: its backbone or feature grid differs from this run's")
    continued = source.config.mode == model.config.mode
    state = source.state_dict() if continued else source.predictor.backbone.state_dict()
    try:
        if continued:
            model.load_state_dict(state)
            return
        for part in (model.predictor, model.generator, model.complement):
            if part is not None:
                part.backbone.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"--init-from {path}: backbone weights do not fit ({first_line(exc)})") from exc


def parameter_groups(model: RationaleModel, cfg: TrainConfig) -> list[dict]:
    """The trainable parameters at ``cfg.lr``, and the heads (generator, predictor, adversary) at ``cfg.head_lr``
    (when set): new heads on a pretrained backbone need a far larger step than the backbone does."""
    heads = [*model.predictor.classifier.parameters(), *(model.generator.head.parameters() if model.generator else []),
             *(model.complement.classifier.parameters() if model.complement else [])]
    head_ids = {id(p) for p in heads}
    trainable = [p for p in model.parameters() if p.requires_grad]
    if cfg.head_lr is None:
        return [{"params": trainable, "lr": cfg.lr}]
    return [{"params": [p for p in trainable if id(p) not in head_ids], "lr": cfg.lr},
            {"params": [p for p in trainable if id(p) in head_ids], "lr": cfg.head_lr}]


def data_loader(dataset: torch.utils.data.Dataset, cfg: TrainConfig,
                shuffle: bool = False) -> torch.utils.data.DataLoader:
    """Batches of ``cfg.batch_size``, padding trimmed per batch; a shuffled loader's order is seeded
    (its ``generator`` is part of the state a cut run is resumed with)."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=shuffle,
        generator=torch.Generator().manual_seed(cfg.seed) if shuffle else None,
        num_workers=cfg.num_workers, collate_fn=lambda b: collate(b, cfg.trim_padding))


def _image_normalisation(model: RationaleModel) -> tuple:
    """The (mean, std) the vision backbone's pretrained weights expect (timm's pretrained_cfg), else ImageNet's."""
    inner = model.predictor.backbone.model
    cfg = getattr(inner, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
