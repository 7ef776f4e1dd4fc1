"""Masked-language-model pretraining (--mode mlm) and its use through --init-from."""
from __future__ import annotations

import json
import math

import pytest
import yaml

from rekd_core.checkpoint import load_checkpoint, read_config
from rekd_core.errors import ConfigError
from rekd_core.results import read_rows
from rekd_core.sweep import run_sweep
from tests.core_fixtures import TEXT_MAX_LENGTH

pytest_plugins = ["tests.core_fixtures"]


def test_mlm_pretraining_learns_and_starts_a_classifier(text_task, tmp_path):
    common = dict(task="text", backbone="bert-1x32", epochs=3, batch_size=16, device="cpu", progress=False,
                  max_length=TEXT_MAX_LENGTH, dataset=f"csv:{text_task}", lr=3e-3)
    recipe = {"out_root": str(tmp_path / "shipped"), "work_dir": str(tmp_path / "work"), "defaults": common,
              "runs": [{"name": "mlm", "mode": "mlm", "keep": False},
                       {"name": "cls", "mode": "cls", "epochs": 1, "init_from": "mlm"},
                       {"name": "fresh", "mode": "cls", "epochs": 1, "tokenizer": "mlm"}]}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    rows = read_rows(run_sweep(str(tmp_path / "recipe.yaml")))
    assert [(r["run"], r["mode"]) for r in rows] == [("mlm", "mlm"), ("cls", "cls"), ("fresh", "cls")]
    assert rows[0]["accuracy"] == rows[0]["achieved_ratio"] == "" and float(rows[0]["wall_time_s"]) > 0
    assert 0.0 <= float(rows[1]["accuracy"]) <= 1.0
    out = tmp_path / "work" / "mlm"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    model = load_checkpoint(out)
    # Masked words are uniform over the task's 60 filler words (plus the rare cue): no model beats
    # ln(60) nats; an untrained one sits near ln(vocabulary). The pretrained one is past half-way.
    floor, untrained = math.log(60), math.log(len(model.processor.tokenizer))
    assert log[-1]["dev_mlm_loss"] < (floor + untrained) / 2 and log[-1]["dev_mlm_loss"] < log[0]["dev_mlm_loss"]
    assert "mlm" in read_config(out)["pretraining"] and model.generator is None
    # The classifier started from the pretrained encoder: one epoch of CLS leaves its word
    # embeddings much nearer the MLM's than those of a classifier started from scratch.
    def embeddings(checkpoint):
        return load_checkpoint(checkpoint).predictor.backbone.encoder.get_input_embeddings().weight.detach()

    pretrained = embeddings(out)
    distance = {run: float((embeddings(tmp_path / "shipped" / run) - pretrained).norm()) for run in ("cls", "fresh")}
    assert distance["cls"] < 0.5 * distance["fresh"]


def test_mlm_rejects_images(image_task, trainer, tmp_path):
    with pytest.raises(ConfigError, match="text backbones only"):
        trainer(f"imagefolder:{image_task}", tmp_path / "mlm", task="vision", mode="mlm")
    assert not (tmp_path / "mlm").exists()


@pytest.mark.parametrize("option", ["teacher", "init_from"])
def test_mlm_rejects_a_teacher_or_a_start(text_task, trainer, tmp_path, option):
    """Both options would be ignored by MLM pretraining; a run must never silently drop one."""
    with pytest.raises(ConfigError, match="drop --teacher and --init-from"):
        trainer(f"csv:{text_task}", tmp_path / "mlm", mode="mlm", **{option: str(tmp_path / "some-checkpoint")})
    assert not (tmp_path / "mlm").exists()
