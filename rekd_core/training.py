"""Training: CLS, RE and REKD in one readable loop under Hugging Face Accelerate.

``train(TrainConfig(...))`` builds the data, the model (and loads the frozen teacher for REKD),
runs the epochs, keeps the epoch with the lowest dev loss (dev L_RE; the KD terms are left out of
the criterion), evaluates it on the test split and writes one checkpoint directory. The same code
runs on one CPU, one GPU, or several processes with ``accelerate launch``; ``--mode mlm`` is handed
to pretraining.py once the data is split. What the loop is made of lives below it: the settings in
config.py, the model and its teacher in factory.py, the per-epoch record and resume state in resume.py.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from . import resume
from .checkpoint import (
    WEIGHTS_FILE,
    as_stored,
    check_writable,
    cpu_snapshot,
    load_checkpoint,
    read_config,
    save_checkpoint,
)
from .config import TrainConfig
from .data import DatasetBundle, RawSplit, load_dataset_spec, stratified_subset, train_and_dev
from .errors import ConfigError
from .evaluation import evaluate
from .factory import (
    check_teacher_compatible,
    create_model,
    data_loader,
    init_backbones_from,
    load_teacher,
    parameter_groups,
)
from .frozen_cache import FrozenStateCache, frozen_weights_digest
from .inputs import resolve_device
from .losses import prediction_kd, rationale_kd, selection_cost
from .model import RationaleModel
from .pretraining import pretrain_mlm
from .processing import FeatureDataset, model_inputs
from .resume import earlier_progress, hardware, resumed_metrics, run_description, save_epoch
from .schedules import alpha_at, tau_at

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["TeacherCache", "example_slots", "frozen_state_cache", "frozen_states", "inherited_split_seed",
           "make_splits", "precision_context", "split_seed_of", "teacher_test_cache", "train", "training_loss"]


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
        return pretrain_mlm(cfg, accelerator, bundle.labels, train_split, dev_split, started)
    # Building the teacher's model draws from the global RNG. An RE run only compares with its teacher,
    # so it loads it aside: naming one for the test metrics leaves the run's training as it was.
    with torch.random.fork_rng(enabled=cfg.mode != "rekd"):
        teacher = load_teacher(cfg, accelerator.device) if cfg.teacher else None
    distil_from = teacher if cfg.mode == "rekd" else None  # otherwise only compared with in the test metrics
    init_source = load_checkpoint(cfg.init_from) if cfg.init_from else None
    if init_source is not None and init_source.task != cfg.task:
        raise ConfigError(f"--init-from {cfg.init_from} is a {init_source.task} model, but --task is {cfg.task}")
    model = create_model(cfg, bundle.labels, train_split, tokenizer_source=teacher or init_source)
    if teacher is not None:
        check_teacher_compatible(teacher, model)
    if init_source is not None:
        init_backbones_from(model, init_source)

    frozen_cached = cfg.frozen_blocks_cached
    train_set = FeatureDataset(train_split, model.processor, train=True, augment=cfg.augment != "none",
                               flip_only=cfg.augment == "flip" or frozen_cached)
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
    teacher_cache = (TeacherCache(len(train_set) * train_set.variants, grid_length, train_set.variants)
                     if distil_from and _cacheable(cfg, train_set) else None)
    frozen_cache = frozen_state_cache(cfg, core, train_set) if frozen_cached else None
    log: list[dict] = []
    best = {"l_re": math.inf, "epoch": 0, "state": None, "dev": {}}
    extra_config = run_description(cfg, core, teacher)
    step, earlier_s = 0, 0.0
    earlier = earlier_progress(cfg.out, extra_config, core)
    if earlier is not None:
        log, best, step, earlier_s = list(earlier.log), earlier.best, earlier.steps, earlier.seconds
        if earlier.resume is not None:
            resume.restore(*earlier.resume, core, optimizer, lr_scheduler, generators)
        if accelerator.is_main_process:
            tqdm.write(f"{cfg.out}: resuming after epoch {len(log)} of {cfg.epochs}")
    for epoch in range(len(log) + 1, cfg.epochs + 1):
        model.train()
        epoch_start, sums = time.time(), {}
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}",
                   disable=not (cfg.progress and accelerator.is_main_process))
        for batch in bar:
            tau = tau_at(step, total_steps, cfg.tau0, every=cfg.tau_every)
            with autocast():  # the frozen teacher is not wrapped by accelerator.prepare
                lower = None if frozen_cache is None else frozen_states(frozen_cache, core, batch, train_set.variants)
                loss, parts = training_loss(model, batch, cfg, tau, grid_length, distil_from, teacher_cache, lower)
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
        if frozen_cache is not None:
            frozen_cache.flush()
        if accelerator.is_main_process:
            last = epoch == cfg.epochs
            save_epoch(core, cfg, log, best, extra_config, steps=step, seconds=time.time() - started + earlier_s,
                       resume_state=None if last else resume.capture(core, optimizer, lr_scheduler, generators))
        accelerator.wait_for_everyone()

    if frozen_cache is not None and not cfg.cache_dir:
        frozen_cache.remove()  # a file of this run's; one in --cache-dir stays for the runs that share it
    core.load_state_dict(as_stored(best["state"], cfg.weights_dtype))  # tested as shipped (float16: rounded)
    with autocast():
        test = evaluate(model, test_loader, teacher=teacher, selection=cfg.eval_selection, lambda_sel=cfg.lambda_sel,
                        sel_length=cfg.sel_length, sel_cost=cfg.sel_cost, accelerator=accelerator,
                        with_faithfulness=cfg.faithfulness and cfg.mode != "cls",
                        teacher_cache=teacher_test_cache(cfg, len(test_split), accelerator))
    wall = time.time() - started + earlier_s
    metrics = {"best_epoch": best["epoch"], "dev": best["dev"], "test": test, "eval_selection": cfg.eval_selection,
               "wall_time_s": round(wall, 1), "train_examples": len(train_set), "steps": step,
               "hardware": hardware(accelerator), **resumed_metrics(earlier)}
    if accelerator.is_main_process:
        save_checkpoint(core, cfg.out, state_dict=best["state"], log=log, metrics=metrics,
                        extra_config={**extra_config, "status": "complete"})
        ratio = f", ratio {test['ratio']:.3f}" if "ratio" in test else ""
        tqdm.write(f"test: accuracy {test['accuracy']:.4f}{ratio} -> {cfg.out} ({wall:.0f} s)")
        for warning in test.get("warnings", []):
            tqdm.write(f"warning: {warning}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return Path(cfg.out)


def training_loss(model: torch.nn.Module, batch: dict, cfg: TrainConfig, tau: float, grid_length: int,
                  teacher: RationaleModel | None = None, teacher_cache: TeacherCache | None = None,
                  lower: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The objective of METHOD.md for one batch: CE (CLS), L_RE (RE), or
    ``alpha * L_RE + (1 - alpha) * (lambda_R * KD_R + tau^2 * KD_Y)`` (REKD). ``lower``: the batch's cached
    frozen-block states (``frozen_states``). Returns the loss tensor and its parts as floats."""
    inputs, targets = model_inputs(batch), batch["label"]
    if cfg.mode == "cls":
        loss = F.cross_entropy(model(inputs, lower=lower).logits, targets)
        return loss, {"loss": loss.item()}
    ratio = cfg.ratio
    if cfg.ratio_range is None:
        out = model(inputs, selection=cfg.train_selection, tau=tau, lower=lower)
    else:  # drawn from torch's global generator, whose state a resumed run restores
        ratio = cfg.ratio_range[0] + (cfg.ratio_range[1] - cfg.ratio_range[0]) * torch.rand(()).item()
        out = model(inputs, selection="gumbel_topk", tau=tau, ratio=ratio, lower=lower)
    fm = out.feature_mask
    length = fm.sum(dim=1) if cfg.sel_length == "real" else grid_length
    ce = F.cross_entropy(out.logits, targets)
    sel = selection_cost(out.mask, ratio, length, per_example=cfg.sel_cost == "example")
    l_re = ce + cfg.lambda_sel * sel
    parts = {"ce": ce.item(), "sel": sel.item(), "ratio": (out.mask.sum() / fm.sum()).item()}
    adversary = ce.new_zeros(())
    if out.complement_logits is not None:
        adversary = F.cross_entropy(out.complement_logits, targets)
        parts["complement_ce"] = adversary.item()
    if teacher is None:
        parts["loss"] = l_re.item()
        return l_re + adversary, parts
    with torch.no_grad():
        if teacher_cache is not None:
            t_gen = teacher_cache.get(example_slots(batch, teacher_cache.variants), inputs, teacher,
                                      out.gen_logits.shape[1])
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
    kd_y = (prediction_kd(out.logits, t_logits, tau, cfg.teacher_labels == "hard") if cfg.distil != "rationale"
            else ce.new_zeros(()))
    alpha = alpha_at(tau, cfg.tau0) if cfg.alpha == "schedule" else float(cfg.alpha)
    loss = alpha * l_re + (1 - alpha) * (cfg.lambda_r * kd_r + kd_y)
    parts.update(loss=loss.item(), l_re=l_re.item(), kd_r=kd_r.item(), kd_y=kd_y.item(), alpha=alpha)
    return loss + adversary, parts


def teacher_test_cache(cfg: TrainConfig, num_examples: int, accelerator: Accelerator) -> Path | None:
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
    """The frozen teacher generator's logits per training example (and variant: an image or its mirror image,
    when the only augmentation is a flip), computed on first use.

    In eval mode (no dropout) and on inputs that are not augmented they never change, so the
    teacher generator runs once per example instead of once per step.
    """

    def __init__(self, num_slots: int, grid_length: int, variants: int = 1):
        self.logits = torch.zeros(num_slots, grid_length, 2)
        self.filled = torch.zeros(num_slots, dtype=torch.bool)
        self.variants = variants

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



def _make_accelerator(accelerator_cls: type, device: str):
    """An Accelerator on ``device``: auto is Accelerate's own pick (cuda, then mps, then cpu, as
    ``inputs.resolve_device``'s); an explicit device that is absent here is one ``ConfigError`` line."""
    resolve_device(device)
    return accelerator_cls(cpu=device == "cpu")


def precision_context(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the context that runs forward passes (model, frozen teacher, evaluation) in
    ``precision``: bf16 autocast (weights and optimizer stay float32), or nothing for fp32. Not Accelerate's
    ``mixed_precision``, which is fixed once per process, so a sweep could not mix precisions."""
    if precision == "fp32":
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _cacheable(cfg: TrainConfig, train_set: FeatureDataset) -> bool:
    """Whether the teacher generator's logits per training example can be cached: inputs that are not augmented,
    or only flipped (two variants an example)."""
    return cfg.cache_teacher and (cfg.task == "text" or cfg.augment == "none" or train_set.variants == 2)


def example_slots(batch: dict, variants: int) -> torch.Tensor:
    """The cache row of each example of ``batch``: its index, times ``variants``, plus the variant it came as."""
    index = batch["index"]
    return index * variants + batch["variant"] if variants > 1 else index


def frozen_state_cache(cfg: TrainConfig, model: RationaleModel, train_set: FeatureDataset) -> FrozenStateCache:
    """The cache of the frozen blocks a run's training examples go through unmasked: the generator's (RE, REKD) or
    a CLS model's predictor's. ``cfg`` is resolved; the file, when the cache is too large for its budget, lies in
    ``cfg.cache_dir`` or beside the checkpoint, named by what the states depend on."""
    backbone = (model.generator or model.predictor).backbone
    tokens = cfg.max_length if cfg.task == "text" else backbone.num_prefix + backbone.num_patches
    key = {"backbone": model.config.backbone.to_dict(), "frozen_blocks": backbone.frozen_blocks,
           "weights": frozen_weights_digest(backbone), "dataset": cfg.dataset, "split_seed": _split_seed(cfg),
           "train_limit": cfg.train_limit, "dev_fraction": cfg.dev_fraction, "grid": model.processor.grid(),
           "examples": len(train_set), "variants": train_set.variants}
    name = "frozen-" + hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return FrozenStateCache(len(train_set) * train_set.variants, (tokens, backbone.hidden_size),
                            torch.bfloat16 if cfg.precision == "bf16" else torch.float32,
                            int(cfg.frozen_cache_gb * 2**30), Path(cfg.cache_dir or f"{cfg.out}.cache") / name, key)


def frozen_states(cache: FrozenStateCache, model: RationaleModel, batch: dict, variants: int) -> torch.Tensor:
    """The batch's frozen-block states, from ``cache`` (those not there yet computed and kept)."""
    inputs = model_inputs(batch)
    backbone = (model.generator or model.predictor).backbone
    length = inputs["input_ids"].shape[1] if "input_ids" in inputs else backbone.num_prefix + backbone.num_patches
    some = lambda rows: backbone.lower_states({k: v[rows] for k, v in inputs.items()})  # noqa: E731
    return cache.get(example_slots(batch, variants), length, some, model.device)


def _epoch_line(row: dict) -> str:
    """One epoch's row of the log as the line printed after it."""
    parts = [f"epoch {row['epoch']}", f"train loss {row.get('train_loss', 0):.4f}",
             f"dev acc {row['dev_accuracy']:.4f}", f"dev l_re {row['dev_l_re']:.4f}"]
    if "dev_ratio" in row:
        parts.append(f"dev ratio {row['dev_ratio']:.3f}")
    parts.append(f"{row['train_samples_per_s']:.1f} samples/s")
    return ", ".join(parts)
