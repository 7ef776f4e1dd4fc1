"""The `rekd` command, driven in-process through ``rekd_core.cli.main`` and as real subprocesses:
help texts, presets, REKD end to end on the planted-token task (teacher RE -> student REKD -> eval ->
explain), a YAML config file, every bad input as a non-zero exit with ONE clear line on stderr and no
traceback, and a two-process Accelerate training run."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from rekd_core.checkpoint import load_checkpoint, read_config, read_log, read_metrics
from rekd_core.cli import build_parser, main
from rekd_core.explain import explain

pytest_plugins = ["tests.core_fixtures"]

ROOT = Path(__file__).resolve().parents[1]
REVIEW = "fillerab fillerac splendid fillerad fillerae"
TEXT_MAX_LENGTH = 32  # as in core_fixtures


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run ``rekd ARGS`` in-process; return (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse: --help, usage errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err: str, *fragments: str) -> str:
    assert rc not in (0, None), f"exit code {rc}, stderr: {err!r}"
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rekd: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def subprocess_env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return env


def run_rekd(*args, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rekd_core.cli", *map(str, args)], cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=timeout)


def train_args(dataset: str, out, *extra) -> list:
    return ["train", "--task", "text", "--backbone", "bert-1x32", "--dataset", dataset, "--out", out,
            "--max-length", TEXT_MAX_LENGTH, "--epochs", 1, "--batch-size", 16, "--no-progress", "--device", "cpu",
            *extra]


# ---------------------------------------------------------------------------------------------
# fixtures: a teacher and a student trained through the CLI


@pytest.fixture(scope="module")
def cli_models(text_task, tmp_path_factory):
    """Teacher RE, then student REKD (self-distillation: the same tiny preset), both through `rekd train`;
    the student's options come from a YAML --config file, with command-line flags winning."""
    root = tmp_path_factory.mktemp("cli")
    teacher = root / "teacher"
    assert main([str(a) for a in train_args(f"csv:{text_task}", teacher, "--mode", "re")]) == 0
    config = root / "student.yaml"
    config.write_text(yaml.safe_dump({"task": "text", "mode": "rekd", "backbone": "bert-1x32",
                                      "dataset": f"csv:{text_task}", "teacher": str(teacher),
                                      "max-length": TEXT_MAX_LENGTH, "epochs": 3, "batch_size": 16,
                                      "lambda_r": 0.25, "alpha": "schedule", "distil": "both",
                                      "device": "cpu", "progress": False}))
    student = root / "student"
    assert main(["train", "--config", str(config), "--out", str(student), "--epochs", "1"]) == 0
    return teacher, student, config


# ---------------------------------------------------------------------------------------------
# help and presets


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices)


def test_every_subcommand_has_help(capsys):
    names = _subcommands()
    assert {"train", "eval", "explain", "presets"} <= set(names)
    rc, out, _ = cli(capsys, "--help")
    assert rc == 0 and all(name in out for name in names)
    for name in names:
        rc, out, err = cli(capsys, name, "--help")
        assert rc == 0, (name, err)
        assert out.startswith(f"usage: rekd {name}"), out[:80]
    rc, out, _ = cli(capsys, "train", "--help")
    for flag in ("--teacher", "--ratio", "--lambda-sel", "--alpha", "--config", "--eval-selection", "--max-length"):
        assert flag in out


def test_each_train_flag_has_its_fields_help_written_once(capsys):
    """``rekd train --help`` gives each TrainConfig field's own help text (its ``metadata``), and the dataset and
    device lists come from the modules that define them."""
    import dataclasses

    from rekd_core import data
    from rekd_core.config import TrainConfig
    from rekd_core.inputs import DEVICES

    fields = [f for f in dataclasses.fields(TrainConfig) if f.name != "extra"]
    assert all(f.metadata.get("help") for f in dataclasses.fields(TrainConfig))
    train = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    helps = {a.dest: a.help for a in train._actions}
    assert all(helps[f.name].startswith(f.metadata["help"]) for f in fields)
    assert {spec.split(":")[0].split("[")[0] for spec in data.VALID_SPECS} == set(data._LOADERS)
    assert helps["dataset"].startswith(" | ".join(data.VALID_SPECS)) and helps["device"].startswith(" | ".join(DEVICES))


def test_presets_json(capsys):
    rc, out, err = cli(capsys, "presets", "--json")
    assert rc == 0 and err == ""
    rows = json.loads(out)
    by_name = {row["name"]: row for row in rows}
    assert {"bert-1x32", "vit-1x32"} <= set(by_name)
    assert by_name["bert-1x32"]["task"] == "text" and by_name["bert-1x32"]["vocab_size"] == 2000
    assert by_name["vit-1x32"]["task"] == "vision" and by_name["vit-1x32"]["patch_size"] > 0
    assert all(row["parameters"] > 0 and row["lr"] > 0 and row["description"] for row in rows)
    # a pretrained ViT's grid and the training options it needs (config.py applies them unless given)
    assert by_name["dinov2-s"]["parameters"] == 21_555_072  # dinov2-small less its mask token, 65 positions
    assert by_name["dinov2-s"]["train_selection"] == "gumbel_topk" and by_name["dinov2-s"]["head_lr"] == 1e-3
    assert by_name["dinov2-s-l2"]["parameters"] * 4 < by_name["dinov2-s"]["parameters"]
    rc, out, _ = cli(capsys, "presets")
    assert rc == 0 and "bert-1x32" in out


# ---------------------------------------------------------------------------------------------
# REKD end to end


def test_train_wrote_complete_checkpoints(cli_models, text_task):
    teacher, student, _ = cli_models
    t_config, s_config = read_config(teacher), read_config(student)
    assert t_config["mode"] == "re" and t_config["status"] == "complete"
    assert s_config["mode"] == "rekd" and s_config["status"] == "complete"
    assert s_config["teacher"]["path"] == str(teacher)
    # the config file supplied these; the command line's --epochs 1 beat its epochs: 3
    assert s_config["training"]["lambda_r"] == 0.25 and s_config["training"]["alpha"] == "schedule"
    assert s_config["training"]["epochs"] == 1 and len(read_log(student)) == 1
    # the student distilled over the teacher's feature grid (it took the teacher's tokenizer)
    assert s_config["feature_grid"] == t_config["feature_grid"]
    test = read_metrics(student)["test"]
    assert {"accuracy", "ratio", "teacher_agreement", "teacher_mask_iou", "sufficiency"} <= set(test)
    assert test["n"] == 40


def test_eval_json_with_teacher(cli_models, text_task, capsys):
    teacher, student, _ = cli_models
    rc, out, err = cli(capsys, "eval", student, "--dataset", f"csv:{text_task}", "--teacher", teacher, "--json")
    assert rc == 0, err
    assert "Traceback" not in err
    metrics = json.loads(out)
    for key in ("accuracy", "ratio", "teacher_agreement", "teacher_mask_iou"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["n"] == 40
    assert metrics["ratio"] == pytest.approx(2 / 20)  # round(0.1 * 20 word pieces, [CLS]/[SEP] not counted) = 2
    # --ratio, --selection, --limit and the human-readable table
    rc, out, err = cli(capsys, "eval", student, "--dataset", f"csv:{text_task}", "--ratio", "0.5", "--limit", "10",
                       "--selection", "argmax", "--json")
    assert rc == 0, err
    assert json.loads(out)["n"] == 10
    rc, out, err = cli(capsys, "eval", student, "--dataset", f"csv:{text_task}", "--ratio", "0.5", "--limit", "10")
    assert rc == 0 and "accuracy" in out
    rc, out, err = cli(capsys, "eval", student, "--dataset", f"csv:{text_task}", "--split", "dev", "--json")
    assert rc == 0 and json.loads(out)["n"] == 40  # the stratified 20 % of 200 training reviews


def test_explain_json_with_teacher(cli_models, capsys):
    teacher, student, _ = cli_models
    rc, out, err = cli(capsys, "explain", student, "--teacher", teacher, "--text", REVIEW, "--json")
    assert rc == 0, err
    payload = json.loads(out)
    assert set(payload) == {"student", "teacher", "comparison"}
    for name in ("student", "teacher"):
        exp = payload[name]
        assert exp["label"] in ("neg", "pos") and exp["label"] == ("neg", "pos")[exp["label_index"]]
        assert set(exp["probs"]) == {"neg", "pos"}
        assert sum(exp["probs"].values()) == pytest.approx(1.0, abs=1e-5)
        n = exp["num_features"]  # the word pieces of 5 words; [CLS] and [SEP] are read but never selected
        assert n + 2 == exp["length"] == len(exp["tokens"]) == len(exp["scores"]) == len(exp["offsets"])
        assert exp["tokens"][0] == "[CLS]" and exp["tokens"][-1] == "[SEP]" and "splendid" in exp["tokens"]
        assert exp["selectable"] == list(range(1, n + 1)) and n >= 5
        assert len(exp["selected"]) == round(0.1 * n) >= 1
        assert all(isinstance(i, int) and 1 <= i <= n for i in exp["selected"])
        assert exp["selected_tokens"] == [exp["tokens"][i] for i in exp["selected"]]
        assert 1 <= len(exp["selected_words"]) <= len(exp["selected"])  # whole words of the review
        assert all(word in REVIEW for word in exp["selected_words"])
        assert exp["truncated"] is False
        assert exp["masking"] == "zero"  # what the checkpoint says (its default, the paper's)
        faithful = exp["faithfulness"]  # this explanation's sufficiency and comprehensiveness (METHOD.md)
        assert faithful["sufficiency"] == pytest.approx(faithful["p_full"] - faithful["p_rationale"])
        assert faithful["comprehensiveness"] == pytest.approx(faithful["p_full"] - faithful["p_complement"])
        assert faithful["p_rationale"] == pytest.approx(exp["probs"][faithful["label"]], abs=1e-6)
    comparison = payload["comparison"]
    assert set(comparison) >= {"both", "teacher_only", "student_only", "iou", "f1", "labels_agree"}
    assert sorted(comparison["both"] + comparison["student_only"]) == sorted(payload["student"]["selected"])
    assert comparison["labels_agree"] == (payload["student"]["label"] == payload["teacher"]["label"])
    # --ratio override and the human-readable form
    rc, out, err = cli(capsys, "explain", student, "--text", REVIEW, "--ratio", "0.5", "--json")
    exp = json.loads(out)["model"]
    assert rc == 0 and len(exp["selected"]) == round(0.5 * exp["num_features"])
    rc, out, err = cli(capsys, "explain", student, "--teacher", teacher, "--text", REVIEW)
    assert rc == 0 and "[student]" in out and "[teacher]" in out and "[comparison]" in out and "words:" in out
    assert out.count("sufficiency") == 2 and "(lower is better; rationale alone" in out


def test_explain_prints_whole_words_and_the_pieces_where_they_differ(capsys):
    from rekd_core.cli import _print_words
    from tests.core_fixtures import fake_explanation

    text = "Unbelievable film"
    tokens, offsets = ["[CLS]", "un", "##believ", "##able", "film", "[SEP]"], [(0, 0), (0, 2), (2, 8), (8, 12),
                                                                               (13, 17), (0, 0)]
    _print_words(text, fake_explanation(text, tokens, offsets, [2], {"[CLS]", "[SEP]"}), 256)
    assert capsys.readouterr().out == "  words: Unbelievable\n  word pieces: ##believ\n"
    _print_words(text, fake_explanation(text, tokens, offsets, [4], {"[CLS]", "[SEP]"}), 256)
    assert capsys.readouterr().out == "  words: film\n"


def test_explain_text_file_and_image(cli_models, vision_re_ckpt, image_task, tmp_path, capsys):
    _, student, _ = cli_models
    text_file = tmp_path / "review.txt"
    text_file.write_text(REVIEW + " — naïve café\n", encoding="utf-8")
    rc, out, err = cli(capsys, "explain", student, "--text-file", text_file, "--json")
    assert rc == 0, err
    assert json.loads(out)["model"]["num_features"] >= 7
    image = next((image_task / "test" / "pos").glob("*.png"))
    rc, out, err = cli(capsys, "explain", vision_re_ckpt, "--image", image, "--json")
    assert rc == 0, err
    exp = json.loads(out)["model"]
    assert exp["grid_side"] == 4 and exp["num_features"] == 16 and len(exp["selected"]) == 2
    assert exp["tokens"] is None
    rc, out, err = cli(capsys, "explain", vision_re_ckpt, "--image", image)
    assert rc == 0 and "patches (4x4 grid" in out


# ---------------------------------------------------------------------------------------------
# bad inputs: a non-zero exit and one clear line, in-process


@pytest.fixture(scope="module")
def bad_teachers(cli_models, three_class_task, text_cls_ckpt, tmp_path_factory, trainer):
    """Teachers that a student trained on the text task must refuse."""
    teacher, _, _ = cli_models
    root = tmp_path_factory.mktemp("bad-teachers")
    # the same model, but reading 48 word pieces: a different feature grid
    longer = root / "max-length-48"
    shutil.copytree(teacher, longer)
    config = json.loads((longer / "config.json").read_text())
    config["processor"]["max_length"] = config["feature_grid"]["max_length"] = 48
    (longer / "config.json").write_text(json.dumps(config))
    three = trainer(f"csv:{three_class_task}", root / "three-classes")
    return {"longer": longer, "three": three, "cls": text_cls_ckpt}


def test_missing_and_corrupt_checkpoints(cli_models, tmp_path, capsys):
    teacher, _, _ = cli_models
    rc, _, err = cli(capsys, "explain", tmp_path / "nowhere", "--text", REVIEW)
    assert_one_line_error(rc, err, str(tmp_path / "nowhere"))
    rc, _, err = cli(capsys, "eval", tmp_path / "nowhere", "--dataset", "csv:/nowhere")
    assert_one_line_error(rc, err, "nowhere")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(teacher, corrupt)
    (corrupt / "config.json").write_text("{not json")
    rc, _, err = cli(capsys, "explain", corrupt, "--text", REVIEW)
    assert_one_line_error(rc, err, "config.json")
    truncated = tmp_path / "truncated"
    shutil.copytree(teacher, truncated)
    (truncated / "model.safetensors").write_bytes((teacher / "model.safetensors").read_bytes()[:1000])
    rc, _, err = cli(capsys, "explain", truncated, "--text", REVIEW)
    assert_one_line_error(rc, err, "model.safetensors")
    rc, _, err = cli(capsys, "explain", teacher, "--teacher", corrupt, "--text", REVIEW)
    assert_one_line_error(rc, err, "config.json")


def test_bad_text_inputs(cli_models, tmp_path, capsys):
    teacher, _, _ = cli_models
    rc, _, err = cli(capsys, "explain", teacher, "--text-file", tmp_path / "missing.txt")
    assert_one_line_error(rc, err, "missing.txt", "no such file")
    binary = tmp_path / "binary.txt"  # (a latin-1 file is decoded: tests/test_inputs.py)
    binary.write_bytes(bytes(range(256)) * 8)
    rc, _, err = cli(capsys, "explain", teacher, "--text-file", binary)
    assert_one_line_error(rc, err, "binary.txt", "not a text file")
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\t\n")
    rc, _, err = cli(capsys, "explain", teacher, "--text-file", blank)
    assert_one_line_error(rc, err, "empty")
    rc, _, err = cli(capsys, "explain", teacher, "--text", "")
    assert_one_line_error(rc, err, "empty")
    rc, _, err = cli(capsys, "explain", teacher, "--text-file", tmp_path)  # a directory
    assert_one_line_error(rc, err, str(tmp_path))


def test_bad_image_inputs(cli_models, vision_re_ckpt, tmp_path, image_task, capsys):
    teacher, _, _ = cli_models
    garbage = tmp_path / "x.png"
    garbage.write_bytes(b"\x00garbage, not a PNG\xff" * 10)
    rc, _, err = cli(capsys, "explain", vision_re_ckpt, "--image", garbage)
    assert_one_line_error(rc, err, "x.png", "not an image file")
    real = next((image_task / "test" / "neg").glob("*.png")).read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(real[: len(real) // 2])  # a valid header, then the data stops
    rc, _, err = cli(capsys, "explain", vision_re_ckpt, "--image", cut)
    assert_one_line_error(rc, err, "cut.png")
    rc, _, err = cli(capsys, "explain", vision_re_ckpt, "--image", tmp_path / "missing.png")
    assert_one_line_error(rc, err, "missing.png")
    # the wrong kind of input for the model
    rc, _, err = cli(capsys, "explain", teacher, "--image", next((image_task / "test" / "neg").glob("*.png")))
    assert_one_line_error(rc, err, "text model")
    rc, _, err = cli(capsys, "explain", vision_re_ckpt, "--text", REVIEW)
    assert_one_line_error(rc, err, "vision model")


def test_bad_datasets_and_backbones(cli_models, text_task, image_task, tmp_path, capsys):
    teacher, _, _ = cli_models
    rc, _, err = cli(capsys, "eval", teacher, "--dataset", "nosuch:thing")
    assert_one_line_error(rc, err, "unknown dataset spec", "nosuch:thing")
    rc, _, err = cli(capsys, "eval", teacher, "--dataset", f"csv:{tmp_path / 'absent'}")
    assert_one_line_error(rc, err, "absent")
    rc, _, err = cli(capsys, "eval", teacher, "--dataset", f"imagefolder:{image_task}")
    assert_one_line_error(rc, err, "vision dataset", "text model")
    rc, _, err = cli(capsys, *train_args("nosuch:thing", tmp_path / "out"))
    assert_one_line_error(rc, err, "unknown dataset spec")
    for backbone in ("no-such-backbone", "timm:no_such_vit"):
        rc, _, err = cli(capsys, "train", "--task", "vision", "--backbone", backbone, "--dataset",
                         f"imagefolder:{image_task}", "--out", tmp_path / "out", "--no-progress", "--device", "cpu")
        assert_one_line_error(rc, err, backbone.split(":")[-1])
    rc, _, err = cli(capsys, *train_args(f"csv:{text_task}", tmp_path / "out", "--backbone", "vit-1x32"))
    assert_one_line_error(rc, err, "vit-1x32", "vision backbone")
    assert not (tmp_path / "out").exists()


def test_bad_ratios(cli_models, text_task, tmp_path, capsys):
    teacher, _, _ = cli_models
    for ratio in ("0", "1.5", "-0.1"):
        rc, _, err = cli(capsys, *train_args(f"csv:{text_task}", tmp_path / "out", "--ratio", ratio))
        assert_one_line_error(rc, err, "ratio")
        rc, _, err = cli(capsys, "explain", teacher, "--text", REVIEW, "--ratio", ratio)
        assert_one_line_error(rc, err, "ratio")
        rc, _, err = cli(capsys, "eval", teacher, "--dataset", f"csv:{text_task}", "--ratio", ratio)
        assert_one_line_error(rc, err, "ratio")
    assert not (tmp_path / "out").exists()


def test_rekd_teachers_that_do_not_fit(cli_models, bad_teachers, vision_re_ckpt, text_task, tmp_path, capsys):
    teacher, student, _ = cli_models
    out = tmp_path / "student"
    rc, _, err = cli(capsys, *train_args(f"csv:{text_task}", out, "--mode", "rekd"))
    assert_one_line_error(rc, err, "--teacher")
    cases = {"longer": ("feature grids", "max_length"), "three": ("labels",), "cls": ("CLS",)}
    for name, fragments in cases.items():
        rc, _, err = cli(capsys, *train_args(f"csv:{text_task}", out, "--mode", "rekd",
                                             "--teacher", bad_teachers[name]))
        assert_one_line_error(rc, err, *fragments)
    rc, _, err = cli(capsys, *train_args(f"csv:{text_task}", out, "--mode", "rekd", "--teacher", vision_re_ckpt))
    assert_one_line_error(rc, err, "vision model")
    rc, _, err = cli(capsys, *train_args(f"csv:{text_task}", out, "--mode", "rekd", "--teacher", tmp_path / "none"))
    assert_one_line_error(rc, err, "none")
    assert not out.exists()
    # eval and explain refuse the same teachers
    rc, _, err = cli(capsys, "eval", student, "--dataset", f"csv:{text_task}", "--teacher", bad_teachers["longer"])
    assert_one_line_error(rc, err, "feature grids")
    rc, _, err = cli(capsys, "explain", student, "--teacher", bad_teachers["longer"], "--text", REVIEW)
    assert_one_line_error(rc, err, "feature grids")
    rc, _, err = cli(capsys, "explain", student, "--teacher", vision_re_ckpt, "--text", REVIEW)
    assert_one_line_error(rc, err)
    # the 3-class teacher's own data is not the student's
    rc, _, err = cli(capsys, "eval", bad_teachers["three"], "--dataset", f"csv:{text_task}")
    assert_one_line_error(rc, err, "labels")


def test_config_file_errors(text_task, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 1\nno_such_option: 3\n")
    rc, _, err = cli(capsys, "train", "--config", bad, "--dataset", f"csv:{text_task}", "--out", tmp_path / "o")
    assert_one_line_error(rc, err, "bad.yaml", "no_such_option")
    broken = tmp_path / "broken.yaml"
    broken.write_text("epochs: [1\n")
    rc, _, err = cli(capsys, "train", "--config", broken, "--dataset", f"csv:{text_task}", "--out", tmp_path / "o")
    assert_one_line_error(rc, err, "broken.yaml", "not valid YAML")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("epochs: 1 # caf\xe9\n".encode("latin-1"))
    rc, _, err = cli(capsys, "train", "--config", latin1, "--dataset", f"csv:{text_task}", "--out", tmp_path / "o")
    assert_one_line_error(rc, err, "latin1.yaml")
    broken_json = tmp_path / "broken.json"
    broken_json.write_text('{"epochs": ')
    rc, _, err = cli(capsys, "train", "--config", broken_json, "--dataset", f"csv:{text_task}", "--out", tmp_path / "o")
    assert_one_line_error(rc, err, "broken.json", "not valid JSON")
    listing = tmp_path / "list.yaml"
    listing.write_text("- epochs\n- 1\n")
    rc, _, err = cli(capsys, "train", "--config", listing, "--dataset", f"csv:{text_task}", "--out", tmp_path / "o")
    assert_one_line_error(rc, err, "list.yaml")
    rc, _, err = cli(capsys, "train", "--config", tmp_path / "absent.yaml", "--dataset", f"csv:{text_task}",
                     "--out", tmp_path / "o")
    assert_one_line_error(rc, err, "absent.yaml")
    bad_value = tmp_path / "bad-value.yaml"
    bad_value.write_text(f"dataset: csv:{text_task}\nmode: nonsense\n")
    rc, _, err = cli(capsys, "train", "--config", bad_value, "--out", tmp_path / "o")
    assert_one_line_error(rc, err, "mode")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# real subprocesses: exit codes and stderr as a user sees them


def test_subprocess_success_and_errors(cli_models, vision_re_ckpt, tmp_path):
    teacher, _, _ = cli_models
    done = run_rekd("presets", "--json")
    assert done.returncode == 0, done.stderr
    assert {row["name"] for row in json.loads(done.stdout)} >= {"bert-1x32", "vit-1x32"}

    garbage = tmp_path / "x.png"
    garbage.write_bytes(b"not an image at all")
    cases = [
        (("explain", tmp_path / "missing-ckpt", "--text", REVIEW), "missing-ckpt"),
        (("explain", vision_re_ckpt, "--image", garbage), "not an image file"),
    ]
    for args, fragment in cases:
        done = run_rekd(*args)
        assert done.returncode != 0
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rekd: error:") and fragment in lines[0], done.stderr


# ---------------------------------------------------------------------------------------------
# two processes under Accelerate


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# A C++ std::terminate in one torchrun worker (SIGABRT; the worker wrote nothing else to stderr):
# caught once in 16 runs of the full suite on the 2-core development machine under load (two earlier
# unexplained full-suite failures may be the same), never in 50 runs of this test alone, and with too
# little output captured to say at which point of the run. It gets one relaunch, with a warning; any
# other failure, or a second abort, fails the test.
GLOO_ABORT = "terminate called without an active exception"


def _launch_two_processes(train: list) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "rekd_core.cli", *map(str, train)]
    return subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_accelerate_two_process_training(text_task, tmp_path):
    """``accelerate launch --num_processes 2 --cpu`` only starts ONE process (accelerate 1.x sends --cpu to
    its simple launcher, which needs mpirun for more); ``--multi_gpu`` starts two torchrun workers,
    which talk over gloo on the CPU when the model runs with ``--device cpu`` and no GPU is visible."""
    for attempt in (1, 2):
        out = tmp_path / f"ckpt{attempt}"
        done = _launch_two_processes(train_args(f"csv:{text_task}", out, "--mode", "re", "--epochs", 2))
        if done.returncode == 0 or GLOO_ABORT not in done.stderr or attempt == 2:
            break
        warnings.warn(f"a gloo worker aborted ({GLOO_ABORT!r}); launching once more. "
                      f"stdout:\n{done.stdout[-1500:]}", stacklevel=1)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-2000:]}\nstderr:\n{done.stderr[-4000:]}"
    config, metrics = read_config(out), read_metrics(out)
    assert config["status"] == "complete"
    assert metrics["hardware"].endswith("x2"), metrics["hardware"]  # really two processes
    assert metrics["test"]["n"] == 40  # gathered from both processes, without duplicates
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert metrics["train_examples"] == 160 and [row["epoch"] for row in read_log(out)] == [1, 2]
    # each process saw half of every epoch: 160 / 2 = 80 examples -> 5 batches of 16, x 2 epochs
    assert metrics["steps"] == 10
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    model = load_checkpoint(out)
    exp = explain(model, [REVIEW])[0]
    assert len(exp.selected) == round(0.1 * exp.num_features)


@pytest.mark.parametrize("train_limit", [None, 150])
def test_eval_on_dev_uses_the_checkpoints_own_split(text_task, trainer, capsys, tmp_path, train_limit):
    """`rekd eval --split dev` scores the dev split the run held out (its split seed, dev fraction and
    train limit), so it reproduces the dev numbers of training instead of scoring examples the model
    trained on."""
    out = trainer(f"csv:{text_task}", tmp_path / "re", seed=7, dev_fraction=0.3, train_limit=train_limit)
    dev = read_metrics(out)["dev"]
    rc, stdout, err = cli(capsys, "eval", out, "--dataset", f"csv:{text_task}", "--split", "dev", "--json")
    assert rc == 0, err
    metrics = json.loads(stdout)
    assert dev["n"] == pytest.approx(0.3 * (train_limit or 200), abs=2)
    assert metrics["n"] == dev["n"] and metrics["accuracy"] == pytest.approx(dev["accuracy"])
    assert metrics["ratio"] == pytest.approx(dev["ratio"])
