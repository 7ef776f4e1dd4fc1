"""Training: CLS, RE and REKD in one readable loop under Hugging Face Accelerate.

``train(TrainConfig(...))`` builds the data, the model (and loads the frozen teacher for REKD),
runs the epochs, keeps the epoch with the lowest dev loss (dev L_RE; the KD terms are left out of
the criterion), evaluates it on the test split and writes one checkpoint directory. The same code
runs on one CPU, one GPU, or several processes with ``accelerate launch``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .backbones import count_parameters, feature_grid, resolve_backbone
from . import resume
from .checkpoint import (STORED_DTYPES, WEIGHTS_FILE, as_stored, check_writable, cpu_snapshot, load_checkpoint,
                         read_config, read_log, read_metrics, read_resume, read_weights, save_checkpoint, stored_form)
from .data import DatasetBundle, RawSplit, load_dataset_spec, stratified_subset, train_and_dev
from .errors import CheckpointError, ConfigError, first_line
from .evaluation import evaluate
from .losses import prediction_kd, rationale_kd, selection_cost
from .model import SELECTIONS, RationaleModel
from .presets import PRESETS, packaged_directory
from .processing import (FeatureDataset, TextProcessor, VisionProcessor, collate, load_tokenizer, model_inputs,
                         train_wordpiece_tokenizer)
from .schedules import alpha_at, tau_at

# The paper's per-task defaults (METHOD.md); the student lambda_sel for each task.
TASK_DEFAULTS = {
    "text": {"ratio": 0.10, "lambda_sel": 1e-4, "dropout": 0.5, "weight_decay": 0.0},
    "vision": {"ratio": 0.15, "lambda_sel": 1e-2, "dropout": 0.1, "weight_decay": 1e-3},
}
PAPER_LR = 1e-5
LR_SCHEDULES = ("constant", "linear", "cosine")  # names of transformers.get_scheduler
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """Every knob of a run. ``None`` means: the task's (or the preset's) default."""

    task: str = "text"  # text | vision
    mode: str = "re"  # cls | re | rekd | mlm (pretrain a text backbone for --init-from; pretraining.py)
    backbone: str = "bert-1x64"  # preset name, timm:NAME, or HF hub id / local directory
    dataset: str = ""  # dataset spec (data.py)
    out: str = ""  # checkpoint directory to write
    teacher: str | None = None  # REKD: the RE teacher to distil; CLS / RE: a teacher to compare with in the test metrics
    init_from: str | None = None  # start both backbones from this checkpoint's predictor backbone
    pretrained: bool = True  # load the weights of a hub / local / timm backbone (presets never have any)
    ratio: float | None = None
    # [lo, hi]: each batch trains at a ratio drawn uniformly from it (exactly that many features sampled,
    # and the selection cost at it), so that one model can be read at any ratio of the range
    ratio_range: list[float] | None = None
    # the training masks: gumbel (the paper: a Gumbel-softmax sample, its size pushed towards the ratio by the
    # selection cost) | gumbel_topk (exactly round(ratio x features) sampled, the count top-k evaluates)
    train_selection: str = "gumbel"
    epochs: int = 3
    batch_size: int = 32
    lr: float | None = None  # default: the preset's, else the paper's 1e-5
    lr_schedule: str = "constant"  # constant (the paper) | linear | cosine decay to 0 over the run
    head_lr: float | None = None  # the generator's and predictor's heads (default: lr)
    weight_decay: float | None = None
    dropout: float | None = None
    seed: int = 2026
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
    device: str = "auto"  # auto | cpu | cuda | mps
    tau0: float = 5.0
    tau_every: int = 100  # optimizer steps between tau updates
    lambda_sel: float | None = None
    sel_length: str = "padded"  # L of the selection cost: padded length (paper) | real length
    sel_cost: str = "batch"  # the selection cost pins the batch-mean count (paper) | each example's count
    alpha: float | str = 0.5  # REKD weight of L_RE: a number, or "schedule"
    lambda_r: float = 0.5
    rationale_kd_scale: str = "none"  # KD_R as the paper has it | tau2: scaled by tau^2 like KD_Y
    teacher_rationale: str = "soft"  # KD_R target: the teacher's softened selection (paper) | its top-k mask
    rationale_kd_tau: float | None = None  # KD_R temperature: None = the annealed Gumbel tau (paper), or fixed
    distil: str = "both"  # both | rationale | prediction
    teacher_labels: str = "soft"  # soft | hard
    teacher_mask: str = "student"  # the teacher predictor reads: the student's mask (paper) | its own
    eval_selection: str = "topk"  # topk | argmax | gumbel (the reference code's noisy evaluation)
    augment: bool = True  # vision: random crop and flip while training
    # text: exclude ([CLS], [SEP]... are never selected nor counted) | select (the reference code)
    special_tokens: str = "exclude"
    # text: auto (frozen when pretrained: hub, local weights, packaged, --init-from) | frozen | trained
    generator_embeddings: str = "auto"
    precision: str = "fp32"  # fp32 | bf16 (autocast: about 2x faster on CPUs with AMX / AVX-512 BF16, and on GPUs)
    weights_dtype: str = "float32"  # how the checkpoint stores its weights: float32 | float16 (half the size)
    trim_padding: bool = True
    cache_teacher: bool = True  # compute the teacher generator's logits once per example
    faithfulness: bool = True  # sufficiency / comprehensiveness in the final test evaluation
    cache_dir: str | None = None  # keep the teacher's test outputs here, shared by the students of a sweep
    num_workers: int = 0
    progress: bool = True
    extra: dict = field(default_factory=dict)  # free-form notes stored in the checkpoint

    def resolved(self) -> "TrainConfig":
        """A copy with defaults filled in and every choice validated."""
        cfg = dataclasses.replace(self)
        _check_choice("task", cfg.task, ("text", "vision"))
        _check_choice("mode", cfg.mode, ("cls", "re", "rekd", "mlm"))
        _check_choice("distil", cfg.distil, ("both", "rationale", "prediction"))
        _check_choice("teacher_labels", cfg.teacher_labels, ("soft", "hard"))
        _check_choice("teacher_mask", cfg.teacher_mask, ("student", "teacher"))
        _check_choice("rationale_kd_scale", cfg.rationale_kd_scale, ("none", "tau2"))
        _check_choice("teacher_rationale", cfg.teacher_rationale, ("soft", "topk"))
        _check_choice("eval_selection", cfg.eval_selection, SELECTIONS)
        _check_choice("sel_length", cfg.sel_length, ("padded", "real"))
        _check_choice("sel_cost", cfg.sel_cost, ("batch", "example"))
        _check_choice("lr_schedule", cfg.lr_schedule, LR_SCHEDULES)
        _check_choice("device", cfg.device, ("auto", "cpu", "cuda", "mps"))
        _check_choice("special_tokens", cfg.special_tokens, ("exclude", "select"))
        _check_choice("generator_embeddings", cfg.generator_embeddings, ("auto", "frozen", "trained"))
        _check_choice("precision", cfg.precision, PRECISIONS)
        _check_choice("weights_dtype", cfg.weights_dtype, tuple(STORED_DTYPES))
        _check_choice("train_selection", cfg.train_selection, ("gumbel", "gumbel_topk"))
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
            cfg.lr = preset.lr if preset else PAPER_LR
        if cfg.vocab_size is None and preset and preset.task == "text" and not preset.packaged:
            cfg.vocab_size = preset.vocab_size
        if not 0.0 < cfg.ratio <= 1.0:
            raise ConfigError(f"ratio must be in (0, 1], got {cfg.ratio}")
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
        if cfg.epochs < 1 or cfg.batch_size < 1:
            raise ConfigError("epochs and batch size must be at least 1")
        if cfg.rationale_kd_tau is not None and not cfg.rationale_kd_tau > 0:
            raise ConfigError(f"rationale_kd_tau must be a positive temperature, got {cfg.rationale_kd_tau}")
        return cfg


def train(config: TrainConfig) -> Path:
    """Run one training job; return the checkpoint directory."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    cfg = config.resolved()
    check_writable(cfg.out)  # before any work, not at the first save
    accelerator = _make_accelerator(Accelerator, cfg.device)
    autocast = precision_context(cfg.precision, accelerator.device)
    set_seed(cfg.seed)
    started = time.time()

    bundle = load_dataset_spec(cfg.dataset)
    if bundle.task != cfg.task:
        raise ConfigError(f"dataset {cfg.dataset!r} is a {bundle.task} dataset, but --task is {cfg.task}")
    cfg.split_seed = inherited_split_seed(cfg)
    train_split, dev_split, test_split = make_splits(bundle, cfg)
    if cfg.mode == "mlm":
        from .pretraining import pretrain_mlm

        return pretrain_mlm(cfg, accelerator, bundle.labels, train_split, dev_split, started)
    # Building the teacher's model draws from the global RNG. An RE run only compares with its teacher,
    # so it loads it aside: naming one for the test metrics leaves the run's training as it was.
    with torch.random.fork_rng(enabled=cfg.mode != "rekd"):
        teacher = load_teacher(cfg, accelerator.device) if cfg.teacher else None
    distil_from = teacher if cfg.mode == "rekd" else None  # otherwise only compared with in the test metrics
    init_source = load_checkpoint(cfg.init_from) if cfg.init_from else None
    if init_source is not None and init_source.task != cfg.task:
        raise ConfigError(f"--init-from {cfg.init_from} is a {init_source.task} model, but --task is {cfg.task}")
    model = build_model(cfg, bundle.labels, train_split, tokenizer_source=teacher or init_source)
    if teacher is not None:
        check_teacher_compatible(teacher, model)
    if init_source is not None:
        init_backbones_from(model, init_source)

    train_set = FeatureDataset(train_split, model.processor, train=True, augment=cfg.augment)
    train_loader = data_loader(train_set, cfg, shuffle=True)
    generators = {"batch_order": train_loader.generator}  # part of the state a cut run is resumed with
    dev_loader = data_loader(FeatureDataset(dev_split, model.processor), cfg)
    test_loader = data_loader(FeatureDataset(test_split, model.processor), cfg)

    optimizer = torch.optim.AdamW(parameter_groups(model, cfg), weight_decay=cfg.weight_decay)
    model, optimizer, train_loader, dev_loader, test_loader = accelerator.prepare(
        model, optimizer, train_loader, dev_loader, test_loader)
    core = accelerator.unwrap_model(model)

    total_steps = cfg.epochs * len(train_loader)
    # Stepped once per optimizer step of this process, so it is not handed to accelerator.prepare
    # (which would step it once per process).
    lr_scheduler = get_scheduler(cfg.lr_schedule, optimizer, num_warmup_steps=0, num_training_steps=total_steps)
    grid_length = core.num_features
    teacher_cache = TeacherCache(len(train_set), grid_length) if distil_from and _cacheable(cfg) else None
    log: list[dict] = []
    best = {"l_re": math.inf, "epoch": 0, "state": None, "dev": {}}
    extra_config = run_description(cfg, core, teacher)
    step, earlier_s = 0, 0.0
    earlier = earlier_progress(cfg.out, extra_config)
    if earlier is not None:
        log, best, step, earlier_s = list(earlier.log), earlier.best, earlier.steps, earlier.seconds
        if earlier.resume is not None:
            resume.restore(*earlier.resume, core, optimizer, lr_scheduler, generators)
        if accelerator.is_main_process:
            tqdm.write(f"{cfg.out}: resuming after epoch {len(log)} of {cfg.epochs}")
    for epoch in range(len(log) + 1, cfg.epochs + 1):
        model.train()
        epoch_start, sums = time.time(), {}
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}", disable=not (cfg.progress and accelerator.is_main_process))
        for batch in bar:
            tau = tau_at(step, total_steps, cfg.tau0, every=cfg.tau_every)
            with autocast():  # the frozen teacher is not wrapped by accelerator.prepare
                loss, parts = training_loss(model, batch, cfg, tau, grid_length, distil_from, teacher_cache)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            lr_scheduler.step()
            step += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{parts['loss']:.3f}", tau=f"{tau:.2f}")
        train_seconds = time.time() - epoch_start
        with autocast():
            dev = evaluate(model, dev_loader, selection=cfg.eval_selection, lambda_sel=cfg.lambda_sel,
                           sel_length=cfg.sel_length, sel_cost=cfg.sel_cost, accelerator=accelerator)
        row = {"epoch": epoch, "step": step, "tau": tau, "lr": lr_scheduler.get_last_lr()[0],
               "train_seconds": round(train_seconds, 2),
               "train_samples_per_s": round(len(train_set) / max(train_seconds, 1e-9), 2),
               **{f"train_{k}": v / len(train_loader) for k, v in sums.items()},
               **{f"dev_{k}": v for k, v in dev.items()}}
        log.append(row)
        if accelerator.is_main_process:
            tqdm.write(_epoch_line(row))
        if dev["l_re"] < best["l_re"]:
            best.update(l_re=dev["l_re"], epoch=epoch, dev=dev, state=cpu_snapshot(core))
        if accelerator.is_main_process:
            last = epoch == cfg.epochs
            save_epoch(core, cfg, log, best, extra_config, steps=step, seconds=time.time() - started + earlier_s,
                       resume_state=None if last else resume.capture(core, optimizer, lr_scheduler, generators))
        accelerator.wait_for_everyone()

    core.load_state_dict(as_stored(best["state"], cfg.weights_dtype))  # tested as shipped (float16: rounded)
    with autocast():
        test = evaluate(model, test_loader, teacher=teacher, selection=cfg.eval_selection, lambda_sel=cfg.lambda_sel,
                        sel_length=cfg.sel_length, sel_cost=cfg.sel_cost, accelerator=accelerator,
                        with_faithfulness=cfg.faithfulness and cfg.mode != "cls",
                        teacher_cache=teacher_test_cache(cfg, len(test_split), accelerator))
    wall = time.time() - started + earlier_s
    metrics = {"best_epoch": best["epoch"], "dev": best["dev"], "test": test, "eval_selection": cfg.eval_selection,
               "wall_time_s": round(wall, 1), "train_examples": len(train_set), "steps": step,
               "hardware": _hardware(accelerator), **_resumed(earlier)}
    if accelerator.is_main_process:
        save_checkpoint(core, cfg.out, state_dict=best["state"], log=log, metrics=metrics,
                        extra_config={**extra_config, "status": "complete"})
        tqdm.write(f"test: accuracy {test['accuracy']:.4f}" + (f", ratio {test['ratio']:.3f}" if "ratio" in test else "")
                   + f" -> {cfg.out} ({wall:.0f} s)")
        for warning in test.get("warnings", []):
            tqdm.write(f"warning: {warning}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return Path(cfg.out)


TRAINING = "training"
TRAINED = "trained; test split not evaluated yet"


@dataclass
class Progress:
    """What an earlier run with the same settings saved before it was cut."""

    log: list[dict]
    best: dict  # the kept-epoch criterion (l_re, or mlm_loss), epoch, dev metrics and weights of its best epoch so far
    steps: int
    seconds: float  # its training time
    resume: tuple[dict, dict] | None  # the state its next epoch starts from; None once its epochs are all done


def save_epoch(model: RationaleModel, cfg: TrainConfig, log: list[dict], best: dict, description: dict, *,
               steps: int, seconds: float, resume_state: tuple[dict, dict] | None) -> None:
    """After an epoch: the best weights so far and, before the last epoch, ``resume_state`` (the
    state the next epoch starts from; resume.py). After the last one the status is ``TRAINED``."""
    if resume_state is None:
        status = TRAINED
    else:
        status = f"{TRAINING} (epoch {len(log)} of {cfg.epochs}, best epoch {best['epoch']})"
    save_checkpoint(model, cfg.out, state_dict=best["state"], log=log, extra_config={**description, "status": status},
                    metrics={"best_epoch": best["epoch"], "dev": best["dev"], "steps": steps,
                             "train_wall_s": round(seconds, 1)},
                    resume=resume_state)


def earlier_progress(out: str, description: dict, criterion: str = "l_re") -> Progress | None:
    """The progress that a run with this very description saved at ``out`` before it was cut: after
    an epoch (status ``training (epoch E of N, ...)``, with its resume state), or once its epochs had
    all finished (status ``TRAINED``: only the test split is left). None for anything else, including
    a checkpoint of other settings; going on from its state gives the weights of an uninterrupted run.
    ``criterion`` is the dev metric that picks the kept epoch."""
    try:
        config = read_config(out)
    except CheckpointError:
        return None
    status = str(config.get("status", ""))
    finished = status == TRAINED
    if not (finished or status.startswith(TRAINING + " (epoch ")):
        return None
    if any(config.get(k) != v for k, v in stored_form(description).items()):
        return None
    try:
        state = None if finished else read_resume(out)
        weights = read_weights(out)
    except CheckpointError as exc:
        print(f"not resuming {out}: {first_line(exc)}; training from the start", flush=True)
        return None
    if not finished and state is None:  # saved by a version that kept no resume state
        return None
    metrics = read_metrics(out)
    best = {criterion: metrics["dev"][criterion], "epoch": metrics["best_epoch"], "dev": metrics["dev"], "state": weights}
    return Progress(read_log(out), best, metrics["steps"], metrics["train_wall_s"], state)


def _resumed(earlier: Progress | None) -> dict:
    """What the metrics say about an earlier, cut run this one went on from."""
    if earlier is None:
        return {}
    return {"resumed_at_test": True} if earlier.resume is None else {"resumed_after_epoch": len(earlier.log)}


def data_loader(dataset, cfg: TrainConfig, shuffle: bool = False) -> torch.utils.data.DataLoader:
    """Batches of ``cfg.batch_size``, padding trimmed per batch; a shuffled loader's order is seeded."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=shuffle,
        generator=torch.Generator().manual_seed(cfg.seed) if shuffle else None,
        num_workers=cfg.num_workers, collate_fn=lambda b: collate(b, cfg.trim_padding))


def training_loss(model, batch: dict, cfg: TrainConfig, tau: float, grid_length: int,
                  teacher: RationaleModel | None = None, teacher_cache: "TeacherCache | None" = None):
    """The objective of METHOD.md for one batch: CE (CLS), L_RE (RE), or
    ``alpha * L_RE + (1 - alpha) * (lambda_R * KD_R + tau^2 * KD_Y)`` (REKD).
    Returns the loss tensor and its parts as floats."""
    inputs, targets = model_inputs(batch), batch["label"]
    if cfg.mode == "cls":
        loss = F.cross_entropy(model(inputs).logits, targets)
        return loss, {"loss": loss.item()}
    ratio = cfg.ratio
    if cfg.ratio_range is None:
        out = model(inputs, selection=cfg.train_selection, tau=tau)
    else:  # drawn from torch's global generator, whose state a resumed run restores
        ratio = cfg.ratio_range[0] + (cfg.ratio_range[1] - cfg.ratio_range[0]) * torch.rand(()).item()
        out = model(inputs, selection="gumbel_topk", tau=tau, ratio=ratio)
    fm = out.feature_mask
    length = fm.sum(dim=1) if cfg.sel_length == "real" else grid_length
    ce = F.cross_entropy(out.logits, targets)
    sel = selection_cost(out.mask, ratio, length, per_example=cfg.sel_cost == "example")
    l_re = ce + cfg.lambda_sel * sel
    parts = {"ce": ce.item(), "sel": sel.item(), "ratio": (out.mask.sum() / fm.sum()).item()}
    if teacher is None:
        parts["loss"] = l_re.item()
        return l_re, parts
    with torch.no_grad():
        if teacher_cache is not None:
            t_gen = teacher_cache.get(batch["index"], inputs, teacher, out.gen_logits.shape[1])
        else:
            t_gen = teacher.generator(inputs)
        t_mask = out.mask.detach() if cfg.teacher_mask == "student" else teacher.select(
            t_gen, fm, cfg.eval_selection, ratio=ratio)
        t_logits = teacher.predict(inputs, t_mask)
    kd_r = ce.new_zeros(())
    if cfg.distil != "prediction":
        t_rationale = teacher.select(t_gen, fm, "topk", ratio=ratio) if cfg.teacher_rationale == "topk" else None
        kd_tau = tau if cfg.rationale_kd_tau is None else cfg.rationale_kd_tau
        kd_r = rationale_kd(out.gen_logits, t_gen, kd_tau, fm, cfg.rationale_kd_scale, teacher_mask=t_rationale)
    kd_y = prediction_kd(out.logits, t_logits, tau, cfg.teacher_labels == "hard") if cfg.distil != "rationale" else ce.new_zeros(())
    alpha = alpha_at(tau, cfg.tau0) if cfg.alpha == "schedule" else float(cfg.alpha)
    loss = alpha * l_re + (1 - alpha) * (cfg.lambda_r * kd_r + kd_y)
    parts.update(loss=loss.item(), l_re=l_re.item(), kd_r=kd_r.item(), kd_y=kd_y.item(), alpha=alpha)
    return loss, parts


def teacher_test_cache(cfg: TrainConfig, num_examples: int, accelerator) -> Path | None:
    """The file under ``cache_dir`` for this teacher's outputs on this run's test split, or None.

    The key holds everything the outputs depend on: the teacher's weights (path, size, time), the
    ratio and selection, and the test split (dataset, limit, seed, length, image size)."""
    if not (cfg.cache_dir and cfg.teacher) or accelerator.num_processes > 1:
        return None
    weights = Path(cfg.teacher) / WEIGHTS_FILE
    stat = weights.stat()
    key = json.dumps([str(weights.resolve()), stat.st_size, stat.st_mtime_ns, cfg.ratio, cfg.eval_selection,
                      cfg.dataset, cfg.eval_limit, _split_seed(cfg) if cfg.eval_limit else None, cfg.max_length,
                      cfg.image_size, cfg.patch_size, num_examples])
    return Path(cfg.cache_dir) / f"teacher-test-{hashlib.sha1(key.encode()).hexdigest()[:16]}.safetensors"


class TeacherCache:
    """The frozen teacher generator's logits per training example, computed on first use.

    In eval mode (no dropout) and on inputs that are not augmented they never change, so the
    teacher generator runs once per example instead of once per step.
    """

    def __init__(self, num_examples: int, grid_length: int):
        self.logits = torch.zeros(num_examples, grid_length, 2)
        self.filled = torch.zeros(num_examples, dtype=torch.bool)

    def get(self, index: torch.Tensor, inputs: dict, teacher: RationaleModel, length: int) -> torch.Tensor:
        index = index.cpu()
        todo = ~self.filled[index]
        if todo.any():
            rows = todo.nonzero().squeeze(1)
            fresh = teacher.generator({k: v[rows.to(v.device)] for k, v in inputs.items()})
            self.logits[index[todo], : fresh.shape[1]] = fresh.float().cpu()
            self.filled[index[todo]] = True
        return self.logits[index, :length].to(next(teacher.parameters()).device)


def _split_seed(cfg: TrainConfig) -> int:
    return cfg.seed if cfg.split_seed is None else cfg.split_seed


def split_seed_of(config: dict) -> int | None:
    """The split seed a checkpoint was trained with (its config.json), None if it does not say.
    Checkpoints from before ``split_seed`` drew their split with their ``seed``."""
    training = config.get("training", {})
    return training["split_seed"] if training.get("split_seed") is not None else training.get("seed")


def inherited_split_seed(cfg: TrainConfig) -> int:
    """The split seed of a run: its own ``split_seed``, else the one that ``init_from`` and ``teacher``
    were trained with, else its ``seed``. A seed-2027 run started from a seed-2026 checkpoint would
    otherwise carve its dev split (which picks the kept epoch) partly out of that checkpoint's
    training data."""
    if cfg.split_seed is not None:
        return cfg.split_seed
    sources = {option: split_seed_of(read_config(path)) for option, path in
               (("--init-from", cfg.init_from), ("--teacher", cfg.teacher)) if path}
    sources = {option: seed for option, seed in sources.items() if seed is not None}
    if len(set(sources.values())) > 1:
        raise ConfigError("--init-from and --teacher were trained on different train/dev splits "
                          f"(split seeds {sources}); choose this run's with --split-seed")
    return next(iter(sources.values()), cfg.seed)


def make_splits(bundle: DatasetBundle, cfg: TrainConfig) -> tuple[RawSplit, RawSplit, RawSplit]:
    """Train / dev / test: the seeded stratified limits, and a stratified dev split carved from train
    unless the source ships a dev split; all drawn with the split seed, not the run's seed."""
    seed = _split_seed(cfg)
    train_split, dev_split = train_and_dev(bundle, seed, cfg.dev_fraction, cfg.train_limit)
    test_split = bundle.test
    if cfg.eval_limit:
        test_split = test_split.subset(stratified_subset(test_split.targets, cfg.eval_limit, seed))
        if bundle.dev is not None:
            dev_split = dev_split.subset(stratified_subset(dev_split.targets, cfg.eval_limit, seed))
    if len(train_split) == 0 or len(dev_split) == 0 or len(test_split) == 0:
        raise ConfigError("a split is empty: the dataset (or --train-limit) is too small for a dev split")
    return train_split, dev_split, test_split


def build_model(cfg: TrainConfig, labels: list[str], train_split: RawSplit,
                tokenizer_source: RationaleModel | None = None) -> RationaleModel:
    """The model to train, with its processor. A text preset takes the tokenizer of
    ``tokenizer_source`` (the teacher, or the --init-from model: their grids must match), else a
    WordPiece vocabulary trained on the training texts; other backbones bring their own. An explicit
    ``cfg.tokenizer`` wins (to share one vocabulary between the runs of a recipe)."""
    processor = None
    vocab_size = None
    preset = PRESETS.get(cfg.backbone)
    if cfg.task == "text":
        if cfg.tokenizer:  # a checkpoint, a tokenizer directory, a hub id, or a pretrained preset's name
            tokenizer = load_tokenizer(model_directory(cfg.tokenizer))
        elif preset is not None and not preset.packaged:
            if tokenizer_source is not None:
                tokenizer = tokenizer_source.processor.tokenizer
            else:
                tokenizer = train_wordpiece_tokenizer(train_split.inputs, cfg.vocab_size)
        else:  # a packaged pretrained preset, a hub id or a local directory brings its own
            tokenizer = load_tokenizer(model_directory(cfg.backbone))
        processor = TextProcessor(tokenizer, cfg.max_length)
        vocab_size = len(tokenizer)
    backbone, pretrained = resolve_backbone(cfg.backbone, cfg.task, vocab_size=vocab_size,
                                            image_size=cfg.image_size, patch_size=cfg.patch_size)
    pretrained = pretrained if cfg.pretrained else None
    model_config = {"task": cfg.task, "mode": cfg.mode, "ratio": cfg.ratio if cfg.mode != "cls" else 1.0,
                    "labels": list(labels), "backbone": backbone, "dropout": cfg.dropout}
    if cfg.task == "text":
        max_positions = backbone["hf_config"].get("max_position_embeddings", cfg.max_length)
        if cfg.max_length > max_positions:
            raise ConfigError(f"--max-length {cfg.max_length} exceeds the backbone's {max_positions} positions")
        if cfg.special_tokens == "exclude":
            model_config["unselectable_token_ids"] = special_token_ids(processor.tokenizer)
        if cfg.mode != "cls":
            model_config["generator_embeddings"] = generator_embeddings(cfg, pretrained)
    if cfg.ratio_range is not None:
        model_config["ratio_range"] = list(cfg.ratio_range)
    model = RationaleModel(model_config, processor, pretrained)
    if cfg.task == "vision":
        grid = feature_grid(model.predictor.backbone)
        if cfg.image_size and cfg.image_size != grid["image_size"]:
            raise ConfigError(f"backbone {cfg.backbone!r} takes {grid['image_size']}px images, not --image-size {cfg.image_size}")
        mean, std = _image_normalisation(model)
        model.processor = VisionProcessor(grid["image_size"], grid["patch_size"], mean, std)
    return model


def model_directory(name: str) -> str:
    """Where a Hugging Face model named ``name`` lives: a pretrained preset's installed package directory,
    else the name itself (a checkpoint or local directory, or a hub id)."""
    preset = PRESETS.get(name)
    return str(packaged_directory(preset.packaged)) if preset and preset.packaged else name


def parameter_groups(model: RationaleModel, cfg: TrainConfig) -> list[dict]:
    """The trainable parameters at ``cfg.lr``, and the generator's and predictor's heads at ``cfg.head_lr``
    (when set): new heads on a pretrained backbone need a far larger step than the backbone does."""
    heads = [*model.predictor.classifier.parameters(), *(model.generator.head.parameters() if model.generator else [])]
    head_ids = {id(p) for p in heads}
    trainable = [p for p in model.parameters() if p.requires_grad]
    if cfg.head_lr is None:
        return [{"params": trainable, "lr": cfg.lr}]
    return [{"params": [p for p in trainable if id(p) not in head_ids], "lr": cfg.lr},
            {"params": [p for p in trainable if id(p) in head_ids], "lr": cfg.head_lr}]


def special_token_ids(tokenizer) -> list[int]:
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


def load_teacher(cfg: TrainConfig, device) -> RationaleModel:
    teacher = load_checkpoint(cfg.teacher, device)
    if teacher.task != cfg.task:
        raise ConfigError(f"teacher {cfg.teacher} is a {teacher.task} model, but --task is {cfg.task}")
    if teacher.generator is None:
        raise ConfigError(f"teacher {cfg.teacher} is a CLS model; REKD needs an RE (or REKD) teacher")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def check_teacher_compatible(teacher: RationaleModel, student: RationaleModel) -> None:
    """REKD distils per feature and per class: the grids and the label sets must be identical."""
    if teacher.task != student.task:
        raise ConfigError(f"teacher is a {teacher.task} model but the student is {student.task}")
    t_grid, s_grid = teacher.processor.grid(), student.processor.grid()
    if t_grid != s_grid:
        diff = {k: (t_grid.get(k), s_grid.get(k)) for k in set(t_grid) | set(s_grid) if t_grid.get(k) != s_grid.get(k)}
        raise ConfigError(f"teacher and student select over different feature grids (teacher, student): {diff}")
    if teacher.task == "vision" and (teacher.processor.mean, teacher.processor.std) != (
            student.processor.mean, student.processor.std):
        raise ConfigError("teacher and student normalise images differently (mean, std: "
                          f"{teacher.processor.mean, teacher.processor.std} against "
                          f"{student.processor.mean, student.processor.std}), "
                          "but the teacher reads the student's inputs")
    if [l.lower() for l in teacher.labels] != [l.lower() for l in student.labels]:
        raise ConfigError(f"teacher labels {teacher.labels} differ from the dataset's {student.labels}")


def init_backbones_from(model: RationaleModel, source: RationaleModel) -> None:
    """Start the generator and predictor backbones from a trained model's predictor backbone
    (e.g. a CLS model: the small-model analogue of starting from a pretrained encoder)."""
    path = getattr(source, "checkpoint_path", "the source model")
    if source.config["backbone"]["type"] != model.config["backbone"]["type"] or source.processor.grid() != model.processor.grid():
        raise ConfigError(f"--init-from {path}: its backbone or feature grid differs from this run's")
    state = source.predictor.backbone.state_dict()
    try:
        model.predictor.backbone.load_state_dict(state)
        if model.generator is not None:
            model.generator.backbone.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"--init-from {path}: backbone weights do not fit ({first_line(exc)})") from exc


def run_description(cfg: TrainConfig, model: RationaleModel, teacher: RationaleModel | None) -> dict:
    """What goes into config.json besides the model: the settings, the data, the teacher."""
    training = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out", "progress")}
    description = {"training": training, "dataset": cfg.dataset, "weights_dtype": cfg.weights_dtype,
                   "parameters": {"generator": count_parameters(model.generator) if model.generator else 0,
                                  "predictor": count_parameters(model.predictor)}}
    if teacher is not None:  # "teacher": distilled from; "compared_with": only in the test metrics
        description["teacher" if cfg.mode == "rekd" else "compared_with"] = {
            "path": str(cfg.teacher), "backbone": teacher.config["backbone"].get("source"),
            "mode": teacher.config["mode"], "ratio": teacher.ratio, "parameters": count_parameters(teacher)}
    return description


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


def _make_accelerator(accelerator_cls, device: str):
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: Apple MPS is not available")
    return accelerator_cls(cpu=device == "cpu")


def precision_context(precision: str, device: torch.device):
    """A factory of the context that runs forward passes (model, frozen teacher, evaluation) in
    ``precision``: bf16 autocast (weights and optimizer stay float32), or nothing for fp32. Not Accelerate's
    ``mixed_precision``, which is fixed once per process, so a sweep could not mix precisions."""
    if precision == "fp32":
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _cacheable(cfg: TrainConfig) -> bool:
    return cfg.cache_teacher and (cfg.task == "text" or not cfg.augment)



def _image_normalisation(model: RationaleModel) -> tuple:
    from .processing import IMAGENET_MEAN, IMAGENET_STD

    inner = model.predictor.backbone.model
    cfg = getattr(inner, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))


def _hardware(accelerator) -> str:
    import platform

    device = accelerator.device
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} x{accelerator.num_processes}"
    return f"{device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads) x{accelerator.num_processes}"


def _epoch_line(row: dict) -> str:
    parts = [f"epoch {row['epoch']}", f"train loss {row.get('train_loss', 0):.4f}",
             f"dev acc {row['dev_accuracy']:.4f}", f"dev l_re {row['dev_l_re']:.4f}"]
    if "dev_ratio" in row:
        parts.append(f"dev ratio {row['dev_ratio']:.3f}")
    parts.append(f"{row['train_samples_per_s']:.1f} samples/s")
    return ", ".join(parts)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def _parse_float(name: str, value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number or 'schedule', got {value!r}") from exc
