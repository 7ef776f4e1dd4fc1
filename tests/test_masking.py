"""Drop masking and the frozen-state cache (the fast training modes).

Drop: the predictor reads only the selected features, each at its own position, so with every feature selected it
is the zero-masking and the CLS forward pass, and with a given mask it is the same network fed only those features;
a batch whose examples keep different counts is padded and attention-masked, so each example's logits are its own.
Cache: the frozen blocks' output kept per training example gives the logits of the live pass exactly, survives a
cut run, and spills to a memory-mapped file past its budget."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from rekd_core.checkpoint import load_checkpoint, read_config, read_weights
from rekd_core.config import TrainConfig
from rekd_core.data import load_dataset_spec
from rekd_core.errors import ConfigError
from rekd_core.explain import explain
from rekd_core.factory import create_model
from rekd_core.frozen_cache import FrozenStateCache
from rekd_core.objectives import precision_context
from rekd_core.processing import FeatureDataset, collate, model_inputs
from tests.core_fixtures import IMAGE_SIZE, PATCH_SIZE, TEXT_MAX_LENGTH

pytest_plugins = ["tests.core_fixtures"]

VISION_BACKBONES = ["vit-1x32", "vit-1x32-conv", "hf_dinov2"]


def build(task_dir, task: str, backbone: str, **options):
    """A freshly initialised RE model of the task (eval mode) and a batch of 6 of its training examples."""
    bundle = load_dataset_spec(("csv:" if task == "text" else "imagefolder:") + str(task_dir))
    grid = dict(max_length=TEXT_MAX_LENGTH) if task == "text" else dict(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
    cfg = TrainConfig(task=task, mode="re", backbone=backbone, dataset="-", out="-", **grid, **options).resolved()
    torch.manual_seed(0)
    model = create_model(cfg, bundle.labels, bundle.train).eval()
    dataset = FeatureDataset(bundle.train, model.processor)
    return model, model_inputs(collate([dataset[i] for i in range(6)]))


@pytest.fixture
def vision_model(request, image_task, hf_dinov2_dir):
    backbone = str(hf_dinov2_dir) if request.param == "hf_dinov2" else request.param
    return build(image_task, "vision", backbone, masking="drop")


def _zero_copy(model):
    """The same model reading its selections with zero masking."""
    model.config = dataclasses.replace(model.config, masking="zero")
    return model


@pytest.mark.parametrize("vision_model", VISION_BACKBONES, indirect=True)
def test_with_every_patch_selected_drop_zero_and_cls_give_the_same_logits(vision_model):
    model, inputs = vision_model
    everything = model.feature_mask(inputs).float()
    with torch.no_grad():
        drop = model.predict(inputs, everything)
        cls = model.predict(inputs)
        zero = _zero_copy(model).predict(inputs, everything)
    torch.testing.assert_close(drop, cls, rtol=0, atol=1e-5)
    torch.testing.assert_close(zero, cls, rtol=0, atol=1e-5)


def test_with_every_word_piece_selected_drop_zero_and_cls_give_the_same_logits(text_task):
    model, inputs = build(text_task, "text", "bert-1x32", masking="drop")
    everything = model.feature_mask(inputs).float()
    with torch.no_grad():
        drop, cls = model.predict(inputs, everything), model.predict(inputs)
        zero = _zero_copy(model).predict(inputs, everything)
    torch.testing.assert_close(drop, cls, rtol=0, atol=1e-5)
    torch.testing.assert_close(zero, cls, rtol=0, atol=1e-5)


def _some_masks(feature_mask: torch.Tensor) -> torch.Tensor:
    """A different count of features for each example (1, 2, 3, ...), drawn from its own features."""
    generator = torch.Generator().manual_seed(0)
    mask = torch.zeros(feature_mask.shape)
    for row in range(len(mask)):
        real = feature_mask[row].nonzero().flatten()
        mask[row, real[torch.randperm(len(real), generator=generator)[: row + 1]]] = 1.0
    return mask


def test_drop_reads_a_text_as_bert_fed_only_the_selected_word_pieces(text_task):
    """Each example's logits are those of the encoder given only its selected word pieces and the special tokens,
    with their own position ids, one example at a time: so padding and attention masking are right too."""
    model, inputs = build(text_task, "text", "bert-1x32", masking="drop")
    mask = _some_masks(model.feature_mask(inputs))
    predictor = model.predictor
    with torch.no_grad():
        batch = model.predict(inputs, mask)
        for row in range(len(mask)):
            read = (mask[row] > 0) | model.structural_mask(inputs)[row]
            positions = read.nonzero().flatten()
            hidden = predictor.backbone.encoder(input_ids=inputs["input_ids"][row, positions][None],
                                                position_ids=positions[None]).last_hidden_state
            alone = predictor.classifier(hidden[:, 0])
            torch.testing.assert_close(batch[row], alone[0], rtol=0, atol=1e-5)
    assert len({int(m.sum()) for m in mask}) == len(mask)  # the batch was padded


@pytest.mark.parametrize("vision_model", VISION_BACKBONES, indirect=True)
def test_drop_reads_an_image_as_the_vit_fed_only_its_class_token_and_the_selected_patches(vision_model):
    """Each example's logits are those of the ViT run on its class token and selected patch tokens alone (each with
    its position embedding), one example at a time, with no padding."""
    model, inputs = vision_model
    mask = _some_masks(model.feature_mask(inputs))
    backbone = model.predictor.backbone
    with torch.no_grad():
        batch = model.predict(inputs, mask)
        for row in range(len(mask)):
            pixels = inputs["pixel_values"][row: row + 1]
            if backbone.mixes_patches:  # a 3x3 stem: the pixels of unselected patches are blanked first
                pixels = pixels * backbone._pixel_mask(mask[row: row + 1])
            tokens = backbone._embed(pixels)
            kept = torch.cat([torch.arange(backbone.num_prefix), backbone.num_prefix + mask[row].nonzero().flatten()])
            hidden = backbone._finish(backbone._blocks(tokens[:, kept], None, 0, None))
            alone = model.predictor.classifier(backbone._pool(hidden))
            torch.testing.assert_close(batch[row], alone[0], rtol=0, atol=1e-5)


def test_drop_passes_the_gradient_to_the_selected_features_and_probes_to_some_others(image_task):
    """Kept features are multiplied by their straight-through mask values; features left out get no gradient,
    except the random probes (training only), which are read as zero vectors."""
    model, inputs = build(image_task, "vision", "vit-1x32", masking="drop")
    mask = torch.zeros(6, 16)
    mask[:, :2] = 1.0
    mask.requires_grad_(True)
    model.predict(inputs, mask).sum().backward()
    assert (mask.grad[:, :2] != 0).all() and (mask.grad[:, 2:] == 0).all()

    model, inputs = build(image_task, "vision", "vit-1x32", masking="drop", drop_probes=1.0)
    model.train()
    mask.grad = None
    torch.manual_seed(0)
    logits = model.predict(inputs, mask)
    logits.sum().backward()
    probed = (mask.grad[:, 2:] != 0).sum(dim=1)
    assert (probed == 2).all()  # one probe per selected patch
    model.eval()
    with torch.no_grad():  # at evaluation no probe: the logits of plain drop
        plain = build(image_task, "vision", "vit-1x32", masking="drop")[0].predict(inputs, mask)
        torch.testing.assert_close(model.predict(inputs, mask), plain)


def test_a_drop_model_trains_records_its_masking_and_explains(text_task, trainer, tmp_path):
    ckpt = trainer(f"csv:{text_task}", tmp_path / "drop", masking="drop")
    assert read_config(ckpt)["masking"] == "drop"
    model = load_checkpoint(ckpt)
    assert model.masking == "drop"
    [exp] = explain(model, ["a short review of a film"])
    assert exp.label in ("neg", "pos") and exp.masking == "drop"
    old = json.loads((ckpt / "config.json").read_text())
    del old["masking"]  # a checkpoint from before the option reads as the paper's masking
    (ckpt / "config.json").write_text(json.dumps(old))
    assert load_checkpoint(ckpt).masking == "zero"


def test_drop_probes_default_to_one_per_selected_feature_when_the_training_masks_hold_exactly_k():
    """Exactly-k training masks (gumbel_topk, ratio_range) explore nothing by themselves; the paper's sample does."""
    def probes(**options) -> float:
        settings = {"task": "vision", "backbone": "vit-1x32", "dataset": "-", "out": "-", **options}
        return TrainConfig(**settings).resolved().drop_probes

    assert probes() == 0.0 and probes(masking="drop") == 0.0
    assert probes(masking="drop", train_selection="gumbel_topk") == 1.0
    assert probes(masking="drop", ratio=0.1, ratio_range=[0.05, 0.5]) == 1.0
    assert probes(masking="drop", backbone="dinov2-s") == 1.0  # its preset samples exactly k
    assert probes(masking="drop", train_selection="gumbel_topk", drop_probes=0.0) == 0.0


def test_drop_masking_is_refused_where_it_cannot_apply():
    with pytest.raises(ConfigError, match="drop_probes"):
        TrainConfig(task="text", dataset="-", out="-", drop_probes=1.0).resolved()
    with pytest.raises(ConfigError, match="freeze-layers"):
        TrainConfig(task="text", dataset="-", out="-", frozen_cache="on").resolved()


# ------------------------------------------------------------------------------------------ the frozen cache

@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("task", ["text", "vision"])
def test_cached_frozen_states_give_the_logits_of_the_live_pass_exactly(task, precision, text_task, image_task,
                                                                       hf_dinov2_dir, tmp_path):
    """The generator reading cached states of its frozen block gives the logits it gives computing them, bit for
    bit, in fp32 and in bf16 (where both round the states to bfloat16); so does a CLS model's predictor."""
    task_dir, backbone = (text_task, "bert-1x32") if task == "text" else (image_task, str(hf_dinov2_dir))
    for mode in ("re", "cls"):
        model, inputs = build(task_dir, task, backbone, freeze_layers=1, masking="drop")
        if mode == "cls":
            model.generator = None
            model.predictor.backbone.freeze_layers(1)
        part = model.generator or model.predictor
        tokens = inputs["input_ids"].shape[1] if task == "text" else 1 + part.backbone.num_patches
        cache = FrozenStateCache(6, (tokens, part.backbone.hidden_size),
                                 torch.bfloat16 if precision == "bf16" else torch.float32, 2**30, tmp_path, {})
        with torch.no_grad(), precision_context(precision, torch.device("cpu"))():
            slots = torch.arange(6)
            lower = cache.get(slots, tokens, lambda rows, part=part, inputs=inputs: part.backbone.lower_states(
                {k: v[rows] for k, v in inputs.items()}), torch.device("cpu"))
            assert cache.filled.all()
            cached = cache.get(slots, tokens, None, torch.device("cpu"))  # read, not computed
            assert torch.equal(cached, lower)
            if mode == "re":
                live, from_cache = model.generator(inputs), model.generator(inputs, cached)
            else:
                live, from_cache = model.predict(inputs), model(inputs, lower=cached).logits
        assert torch.equal(live, from_cache)


def _vision_run(trainer, image_task, out, **options):
    return trainer(f"imagefolder:{image_task}", out, task="vision", backbone="vit-1x32", freeze_layers=1, epochs=2,
                   augment="none", **options)


def test_a_run_with_the_cache_ends_where_one_without_it_ends(image_task, trainer, tmp_path):
    """Training with the cache (in memory, or a memory-mapped file when the budget is 0) gives the weights of the
    same run computing the frozen block every step; the file is gone once the run is over."""
    uncached = read_weights(_vision_run(trainer, image_task, tmp_path / "off", frozen_cache="off"))
    for name, budget in (("memory", 4.0), ("file", 0.0)):
        weights = read_weights(_vision_run(trainer, image_task, tmp_path / name, frozen_cache_gb=budget))
        assert weights.keys() == uncached.keys() and all(torch.equal(weights[k], uncached[k]) for k in weights)
        assert not (tmp_path / f"{name}.cache").exists() or not any((tmp_path / f"{name}.cache").iterdir())


def test_a_cut_run_reuses_its_cache_file_and_ends_as_a_whole_run(image_task, trainer, tmp_path, monkeypatch):
    """A run cut in its second epoch goes on from its memory-mapped cache (no frozen state computed again) and ends
    bit for bit where an uncut run ends."""
    from rekd_core.frozen_cache import FrozenStateCache as Cache
    from tests.test_sweep import _assert_resumed_as_whole, _cut_in_epoch_2

    options = dict(task="vision", backbone="vit-1x32", freeze_layers=1, epochs=2, frozen_cache_gb=0.0)
    dataset = f"imagefolder:{image_task}"
    whole = trainer(dataset, tmp_path / "whole", **options)
    _cut_in_epoch_2(trainer, dataset, tmp_path / "cut", options, monkeypatch)
    computed = []
    real_get = Cache.get

    def counting_get(self, slots, length, compute, device):
        counted = lambda rows: computed.append(len(rows)) or compute(rows)  # noqa: E731
        return real_get(self, slots, length, counted, device)

    monkeypatch.setattr(Cache, "get", counting_get)
    trainer(dataset, tmp_path / "cut", **options)
    _assert_resumed_as_whole(tmp_path / "cut", whole)
    # the cut run's first epoch filled a row for each of its 64 training images (the variant it drew); the resumed
    # second epoch computes only the rows of variants not drawn before (a new cache would compute all 64)
    assert 0 < sum(computed) < 64


def test_freezing_the_generator_alone_leaves_the_predictor_whole_and_is_kept_by_the_checkpoint(image_task, trainer,
                                                                                              tmp_path):
    ckpt = _vision_run(trainer, image_task, tmp_path / "g", freeze_parts="generator", masking="drop")
    assert read_config(ckpt)["freeze_parts"] == "generator"
    model = load_checkpoint(ckpt)
    assert model.generator.backbone.frozen_blocks == 1 and model.predictor.backbone.frozen_blocks == 0
    assert all(p.requires_grad for p in model.predictor.parameters())
    assert not any(p.requires_grad for p in model.generator.backbone.model.blocks[0].parameters())
    with pytest.raises(ConfigError, match="freeze-parts all"):  # a CLS model has no generator to freeze
        TrainConfig(task="vision", backbone="vit-1x32", mode="cls", dataset="-", out="-", freeze_layers=1,
                    freeze_parts="generator", frozen_cache="on").resolved()


def test_with_the_cache_images_are_flipped_not_cropped_and_both_flips_are_kept(image_task):
    bundle = load_dataset_spec(f"imagefolder:{image_task}")
    model, _ = build(image_task, "vision", "vit-1x32")
    dataset = FeatureDataset(bundle.train, model.processor, train=True, flip_only=True)
    plain = FeatureDataset(bundle.train, model.processor)
    assert dataset.variants == 2 and plain.variants == 1
    torch.manual_seed(0)
    items = [dataset[0] for _ in range(20)]
    assert {int(item["variant"]) for item in items} == {0, 1}
    for item in items:
        expected = plain[0]["pixel_values"]
        assert torch.equal(item["pixel_values"], expected.flip(-1) if item["variant"] else expected)
