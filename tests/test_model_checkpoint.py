"""Models and checkpoints: the save/load round trip (identical logits and masks), what config.json
records, the safetensors weights, every broken checkpoint as one CheckpointError naming the file,
atomic saving under simulated crashes, the inference-time ratio override, deterministic evaluation."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch
from PIL import Image

from rekd_core import checkpoint as ckpt_module
from rekd_core.checkpoint import load_checkpoint, read_config, read_log, read_metrics, save_checkpoint
from rekd_core.config import TrainConfig
from rekd_core.data import load_dataset_spec
from rekd_core.errors import CheckpointError, ConfigError, DataError
from rekd_core.evaluation import evaluate_split
from rekd_core.explain import explain
from rekd_core.factory import create_model
from rekd_core.losses import rationale_kd
from rekd_core.objectives import DistillationObjective
from rekd_core.processing import model_inputs

pytest_plugins = ["tests.core_fixtures"]


def _build(task: str, dataset: str):
    """A freshly initialised (untrained) tiny model and its bundle, via factory.create_model."""
    if task == "text":
        cfg = TrainConfig(task="text", backbone="bert-1x32", dataset=dataset, out="unused", max_length=32)
    else:
        cfg = TrainConfig(task="vision", backbone="vit-1x32", dataset=dataset, out="unused", image_size=16,
                          patch_size=4)
    cfg = cfg.resolved()
    bundle = load_dataset_spec(dataset)
    torch.manual_seed(0)
    return create_model(cfg, bundle.labels, bundle.train).eval(), bundle


@pytest.fixture(scope="module")
def text_model(text_task):
    return _build("text", f"csv:{text_task}")


@pytest.fixture(scope="module")
def vision_model(image_task):
    return _build("vision", f"imagefolder:{image_task}")


def _copy(src: Path, tmp_path: Path, name: str = "ckpt") -> Path:
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def _outputs(model, inputs: list, selection: str = "topk"):
    features = model.processor(inputs)
    with torch.no_grad():
        out = model(features, selection=selection)
    return out


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------------------------
# round trip


@pytest.mark.parametrize("task", ["text", "vision"])
def test_save_load_round_trip_gives_identical_outputs(task, text_model, vision_model, tmp_path):
    model, bundle = text_model if task == "text" else vision_model
    inputs = [bundle.test.inputs[i] for i in range(6)]
    path = save_checkpoint(model, tmp_path / f"{task}-ckpt")
    loaded = load_checkpoint(path)
    assert not loaded.training and loaded.task == task and loaded.labels == ["neg", "pos"]
    assert loaded.processor.grid() == model.processor.grid()
    for selection in ("topk", "argmax"):
        a, b = _outputs(model, inputs, selection), _outputs(loaded, inputs, selection)
        assert torch.equal(a.logits, b.logits)
        assert torch.equal(a.gen_logits, b.gen_logits)
        assert torch.equal(a.mask, b.mask)
        assert torch.equal(a.feature_mask, b.feature_mask)
    # the state dicts are identical tensor by tensor
    sa, sb = model.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_trained_checkpoints_load_and_agree_with_themselves(text_re_ckpt, vision_re_ckpt, text_task, image_task):
    for path, inputs in ((text_re_ckpt, load_dataset_spec(f"csv:{text_task}").test.inputs[:5]),
                         (vision_re_ckpt,
                          [load_dataset_spec(f"imagefolder:{image_task}").test.inputs[i] for i in range(5)])):
        a, b = load_checkpoint(path), load_checkpoint(path)
        oa, ob = _outputs(a, list(inputs)), _outputs(b, list(inputs))
        assert torch.equal(oa.logits, ob.logits) and torch.equal(oa.mask, ob.mask)


def test_config_records_the_run(text_re_ckpt, text_rekd_ckpt, vision_re_ckpt):
    config = read_config(text_re_ckpt)
    assert config["format"] == "rekd-checkpoint" and config["version"] == 1
    assert config["task"] == "text" and config["mode"] == "re" and config["ratio"] == 0.1
    assert config["labels"] == ["neg", "pos"]
    assert config["backbone"]["type"] == "hf_text" and config["backbone"]["source"] == "bert-1x32"
    assert config["backbone"]["hf_config"]["hidden_size"] == 32
    grid = config["feature_grid"]
    assert grid["type"] == "text" and grid["max_length"] == 32 and grid["vocab_size"] > 0 and grid["vocab_sha256"]
    training = config["training"]
    for key, value in {"epochs": 1, "batch_size": 16, "lr": 5e-4, "seed": 2026, "tau0": 5.0, "lambda_sel": 1e-4,
                       "max_length": 32, "eval_selection": "topk"}.items():
        assert training[key] == value, key
    assert config["status"] == "complete"
    assert "teacher" not in config
    assert (text_re_ckpt / "tokenizer").is_dir()

    rekd = read_config(text_rekd_ckpt)
    assert rekd["mode"] == "rekd"
    assert rekd["teacher"]["path"] == str(text_re_ckpt) and rekd["teacher"]["mode"] == "re"
    assert rekd["teacher"]["backbone"] == "bert-1x32" and rekd["teacher"]["parameters"] > 0
    assert rekd["training"]["alpha"] == 0.5 and rekd["training"]["lambda_r"] == 0.5
    assert rekd["training"]["teacher"] == str(text_re_ckpt)

    vision = read_config(vision_re_ckpt)
    assert vision["task"] == "vision" and vision["backbone"]["type"] == "timm"
    assert vision["feature_grid"] == {"type": "vision", "image_size": 16, "patch_size": 4, "num_patches": 16}

    metrics = read_metrics(text_re_ckpt)
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0 and metrics["best_epoch"] == 1
    assert [row["epoch"] for row in read_log(text_re_ckpt)] == [1]


def test_rekd_with_the_tau2_rationale_kd_trains_and_is_recorded(text_task, text_re_ckpt, trainer, tmp_path):
    out = trainer(f"csv:{text_task}", tmp_path / "tau2", mode="rekd", teacher=str(text_re_ckpt),
                  rationale_kd_scale="tau2")
    assert read_config(out)["training"]["rationale_kd_scale"] == "tau2"
    assert read_log(out)[0]["train_kd_r"] >= 0.0 and read_metrics(out)["test"]["n"] == 40
    with pytest.raises(ConfigError, match="rationale_kd_scale"):
        TrainConfig(task="text", dataset="x", out="y", rationale_kd_scale="tau").resolved()


def test_hard_teacher_labels_distil_the_teachers_argmax(text_re_ckpt):
    """--teacher-labels hard: KD_Y's target is the teacher's argmax label, not its distribution. Self-distilled,
    with the student's mask, soft KD_Y is 0 and hard KD_Y is the cross-entropy on the model's own argmax."""
    model = load_checkpoint(text_re_ckpt, "cpu").eval()
    batch = dict(model.processor(["a good film", "bad and dull, a waste of time"]), label=torch.tensor([1, 0]))
    cfg = TrainConfig(task="text", dataset="x", out="y", mode="rekd", teacher="t", distil="prediction").resolved()

    def kd_y(teacher_labels: str) -> float:
        objective = DistillationObjective(model, dataclasses.replace(cfg, teacher_labels=teacher_labels),
                                          torch.device("cpu"), teacher=model)
        objective.tau = 1.0
        torch.manual_seed(0)
        return objective.batch_loss(batch, None)[1]["kd_y"]

    torch.manual_seed(0)
    logits = model(model_inputs(batch), selection="gumbel", tau=1.0).logits
    own_argmax = torch.nn.functional.cross_entropy(logits, logits.argmax(dim=-1)).item()
    assert kd_y("soft") == pytest.approx(0.0, abs=1e-6)
    assert kd_y("hard") == pytest.approx(own_argmax, rel=1e-5) and own_argmax > 1e-3


def test_the_topk_teacher_rationale_and_a_fixed_rationale_kd_temperature(text_re_ckpt):
    # Self-distillation, no dropout: the paper's KD_R of a model against itself is exactly 0; with
    # teacher_rationale="topk" it is the model's cross-entropy on its own top-k choice at --ratio.
    model = load_checkpoint(text_re_ckpt, "cpu").eval()
    batch = dict(model.processor(["a good film", "bad and dull, a waste of time"]), label=torch.tensor([1, 0]))
    cfg = TrainConfig(task="text", dataset="x", out="y", mode="rekd", teacher="t", ratio=0.3, alpha=0.0, lambda_r=1.0,
                      distil="rationale").resolved()

    def training_kd_r(tau: float) -> float:
        objective = DistillationObjective(model, cfg, torch.device("cpu"), teacher=model)
        objective.tau = tau
        return objective.batch_loss(batch, None)[1]["kd_r"]

    assert training_kd_r(1.0) == pytest.approx(0.0, abs=1e-6)
    cfg.teacher_rationale = "topk"
    kd_r = training_kd_r(1.0)
    out = model(model_inputs(batch), ratio=0.3)
    expected = rationale_kd(out.gen_logits, out.gen_logits, 1.0, out.feature_mask, teacher_mask=out.mask)
    assert kd_r == pytest.approx(expected.item(), rel=1e-5) and kd_r > 0.1
    # at the annealed tau 0.25, or at a fixed temperature 1 (rationale_kd_tau) whatever tau is
    at_quarter = rationale_kd(out.gen_logits, out.gen_logits, 0.25, out.feature_mask, teacher_mask=out.mask).item()
    assert training_kd_r(0.25) == pytest.approx(at_quarter, rel=1e-5)
    cfg.rationale_kd_tau = 1.0
    assert training_kd_r(0.25) == pytest.approx(kd_r, rel=1e-5)
    assert abs(at_quarter - kd_r) > 0.01
    with pytest.raises(ConfigError, match="teacher_rationale"):
        TrainConfig(task="text", dataset="x", out="y", teacher_rationale="hard").resolved()
    with pytest.raises(ConfigError, match="rationale_kd_tau"):
        TrainConfig(task="text", dataset="x", out="y", rationale_kd_tau=0.0).resolved()


def test_weights_are_safetensors_not_pickle(text_re_ckpt):
    raw = (text_re_ckpt / "model.safetensors").read_bytes()
    assert not raw.startswith(b"PK") and not raw.startswith(b"\x80")  # neither a torch zip nor a pickle
    # safetensors: an 8-byte little-endian header length, then a JSON header naming every tensor
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    assert any(k.startswith("predictor.") for k in header) and any(k.startswith("generator.") for k in header)
    assert not list(text_re_ckpt.glob("*.bin")) and not list(text_re_ckpt.glob("*.pt"))


# ---------------------------------------------------------------------------------------------
# broken checkpoints: one CheckpointError naming the file


def _raises(path, fragment: str) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message
    return message


def test_corrupt_config_json(text_re_ckpt, tmp_path):
    path = _copy(text_re_ckpt, tmp_path)
    (path / "config.json").write_text('{"task": "text", "mode": ')
    _raises(path, str(path / "config.json"))
    (path / "config.json").write_bytes(b"\xff\xfe\x00garbage")
    _raises(path, "config.json")
    (path / "config.json").write_text("[1, 2]")  # valid JSON, not a config
    _raises(path, "config.json")
    (path / "config.json").write_text(json.dumps({"task": "text"}))
    assert "missing" in _raises(path, "config.json")


def test_missing_config_json(text_re_ckpt, tmp_path):
    path = _copy(text_re_ckpt, tmp_path)
    (path / "config.json").unlink()
    _raises(path, "config.json")


def test_missing_weights(text_re_ckpt, tmp_path):
    path = _copy(text_re_ckpt, tmp_path)
    (path / "model.safetensors").unlink()
    _raises(path, str(path / "model.safetensors"))


@pytest.mark.parametrize("keep", [0, 5, 100, -64])
def test_truncated_weights(text_re_ckpt, tmp_path, keep):
    path = _copy(text_re_ckpt, tmp_path)
    raw = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(raw[:keep])
    _raises(path, str(path / "model.safetensors"))


def test_weights_of_another_model(text_re_ckpt, vision_re_ckpt, tmp_path):
    path = _copy(text_re_ckpt, tmp_path)
    shutil.copy(vision_re_ckpt / "model.safetensors", path / "model.safetensors")
    assert "do not match config.json" in _raises(path, str(path / "model.safetensors"))


@pytest.mark.parametrize("edit", ["labels", "hidden", "layers"])
def test_config_edited_so_that_weights_no_longer_fit(text_re_ckpt, tmp_path, edit):
    path = _copy(text_re_ckpt, tmp_path)
    config = json.loads((path / "config.json").read_text())
    if edit == "labels":  # a 3-way classifier for 2-way weights: a shape mismatch
        config["labels"] = ["a", "b", "c"]
    elif edit == "hidden":
        config["backbone"]["hf_config"]["hidden_size"] = 64
        config["backbone"]["hf_config"]["intermediate_size"] = 256
    else:  # two layers: the second one's weights are missing
        config["backbone"]["hf_config"]["num_hidden_layers"] = 2
    (path / "config.json").write_text(json.dumps(config))
    _raises(path, "model.safetensors")


def test_missing_tokenizer(text_re_ckpt, tmp_path):
    path = _copy(text_re_ckpt, tmp_path)
    shutil.rmtree(path / "tokenizer")
    _raises(path, "tokenizer")


def test_not_a_directory(tmp_path):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"x")
    _raises(file, str(file))
    _raises(tmp_path / "nowhere", str(tmp_path / "nowhere"))
    _raises(tmp_path, "config.json")  # a directory, but not a checkpoint


# ---------------------------------------------------------------------------------------------
# atomic save


def _crash_in(monkeypatch, target: str):
    """Make one step inside save_checkpoint fail, as a crash would."""
    real_replace = os.replace
    calls = {"replace": 0}

    def boom(*args, **kwargs):
        raise OSError("simulated crash")

    if target == "weights":
        monkeypatch.setattr(ckpt_module, "save_file", boom)
    elif target == "metrics":
        real_write = ckpt_module._write_json

        def write(path, data):
            if path.name == "metrics.json":
                raise KeyboardInterrupt  # a BaseException: Ctrl-C mid-save
            real_write(path, data)

        monkeypatch.setattr(ckpt_module, "_write_json", write)
    elif target == "fsync":
        monkeypatch.setattr(ckpt_module, "_fsync_tree", boom)
    elif target == "swap":  # the rename of the new directory into place fails, after the old one moved aside
        def replace(src, dst):
            calls["replace"] += 1
            if calls["replace"] == 2:
                raise OSError("simulated crash")
            return real_replace(src, dst)

        monkeypatch.setattr(ckpt_module.os, "replace", replace)


@pytest.mark.parametrize("target", ["weights", "metrics", "fsync", "swap"])
def test_crash_mid_save_keeps_the_previous_checkpoint(text_model, tmp_path, monkeypatch, target):
    model, bundle = text_model
    inputs = list(bundle.test.inputs[:4])
    path = save_checkpoint(model, tmp_path / "ckpt", metrics={"version": "first"})
    before = {p.name: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    expected = _outputs(load_checkpoint(path), inputs)

    other = create_model(TrainConfig(task="text", backbone="bert-1x32", dataset=f"csv:{bundle.name.split(':', 1)[1]}",
                                    out="unused", max_length=32).resolved(), bundle.labels, bundle.train)
    _crash_in(monkeypatch, target)
    with pytest.raises((OSError, KeyboardInterrupt)):
        save_checkpoint(other, path, metrics={"version": "second"})
    monkeypatch.undo()

    assert {p.name: p.read_bytes() for p in path.rglob("*") if p.is_file()} == before
    assert read_metrics(path) == {"version": "first"}
    got = _outputs(load_checkpoint(path), inputs)
    assert torch.equal(got.logits, expected.logits) and torch.equal(got.mask, expected.mask)
    assert _leftovers(tmp_path) == []  # no hidden temporary or old directory left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_crash_on_first_save_leaves_nothing(text_model, tmp_path, monkeypatch):
    model, _ = text_model
    _crash_in(monkeypatch, "fsync")
    with pytest.raises(OSError):
        save_checkpoint(model, tmp_path / "ckpt")
    assert list(tmp_path.iterdir()) == []


def test_save_replaces_a_checkpoint_and_fills_an_empty_directory(text_model, tmp_path):
    model, _ = text_model
    save_checkpoint(model, tmp_path / "ckpt", metrics={"n": 1})
    save_checkpoint(model, tmp_path / "ckpt", metrics={"n": 2})
    assert read_metrics(tmp_path / "ckpt") == {"n": 2}
    (tmp_path / "empty").mkdir()
    save_checkpoint(model, tmp_path / "empty")
    load_checkpoint(tmp_path / "empty")
    assert _leftovers(tmp_path) == []


def test_refuses_to_overwrite_a_directory_that_is_not_a_checkpoint(text_model, tmp_path):
    model, _ = text_model
    target = tmp_path / "my-files"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        save_checkpoint(model, target)
    assert [p.name for p in target.iterdir()] == ["thesis.tex"]
    assert (target / "thesis.tex").read_text() == "precious"
    file = tmp_path / "a-file"
    file.write_text("precious")
    with pytest.raises(CheckpointError):
        save_checkpoint(model, file)
    assert file.read_text() == "precious"
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# inference-time ratio override, selections, deterministic evaluation


def test_explain_ratio_override_text(text_re_ckpt, text_task):
    model = load_checkpoint(text_re_ckpt)
    texts = list(load_dataset_spec(f"csv:{text_task}").test.inputs[:4]) + ["splendid", "a b c d e f g h i j k l"]
    for exp in explain(model, texts, ratio=0.3):
        # n = the word pieces without [CLS]/[SEP]; 20 for the 20-word reviews -> round(6.0) = 6
        assert len(exp.selected) == round(0.3 * exp.num_features)
        assert set(exp.selected) <= set(exp.selectable) and len(exp.selectable) == exp.num_features
        assert not {exp.tokens[i] for i in exp.selected} & {"[CLS]", "[SEP]"}
        assert exp.ratio == pytest.approx(len(exp.selected) / exp.num_features)
        assert len(exp.tokens) == exp.length == exp.num_features + 2 and len(exp.scores) == exp.length
    default = explain(model, texts[:1])[0]
    assert len(default.selected) == round(0.1 * default.num_features)  # the training ratio
    assert len(explain(model, texts[:1], ratio=1.0)[0].selected) == default.num_features
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ConfigError):
            explain(model, texts[:1], ratio=bad)


def test_explain_ratio_override_vision(vision_re_ckpt, image_task):
    model = load_checkpoint(vision_re_ckpt)
    image = Image.open(next((image_task / "test" / "pos").glob("*.png")))
    exp = explain(model, [image], ratio=0.3)[0]
    assert exp.num_features == 16 and exp.grid_side == 4 and exp.patch_size == 4
    assert len(exp.selected) == round(0.3 * 16) == 5
    assert len(explain(model, [image])[0].selected) == round(0.1 * 16) == 2
    assert abs(sum(exp.probs.values()) - 1.0) < 1e-5


def test_explain_rejects_the_wrong_kind_of_input(text_re_ckpt, vision_re_ckpt):
    with pytest.raises(DataError):
        explain(load_checkpoint(text_re_ckpt), [Image.new("RGB", (16, 16))])
    with pytest.raises(DataError):
        explain(load_checkpoint(vision_re_ckpt), ["some text"])
    with pytest.raises(DataError):
        explain(load_checkpoint(text_re_ckpt), [])


def test_evaluation_is_deterministic_and_gumbel_is_available(text_re_ckpt, text_task):
    model = load_checkpoint(text_re_ckpt)
    split = load_dataset_spec(f"csv:{text_task}").test
    first = evaluate_split(model, split, batch_size=16, with_faithfulness=True)
    second = evaluate_split(model, split, batch_size=16, with_faithfulness=True)
    assert first == second
    assert first["n"] == 40 and first["ratio"] == pytest.approx(2 / 20)  # round(0.1 * 20) = 2 of 20 (no [CLS]/[SEP])
    argmax = evaluate_split(model, split, selection="argmax")
    assert argmax == evaluate_split(model, split, selection="argmax")
    assert argmax["ratio"] == pytest.approx(first["ratio_argmax"])
    # the reference code's noisy evaluation: Gumbel samples at tau 1, a 0/1 mask of real features only
    torch.manual_seed(0)
    gumbel = evaluate_split(model, split, selection="gumbel")
    assert 0.0 <= gumbel["ratio"] <= 1.0 and 0.0 <= gumbel["accuracy"] <= 1.0
    features = model.processor(list(split.inputs[:8]))
    out = model(features, selection="gumbel", tau=0.5)
    assert set(out.mask.unique().tolist()) <= {0.0, 1.0}
    assert (out.mask * ~out.feature_mask).sum() == 0
    with pytest.raises(ConfigError):
        model(features, selection="random")


def test_evaluation_with_a_ratio_override_and_a_teacher(text_rekd_ckpt, text_re_ckpt, text_task):
    student, teacher = load_checkpoint(text_rekd_ckpt), load_checkpoint(text_re_ckpt)
    split = load_dataset_spec(f"csv:{text_task}").test
    metrics = evaluate_split(student, split, teacher=teacher, ratio=0.5)
    assert metrics["ratio"] == pytest.approx(11 / 22)  # round(0.5 * 22) = 11
    assert 0.0 <= metrics["teacher_mask_iou"] <= 1.0 and 0.0 <= metrics["teacher_agreement"] <= 1.0
    # a model is its own perfect teacher
    self_metrics = evaluate_split(teacher, split, teacher=teacher)
    assert self_metrics["teacher_mask_iou"] == 1.0 and self_metrics["teacher_agreement"] == 1.0


def test_cls_model_reads_everything(text_cls_ckpt, text_task):
    model = load_checkpoint(text_cls_ckpt)
    assert model.generator is None and model.ratio == 1.0
    exp = explain(model, ["fillerab splendid fillerac"])[0]
    assert exp.ratio == 1.0 and len(exp.selected) == exp.num_features and exp.scores == []
    metrics = evaluate_split(model, load_dataset_spec(f"csv:{text_task}").test)
    assert "ratio" not in metrics and 0.0 <= metrics["accuracy"] <= 1.0


def test_selection_cost_kinds_in_evaluation_and_training(text_re_ckpt, text_task, trainer, tmp_path):
    model = load_checkpoint(text_re_ckpt)
    split = load_dataset_spec(f"csv:{text_task}").test
    # top-k at 0.13 gives every review of 20 selectable pieces the same count (round(2.6) = 3), so with the
    # real lengths the per-example and the batch-mean costs agree: (3 - 0.13 * 20)^2 = 0.16
    for kind in ("batch", "example"):
        metrics = evaluate_split(model, split, ratio=0.13, sel_length="real", sel_cost=kind, lambda_sel=1.0)
        assert metrics["selection_cost"] == pytest.approx(0.16, abs=1e-5)
    out = trainer(f"csv:{text_task}", tmp_path / "per-example", ratio=0.1, sel_cost="example")
    assert json.loads((out / "config.json").read_text())["training"]["sel_cost"] == "example"
    with pytest.raises(ConfigError, match="sel_cost"):
        trainer(f"csv:{text_task}", tmp_path / "bad", sel_cost="everything")


def test_learning_rate_schedules(text_task, trainer, tmp_path):
    def lrs(out):
        return [json.loads(line)["lr"] for line in (out / "log.jsonl").read_text().splitlines()]

    constant = trainer(f"csv:{text_task}", tmp_path / "constant", mode="cls", epochs=2, lr=1e-3)
    assert lrs(constant) == [pytest.approx(1e-3), pytest.approx(1e-3)]
    # 200 reviews less a 40-review dev split, 16 per batch: 10 steps an epoch, so half-way after epoch 1
    linear = trainer(f"csv:{text_task}", tmp_path / "linear", mode="cls", epochs=2, lr=1e-3, lr_schedule="linear")
    assert lrs(linear) == [pytest.approx(5e-4), pytest.approx(0.0)]
    assert json.loads((linear / "config.json").read_text())["training"]["lr_schedule"] == "linear"
    with pytest.raises(ConfigError, match="lr_schedule"):
        trainer(f"csv:{text_task}", tmp_path / "bad", lr_schedule="step")


def test_split_seed_follows_the_checkpoints_a_run_starts_from(text_task, text_cls_ckpt, text_re_ckpt, trainer,
                                                              tmp_path):
    """A seed-7 run started from a seed-2026 checkpoint keeps that checkpoint's dev split, so the reviews
    the start model trained on never pick this run's kept epoch."""
    from rekd_core.training import inherited_split_seed, make_splits

    bundle = load_dataset_spec(f"csv:{text_task}")

    def split_of(**options):
        cfg = TrainConfig(task="text", dataset=f"csv:{text_task}", out="unused", seed=7, **options)
        cfg.split_seed = inherited_split_seed(cfg)
        return cfg.split_seed, list(make_splits(bundle, cfg)[1].inputs)

    start_seed, start_dev = split_of(split_seed=2026)  # the dev split text_cls_ckpt was trained with
    own_seed, own_dev = split_of()
    assert own_seed == 7 and set(own_dev) != set(start_dev)
    assert split_of(init_from=str(text_cls_ckpt)) == (2026, start_dev)
    assert split_of(init_from=str(text_cls_ckpt), teacher=str(text_re_ckpt)) == (2026, start_dev)
    assert split_of(init_from=str(text_cls_ckpt), split_seed=7) == (7, own_dev)  # an explicit choice wins

    other = tmp_path / "teacher-of-another-split"
    shutil.copytree(text_re_ckpt, other)
    config = json.loads((other / "config.json").read_text())
    config["training"].update(seed=99, split_seed=99)
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="different train/dev splits"):
        split_of(init_from=str(text_cls_ckpt), teacher=str(other))

    out = trainer(f"csv:{text_task}", tmp_path / "re-seed-7", seed=7, init_from=str(text_cls_ckpt))
    assert read_config(out)["training"]["split_seed"] == 2026 and read_config(out)["training"]["seed"] == 7


def test_init_from_a_model_of_the_same_mode_continues_all_of_it(text_task, text_cls_ckpt, text_re_ckpt, trainer,
                                                               tmp_path):
    """--init-from a CLS model starts both backbones from its predictor (new heads); --init-from an RE model
    of an RE run continues it whole, so the generator keeps the selection it learnt (at lr 0: unchanged)."""
    source = load_checkpoint(text_re_ckpt).state_dict()
    continued = load_checkpoint(trainer(f"csv:{text_task}", tmp_path / "continued", init_from=str(text_re_ckpt),
                                        lr=0.0)).state_dict()
    assert continued.keys() == source.keys()
    assert all(torch.equal(continued[name], source[name]) for name in source)
    started = load_checkpoint(trainer(f"csv:{text_task}", tmp_path / "started", init_from=str(text_cls_ckpt),
                                      lr=0.0)).state_dict()
    assert not torch.equal(started["generator.head.0.weight"], source["generator.head.0.weight"])


@pytest.mark.parametrize("mode", ["re", "rekd"])
def test_a_complement_adversary_is_trained_recorded_and_reloaded(image_task, vision_re_ckpt, trainer, tmp_path, mode):
    """complement_weight > 0 adds a second predictor reading the unselected patches; it learns with the run (its
    loss is logged), the checkpoint says so and reloads it, and the rationale model itself is unchanged."""
    out = trainer(f"imagefolder:{image_task}", tmp_path / mode, task="vision", mode=mode, complement_weight=0.5,
                  teacher=str(vision_re_ckpt) if mode == "rekd" else None)
    assert read_config(out)["complement_weight"] == 0.5
    assert read_log(out)[0]["train_complement_ce"] > 0
    model = load_checkpoint(out)
    assert model.complement is not None and load_checkpoint(vision_re_ckpt).complement is None
    inputs = model.processor([Image.new("RGB", (16, 16), (90, 90, 90))])
    assert model(inputs).complement_logits is None  # in eval mode, the adversary is not run
    with pytest.raises(ConfigError, match="complement_weight"):
        TrainConfig(task="vision", backbone="vit-1x32", dataset="unused", out="unused",
                    complement_weight=-1.0).resolved()


def test_special_tokens_are_read_but_never_selected_unless_asked(text_re_ckpt, text_task, trainer, tmp_path):
    """By default [CLS]/[SEP] are not features (never selected, not counted in the ratio) but always reach the
    predictor; special_tokens="select" keeps the reference code's behaviour (every token is a feature)."""
    model = load_checkpoint(text_re_ckpt)
    inputs = model.processor(["fillerab splendid fillerac"])
    ids = model.processor.tokenizer.convert_ids_to_tokens(model.config.unselectable_token_ids)
    assert {"[CLS]", "[SEP]", "[PAD]"} <= set(ids) and "[UNK]" not in ids
    assert model.feature_mask(inputs)[0].tolist()[:6] == [False, True, True, True, False, False]
    out = model(inputs, ratio=1.0)
    assert out.mask[0, 0] == 0 and out.mask[0].sum() == 3
    # the predictor reads [CLS] and [SEP] with whatever is selected: the same logits as with them in the mask
    torch.testing.assert_close(out.logits, model.predictor(inputs, out.mask + model.structural_mask(inputs).float()))
    metrics = read_metrics(text_re_ckpt)["test"]
    assert set(metrics["ratio_argmax_by_class"]) == {"neg", "pos"} and isinstance(metrics["warnings"], list)

    legacy = trainer(f"csv:{text_task}", tmp_path / "select", special_tokens="select")
    old = load_checkpoint(legacy)
    assert "unselectable_token_ids" not in read_config(legacy) and old.structural_mask(inputs) is None
    assert old.feature_mask(inputs)[0].tolist()[:6] == [True] * 5 + [False]
    [exp] = explain(old, ["fillerab splendid fillerac"], ratio=1.0)
    assert exp.selected == list(range(5)) and exp.num_features == 5


def test_bf16_autocast_trains_and_records_its_precision(text_task, trainer, tmp_path):
    out = trainer(f"csv:{text_task}", tmp_path / "bf16", precision="bf16")
    metrics = read_metrics(out)
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0 and math.isfinite(metrics["test"]["loss"])
    assert json.loads((out / "config.json").read_text())["training"]["precision"] == "bf16"
    model = load_checkpoint(out)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps float32 weights


def test_float16_weights_halve_the_checkpoint_and_are_what_the_test_metrics_measured(text_task, trainer, tmp_path):
    from safetensors import safe_open

    full = trainer(f"csv:{text_task}", tmp_path / "fp32")
    half = trainer(f"csv:{text_task}", tmp_path / "fp16", weights_dtype="float16")
    with safe_open(str(half / "model.safetensors"), framework="pt") as fh:
        assert {fh.get_tensor(k).dtype for k in fh.keys()} == {torch.float16}
    assert (half / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    model = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    split = load_dataset_spec(f"csv:{text_task}").test
    again = evaluate_split(model, split)  # the shipped weights score what training recorded
    assert again["accuracy"] == read_metrics(half)["test"]["accuracy"]
    assert again["loss"] == pytest.approx(read_metrics(half)["test"]["loss"], abs=1e-6)
    with pytest.raises(ConfigError, match="weights_dtype"):
        trainer(f"csv:{text_task}", tmp_path / "bad", weights_dtype="int8")


def test_a_ratio_range_model_trains_at_many_ratios_and_records_its_range(text_task, trainer, tmp_path, monkeypatch):
    import rekd_core.objectives as objectives

    seen = []
    original = objectives.selection_cost

    def spy(mask, ratio, length, per_example=False):
        seen.append((ratio, mask.detach().sum(dim=1).tolist()))
        return original(mask, ratio, length, per_example)

    monkeypatch.setattr(objectives, "selection_cost", spy)
    out = trainer(f"csv:{text_task}", tmp_path / "range", ratio_range=[0.05, 0.5], ratio=0.1)
    ratios = [r for r, _ in seen]
    assert 0.05 <= min(ratios) and max(ratios) <= 0.5 and max(ratios) - min(ratios) > 0.2
    assert all(counts == [round(r * 20)] * len(counts) for r, counts in seen)  # 20 selectable pieces a review
    model = load_checkpoint(out)
    assert model.config.ratio_range == [0.05, 0.5] and model.ratio == 0.1
    with pytest.raises(ConfigError, match="ratio_range"):
        trainer(f"csv:{text_task}", tmp_path / "bad", ratio_range=[0.3, 0.2])
    with pytest.raises(ConfigError, match="outside"):
        trainer(f"csv:{text_task}", tmp_path / "bad", ratio_range=[0.2, 0.5], ratio=0.1)


def test_a_presets_training_defaults_apply_unless_given():
    def resolved(**options):
        return TrainConfig(task="vision", mode="re", backbone="dinov2-s", dataset="-", out="-", **options).resolved()

    assert (resolved().head_lr, resolved().train_selection) == (1e-3, "gumbel_topk")
    assert (resolved(head_lr=5e-4).head_lr, resolved(train_selection="gumbel").train_selection) == (5e-4, "gumbel")
    vit = TrainConfig(task="vision", mode="re", backbone="vit-1x32", dataset="-", out="-").resolved()
    assert (vit.head_lr, vit.train_selection) == (None, "gumbel")  # the paper's


def test_numbers_written_as_yaml_reads_them_are_numbers():
    """YAML 1.1 (PyYAML) reads 2e-5, without a dot, as a string: it crashed deep in the optimizer."""
    cfg = TrainConfig(task="text", mode="re", dataset="-", out="-", head_lr="2e-5", lambda_sel="1e-3").resolved()
    assert (cfg.head_lr, cfg.lambda_sel) == (2e-5, 1e-3)
    with pytest.raises(ConfigError, match="lr must be a number, got 'fast'"):
        TrainConfig(task="text", mode="re", dataset="-", out="-", lr="fast").resolved()


def test_train_selection_gumbel_topk_samples_exactly_the_evaluated_count(text_task, trainer, tmp_path, monkeypatch):
    import rekd_core.objectives as objectives

    counts = []
    original = objectives.selection_cost

    def spy(mask, ratio, length, per_example=False):
        counts.extend(mask.detach().sum(dim=1).tolist())
        return original(mask, ratio, length, per_example)

    monkeypatch.setattr(objectives, "selection_cost", spy)
    out = trainer(f"csv:{text_task}", tmp_path / "exact", ratio=0.1, train_selection="gumbel_topk")
    assert counts and set(counts) == {2.0}  # round(0.1 x 20 selectable pieces) in every training mask
    assert read_metrics(out)["test"]["warnings"] == []  # its argmax is no choice it was trained to make
    assert read_config(out)["train_selection"] == "gumbel_topk"
    with pytest.raises(ConfigError, match="train_selection"):
        trainer(f"csv:{text_task}", tmp_path / "bad", train_selection="sparsemax")


def test_head_lr_puts_the_heads_in_their_own_parameter_group(text_task, tmp_path):
    from rekd_core.factory import parameter_groups

    bundle = load_dataset_spec(f"csv:{text_task}")
    cfg = TrainConfig(task="text", mode="re", backbone="bert-1x32", dataset="-", out="-", max_length=32,
                      head_lr=1e-3).resolved()
    model = create_model(cfg, bundle.labels, bundle.train)
    backbone, heads = parameter_groups(model, cfg)
    assert heads["lr"] == 1e-3 and backbone["lr"] == cfg.lr
    expected = {id(p) for p in [*model.predictor.classifier.parameters(), *model.generator.head.parameters()]}
    assert {id(p) for p in heads["params"]} == expected
    assert len(backbone["params"]) + len(heads["params"]) == sum(p.requires_grad for p in model.parameters())
    [single] = parameter_groups(model, dataclasses.replace(cfg, head_lr=None))
    assert single["lr"] == cfg.lr
