"""What a checkpoint's ``config.json`` says about its model: ``ModelConfig`` and its ``BackboneConfig``.

``ModelConfig.from_dict`` is the one reader of that part of config.json: it holds the default of every field
that older checkpoints lack (a checkpoint written before an option existed was trained as its default says), and
ignores the rest of the file (the run's settings, its metrics, the processor: checkpoint.py). ``to_dict`` is the
part ``checkpoint.save_checkpoint`` writes: the fields every model has, and each optional one only where it
applies (a rationale model's selection and masking, a text model's special tokens...), so that a config.json
holds no setting its model does not use.

The names a field accepts are ``Literal`` types here (``Selection``, ``Masking``, ``WeightsDtype``), shared with
``TrainConfig`` (config.py), whose options they are too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .errors import ConfigError

__all__ = ["MASKINGS", "MODEL_MODES", "SELECTIONS", "WEIGHTS_DTYPES", "BackboneConfig", "Masking", "ModelConfig",
           "Selection", "WeightsDtype"]

# How a mask is read from the generator's logits (``RationaleModel.select``)
Selection = Literal["topk", "argmax", "gumbel", "gumbel_topk"]
SELECTIONS: tuple[str, ...] = get_args(Selection)
# How the predictor reads it: every feature, unselected ones as zero vectors | only the selected ones (model.py)
Masking = Literal["zero", "drop"]
MASKINGS: tuple[str, ...] = get_args(Masking)
# How model.safetensors stores the floating-point weights (checkpoint.STORED_DTYPES)
WeightsDtype = Literal["float32", "float16"]
WEIGHTS_DTYPES: tuple[str, ...] = get_args(WeightsDtype)
# The modes of a model (an MLM pretraining writes a CLS model whose head is untrained)
ModelMode = Literal["cls", "re", "rekd"]
MODEL_MODES: tuple[str, ...] = get_args(ModelMode)


@dataclass(frozen=True)
class BackboneConfig:
    """The architecture of a backbone, enough to build it again (``backbones.create_backbone``). ``type`` says
    which fields it has: ``hf_text`` / ``hf_vision`` a Hugging Face config; ``timm`` a timm model name and its
    keyword arguments, and a convolutional stem's widths and kernel; ``timm_cnn`` a timm CNN, the index of the
    feature map whose cells are the features, and the image and cell sizes."""

    type: Literal["hf_text", "hf_vision", "timm", "timm_cnn"]
    source: str  # the --backbone it was made from: a preset, timm:NAME, a hub id or a local directory
    hf_config: dict[str, Any] | None = None  # hf_*: the Hugging Face config, as its to_dict() gives it
    name: str | None = None  # timm, timm_cnn: the timm model
    feature_index: int | None = None  # timm_cnn
    image_size: int | None = None  # timm_cnn
    cell_size: int | None = None  # timm_cnn
    kwargs: dict[str, Any] | None = None  # timm: of timm.create_model
    conv_stem: list[int] | None = None  # timm: the widths of a convolutional stem's stride-2 layers
    conv_stem_kernel: int = 3  # with conv_stem: its kernel (3 in checkpoints written before it was a setting)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneConfig:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def to_dict(self) -> dict[str, Any]:
        """The fields of its type (those set), as config.json holds them."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if self.conv_stem is None:
            del data["conv_stem_kernel"]
        return data


@dataclass(frozen=True)
class ModelConfig:
    """A rationale model (``mode`` "re" or "rekd": a generator selects, a predictor reads the selection) or its CLS
    baseline (the predictor alone), as ``model.RationaleModel`` is built from it. The defaults are what a
    checkpoint written before the field existed was trained as."""

    task: Literal["text", "vision"]
    mode: ModelMode
    ratio: float  # the share of features selected (1.0 for CLS); evaluation's default
    labels: list[str]  # class names, index = target
    backbone: BackboneConfig
    dropout: float
    # text: the special tokens ([CLS], [SEP]...) that are read but never selected nor counted as features
    unselectable_token_ids: list[int] = field(default_factory=list)
    # text RE / REKD: the generator's word embeddings kept as they start (pretrained) or trained (from scratch)
    generator_embeddings: Literal["frozen", "trained"] = "frozen"
    ratio_range: list[float] | None = None  # [lo, hi]: trained at ratios drawn from it, readable at any of them
    complement_weight: float = 0.0  # > 0: a complement adversary, its gradient reversed into the generator
    # how the generator learnt to select: a free count (gumbel) or exactly the evaluated one (gumbel_topk)
    train_selection: Literal["gumbel", "gumbel_topk"] = "gumbel"
    freeze_layers: int = 0  # the input embeddings and first N blocks kept as they started
    freeze_parts: Literal["all", "generator"] = "all"  # whose blocks freeze_layers keeps
    masking: Masking = "zero"
    drop_probes: float = 0.0  # drop masking, in training: unselected features read per selected one

    def __post_init__(self) -> None:
        if self.mode not in MODEL_MODES:
            raise ConfigError(f"unknown mode {self.mode!r}: expected cls, re or rekd")
        if self.masking not in MASKINGS:
            raise ConfigError(f"unknown masking {self.masking!r}: expected one of {', '.join(MASKINGS)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """The model part of a config.json (other keys ignored), every field it lacks at its default. Checkpoints
        written before the model config recorded ``train_selection`` have it in their training settings."""
        values = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        values["backbone"] = BackboneConfig.from_dict(data["backbone"])
        if "train_selection" not in values:
            values["train_selection"] = (data.get("training") or {}).get("train_selection") or "gumbel"
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The model part of config.json: the fields every model has, and each other one where it applies."""
        rationale, text = self.mode != "cls", self.task == "text"
        applies = {"unselectable_token_ids": bool(self.unselectable_token_ids),
                   "generator_embeddings": text and rationale, "ratio_range": self.ratio_range is not None,
                   "complement_weight": self.complement_weight > 0, "train_selection": rationale,
                   "freeze_layers": self.freeze_layers > 0, "freeze_parts": self.freeze_parts != "all",
                   "masking": rationale, "drop_probes": self.drop_probes > 0}
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if applies.get(f.name, True)}
        data["backbone"] = self.backbone.to_dict()
        return data

    @property
    def trained_range(self) -> tuple[float, float] | None:
        """The ratios it was trained at, as (lowest, highest): its ``ratio_range``, else its single ratio; None
        for a CLS model, which reads every feature at any ratio."""
        if self.mode == "cls":
            return None
        low, high = self.ratio_range or (self.ratio, self.ratio)
        return float(low), float(high)

    @property
    def exact_counts(self) -> bool:
        """Whether its generator was trained to pick exactly the evaluated count (``gumbel_topk``, or a ratio
        range) rather than a free count steered by the selection cost: its own argmax selection is then not a
        choice it was trained to make, so the degenerate-generator warnings, which read it, do not apply."""
        return self.train_selection == "gumbel_topk" or bool(self.ratio_range)
