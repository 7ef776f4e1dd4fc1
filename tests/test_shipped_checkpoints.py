"""Every shipped checkpoint (each directory with a config.json under checkpoints/) still loads, and gives the
class and generator logits it gave when tests/data/shipped_logits.safetensors was written, on two fixed inputs
of its task. A change to how a config is read (its defaults for older checkpoints included) or how a model is
rebuilt shows here as a checkpoint that no longer loads or reads its inputs otherwise.

The reference was written on the code before the typed model config (issue 37):

    python -m tests.test_shipped_checkpoints
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rekd_core.checkpoint import load_checkpoint

pytest_plugins = ["tests.core_fixtures"]
ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "shipped_logits.safetensors"
SHIPPED = sorted(str(p.parent.relative_to(ROOT)) for p in (ROOT / "checkpoints").rglob("config.json"))
TEXTS = ["One of the best films I have seen this year: a moving story, superb acting and a beautiful score.",
         "A dull, clumsy plot and wooden acting; I left before the end."]


def fixed_images() -> list[Image.Image]:
    """Two seeded noise images, one of them with a bright square."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    pixels[1, 16:40, 24:48] = (230, 30, 30)
    return [Image.fromarray(p) for p in pixels]


@torch.no_grad()
def checkpoint_logits(path: str) -> dict[str, torch.Tensor]:
    """The checkpoint's class logits and (RE, REKD) generator logits on the fixed inputs of its task, selected
    by top-k at its own ratio."""
    model = load_checkpoint(ROOT / path)
    raw = TEXTS if model.task == "text" else fixed_images()
    out = model(model.processor(raw))
    logits = {f"{path}/logits": out.logits}
    if out.gen_logits is not None:
        logits[f"{path}/gen_logits"] = out.gen_logits
    return {k: v.detach().contiguous() for k, v in logits.items()}


@pytest.mark.parametrize("path", SHIPPED)
def test_a_shipped_checkpoint_loads_and_gives_its_logits(path):
    from safetensors.torch import load_file

    reference = {k: v for k, v in load_file(str(REFERENCE)).items() if k.startswith(f"{path}/")}
    assert reference, f"{path}: no reference logits (python -m tests.test_shipped_checkpoints)"
    logits = checkpoint_logits(path)
    assert logits.keys() == reference.keys()
    for key, value in logits.items():
        torch.testing.assert_close(value, reference[key], rtol=1e-5, atol=1e-5, msg=key)


if __name__ == "__main__":
    from safetensors.torch import save_file

    REFERENCE.parent.mkdir(exist_ok=True)
    save_file({k: v for path in SHIPPED for k, v in checkpoint_logits(path).items()}, str(REFERENCE))
    print(f"{len(SHIPPED)} checkpoints -> {REFERENCE}")
