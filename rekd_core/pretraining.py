"""Masked-language-model pretraining of a text backbone: the small-model analogue of BERT's own
pretraining, for from-scratch presets that have none.

``rekd train --mode mlm`` trains the encoder on the training split's texts (BERT's 15% masking,
80/10/10, with ``transformers.DataCollatorForLanguageModeling``) and writes a CLS checkpoint whose
backbone holds the pretrained encoder and whose classification head is untrained: the input of
``--init-from`` for the CLS, RE or REKD run that follows. The dev split's texts give a held-out MLM
loss (masked with a fixed seed, so epochs compare) that picks the kept epoch.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import resume
from .checkpoint import cpu_snapshot, save_checkpoint
from .config import TrainConfig
from .data import RawSplit
from .errors import ConfigError
from .factory import create_model, data_loader
from .processing import FeatureDataset
from .resume import earlier_progress, hardware, resumed_metrics, run_description, save_epoch

if TYPE_CHECKING:
    from accelerate import Accelerator

MLM_PROBABILITY = 0.15


def pretrain_mlm(cfg: TrainConfig, accelerator: Accelerator, labels: list[str], train_split: RawSplit,
                 dev_split: RawSplit, started: float) -> Path:
    """Pretrain ``cfg.backbone`` by masked-language modelling on the texts of ``train_split`` (dev
    loss on ``dev_split``); return the checkpoint directory. A run cut between epochs goes on from
    its last finished one, as ``train`` does. ``cfg`` is a resolved text TrainConfig
    with ``mode == "mlm"``; ``train`` has seeded everything and made the splits since ``started``."""
    # imported here: training.py imports this module, and ``import rekd_core`` should not pay for transformers
    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling, get_scheduler

    model = create_model(dataclasses.replace(cfg, mode="cls"), labels, train_split)
    tokenizer = model.processor.tokenizer
    if tokenizer.mask_token is None:
        raise ConfigError(f"the tokenizer of {cfg.backbone!r} has no mask token, so it cannot do MLM")
    encoder = model.predictor.backbone.encoder
    mlm = AutoModelForMaskedLM.from_config(encoder.config)
    setattr(mlm, mlm.base_model_prefix, encoder)  # the head trains on top of the model's own encoder

    train_loader = data_loader(FeatureDataset(train_split, model.processor), cfg, shuffle=True)
    masker = DataCollatorForLanguageModeling(tokenizer, mlm_probability=MLM_PROBABILITY, seed=cfg.seed)
    # The collator would create this generator at its first batch; made here, a cut run can restore it.
    masker.generator = torch.Generator().manual_seed(cfg.seed)
    generators = {"batch_order": train_loader.generator, "masking": masker.generator}
    dev_loader = data_loader(FeatureDataset(dev_split, model.processor), cfg)
    optimizer = torch.optim.AdamW([p for p in mlm.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    mlm, optimizer, train_loader, dev_loader = accelerator.prepare(mlm, optimizer, train_loader, dev_loader)
    total_steps = cfg.epochs * len(train_loader)
    lr_scheduler = get_scheduler(cfg.lr_schedule, optimizer, num_warmup_steps=0, num_training_steps=total_steps)

    description = run_description(cfg, model, None)
    description["pretraining"] = "mlm: the encoder is pretrained, the classification head is untrained"
    log: list[dict] = []
    best = {"mlm_loss": math.inf, "epoch": 0, "state": None, "dev": {}}
    step, earlier_s = 0, 0.0
    earlier = earlier_progress(cfg.out, description, model, criterion="mlm_loss")
    if earlier is not None:  # only ever cut between epochs: the last one saves the finished checkpoint
        log, best, step, earlier_s = list(earlier.log), earlier.best, earlier.steps, earlier.seconds
        resume.restore(*earlier.resume, accelerator.unwrap_model(mlm), optimizer, lr_scheduler, generators)
        if accelerator.is_main_process:
            print(f"{cfg.out}: resuming after epoch {len(log)} of {cfg.epochs}", flush=True)
    for epoch in range(len(log) + 1, cfg.epochs + 1):
        mlm.train()
        epoch_start, total = time.time(), 0.0
        for batch in train_loader:
            loss = mlm(**_masked(batch, masker, tokenizer)).loss
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            lr_scheduler.step()
            step += 1
            total += loss.item()
        train_seconds = time.time() - epoch_start
        dev_loss = _dev_loss(mlm, dev_loader, tokenizer, cfg.seed)
        row = {"epoch": epoch, "lr": lr_scheduler.get_last_lr()[0], "train_seconds": round(train_seconds, 2),
               "train_samples_per_s": round(len(train_split) / max(train_seconds, 1e-9), 2),
               "train_loss": total / len(train_loader), "dev_mlm_loss": dev_loss}
        log.append(row)
        if accelerator.is_main_process:
            print(f"epoch {epoch}, train mlm loss {row['train_loss']:.4f}, dev mlm loss {dev_loss:.4f}, "
                  f"{row['train_samples_per_s']:.1f} samples/s", flush=True)
        if dev_loss < best["mlm_loss"]:
            best.update(mlm_loss=dev_loss, epoch=epoch, dev={"mlm_loss": dev_loss}, state=cpu_snapshot(model))
        if accelerator.is_main_process and epoch < cfg.epochs:
            save_epoch(model, cfg, log, best, description, steps=step, seconds=time.time() - started + earlier_s,
                       resume_state=resume.capture(accelerator.unwrap_model(mlm), optimizer, lr_scheduler, generators))
        accelerator.wait_for_everyone()
    wall = time.time() - started + earlier_s
    metrics = {"best_epoch": best["epoch"], "dev": best["dev"], "wall_time_s": round(wall, 1), "steps": step,
               "train_examples": len(train_split), "hardware": hardware(accelerator),
               **resumed_metrics(earlier)}
    if accelerator.is_main_process:
        save_checkpoint(model, cfg.out, state_dict=best["state"], log=log, metrics=metrics,
                        extra_config={**description, "status": "complete"})
        print(f"mlm: dev loss {best['mlm_loss']:.4f} (epoch {best['epoch']}) -> {cfg.out} ({wall:.0f} s)", flush=True)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return Path(cfg.out)


def _masked(batch: dict, masker, tokenizer) -> dict:
    """BERT masking of a batch: special tokens and padding are never masked nor predicted."""
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    ids = input_ids.cpu()  # the collator samples its masks on the CPU
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids)) | (attention_mask.cpu() == 0)
    masked, labels = masker.torch_mask_tokens(ids.clone(), special_tokens_mask=special)
    return {"input_ids": masked.to(input_ids.device), "attention_mask": attention_mask,
            "labels": labels.to(input_ids.device)}


@torch.no_grad()
def _dev_loss(mlm, loader, tokenizer, seed: int) -> float:
    """Mean MLM loss over the dev texts, with the same masks at every epoch."""
    from transformers import DataCollatorForLanguageModeling

    masker = DataCollatorForLanguageModeling(tokenizer, mlm_probability=MLM_PROBABILITY, seed=seed + 1)
    mlm.eval()
    losses = [mlm(**_masked(batch, masker, tokenizer)).loss.item() for batch in loader]
    return sum(losses) / max(len(losses), 1)
