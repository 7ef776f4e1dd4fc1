"""rekd_core/familiarity.py: the reference statistics of the "unlike the training data" notes, computed from data,
kept beside a checkpoint, read back (or None: no signal invented), and the lines they give."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rekd_core.checkpoint import load_checkpoint
from rekd_core.data import load_dataset_spec, pick_split
from rekd_core.explain import explain
from rekd_core.familiarity import (
    REFERENCE_FILE,
    build_reference,
    entropy_note,
    image_size_note,
    predictive_entropy,
    read_reference,
    write_reference,
)

pytest_plugins = ["tests.core_fixtures"]
ROOT = Path(__file__).resolve().parents[1]


def test_predictive_entropy():
    assert predictive_entropy([1.0, 0.0]) == 0.0
    assert predictive_entropy([0.5, 0.5]) == pytest.approx(math.log(2))
    assert predictive_entropy([0.25] * 4) == pytest.approx(math.log(4))


def test_the_reference_is_the_entropy_of_the_test_predictions(text_re_ckpt, text_task, tmp_path):
    model = load_checkpoint(text_re_ckpt)
    test = pick_split(load_dataset_spec(f"csv:{text_task}"), "test", limit=20)
    reference = build_reference(model, test, dataset=f"csv:{text_task}", seed=2026, batch_size=8)
    entropies = [predictive_entropy(e.probs.values()) for e in explain(model, list(test.inputs))]
    stats = reference["entropy"]
    assert stats["examples"] == 20 and stats["quantiles"]["0.95"] == pytest.approx(np.quantile(entropies, 0.95))
    assert stats["max"] == pytest.approx(max(entropies)) and stats["uniform"] == pytest.approx(math.log(2))
    assert reference["ratio"] == model.ratio and "image_sizes" not in reference
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(text_re_ckpt, checkpoint)
    assert read_reference(checkpoint) is None  # none written: no signal
    write_reference(checkpoint, reference)
    assert read_reference(checkpoint) == json.loads(json.dumps(reference))
    (checkpoint / REFERENCE_FILE).write_text("{not json")
    assert read_reference(checkpoint) is None
    (checkpoint / REFERENCE_FILE).write_text(json.dumps({**reference, "format": "something-else"}))
    assert read_reference(checkpoint) is None


def test_the_lines_say_what_is_measured():
    reference = {"entropy": {"examples": 2000, "quantiles": {"0.95": 0.6}}}
    unusual, line = entropy_note(reference, 0.65, "review")
    assert unusual and "Less sure than on 95% of 2,000 test reviews" in line and "so do hard ones" in line
    usual, line = entropy_note(reference, 0.2, "review")
    assert not usual and "within the 95% of 2,000 test reviews that show 0.60 or less" in line
    sizes = {"image_sizes": {"examples": 100, "width": {"min": 32, "max": 32}, "height": {"min": 32, "max": 32}}}
    assert image_size_note(sizes, 64, 60) is None  # within twice the training size
    assert "Far larger than its training images: this one is 6000x4000" in image_size_note(sizes, 6000, 4000)
    assert "32x32 pixels (188x)" in image_size_note(sizes, 6000, 4000)
    assert "Far smaller" in image_size_note(sizes, 8, 40)
    assert image_size_note({}, 6000, 4000) is None  # a text model's reference has no sizes


def test_the_script_writes_the_reference_of_an_image_model(vision_re_ckpt, image_task, tmp_path):
    """``scripts/input_reference.py`` reads the checkpoint's own dataset and split seed and writes the file into
    the checkpoint, with the image sizes of its training images."""
    checkpoint = tmp_path / "vision"
    shutil.copytree(vision_re_ckpt, checkpoint)
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "input_reference.py"), "--limit", "8",
                           "--train-limit", "10", str(checkpoint)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    reference = read_reference(checkpoint)
    assert reference["entropy"]["examples"] == 8 and reference["image_sizes"]["examples"] == 10
    width = reference["image_sizes"]["width"]
    assert width["min"] == width["max"] == load_dataset_spec(f"imagefolder:{image_task}").train.inputs[0].width
    assert reference["written_by"].startswith("python scripts/input_reference.py --limit 8")
