"""The training loop's speed-ups must not change what is computed: trimmed padding gives the same
outputs as the full padded length, the teacher cache returns exactly the fresh teacher logits, and neither it nor
loader workers change the weights a run trains."""
from __future__ import annotations

import torch

from rekd_core.config import TrainConfig
from rekd_core.factory import create_model
from rekd_core.objectives import TeacherCache
from rekd_core.processing import FeatureDataset, collate, model_inputs

pytest_plugins = ["tests.core_fixtures"]


def _text_model(text_task, max_length=48):
    from rekd_core.data import load_dataset_spec

    bundle = load_dataset_spec(f"csv:{text_task}")
    cfg = TrainConfig(task="text", mode="re", backbone="bert-1x32", dataset="-", out="-",
                      max_length=max_length).resolved()
    torch.manual_seed(0)
    return create_model(cfg, bundle.labels, bundle.train).eval(), bundle


def _batch(model, split, trim):
    dataset = FeatureDataset(split.subset(list(range(8))), model.processor)
    return collate([dataset[i] for i in range(len(dataset))], trim_padding=trim)


def test_trimmed_padding_gives_identical_outputs(text_task):
    model, bundle = _text_model(text_task)
    full, trimmed = _batch(model, bundle.test, False), _batch(model, bundle.test, True)
    assert trimmed["input_ids"].shape[1] < full["input_ids"].shape[1]  # there was padding to cut
    with torch.no_grad():
        a = model(model_inputs(full), selection="topk")
        b = model(model_inputs(trimmed), selection="topk")
    length = trimmed["input_ids"].shape[1]
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.gen_logits[:, :length], b.gen_logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(a.mask[:, :length], b.mask) and a.mask[:, length:].sum() == 0


def test_teacher_cache_returns_the_fresh_teacher_logits(text_task):
    teacher, bundle = _text_model(text_task)
    batch = _batch(teacher, bundle.train, True)
    inputs = model_inputs(batch)
    cache = TeacherCache(8, teacher.num_features)
    with torch.no_grad():
        fresh = teacher.generator(inputs)
        first = cache.get(batch["index"], inputs, teacher, fresh.shape[1])
        assert cache.filled.all()
        # the second call must come from the cache: poison the generator to prove it is not run
        teacher.generator.head[-1].bias.add_(100.0)
        second = cache.get(batch["index"], inputs, teacher, fresh.shape[1])
    torch.testing.assert_close(first, fresh)
    torch.testing.assert_close(second, fresh)


def test_the_teacher_cache_and_loader_workers_change_nothing_trained(text_task, text_re_ckpt, trainer, tmp_path):
    """A REKD run without the teacher cache (--no-cache-teacher), its batches prepared by a worker process
    (--num-workers 1), trains the very weights of the default run: both options only change its speed."""
    from rekd_core.checkpoint import read_log, read_weights

    options = dict(mode="rekd", teacher=str(text_re_ckpt), tokenizer=str(text_re_ckpt))
    default = trainer(f"csv:{text_task}", tmp_path / "default", **options)
    slower = trainer(f"csv:{text_task}", tmp_path / "slower", cache_teacher=False, num_workers=1, **options)
    expected, weights = read_weights(default), read_weights(slower)
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in weights)
    assert read_log(slower)[0]["train_kd_r"] == read_log(default)[0]["train_kd_r"]
