"""The one loop that fits an objective (objectives.py, pretraining.py) under Hugging Face Accelerate.

``fit`` runs the epochs: each batch is one ``train_step`` (the objective's loss, backward, AdamW and the
learning-rate schedule), each epoch ends with the dev metrics and a log row, and the epoch with the lowest dev
``criterion`` is kept. After every epoch the run's record is saved (resume.py): the best weights so far and, before
the last epoch, the state the next one starts from, so that a cut run goes on from its last finished epoch and ends
where an uninterrupted run would. The same code runs on one CPU, one GPU, or several processes with
``accelerate launch``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from . import resume
from .checkpoint import cpu_snapshot
from .config import TrainConfig
from .factory import data_loader
from .objectives import Objective
from .processing import FeatureDataset
from .resume import Progress, earlier_progress, save_epoch

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["Fitted", "fit", "train_step"]


@dataclass
class Fitted:
    """What ``fit`` leaves: the log, the kept epoch (its ``criterion`` value, number, dev metrics and weights), the
    optimizer steps taken, the training seconds of an earlier, cut run it went on from, and that run's progress."""

    log: list[dict]
    best: dict
    steps: int
    earlier_seconds: float
    earlier: Progress | None


def train_step(objective: Objective, batch: dict, optimizer: torch.optim.Optimizer, lr_scheduler, step: int,
               total_steps: int, accelerator: Accelerator | None = None) -> dict[str, float]:
    """One optimizer step on ``batch`` (the ``step``-th of ``total_steps``); the loss's terms as floats."""
    loss, parts = objective.loss(batch, step, total_steps)
    optimizer.zero_grad(set_to_none=True)
    if accelerator is None:
        loss.backward()
    else:
        accelerator.backward(loss)
    optimizer.step()
    lr_scheduler.step()
    return parts


def fit(objective: Objective, cfg: TrainConfig, accelerator: Accelerator, train_set: FeatureDataset,
        dev_set: FeatureDataset, description: dict, started: float) -> Fitted:
    """Train ``objective`` for ``cfg.epochs`` (``cfg`` resolved), going on from the run that ``description`` names
    at ``cfg.out`` when it was cut; ``started`` is when the run began (its saves record the seconds since)."""
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    train_loader = data_loader(train_set, cfg, shuffle=True)
    # the DataLoader's generator and the objective's own are part of the state a cut run is resumed with
    generators = {"batch_order": train_loader.generator, **objective.generators}
    dev_loader = data_loader(dev_set, cfg)
    optimizer = torch.optim.AdamW(objective.parameter_groups(), weight_decay=cfg.weight_decay)
    objective.trainable, optimizer, train_loader, dev_loader = accelerator.prepare(
        objective.trainable, optimizer, train_loader, dev_loader)
    trained = accelerator.unwrap_model(objective.trainable)
    total_steps = cfg.epochs * len(train_loader)
    # Stepped once per optimizer step of this process, so it is not handed to accelerator.prepare
    # (which would step it once per process).
    lr_scheduler = get_scheduler(cfg.lr_schedule, optimizer, num_warmup_steps=0, num_training_steps=total_steps)
    objective.start(train_set)
    criterion = objective.criterion
    log: list[dict] = []
    best = {criterion: math.inf, "epoch": 0, "state": None, "dev": {}}
    step, earlier_s = 0, 0.0
    earlier = earlier_progress(cfg.out, description, objective.model, criterion=criterion)
    if earlier is not None:
        log, best, step, earlier_s = list(earlier.log), earlier.best, earlier.steps, earlier.seconds
        if earlier.resume is not None:
            resume.restore(*earlier.resume, trained, optimizer, lr_scheduler, generators)
        if accelerator.is_main_process:
            tqdm.write(f"{cfg.out}: resuming after epoch {len(log)} of {cfg.epochs}")
    for epoch in range(len(log) + 1, cfg.epochs + 1):
        objective.trainable.train()
        epoch_start, sums = time.time(), {}
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}",
                   disable=not (cfg.progress and accelerator.is_main_process))
        for batch in bar:
            parts = train_step(objective, batch, optimizer, lr_scheduler, step, total_steps, accelerator)
            step += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{parts['loss']:.3f}")
        train_seconds = time.time() - epoch_start
        dev = objective.evaluate(dev_loader, accelerator)
        row = {"epoch": epoch, **objective.logged(step), "lr": lr_scheduler.get_last_lr()[0],
               "train_seconds": round(train_seconds, 2),
               "train_samples_per_s": round(len(train_set) / max(train_seconds, 1e-9), 2),
               **{f"train_{k}": v / len(train_loader) for k, v in sums.items()},
               **{f"dev_{k}": v for k, v in dev.items()}}
        log.append(row)
        if accelerator.is_main_process:
            tqdm.write(_epoch_line(row, criterion))
        if dev[criterion] < best[criterion]:
            best.update({criterion: dev[criterion]}, epoch=epoch, dev=dev, state=cpu_snapshot(objective.model))
        objective.end_epoch()
        if accelerator.is_main_process:
            last = epoch == cfg.epochs
            save_epoch(objective.model, cfg, log, best, description, steps=step,
                       seconds=time.time() - started + earlier_s,
                       resume_state=None if last else resume.capture(trained, optimizer, lr_scheduler, generators))
        accelerator.wait_for_everyone()
    objective.finish()
    return Fitted(log, best, step, earlier_s, earlier)


def _epoch_line(row: dict, criterion: str) -> str:
    """One epoch's row of the log as the line printed after it."""
    parts = [f"epoch {row['epoch']}", f"train loss {row.get('train_loss', 0):.4f}"]
    if "dev_accuracy" in row:
        parts.append(f"dev acc {row['dev_accuracy']:.4f}")
    parts.append(f"dev {criterion} {row[f'dev_{criterion}']:.4f}")
    if "dev_ratio" in row:
        parts.append(f"dev ratio {row['dev_ratio']:.3f}")
    parts.append(f"{row['train_samples_per_s']:.1f} samples/s")
    return ", ".join(parts)
