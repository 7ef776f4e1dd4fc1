"""``TrainConfig``: every knob of a training run, its defaults, its validation and config files.

A field whose value is one of a fixed set of names has a ``Literal`` type; ``CHOICES`` reads those
sets back from the type hints, so that ``TrainConfig.resolved()`` and the ``rekd train`` flags
(``cli._add_train_flags``) refuse the same values with the same list, from one declaration.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .backbones import AttentionKernel, starts_pretrained
from .data import DEFAULT_SEED, VALID_SPECS
from .errors import ConfigError
from .inputs import DEVICES, Device
from .model_config import Masking, Selection, WeightsDtype
from .presets import PRESETS

__all__ = ["CHOICES", "DEFAULT_SEED", "PAPER_LR", "SCRATCH_LR", "TASK_DEFAULTS", "TrainConfig", "check_choice",
           "load_config_file"]

# The paper's per-task defaults (METHOD.md); the student lambda_sel for each task.
TASK_DEFAULTS = {
    "text": {"ratio": 0.10, "lambda_sel": 1e-4, "dropout": 0.5, "weight_decay": 0.0},
    "vision": {"ratio": 0.15, "lambda_sel": 1e-2, "dropout": 0.1, "weight_decay": 1e-3},
}
PAPER_LR = 1e-5  # for pretrained backbones (35 epochs of fine-tuning)
SCRATCH_LR = 5e-4  # for a backbone trained from scratch that is not a preset (the small presets' rate)


def option(default: Any, help: str) -> Any:
    """A ``TrainConfig`` field: its default, and its help text (the ``rekd train`` flag's: cli.py)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every knob of a run. ``None`` means: the task's (or the preset's) default. The ``Literal``
    fields take one of the names listed in their type (``CHOICES``); each field's help text is its ``metadata``."""

    task: Literal["text", "vision"] = option("text", "text or vision")
    mode: Literal["cls", "re", "rekd", "mlm"] = option(
        "re", "cls (predictor alone), re (select-predict), rekd (RE distilled from --teacher), "
              "mlm (masked-language pretraining of a text backbone, for --init-from: pretraining.py)")
    backbone: str = option("bert-1x64", "a preset name (see `rekd presets`), timm:NAME, or a Hugging Face hub id / "
                                        "local directory")
    dataset: str = option("", " | ".join(VALID_SPECS))
    out: str = option("", "checkpoint directory to write (replaced atomically)")
    teacher: str | None = option(None, "REKD: checkpoint directory of the trained RE teacher; CLS / RE: a teacher to "
                                       "compare with in the test metrics")
    init_from: str | None = option(None, "start generator and predictor backbones from this checkpoint's predictor "
                                         "(e.g. a CLS model); a checkpoint of the run's own mode is continued whole "
                                         "(generator and heads too)")
    pretrained: bool = option(True, "load the weights of a hub / local / timm backbone (presets never have any)")
    ratio: float | None = option(None, "target rationale ratio p (default: text 0.10, vision 0.15); with "
                                       "--ratio-range, the one dev accuracy is read at")
    ratio_range: list[float] | None = option(
        None, "train at a ratio drawn per batch from [LO, HI] (exactly that many features sampled, and the "
              "selection cost at it), so that the model can be read at any ratio of the range (beyond the paper)")
    train_selection: Literal["auto", "gumbel", "gumbel_topk"] = option(
        "auto", "the training masks: auto (the preset's, else gumbel) | gumbel (the paper: a Gumbel-softmax sample "
                "whose size the selection cost steers) | gumbel_topk (exactly round(ratio x features) sampled, "
                "the count top-k evaluates)")
    epochs: int = option(3, "training epochs")
    batch_size: int = option(32, "examples per batch")
    lr: float | None = option(None, "learning rate (default: the preset's; else the paper's 1e-5 for pretrained "
                                    "weights, 5e-4 from scratch)")
    lr_schedule: Literal["constant", "linear", "cosine"] = option(
        "constant", "constant (the paper) | linear | cosine: decay the learning rate to 0 over the run")
    head_lr: float | None = option(None, "learning rate of the generator's and predictor's heads (default: the "
                                         "preset's, else --lr); new heads on a pretrained backbone need a larger one")
    weight_decay: float | None = option(None, "AdamW's weight decay (default: text 0, vision 1e-3)")
    dropout: float | None = option(None, "dropout of the heads (default: text 0.5, vision 0.1)")
    seed: int = option(DEFAULT_SEED, "seed of the run's random numbers (weights, batch order, sampling)")
    split_seed: int | None = option(None, "seed of the train/dev split and of the --train-limit / --eval-limit "
                                          "subsets (default: that of the --init-from / --teacher checkpoints, else "
                                          "--seed), so that the data they trained on never lands in this run's dev "
                                          "split")
    max_length: int = option(256, "text: word pieces read per example (padded or truncated to it)")
    image_size: int | None = option(None, "vision: the side of the images the model reads (default: the preset's)")
    patch_size: int | None = option(None, "vision: the side of a patch (default: the preset's)")
    vocab_size: int | None = option(None, "text preset: the size of the WordPiece vocabulary trained on the "
                                          "training texts (default: the preset's)")
    tokenizer: str | None = option(None, "text: whose tokenizer to use: a checkpoint or tokenizer directory, a hub "
                                         "id or a pretrained preset (to share one vocabulary between runs)")
    train_limit: int | None = option(None, "train on a seeded stratified subset of N examples")
    eval_limit: int | None = option(None, "evaluate on a seeded stratified subset of N test examples")
    dev_fraction: float = option(0.2, "the stratified dev split carved from train (unless the data ships one)")
    device: Device = option("auto", " | ".join(DEVICES))
    tau0: float = option(5.0, "the Gumbel temperature at the start, annealed towards 0.1 over the run")
    tau_every: int = option(100, "optimizer steps between temperature updates")
    lambda_sel: float | None = option(None, "weight of the selection cost (default: text 1e-4, vision 1e-2)")
    sel_length: Literal["padded", "real"] = option("padded", "L of the selection cost: padded (the paper) | real "
                                                             "(per-example length)")
    sel_cost: Literal["batch", "example"] = option("batch", "batch: pin the batch-mean selected count (the paper) | "
                                                            "example: pin each example's count")
    alpha: float | str = option(0.5, "REKD weight of L_RE: a number in [0, 1] or 'schedule'")
    lambda_r: float = option(0.5, "weight of the rationale distillation KD_R")
    rationale_kd_scale: Literal["none", "tau2"] = option("none", "none (the paper) | tau2: scale KD_R by tau^2, as the "
                                                                 "paper does KD_Y")
    teacher_rationale: Literal["soft", "topk"] = option(
        "soft", "KD_R target: soft (the paper: the teacher's selection distribution at tau) | topk (the teacher's "
                "top-k mask at --ratio)")
    rationale_kd_tau: float | None = option(
        None, "KD_R temperature: the annealed Gumbel tau (the paper; default) or this fixed number; at 1 it matches "
              "the probabilities the training masks are sampled with")
    distil: Literal["both", "rationale", "prediction"] = option("both", "what REKD distils: both | rationale (KD_R "
                                                                        "alone) | prediction (KD_Y alone)")
    teacher_labels: Literal["soft", "hard"] = option("soft", "soft | hard teacher predictions for KD_Y")
    complement_weight: float = option(
        0.0, "beyond the paper (Yu et al. 2019): a second predictor (the adversary) learns the label from the "
             "UNselected features, and the generator is pushed, with this weight, to leave it nothing to learn from: "
             "each class's evidence must then be selected (0: off, the paper)")
    teacher_mask: Literal["student", "teacher"] = option("student", "the teacher predictor reads: student (the "
                                                                    "paper) | teacher (its own mask)")
    eval_selection: Selection = option("topk", "topk | argmax | gumbel (the reference code's noisy evaluation) | "
                                               "gumbel_topk")
    augment: Literal["crop_flip", "flip", "none"] = option(
        "crop_flip", "vision training: crop_flip (the paper: random crop with padding, and flip) | flip (a random "
                     "flip alone, which keeps each patch on the grid) | none")
    special_tokens: Literal["exclude", "select"] = option(
        "exclude", "exclude: [CLS], [SEP] and the like are never selected nor counted | select: they are features "
                   "like any word piece (the reference code)")
    generator_embeddings: Literal["auto", "frozen", "trained"] = option(
        "auto", "auto: the generator's word embeddings are frozen when pretrained (hub or local weights, a packaged "
                "preset, --init-from) and trained otherwise | frozen | trained")
    freeze_layers: int = option(0, "keep the backbones' input embeddings and first N blocks as they start (0: all "
                                   "trained, the paper): faster steps, and a packaged preset's checkpoint then stores "
                                   "only what was trained")
    freeze_parts: Literal["all", "generator"] = option(
        "all", "whose blocks --freeze-layers keeps: all (generator, predictor, adversary) | generator (its frozen "
               "blocks are what --frozen-cache keeps; a predictor under drop masking is cheap to train whole)")
    masking: Masking = option(
        "zero", "how the predictor reads a selection: zero (the paper: every feature, the unselected as zero vectors "
                "at their positions) | drop (only the selected features and the special / class tokens, at their "
                "positions: a step of the predictor costs what the rationale costs)")
    drop_probes: float | None = option(
        None, "--masking drop, training only: also read this many random unselected features per selected one, as "
              "zero vectors, so that the generator learns what selecting them would do (default: 1 when the "
              "training masks hold exactly k features, gumbel_topk or --ratio-range, which explore nothing by "
              "themselves; else 0: the paper's sampling explores; docs/GUIDE.md has the measurements)")
    frozen_cache: Literal["auto", "on", "off"] = option(
        "auto", "auto (on when --freeze-layers N > 0) | on | off: keep the output of the frozen embeddings and "
                "blocks per training example, computed in the first epoch and reused after (exact); vision "
                "training then augments by flipping only (both orientations are kept), not cropping")
    frozen_cache_gb: float = option(4.0, "memory budget of --frozen-cache in GB; a larger cache is a memory-mapped "
                                         "file beside the run (or in --cache-dir), kept for a resumed run")
    attention: AttentionKernel = option(
        "sdpa", "the attention kernel while training: sdpa (PyTorch's fused kernel) | eager (matmul, softmax, "
                "matmul: in bf16 on a CPU its backward runs on AMX and trains faster; bench/README.md); the same "
                "numbers up to rounding, and checkpoints are read with sdpa")
    precision: Literal["fp32", "bf16"] = option("fp32", "fp32 | bf16: forward passes under bfloat16 autocast (about "
                                                        "2x faster on CPUs with AMX / AVX-512 BF16, and on GPUs)")
    weights_dtype: WeightsDtype = option("float32", "float32 | float16: how the checkpoint stores its weights "
                                                    "(float16: half the size)")
    trim_padding: bool = option(True, "cut each text batch to its longest example (changes nothing but speed)")
    cache_teacher: bool = option(True, "compute the REKD teacher generator's logits once per training example "
                                       "(changes nothing but speed)")
    faithfulness: bool = option(True, "sufficiency and comprehensiveness in the final test evaluation")
    cache_dir: str | None = option(None, "keep the teacher's test outputs (and a large --frozen-cache) here, shared "
                                         "by the students of a sweep")
    num_workers: int = option(0, "DataLoader worker processes that prepare the batches (0: in the training process)")
    progress: bool = option(True, "show a progress bar per epoch")
    extra: dict = field(default_factory=dict, metadata={"help": "free-form notes stored in the checkpoint"})

    @property
    def data_split_seed(self) -> int:
        """The seed of the train/dev split and the limits' subsets: ``split_seed`` (settled by the run: its own, or
        that of --init-from and --teacher), else ``seed``."""
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def frozen_blocks_cached(self) -> bool:
        """Whether the run reads the output of frozen blocks from a cache: blocks are frozen in the part that reads
        the whole input (the generator; a CLS model's predictor, frozen with --freeze-parts all), and the cache is
        not off."""
        frozen = self.freeze_layers > 0 and (self.mode != "cls" or self.freeze_parts == "all")
        return frozen and self.frozen_cache != "off"

    def resolved(self) -> TrainConfig:
        """A copy with defaults filled in and every choice validated; a bad setting raises ``ConfigError``."""
        cfg = dataclasses.replace(self)
        for name in FLOAT_FIELDS:  # YAML 1.1 reads 1e-3 (no dot) as a string
            value = getattr(cfg, name)
            if isinstance(value, str):
                try:
                    setattr(cfg, name, float(value))
                except ValueError as exc:
                    raise ConfigError(f"{name} must be a number, got {value!r}") from exc
        if isinstance(cfg.augment, bool):  # the flag it was before it had modes
            cfg.augment = "crop_flip" if cfg.augment else "none"
        for name, choices in CHOICES.items():
            check_choice(name, getattr(cfg, name), choices)
        if not cfg.dataset:
            raise ConfigError("no dataset given (--dataset SPEC)")
        if not cfg.out:
            raise ConfigError("no output directory given (--out DIR)")
        if cfg.mode == "rekd" and not cfg.teacher:
            raise ConfigError("REKD needs a trained RE teacher (--teacher DIR)")
        defaults = TASK_DEFAULTS[cfg.task]
        for name in ("ratio", "lambda_sel", "dropout", "weight_decay"):
            if getattr(cfg, name) is None:
                setattr(cfg, name, defaults[name])
        preset = PRESETS.get(cfg.backbone)
        if preset and preset.task != cfg.task:
            raise ConfigError(f"backbone {cfg.backbone!r} is a {preset.task} backbone, but the task is {cfg.task}")
        if cfg.lr is None:
            pretrained = preset is None and starts_pretrained(cfg.backbone, cfg.pretrained)
            cfg.lr = preset.lr if preset else PAPER_LR if pretrained else SCRATCH_LR
        for name, value in (preset.defaults if preset else {}).items():
            if getattr(cfg, name) in (None, "auto"):
                setattr(cfg, name, value)
        if cfg.train_selection == "auto":
            cfg.train_selection = "gumbel"
        if cfg.drop_probes is None:
            exact_k = cfg.train_selection == "gumbel_topk" or cfg.ratio_range is not None
            cfg.drop_probes = 1.0 if cfg.masking == "drop" and exact_k else 0.0
        if cfg.vocab_size is None and preset and preset.task == "text" and not preset.packaged:
            cfg.vocab_size = preset.vocab_size
        if not 0.0 < cfg.ratio <= 1.0:
            raise ConfigError(f"ratio must be in (0, 1], got {cfg.ratio}")
        if cfg.complement_weight < 0:
            raise ConfigError(f"complement_weight must be >= 0, got {cfg.complement_weight}")
        if cfg.ratio_range is not None:
            if (len(cfg.ratio_range) != 2 or not 0.0 < cfg.ratio_range[0] < cfg.ratio_range[1] <= 1.0
                    or cfg.mode == "cls"):
                raise ConfigError(f"ratio_range must be two ratios 0 < lo < hi <= 1 of an RE or REKD run, "
                                  f"got {cfg.ratio_range}")
            cfg.ratio_range = [float(r) for r in cfg.ratio_range]
            if not cfg.ratio_range[0] <= cfg.ratio <= cfg.ratio_range[1]:
                raise ConfigError(f"the ratio {cfg.ratio} (the one dev accuracy is read at) lies outside "
                                  f"ratio_range {cfg.ratio_range}")
        if isinstance(cfg.alpha, str) and cfg.alpha != "schedule":
            cfg.alpha = _parse_float("alpha", cfg.alpha)
        if cfg.mode == "mlm" and cfg.task != "text":
            raise ConfigError("--mode mlm pretrains text backbones only")
        if cfg.mode == "mlm" and (cfg.teacher or cfg.init_from):
            raise ConfigError("--mode mlm starts from the backbone's initial weights and learns from no teacher: "
                              "drop --teacher and --init-from")
        if cfg.freeze_layers < 0:
            raise ConfigError(f"freeze_layers must be >= 0, got {cfg.freeze_layers}")
        if cfg.drop_probes < 0 or (cfg.drop_probes > 0 and cfg.masking != "drop"):
            raise ConfigError(f"drop_probes must be >= 0, and is for --masking drop (got {cfg.drop_probes} with "
                              f"--masking {cfg.masking})")
        if cfg.frozen_cache == "on" and not cfg.frozen_blocks_cached:
            raise ConfigError("--frozen-cache on keeps the output of frozen blocks: give --freeze-layers N (a CLS "
                              "model with --freeze-parts all)")
        if cfg.epochs < 1 or cfg.batch_size < 1:
            raise ConfigError("epochs and batch size must be at least 1")
        if cfg.rationale_kd_tau is not None and not cfg.rationale_kd_tau > 0:
            raise ConfigError(f"rationale_kd_tau must be a positive temperature, got {cfg.rationale_kd_tau}")
        return cfg


def _literal_choices() -> dict[str, tuple[str, ...]]:
    hints = typing.get_type_hints(TrainConfig)
    return {name: typing.get_args(hint) for name, hint in hints.items() if typing.get_origin(hint) is Literal}


# field name -> the names it accepts, in their declared order: validation and the CLI's choices=
CHOICES: dict[str, tuple[str, ...]] = _literal_choices()
# the fields that hold a number (or nothing): a string there is converted, or refused
FLOAT_FIELDS = tuple(name for name, hint in typing.get_type_hints(TrainConfig).items()
                     if hint is float or hint == float | None)


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    """Raise ``ConfigError`` naming the option and every accepted value unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def load_config_file(path: str, known: set[str] | None | bool = True) -> dict:
    """A YAML or JSON mapping; keys use dashes or underscores. With ``known`` left at True, only
    TrainConfig fields are allowed; ``None`` accepts any key (recipes)."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text") from exc
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc}") from exc
    except yaml.YAMLError as exc:  # its message spans several lines, with a drawing of the spot
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {reason}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of options")
    data = {k.replace("-", "_"): v for k, v in data.items()}
    if known is True:
        known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - known) if known else []
    if unknown:
        raise ConfigError(f"config file {path}: unknown options {unknown}")
    return data


def _parse_float(name: str, value: object) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number or 'schedule', got {value!r}") from exc
