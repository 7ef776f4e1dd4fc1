"""The state that lets an interrupted run go on from its last finished epoch, as tensors and JSON.

A run saves it beside its best weights after every epoch (``resume.safetensors`` in the checkpoint
directory; see checkpoint.py) and drops it once training is over, so shipped checkpoints never hold
it. It is everything the next epoch depends on: the current weights (not the best ones), the
optimizer's moments, the learning-rate schedule's position and every random number generator the
loop draws from (batch order, dropout, Gumbel noise, augmentation). Restored, the remaining epochs
give the same weights as an uninterrupted run. Tensors go to safetensors and the rest to JSON, so
resuming never unpickles anything.
"""
from __future__ import annotations

import random

import numpy as np
import torch

from .checkpoint import cpu_snapshot

MODEL, OPTIMIZER, RNG = "model.", "optimizer.", "rng."


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
