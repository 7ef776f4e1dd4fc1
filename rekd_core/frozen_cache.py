"""The frozen blocks' output per training example, computed once and reused every epoch.

With ``--freeze-layers N`` a backbone's embeddings and first N blocks never change, and they run without
dropout (backbones.py), so their output on a training example is the same at every epoch. A
``FrozenStateCache`` keeps it per example and *variant* of the input the loop can draw (an image or its mirror
image, since cropping would make every epoch's input new; a text has one): the first epoch computes it, the
later ones read it, and the generator (or a CLS model's predictor) runs only its trainable blocks. The states
are kept in the dtype they are computed in (float32, or bfloat16 under bf16 autocast, where
``backbone_base.round_at_boundary`` rounds the live pass the same way), so the logits are those of the uncached
pass exactly.

Up to a memory budget the cache is a tensor; past it, a memory-mapped file (``states.bin``) beside its key
(``key.json``, what the states depend on) and the record of which rows are filled (``filled.npy``, written
after every epoch), so that a resumed run reads what the cut one computed instead of computing it again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

# numpy has no bfloat16: such states are stored as their 16 raw bits
_NUMPY_STORAGE = {torch.float32: np.float32, torch.bfloat16: np.uint16}


def frozen_weights_digest(module: nn.Module) -> str:
    """sha256 of a module's frozen parameters (names, shapes and bytes): the states depend on them."""
    digest = hashlib.sha256()
    for name, param in module.named_parameters():
        if not param.requires_grad:
            tensor = param.detach().to("cpu").contiguous()
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


class FrozenStateCache:
    """Frozen-block states of ``slots`` inputs (an example and a variant each), each of ``shape`` (tokens,
    hidden), kept as ``dtype``. ``directory``: where the memory-mapped file goes when ``budget_bytes`` is too
    small for a tensor; ``key`` (JSON data): what the states depend on, checked before a file is reused."""

    def __init__(self, slots: int, shape: tuple[int, int], dtype: torch.dtype, budget_bytes: int,
                 directory: Path, key: dict):
        self.shape, self.dtype = tuple(shape), dtype
        self.nbytes = slots * shape[0] * shape[1] * dtype.itemsize
        self.directory: Path | None = None
        if self.nbytes <= budget_bytes:
            self.states = torch.zeros((slots, *shape), dtype=dtype)
            self.filled = torch.zeros(slots, dtype=torch.bool)
            return
        self.directory = Path(directory)
        self.states, self.filled = self._open_file(slots, key)

    @property
    def on_disk(self) -> bool:
        return self.directory is not None

    def _open_file(self, slots: int, key: dict) -> tuple[Tensor, Tensor]:
        """The memory-mapped states and the filled rows: those of a file with this very key, else a new file."""
        key_text = json.dumps({**key, "slots": slots, "shape": list(self.shape), "dtype": str(self.dtype)},
                              sort_keys=True)
        states_file, key_file, filled_file = (self.directory / name for name in ("states.bin", "key.json",
                                                                                   "filled.npy"))
        reuse = (key_file.is_file() and key_file.read_text() == key_text and filled_file.is_file()
                 and states_file.is_file() and states_file.stat().st_size == self.nbytes)
        if not reuse:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory.mkdir(parents=True)
            with open(states_file, "wb") as fh:
                fh.truncate(self.nbytes)  # sparse: the disk fills as the rows do
            np.save(filled_file, np.zeros(slots, dtype=bool))
            key_file.write_text(key_text)
        self._mapped = np.memmap(states_file, dtype=_NUMPY_STORAGE[self.dtype], mode="r+",
                                 shape=(slots, *self.shape))
        states = torch.from_numpy(self._mapped)
        filled = torch.from_numpy(np.load(filled_file, allow_pickle=False).copy())
        return (states.view(self.dtype) if self.dtype == torch.bfloat16 else states), filled

    def get(self, slots: Tensor, length: int, compute: Callable[[Tensor], Tensor],
            device: torch.device) -> Tensor:
        """(B, length, hidden) float32 states of ``slots`` on ``device``. The rows not kept yet are computed by
        ``compute(rows)`` (the batch positions to compute: (R, length, hidden)) and kept."""
        slots = slots.cpu()
        todo = ~self.filled[slots]
        if todo.any():
            rows = todo.nonzero().squeeze(1)
            with torch.no_grad():
                fresh = compute(rows.to(device))
            self.states[slots[rows], : fresh.shape[1]] = fresh.detach().to("cpu", self.dtype)
            self.filled[slots[rows]] = True
        return self.states[slots, :length].to(device=device, dtype=torch.float32)

    def flush(self) -> None:
        """Write the filled rows' record of a memory-mapped cache (after every epoch), atomically."""
        if not self.on_disk:
            return
        self._mapped.flush()  # the states reach the file before the record says they are there
        tmp = self.directory / "filled.tmp.npy"
        np.save(tmp, self.filled.numpy())
        os.replace(tmp, self.directory / "filled.npy")

    def remove(self) -> None:
        """Delete the memory-mapped file (a finished run no longer needs it)."""
        if self.on_disk:
            del self.states, self._mapped
            shutil.rmtree(self.directory, ignore_errors=True)
