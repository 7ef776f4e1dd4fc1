"""What a run optimises, one objective per mode, as timm's ``task/`` has one task per training objective: each
gives its loss and its logged terms from a batch (``loss``), and its dev metrics (``evaluate``); ``fit.py`` runs
any of them in the same loop.

- ``ClassificationObjective`` (CLS): the predictor's cross-entropy on the whole input;
- ``RationaleObjective`` (RE): ``L_RE = CE + lambda_sel x selection cost`` of a sampled selection (METHOD.md), plus
  the complement adversary's cross-entropy when it has one;
- ``DistillationObjective`` (REKD): ``alpha * L_RE + (1 - alpha) * (lambda_R * KD_R + KD_Y)`` from a frozen teacher;
- ``pretraining.MaskedLanguageObjective`` (MLM), below the model's encoder.

An objective holds ``model`` (what the checkpoint stores) and ``trainable`` (what the optimizer updates and
Accelerate wraps: the model itself, or for MLM a head on its encoder); the frozen teacher is never wrapped. Here too
are the caches its steps read: the teacher generator's logits per training example (``TeacherCache``) and the frozen
blocks' states (``frozen_state_cache``), and the autocast of ``--precision`` (``precision_context``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .evaluation import evaluate
from .factory import parameter_groups
from .frozen_cache import FrozenStateCache, frozen_weights_digest
from .losses import prediction_kd, rationale_kd, selection_cost
from .model import RationaleModel
from .processing import FeatureDataset, model_inputs
from .schedules import alpha_at, tau_at

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["ClassificationObjective", "DistillationObjective", "Objective", "RationaleObjective", "TeacherCache",
           "example_slots", "frozen_state_cache", "frozen_states", "objective_for", "precision_context"]


class Objective:
    """The loss of one mode over a batch, the dev metrics that pick the kept epoch (``criterion``, lower is better),
    and what the run's record says of it. ``cfg`` is resolved."""

    criterion = "l_re"
    notes: dict = {}  # added to the run's description in config.json
    tested = True  # whether the kept epoch is evaluated on the test split

    def __init__(self, model: RationaleModel, cfg: TrainConfig):
        self.model = self.trainable = model
        self.cfg = cfg
        self.generators: dict[str, torch.Generator] = {}  # its own random number generators (resumed with the run)

    def parameter_groups(self) -> list[dict]:
        return parameter_groups(self.model, self.cfg)

    def start(self, train_set: FeatureDataset) -> None:
        """Before the first epoch, with the (prepared) model: the caches over ``train_set``."""

    def loss(self, batch: dict, step: int, total_steps: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of ``batch`` at optimizer step ``step`` of ``total_steps``, and its terms as floats (``loss``
        among them)."""
        raise NotImplementedError

    def logged(self, step: int) -> dict:
        """What an epoch's log row records besides its losses and timings."""
        return {}

    def evaluate(self, loader, accelerator: Accelerator) -> dict:
        raise NotImplementedError

    def end_epoch(self) -> None:
        """After each epoch's dev evaluation."""

    def finish(self) -> None:
        """Once the epochs are over."""


class ClassificationObjective(Objective):
    """CLS: the predictor reads every feature (``lower``: a frozen predictor's cached states, when kept). Its
    forward passes run at ``--precision`` on ``device``, where the run computes."""

    def __init__(self, model: RationaleModel, cfg: TrainConfig, device: torch.device):
        super().__init__(model, cfg)
        self.autocast = precision_context(cfg.precision, device)
        self.frozen_cache: FrozenStateCache | None = None
        self.variants = 1
        self.tau = cfg.tau0

    def start(self, train_set: FeatureDataset) -> None:
        self.variants = train_set.variants
        if self.cfg.frozen_blocks_cached:
            self.frozen_cache = frozen_state_cache(self.cfg, self.model, train_set)

    def lower(self, batch: dict) -> torch.Tensor | None:
        """The batch's frozen-block states, from the cache (None without one)."""
        return None if self.frozen_cache is None else frozen_states(self.frozen_cache, self.model, batch,
                                                                    self.variants)

    def loss(self, batch: dict, step: int, total_steps: int) -> tuple[torch.Tensor, dict[str, float]]:
        self.tau = tau_at(step, total_steps, self.cfg.tau0, every=self.cfg.tau_every)
        with self.autocast():  # the frozen teacher, which is not wrapped by accelerator.prepare, too
            return self.batch_loss(batch, self.lower(batch))

    def batch_loss(self, batch: dict, lower: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of ``batch`` at ``self.tau`` (``lower``: its cached frozen-block states), and its terms."""
        loss = F.cross_entropy(self.trainable(model_inputs(batch), lower=lower).logits, batch["label"])
        return loss, {"loss": loss.item()}

    def logged(self, step: int) -> dict:
        return {"step": step, "tau": self.tau}

    def evaluate(self, loader, accelerator: Accelerator) -> dict:
        cfg = self.cfg
        with self.autocast():
            return evaluate(self.trainable, loader, selection=cfg.eval_selection, lambda_sel=cfg.lambda_sel,
                            sel_length=cfg.sel_length, sel_cost=cfg.sel_cost, accelerator=accelerator)

    def end_epoch(self) -> None:
        if self.frozen_cache is not None:
            self.frozen_cache.flush()

    def finish(self) -> None:
        if self.frozen_cache is not None and not self.cfg.cache_dir:
            self.frozen_cache.remove()  # a file of this run's; one in --cache-dir stays for the runs that share it


class RationaleObjective(ClassificationObjective):
    """RE: a selection sampled at the annealed tau (at a ratio drawn from ``ratio_range`` when training over one), its
    cross-entropy and selection cost; the complement adversary's cross-entropy is added to the loss, not logged in
    it."""

    def batch_loss(self, batch: dict, lower: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        out, ratio, l_re, parts = self.select_and_predict(model_inputs(batch), batch["label"], lower)
        adversary = self.adversary_loss(out, batch["label"], l_re, parts)
        parts["loss"] = l_re.item()
        return l_re + adversary, parts

    def select_and_predict(self, inputs: dict, targets: torch.Tensor, lower: torch.Tensor | None):
        """The model's output on a sampled selection, the ratio it selected at, ``L_RE`` and its logged terms."""
        cfg, tau = self.cfg, self.tau
        ratio = cfg.ratio
        if cfg.ratio_range is None:
            out = self.trainable(inputs, selection=cfg.train_selection, tau=tau, lower=lower)
        else:  # drawn from torch's global generator, whose state a resumed run restores
            ratio = cfg.ratio_range[0] + (cfg.ratio_range[1] - cfg.ratio_range[0]) * torch.rand(()).item()
            out = self.trainable(inputs, selection="gumbel_topk", tau=tau, ratio=ratio, lower=lower)
        fm = out.feature_mask
        length = fm.sum(dim=1) if cfg.sel_length == "real" else self.model.num_features
        ce = F.cross_entropy(out.logits, targets)
        sel = selection_cost(out.mask, ratio, length, per_example=cfg.sel_cost == "example")
        l_re = ce + cfg.lambda_sel * sel
        return out, ratio, l_re, {"ce": ce.item(), "sel": sel.item(), "ratio": (out.mask.sum() / fm.sum()).item()}

    @staticmethod
    def adversary_loss(out, targets: torch.Tensor, l_re: torch.Tensor, parts: dict[str, float]) -> torch.Tensor:
        """The complement adversary's cross-entropy (a zero like ``l_re`` without one), logged as
        ``complement_ce``."""
        if out.complement_logits is None:
            return l_re.new_zeros(())
        adversary = F.cross_entropy(out.complement_logits, targets)
        parts["complement_ce"] = adversary.item()
        return adversary


class DistillationObjective(RationaleObjective):
    """REKD: ``L_RE`` and the frozen teacher's rationale (KD_R) and prediction (KD_Y), weighted by alpha (a number, or
    its schedule over tau). The teacher generator's logits come from a ``TeacherCache`` when the inputs allow one."""

    def __init__(self, model: RationaleModel, cfg: TrainConfig, device: torch.device, teacher: RationaleModel):
        super().__init__(model, cfg, device)
        self.teacher = teacher
        self.teacher_cache: TeacherCache | None = None

    def start(self, train_set: FeatureDataset) -> None:
        super().start(train_set)
        cacheable = self.cfg.task == "text" or self.cfg.augment == "none" or train_set.variants == 2
        if self.cfg.cache_teacher and cacheable:
            self.teacher_cache = TeacherCache(len(train_set) * train_set.variants, self.model.num_features,
                                              train_set.variants)

    def teacher_logits(self, batch: dict, inputs: dict, length: int) -> torch.Tensor:
        """The teacher generator's logits of the batch (from the cache, when there is one)."""
        if self.teacher_cache is None:
            return self.teacher.generator(inputs)
        return self.teacher_cache.get(example_slots(batch, self.teacher_cache.variants), inputs, self.teacher, length)

    def batch_loss(self, batch: dict, lower: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, tau, teacher = self.cfg, self.tau, self.teacher
        inputs, targets = model_inputs(batch), batch["label"]
        out, ratio, l_re, parts = self.select_and_predict(inputs, targets, lower)
        adversary = self.adversary_loss(out, targets, l_re, parts)
        fm = out.feature_mask
        with torch.no_grad():
            t_gen = self.teacher_logits(batch, inputs, out.gen_logits.shape[1])
            t_mask = out.mask.detach() if cfg.teacher_mask == "student" else teacher.select(
                t_gen, fm, cfg.eval_selection, ratio=ratio)
            t_logits = teacher.predict(inputs, t_mask)
        kd_r = l_re.new_zeros(())
        if cfg.distil != "prediction":
            t_rationale = teacher.select(t_gen, fm, "topk", ratio=ratio) if cfg.teacher_rationale == "topk" else None
            kd_tau = tau if cfg.rationale_kd_tau is None else cfg.rationale_kd_tau
            kd_r = rationale_kd(out.gen_logits, t_gen, kd_tau, fm, cfg.rationale_kd_scale, teacher_mask=t_rationale)
        kd_y = (prediction_kd(out.logits, t_logits, tau, cfg.teacher_labels == "hard") if cfg.distil != "rationale"
                else l_re.new_zeros(()))
        alpha = alpha_at(tau, cfg.tau0) if cfg.alpha == "schedule" else float(cfg.alpha)
        loss = alpha * l_re + (1 - alpha) * (cfg.lambda_r * kd_r + kd_y)
        parts.update(loss=loss.item(), l_re=l_re.item(), kd_r=kd_r.item(), kd_y=kd_y.item(), alpha=alpha)
        return loss + adversary, parts


def objective_for(model: RationaleModel, cfg: TrainConfig, device: torch.device,
                  teacher: RationaleModel | None = None) -> ClassificationObjective:
    """The objective of a CLS, RE or REKD run on ``device`` (``teacher``: the frozen teacher a REKD run distils)."""
    if cfg.mode == "cls":
        return ClassificationObjective(model, cfg, device)
    if cfg.mode == "rekd":
        return DistillationObjective(model, cfg, device, teacher)
    return RationaleObjective(model, cfg, device)


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
           "weights": frozen_weights_digest(backbone), "dataset": cfg.dataset, "split_seed": cfg.data_split_seed,
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


def precision_context(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the context that runs forward passes (model, frozen teacher, evaluation) in
    ``precision``: bf16 autocast (weights and optimizer stay float32), or nothing for fp32. Not Accelerate's
    ``mixed_precision``, which is fixed once per process, so a sweep could not mix precisions."""
    if precision == "fp32":
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
