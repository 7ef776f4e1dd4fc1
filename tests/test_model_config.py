"""``ModelConfig``: the one reader of a checkpoint's model settings (with the defaults of older checkpoints) and
the part of config.json a save writes."""
from __future__ import annotations

import dataclasses

import pytest

from rekd_core.checkpoint import read_config
from rekd_core.errors import ConfigError
from rekd_core.model_config import BackboneConfig, ModelConfig
from tests.test_shipped_checkpoints import ROOT, SHIPPED

pytest_plugins = ["tests.core_fixtures"]
MODEL_KEYS = {f.name for f in dataclasses.fields(ModelConfig)}
OLDEST = {"task": "text", "mode": "re", "ratio": 0.1, "labels": ["neg", "pos"], "dropout": 0.5,
          "backbone": {"type": "timm", "source": "vit-1x32-conv", "name": "vit", "kwargs": {}, "conv_stem": [8, 16]},
          "training": {"seed": 2026}, "status": "complete"}


def test_a_checkpoint_from_before_the_options_reads_as_their_defaults():
    config = ModelConfig.from_dict(OLDEST)  # the run's settings and status are not the model's: ignored
    assert (config.generator_embeddings, config.masking, config.drop_probes, config.train_selection) == \
           ("frozen", "zero", 0.0, "gumbel")
    assert config.unselectable_token_ids == [] and config.ratio_range is None and config.complement_weight == 0
    assert (config.freeze_layers, config.freeze_parts) == (0, "all")
    assert config.backbone.conv_stem_kernel == 3  # runs saved before the kernel was a setting had 3x3 stems
    assert not config.exact_counts and config.trained_range == (0.1, 0.1)


def test_the_training_settings_say_how_an_older_generator_selected():
    older = {**OLDEST, "training": {"train_selection": "gumbel_topk"}}
    assert ModelConfig.from_dict(older).train_selection == "gumbel_topk" and ModelConfig.from_dict(older).exact_counts
    ranged = ModelConfig.from_dict({**OLDEST, "ratio_range": [0.05, 0.5]})
    assert ranged.exact_counts and ranged.trained_range == (0.05, 0.5)
    assert ModelConfig.from_dict({**OLDEST, "mode": "cls"}).trained_range is None


def test_to_dict_writes_each_optional_field_only_where_it_applies():
    config = ModelConfig.from_dict(OLDEST)
    written = config.to_dict()
    assert {"generator_embeddings", "train_selection", "masking"} <= written.keys()  # a text rationale model's
    assert not {"unselectable_token_ids", "ratio_range", "complement_weight", "freeze_layers", "freeze_parts",
                "drop_probes", "training", "status"} & written.keys()
    assert written["backbone"]["conv_stem_kernel"] == 3
    cls = dataclasses.replace(config, mode="cls", task="vision").to_dict()
    assert not {"generator_embeddings", "train_selection", "masking"} & cls.keys()
    assert ModelConfig.from_dict(written) == config


@pytest.mark.parametrize("fixture", ["text_re_ckpt", "text_rekd_ckpt", "text_cls_ckpt", "vision_re_ckpt"])
def test_a_saved_model_config_reads_back_as_it_was_written(fixture, request):
    config = read_config(request.getfixturevalue(fixture))
    assert ModelConfig.from_dict(config).to_dict() == {k: v for k, v in config.items() if k in MODEL_KEYS}


@pytest.mark.parametrize("path", SHIPPED)
def test_a_shipped_config_keeps_every_model_setting_it_has(path):
    config = read_config(ROOT / path)
    written = ModelConfig.from_dict(config).to_dict()
    assert {k: written[k] for k in config if k in MODEL_KEYS} == {k: v for k, v in config.items() if k in MODEL_KEYS}


def test_a_mode_or_masking_it_does_not_know_is_refused():
    with pytest.raises(ConfigError, match="unknown mode 'mlm'"):
        ModelConfig.from_dict({**OLDEST, "mode": "mlm"})
    with pytest.raises(ConfigError, match="unknown masking 'half'"):
        ModelConfig.from_dict({**OLDEST, "masking": "half"})
    assert BackboneConfig.from_dict({"type": "hf_text", "source": "x", "hf_config": {}, "note": 1}).to_dict() == \
           {"type": "hf_text", "source": "x", "hf_config": {}}
