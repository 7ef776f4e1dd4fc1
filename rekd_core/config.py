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
from typing import Literal

from .backbones import ATTENTION_KERNELS, starts_pretrained
from .data import DEFAULT_SEED
from .errors import ConfigError
from .inputs import DEVICES
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


@dataclass
class TrainConfig:
    """Every knob of a run. ``None`` means: the task's (or the preset's) default. The ``Literal``
    fields take one of the names listed in their type (``CHOICES``)."""

    task: Literal["text", "vision"] = "text"
    # mlm: masked-language pretraining of a text backbone, for --init-from (pretraining.py)
    mode: Literal["cls", "re", "rekd", "mlm"] = "re"
    backbone: str = "bert-1x64"  # preset name, timm:NAME, or HF hub id / local directory
    dataset: str = ""  # dataset spec (data.py)
    out: str = ""  # checkpoint directory to write
    # REKD: the RE teacher to distil; CLS / RE: a teacher to compare with in the test metrics
    teacher: str | None = None
    init_from: str | None = None  # start both backbones from this checkpoint's predictor (same mode: continue it)
    pretrained: bool = True  # load the weights of a hub / local / timm backbone (presets never have any)
    ratio: float | None = None
    # [lo, hi]: each batch trains at a ratio drawn uniformly from it (exactly that many features sampled,
    # and the selection cost at it), so that one model can be read at any ratio of the range
    ratio_range: list[float] | None = None
    # the training masks: gumbel (the paper: a Gumbel-softmax sample, its size pushed towards the ratio by the
    # selection cost) | gumbel_topk (exactly round(ratio x features) sampled, the count top-k evaluates)
    train_selection: Literal["auto", "gumbel", "gumbel_topk"] = "auto"  # auto: the preset's, else gumbel
    epochs: int = 3
    batch_size: int = 32
    lr: float | None = None  # default: the preset's, else the paper's 1e-5 (pretrained) or SCRATCH_LR (from scratch)
    # constant (the paper), or linear / cosine decay to 0 over the run (names of transformers.get_scheduler)
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    head_lr: float | None = None  # the generator's and predictor's heads (default: the preset's, else lr)
    weight_decay: float | None = None
    dropout: float | None = None
    seed: int = DEFAULT_SEED
    # The train/dev split and the --train-limit / --eval-limit subsets. Default: that of --init-from
    # and --teacher (so that the data they trained on never lands in this run's dev split), else --seed.
    split_seed: int | None = None
    max_length: int = 256
    image_size: int | None = None
    patch_size: int | None = None
    vocab_size: int | None = None  # WordPiece vocabulary trained for a text preset
    # text: whose tokenizer to use: a checkpoint or tokenizer directory, a hub id or a pretrained preset
    tokenizer: str | None = None
    train_limit: int | None = None  # stratified subset of the training split
    eval_limit: int | None = None  # stratified subset of the test split
    dev_fraction: float = 0.2  # stratified dev split carved from train (unless the data ships one)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    tau0: float = 5.0
    tau_every: int = 100  # optimizer steps between tau updates
    lambda_sel: float | None = None
    sel_length: Literal["padded", "real"] = "padded"  # L of the selection cost: padded length (paper) | real length
    # the selection cost pins the batch-mean count (paper) | each example's count
    sel_cost: Literal["batch", "example"] = "batch"
    alpha: float | str = 0.5  # REKD weight of L_RE: a number, or "schedule"
    lambda_r: float = 0.5
    rationale_kd_scale: Literal["none", "tau2"] = "none"  # KD_R as the paper has it | tau2: scaled by tau^2 like KD_Y
    # KD_R target: the teacher's softened selection (paper) | its top-k mask
    teacher_rationale: Literal["soft", "topk"] = "soft"
    rationale_kd_tau: float | None = None  # KD_R temperature: None = the annealed Gumbel tau (paper), or fixed
    distil: Literal["both", "rationale", "prediction"] = "both"
    teacher_labels: Literal["soft", "hard"] = "soft"
    # weight of the complement adversary's reversed gradient (0: none, the paper; Yu et al. 2019's remedy for
    # rationales that leave a class's evidence unselected)
    complement_weight: float = 0.0
    teacher_mask: Literal["student", "teacher"] = "student"  # the teacher predictor reads: the student's mask (paper)
    eval_selection: Selection = "topk"  # topk | argmax | gumbel (the reference code's noisy evaluation) | gumbel_topk
    # vision training: crop_flip (the paper's random crop and flip) | flip (a random flip alone: a patch stays on the
    # grid, and a frozen-block cache keeps both orientations) | none. true / false: crop_flip / none
    augment: Literal["crop_flip", "flip", "none"] = "crop_flip"
    # text: exclude ([CLS], [SEP]... are never selected nor counted) | select (the reference code)
    special_tokens: Literal["exclude", "select"] = "exclude"
    # text: auto (frozen when pretrained: hub, local weights, packaged, --init-from) | frozen | trained
    generator_embeddings: Literal["auto", "frozen", "trained"] = "auto"
    # the backbones' input embeddings and first N blocks kept as they start (beyond the paper, which fine-tunes all):
    # faster steps, and a checkpoint of a packaged preset then stores only the rest (checkpoint.py)
    freeze_layers: int = 0
    # whose blocks --freeze-layers keeps: all (generator, predictor and adversary) | generator (its frozen blocks are
    # what --frozen-cache keeps; a predictor under drop masking reads a tenth of the input and is cheap to train whole)
    freeze_parts: Literal["all", "generator"] = "all"
    # how the predictor reads a selection: zero (the paper: every feature, unselected ones as zero vectors) | drop
    # (only the selected features, at their positions: a predictor step costs what the rationale's size costs)
    masking: Masking = "zero"
    # drop masking: unselected features read as zero vectors beside the selected ones, drawn at random in training,
    # per selected feature (0: none); their straight-through gradient is what zero masking gives every feature.
    # Default: 1 when the training masks hold exactly k features (gumbel_topk, ratio_range), which explore nothing
    # by themselves; 0 with the paper's sampling, which does (docs/GUIDE.md has the measurements)
    drop_probes: float | None = None
    # keep the frozen blocks' output (--freeze-layers) per training example, computed once, reused every epoch:
    # auto (on whenever blocks are frozen) | on | off. Vision training then flips images but does not crop them.
    frozen_cache: Literal["auto", "on", "off"] = "auto"
    frozen_cache_gb: float = 4.0  # the cache's memory budget; past it, a memory-mapped file beside the run
    # the attention kernel while training: sdpa (PyTorch's fused kernel) | eager (matmul, softmax, matmul; faster to
    # train in bf16 on a CPU); the same numbers up to rounding. Checkpoints are read with sdpa.
    attention: Literal["sdpa", "eager"] = "sdpa"
    # bf16: autocast, about 2x faster on CPUs with AMX / AVX-512 BF16, and on GPUs
    precision: Literal["fp32", "bf16"] = "fp32"
    # how the checkpoint stores its weights (checkpoint.STORED_DTYPES); float16: half the size
    weights_dtype: WeightsDtype = "float32"
    trim_padding: bool = True
    cache_teacher: bool = True  # compute the teacher generator's logits once per example
    faithfulness: bool = True  # sufficiency / comprehensiveness in the final test evaluation
    cache_dir: str | None = None  # keep the teacher's test outputs here, shared by the students of a sweep
    num_workers: int = 0
    progress: bool = True
    extra: dict = field(default_factory=dict)  # free-form notes stored in the checkpoint

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


def _check_owned_choices() -> None:
    """The options whose names another module owns must list the same names (one list each, checked once)."""
    for name, owner, names in (("device", "inputs.DEVICES", DEVICES),
                               ("attention", "backbones.ATTENTION_KERNELS", ATTENTION_KERNELS)):
        if set(CHOICES[name]) != set(names):
            raise ImportError(f"TrainConfig.{name} {CHOICES[name]} and {owner} {names} disagree")


_check_owned_choices()


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
