"""Training: ``train(TrainConfig(...))`` builds the data, the model and its objective, fits it, evaluates the
kept epoch on the test split and writes one checkpoint directory.

The run is read top to bottom: the settings resolved (config.py), the dataset loaded and split with the split seed
(its own, or that of the checkpoints it starts from), the model built (factory.py) with its frozen teacher and its
objective (objectives.py: CLS, RE, REKD; pretraining.py: MLM), the epochs fitted (fit.py, which keeps the record a
cut run resumes from: resume.py), the kept epoch tested (evaluation.py) and the checkpoint saved (checkpoint.py).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .checkpoint import WEIGHTS_FILE, as_stored, check_writable, load_checkpoint, read_config, save_checkpoint
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
)
from .fit import fit
from .inputs import resolve_device
from .model import RationaleModel
from .objectives import Objective, objective_for, precision_context
from .pretraining import MaskedLanguageObjective
from .processing import FeatureDataset
from .resume import hardware, resumed_metrics, run_description, saved_vocabulary

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["inherited_split_seed", "make_splits", "split_seed_of", "teacher_test_cache", "train"]


def train(config: TrainConfig) -> Path:
    """Run one training job; return the checkpoint directory."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    cfg = config.resolved()
    check_writable(cfg.out)  # before any work, not at the first save
    accelerator = _make_accelerator(Accelerator, cfg.device)
    set_seed(cfg.seed)
    started = time.time()

    bundle = load_dataset_spec(cfg.dataset)
    if bundle.task != cfg.task:
        raise ConfigError(f"dataset {cfg.dataset!r} is a {bundle.task} dataset, but --task is {cfg.task}")
    cfg.split_seed = inherited_split_seed(cfg)
    train_split, dev_split, test_split = make_splits(bundle, cfg)
    objective, teacher = _objective(cfg, bundle.labels, train_split, accelerator.device)
    model = objective.model
    train_set = FeatureDataset(train_split, model.processor, train=True, augment=cfg.augment != "none",
                               flip_only=cfg.augment == "flip" or cfg.frozen_blocks_cached)
    description = {**run_description(cfg, model, teacher), **objective.notes}
    fitted = fit(objective, cfg, accelerator, train_set, FeatureDataset(dev_split, model.processor), description,
                 started)

    metrics = {"best_epoch": fitted.best["epoch"], "dev": fitted.best["dev"]}
    if objective.tested:
        # tested as shipped (float16: rounded)
        model.load_state_dict(as_stored(fitted.best["state"], cfg.weights_dtype))
        test_loader = accelerator.prepare(data_loader(FeatureDataset(test_split, model.processor), cfg))
        with precision_context(cfg.precision, accelerator.device)():
            test = evaluate(objective.trainable, test_loader, teacher=teacher, selection=cfg.eval_selection,
                            lambda_sel=cfg.lambda_sel, sel_length=cfg.sel_length, sel_cost=cfg.sel_cost,
                            accelerator=accelerator, with_faithfulness=cfg.faithfulness and cfg.mode != "cls",
                            teacher_cache=teacher_test_cache(cfg, len(test_split), accelerator))
        metrics.update(test=test, eval_selection=cfg.eval_selection)
    wall = time.time() - started + fitted.earlier_seconds
    metrics.update(wall_time_s=round(wall, 1), train_examples=len(train_set), steps=fitted.steps,
                   hardware=hardware(accelerator), **resumed_metrics(fitted.earlier))
    if accelerator.is_main_process:
        save_checkpoint(model, cfg.out, state_dict=fitted.best["state"], log=fitted.log, metrics=metrics,
                        extra_config={**description, "status": "complete"})
        if objective.tested:
            ratio = f", ratio {test['ratio']:.3f}" if "ratio" in test else ""
            tqdm.write(f"test: accuracy {test['accuracy']:.4f}{ratio} -> {cfg.out} ({wall:.0f} s)")
            for warning in test.get("warnings", []):
                tqdm.write(f"warning: {warning}")
        else:
            tqdm.write(f"{cfg.mode}: dev {objective.criterion} {fitted.best[objective.criterion]:.4f} "
                       f"(epoch {fitted.best['epoch']}) -> {cfg.out} ({wall:.0f} s)")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return Path(cfg.out)


def _objective(cfg: TrainConfig, labels: list[str], train_split: RawSplit,
               device: torch.device) -> tuple[Objective, RationaleModel | None]:
    """The run's objective on its freshly built model, and the teacher it distils from or is compared with in the
    test metrics (None without one). Building models draws from torch's global random generator, in this order."""
    if cfg.mode == "mlm":
        return MaskedLanguageObjective(create_model(dataclasses.replace(cfg, mode="cls"), labels, train_split,
                                                    saved_vocabulary=saved_vocabulary(cfg.out)), cfg), None
    # An RE run only compares with its teacher, so it loads it aside: naming one for the test metrics leaves
    # the run's training as it was.
    with torch.random.fork_rng(enabled=cfg.mode != "rekd"):
        teacher = load_teacher(cfg, device) if cfg.teacher else None
    init_source = load_checkpoint(cfg.init_from) if cfg.init_from else None
    if init_source is not None and init_source.task != cfg.task:
        raise ConfigError(f"--init-from {cfg.init_from} is a {init_source.task} model, but --task is {cfg.task}")
    model = create_model(cfg, labels, train_split, tokenizer_source=teacher or init_source,
                         saved_vocabulary=saved_vocabulary(cfg.out))
    if teacher is not None:
        check_teacher_compatible(teacher, model)
    if init_source is not None:
        init_backbones_from(model, init_source)
    return objective_for(model, cfg, device, teacher if cfg.mode == "rekd" else None), teacher


def teacher_test_cache(cfg: TrainConfig, num_examples: int, accelerator: Accelerator) -> Path | None:
    """The file under ``cache_dir`` for this teacher's outputs on this run's test split, or None.

    The key holds everything the outputs depend on: the teacher's weights (path, size, time), the
    ratio and selection, and the test split (dataset, limit, seed, length, image size)."""
    if not (cfg.cache_dir and cfg.teacher) or accelerator.num_processes > 1:
        return None
    weights = Path(cfg.teacher) / WEIGHTS_FILE
    stat = weights.stat()
    key = json.dumps([str(weights.resolve()), stat.st_size, stat.st_mtime_ns, cfg.ratio, cfg.eval_selection,
                      cfg.dataset, cfg.eval_limit, cfg.data_split_seed if cfg.eval_limit else None, cfg.max_length,
                      cfg.image_size, cfg.patch_size, num_examples])
    return Path(cfg.cache_dir) / f"teacher-test-{hashlib.sha1(key.encode()).hexdigest()[:16]}.safetensors"


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
    seed = cfg.data_split_seed
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
