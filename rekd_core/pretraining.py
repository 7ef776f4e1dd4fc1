"""Masked-language-model pretraining of a text backbone: the small-model analogue of BERT's own
pretraining, for from-scratch presets that have none.

``rekd train --mode mlm`` trains the encoder on the training split's texts (BERT's 15% masking,
80/10/10, with ``transformers.DataCollatorForLanguageModeling``) in fit.py's loop, as the objective
``MaskedLanguageObjective``, and writes a CLS checkpoint whose
backbone holds the pretrained encoder and whose classification head is untrained: the input of
``--init-from`` for the CLS, RE or REKD run that follows. The dev split's texts give a held-out MLM
loss (masked with a fixed seed, so epochs compare) that picks the kept epoch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .config import TrainConfig
from .errors import ConfigError
from .model import RationaleModel
from .objectives import Objective

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["MLM_PROBABILITY", "MaskedLanguageObjective"]

MLM_PROBABILITY = 0.15


class MaskedLanguageObjective(Objective):
    """MLM: the cross-entropy of a masked-language head, trained on top of ``model``'s encoder (a CLS model of
    the run's text backbone), on BERT's masking of each batch; the dev loss (masks drawn with a fixed seed, the
    same every epoch) picks the kept epoch. The head is what is trained and wrapped (``trainable``); the
    checkpoint stores ``model``, whose encoder it updates."""

    criterion = "mlm_loss"
    notes = {"pretraining": "mlm: the encoder is pretrained, the classification head is untrained"}
    tested = False

    def __init__(self, model: RationaleModel, cfg: TrainConfig):
        # imported here: ``import rekd_core`` should not pay for transformers
        from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling

        super().__init__(model, cfg)
        self.tokenizer = model.processor.tokenizer
        if self.tokenizer.mask_token is None:
            raise ConfigError(f"the tokenizer of {cfg.backbone!r} has no mask token, so it cannot do MLM")
        encoder = model.predictor.backbone.encoder
        self.trainable = AutoModelForMaskedLM.from_config(encoder.config)
        setattr(self.trainable, self.trainable.base_model_prefix, encoder)  # the head trains on the model's encoder
        self.masker = DataCollatorForLanguageModeling(self.tokenizer, mlm_probability=MLM_PROBABILITY, seed=cfg.seed)
        # The collator would create this generator at its first batch; made here, a cut run can restore it.
        self.masker.generator = torch.Generator().manual_seed(cfg.seed)
        self.generators = {"masking": self.masker.generator}

    def parameter_groups(self) -> list[dict]:
        return [{"params": [p for p in self.trainable.parameters() if p.requires_grad], "lr": self.cfg.lr}]

    def loss(self, batch: dict, step: int, total_steps: int) -> tuple[torch.Tensor, dict[str, float]]:
        loss = self.trainable(**_masked(batch, self.masker, self.tokenizer)).loss
        return loss, {"loss": loss.item()}

    def evaluate(self, loader, accelerator: Accelerator) -> dict:
        return {"mlm_loss": _dev_loss(self.trainable, loader, self.tokenizer, self.cfg.seed)}


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
