"""The state that lets an interrupted run go on from its last finished epoch, as tensors and JSON.

A run saves it beside its best weights after every epoch (``resume.safetensors`` in the checkpoint
directory; see checkpoint.py) and drops it once training is over, so shipped checkpoints never hold
it. It is everything the next epoch depends on: the current weights (not the best ones), the
optimizer's moments, the learning-rate schedule's position and every random number generator the
loop draws from (batch order, dropout, Gumbel noise, augmentation). Restored, the remaining epochs
give the same weights as an uninterrupted run. Tensors go to safetensors and the rest to JSON, so
resuming never unpickles anything.

Around that state, the record a run keeps while it trains: ``run_description`` (the settings its
config.json holds, which a rerun must match to go on), ``save_epoch`` after every epoch (status
``TRAINING (epoch E of N, ...)``, then ``TRAINED`` once only the test split is left),
``earlier_progress`` that reads it back, and the lines its final metrics add (``hardware``,
``resumed_metrics``). fit.py keeps the record of every objective's run here.
"""
from __future__ import annotations

import dataclasses
import platform
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .backbones import count_parameters
from .checkpoint import (
    cpu_snapshot,
    read_config,
    read_log,
    read_metrics,
    read_resume,
    read_weights,
    save_checkpoint,
    stored_form,
    with_package_tensors,
)
from .config import TrainConfig
from .errors import CheckpointError, first_line
from .model import RationaleModel

if TYPE_CHECKING:
    from accelerate import Accelerator

MODEL, OPTIMIZER, RNG = "model.", "optimizer.", "rng."
# The status (config.json) of a checkpoint still in training, and of one whose epochs are all done
TRAINING = "training"
TRAINED = "trained; test split not evaluated yet"


def capture(model: torch.nn.Module, optimizer, lr_scheduler,
            generators: dict[str, torch.Generator]) -> tuple[dict[str, torch.Tensor], dict]:
    """The training state now, split into tensors and plain JSON data. ``generators`` are the loop's
    own random number generators apart from torch's global one, by name: the DataLoader's that
    shuffles the training set (``batch_order``), an MLM collator's that masks words."""
    tensors = {MODEL + k: v for k, v in cpu_snapshot(model).items()}
    optimizer_state = optimizer.state_dict()
    for index, state in optimizer_state["state"].items():
        for key, value in state.items():
            tensors[f"{OPTIMIZER}{index}.{key}"] = torch.as_tensor(value).detach().to("cpu", copy=True)
    tensors[RNG + "torch"] = torch.get_rng_state()
    for name, generator in generators.items():
        tensors[RNG + name] = generator.get_state()
    if torch.cuda.is_available():
        for device, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"{RNG}cuda.{device}"] = state
    numpy_state = np.random.get_state()
    tensors[RNG + "numpy"] = torch.from_numpy(numpy_state[1].astype(np.int64))
    python_state = random.getstate()
    info = {"optimizer_groups": optimizer_state["param_groups"],
            "lr_scheduler": {k: v for k, v in lr_scheduler.state_dict().items() if k != "lr_lambdas"},
            "numpy_rng": [numpy_state[0], *numpy_state[2:]],
            "python_rng": [python_state[0], list(python_state[1]), python_state[2]]}
    return tensors, info


def restore(tensors: dict[str, torch.Tensor], info: dict, model: torch.nn.Module, optimizer, lr_scheduler,
            generators: dict[str, torch.Generator]) -> None:
    """Put a captured state back: weights, optimizer, schedule and random number generators."""
    model.load_state_dict({k[len(MODEL):]: v for k, v in tensors.items() if k.startswith(MODEL)})
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith(OPTIMIZER):
            index, key = name[len(OPTIMIZER):].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": info["optimizer_groups"]})
    # transformers' schedules are LambdaLR: their lambdas are code, rebuilt with the scheduler, not state
    lr_scheduler.load_state_dict({**info["lr_scheduler"], "lr_lambdas": [None] * len(lr_scheduler.lr_lambdas)})
    torch.set_rng_state(tensors[RNG + "torch"])
    for name, generator in generators.items():
        generator.set_state(tensors[RNG + name])
    cuda = [tensors[f"{RNG}cuda.{d}"] for d in range(torch.cuda.device_count()) if f"{RNG}cuda.{d}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, *rest = info["numpy_rng"]
    np.random.set_state((kind, tensors[RNG + "numpy"].numpy().astype(np.uint32), *rest))
    version, internal, gauss = info["python_rng"]
    random.setstate((version, tuple(internal), gauss))


@dataclass
class Progress:
    """What an earlier run with the same settings saved before it was cut."""

    log: list[dict]
    best: dict  # the kept-epoch criterion (l_re, or mlm_loss), epoch, dev metrics and weights of its best epoch so far
    steps: int
    seconds: float  # its training time
    resume: tuple[dict, dict] | None  # the state its next epoch starts from; None once its epochs are all done


def run_description(cfg: TrainConfig, model: RationaleModel, teacher: RationaleModel | None) -> dict:
    """What goes into config.json besides the model: the settings, the data, the teacher. A rerun
    goes on from a cut one only when its description is the same (``earlier_progress``)."""
    training = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out", "progress")}
    description = {"training": training, "dataset": cfg.dataset, "weights_dtype": cfg.weights_dtype,
                   "parameters": {"generator": count_parameters(model.generator) if model.generator else 0,
                                  "predictor": count_parameters(model.predictor)}}
    if teacher is not None:  # "teacher": distilled from; "compared_with": only in the test metrics
        description["teacher" if cfg.mode == "rekd" else "compared_with"] = {
            "path": str(cfg.teacher), "backbone": teacher.config.backbone.source,
            "mode": teacher.config.mode, "ratio": teacher.ratio, "parameters": count_parameters(teacher)}
    return description


def save_epoch(model: RationaleModel, cfg: TrainConfig, log: list[dict], best: dict, description: dict, *,
               steps: int, seconds: float, resume_state: tuple[dict, dict] | None) -> None:
    """After an epoch: the best weights so far and, before the last epoch, ``resume_state`` (the
    state the next epoch starts from; ``capture``). After the last one the status is ``TRAINED``."""
    if resume_state is None:
        status = TRAINED
    else:
        status = f"{TRAINING} (epoch {len(log)} of {cfg.epochs}, best epoch {best['epoch']})"
    save_checkpoint(model, cfg.out, state_dict=best["state"], log=log, extra_config={**description, "status": status},
                    metrics={"best_epoch": best["epoch"], "dev": best["dev"], "steps": steps,
                             "train_wall_s": round(seconds, 1)},
                    resume=resume_state)


def saved_vocabulary(out: str) -> Path | None:
    """The tokenizer directory that a run cut at ``out`` saved (status ``TRAINING (epoch ...`` or ``TRAINED``), or
    None. A from-scratch text preset trains its WordPiece vocabulary when the run starts, and the trainer does not
    number the pieces alike in another process (ties between equally frequent merges; tokenizers#1794), so the run
    that goes on must read the vocabulary its saved weights index instead of training a new one."""
    try:
        status = str(read_config(out).get("status", ""))
    except CheckpointError:
        return None
    directory = Path(out) / "tokenizer"
    return directory if _is_cut(status) and directory.is_dir() else None


def _is_cut(status: str) -> bool:
    """Whether a checkpoint's status is that of a run cut after an epoch, or after its last (only the test left)."""
    return status == TRAINED or status.startswith(TRAINING + " (epoch ")


def earlier_progress(out: str, description: dict, model: torch.nn.Module,
                     criterion: str = "l_re") -> Progress | None:
    """The progress that a run with this very description saved at ``out`` before it was cut: after
    an epoch (status ``training (epoch E of N, ...)``, with its resume state), or once its epochs had
    all finished (status ``TRAINED``: only the test split is left). None for anything else, including
    a checkpoint of other settings; going on from its state gives the weights of an uninterrupted run.
    ``model`` is the run's, freshly built (the frozen tensors that the checkpoint left to the package come from
    it); ``criterion`` is the dev metric that picks the kept epoch."""
    try:
        config = read_config(out)
    except CheckpointError:
        return None
    status = str(config.get("status", ""))
    finished = status == TRAINED
    if not _is_cut(status):
        return None
    if any(config.get(k) != v for k, v in stored_form(description).items()):
        return None
    try:
        state = None if finished else read_resume(out)
        weights = with_package_tensors(read_weights(out), config, model)
    except CheckpointError as exc:
        print(f"not resuming {out}: {first_line(exc)}; training from the start", flush=True)
        return None
    if not finished and state is None:  # saved by a version that kept no resume state
        return None
    metrics = read_metrics(out)
    best = {criterion: metrics["dev"][criterion], "epoch": metrics["best_epoch"], "dev": metrics["dev"],
            "state": weights}
    return Progress(read_log(out), best, metrics["steps"], metrics["train_wall_s"], state)


def resumed_metrics(earlier: Progress | None) -> dict:
    """What the final metrics say about an earlier, cut run this one went on from (nothing when none)."""
    if earlier is None:
        return {}
    return {"resumed_at_test": True} if earlier.resume is None else {"resumed_after_epoch": len(earlier.log)}


def hardware(accelerator: Accelerator) -> str:
    """Where a run trained, for its metrics: the GPU's name, or the CPU and its threads, times the processes."""
    device = accelerator.device
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} x{accelerator.num_processes}"
    return (f"{device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads) "
            f"x{accelerator.num_processes}")
