"""rekd_core/compatibility.py: whether two models, or a model and a dataset, fit together; the one check that
training, the command line and the dashboard share."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from rekd_core.compatibility import check_dataset_fits, check_pair, require_distillable
from rekd_core.errors import ConfigError, DataError


def model(task="vision", labels=("cat", "dog"), image_size=16, mean=(0.5, 0.5, 0.5), selects=True):
    grid = {"type": task, "image_size": image_size, "patch_size": 4, "num_patches": (image_size // 4) ** 2}
    processor = SimpleNamespace(grid=lambda: dict(grid), mean=mean, std=(0.2, 0.2, 0.2))
    return SimpleNamespace(task=task, labels=list(labels), processor=processor,
                           generator=object() if selects else None)


def test_a_matching_pair_fits_in_every_way():
    fit = check_pair(model(), model(labels=("Cat", "DOG")))  # labels compare without case
    assert fit.agreement and fit.shared_features and fit.same_labels and fit.problems() == []
    require_distillable(model(), model())


def test_each_difference_is_named_and_says_what_still_compares():
    labels = check_pair(model(), model(labels=("cat", "fox")))
    assert not labels.same_labels and labels.same_grid and not labels.agreement
    assert labels.labels == "the teacher's labels (cat, dog) differ from the student's (cat, fox)"
    grid = check_pair(model(), model(image_size=32))
    assert grid.same_labels and not grid.same_grid and not grid.shared_features
    assert "different feature grids (image_size: 16 vs 32, num_patches: 16 vs 64)" in grid.grid
    normalised = check_pair(model(), model(mean=(0.4, 0.4, 0.4)))
    assert normalised.agreement and not normalised.shared_features and "normalise images differently" in \
        normalised.normalisation
    cls = check_pair(model(selects=False), model())
    assert cls.cls_roles == ("teacher",) and cls.same_labels and not cls.agreement and cls.problems() == []
    tasks = check_pair(model(task="text"), model())
    assert tasks.task == "the teacher is a text model but the student is a vision model"
    assert not tasks.same_labels and not tasks.same_grid
    with pytest.raises(ConfigError, match="text model but the student is a vision model"):
        require_distillable(model(task="text"), model())
    with pytest.raises(ConfigError, match="feature grids"):
        require_distillable(model(labels=("a", "b")), model(image_size=32))  # the grid is named before the labels


def test_a_dataset_fits_a_model_of_its_task_and_labels():
    bundle = SimpleNamespace(name="csv:data", task="vision", labels=["CAT", "dog"])
    check_dataset_fits(bundle, model())
    with pytest.raises(DataError, match="csv:data is a vision dataset, but the models are text models"):
        check_dataset_fits(bundle, model(task="text"))
    with pytest.raises(DataError, match=r"the labels of csv:data \(CAT, dog\) differ from the models' \(cat, fox\)"):
        check_dataset_fits(bundle, model(labels=("cat", "fox")))
