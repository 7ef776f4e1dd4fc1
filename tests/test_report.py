"""scripts/make_report.py: the report and its plots come from the results file, and the targets are
checked against the numbers in it."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

import json

from rekd_core.sweep import append_result

REPO = Path(__file__).resolve().parents[1]

METHOD = """# Method

## The paper's main result (test accuracy, mean of 10 seeds)

| dataset | student | CLS | RE | REKD | REKD - RE |
| --- | --- | --- | --- | --- | --- |
| CIFAR-10 | ViT-Tiny | .968 | .797 | .936 | +.139 |
| IMDB | BERT-Mini | .877 | .863 | .892 | +.029 |

Also reported: nothing else.
"""


@pytest.fixture(scope="module")
def make_report():
    spec = importlib.util.spec_from_file_location("make_report", REPO / "scripts" / "make_report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _row(run: str, role: str, mode: str, ratio: float, seed: int, accuracy: float, **extra) -> dict:
    task = run.split("/")[0]
    return {"epochs": 2, "run": run, "task": task, "role": role, "mode": mode, "backbone": f"{task}-{role}", "ratio": ratio,
            "seed": seed, "accuracy": accuracy, "f1": accuracy, "achieved_ratio": 1.0 if mode == "cls" else ratio + 0.01,
            "parameters": 4_000_000 if role == "teacher" else 500_000, "test_examples": 25_000, "wall_time_s": 600,
            "hardware": "cpu x1", "kept": True, **extra}


def write_results(path: Path) -> None:
    rows = [_row("text/teacher-cls", "teacher", "cls", 0.1, 2026, 0.88),
            _row("text/teacher-re", "teacher", "re", 0.1, 2026, 0.84, plausibility_f1=0.21, plausibility_iou_f1=0.05,
                 random_plausibility_f1=0.13, plausibility_examples=199),
            _row("text/student-cls", "student", "cls", 0.1, 2026, 0.83),
            _row("text/variants/teacher-cls-long", "teacher", "cls", 0.1, 2026, 0.99),
            _row("text/variants/teacher-cls-wide", "teacher", "cls", 0.1, 2026, 0.5, backbone="text-wide")]
    for seed, (re_acc, rekd_acc) in zip((2026, 2027, 2028), ((0.78, 0.80), (0.79, 0.81), (0.77, 0.80))):
        rows.append(_row(f"text/seeds/student-re-s{seed}", "student", "re", 0.1, seed, re_acc,
                         teacher_agreement=0.6, teacher_mask_iou=0.2, split_seed=2026))
        rows.append(_row(f"text/seeds/student-rekd-s{seed}", "student", "rekd", 0.1, seed, rekd_acc,
                         teacher_agreement=0.8, teacher_mask_iou=0.5, split_seed=2026, dev_accuracy=0.81,
                         ratio_argmax=0.12,  # the last seed trained before its teacher was shipped
                         teacher="runs/text/teacher-re" if seed == 2028 else "checkpoints/text/teacher-re"))
    for ratio in (0.05, 0.25):
        rows.append(_row(f"text/sweep/student-re-r{ratio}", "student", "re", ratio, 2026, 0.7 + ratio / 2))
        rows.append(_row(f"text/sweep/student-rekd-r{ratio}", "student", "rekd", ratio, 2026, 0.72 + ratio / 2))
    for ratio in (0.05, 0.25):
        rows.append(_row(f"text/variants/student-rekd-matched-teacher-r{ratio}", "student", "rekd", ratio, 2026,
                         0.74 + ratio / 2, teacher=f"runs/text/sweep/teacher-re-r{ratio}"))
    rows.append(_row("text/sweep/teacher-re-r0.05", "teacher", "re", 0.05, 2026, 0.625))
    rows.append(_row("text/variants/teacher-re-4ep", "teacher", "re", 0.1, 2026, 0.845, epochs=4))
    for seed, accuracy in ((2026, 0.81), (2027, 0.85)):  # the best teacher RE of any run is its second seed
        rows.append(_row(f"text/variants/teacher-re-dropout-s{seed}", "teacher", "re", 0.1, seed, accuracy,
                         split_seed=2026))
    for seed, accuracy in ((2026, 0.84), (2027, 0.86)):
        rows.append(_row(f"text/variants/student-rekd-distil-prediction-s{seed}", "student", "rekd", 0.1, seed, accuracy,
                         split_seed=2026))
    rows.append(_row("text/variants/student-re-example-cost", "student", "re", 0.1, 2026, 0.81))
    rows.append(_row("text/variants/student-re-example-cost-s2027", "student", "re", 0.1, 2027, 0.83))
    for seed, accuracy in ((2026, 0.82), (2027, 0.83), (2028, 0.84)):  # best on dev, not above its RE on test
        rows.append(_row(f"text/variants/student-rekd-example-cost-s{seed}", "student", "rekd", 0.1, seed, accuracy,
                         split_seed=2026, dev_accuracy=0.9))
    rows.append(_row("text/variants/student-rekd-example-cost-decay", "student", "rekd", 0.1, 2026, 0.86))
    for row in rows:
        append_result(path, row)


DIAGNOSTICS = """checkpoint,task,mode,ratio,n,topk_accuracy,argmax_accuracy,argmax_ratio,argmax_ratio_lowest_class,lowest_class,argmax_ratio_highest_class,highest_class,topk_content_removed_accuracy,argmax_content_removed_accuracy,random_mask_accuracy,bottomk_accuracy,fixed_positions_accuracy
checkpoints/text/teacher-re,text,re,0.1,2000,0.70,0.80,0.15,0.06,pos,0.24,neg,0.5,0.5,0.51,0.40,0.55
checkpoints/vision/student-re,vision,re,0.15,2000,0.34,0.10,0.0,0.0,airplane,0.0,airplane,0.1,0.1,0.42,0.20,0.30
runs/text/seeds/student-rekd-s2026,text,rekd,0.1,2000,0.75,0.84,0.12,0.04,pos,0.20,neg,0.5,0.5,0.50,0.49,0.50
runs/text/seeds/student-rekd-s2027,text,rekd,0.1,2000,0.80,0.80,0.10,0.09,neg,0.11,pos,0.5,0.5,0.50,0.47,0.52
"""


def write_teacher_log(checkpoints: Path) -> None:
    """A shipped text teacher whose dev accuracy falls while its training loss is low (overfitting)."""
    teacher = checkpoints / "text" / "teacher-re"
    teacher.mkdir(parents=True)
    epochs = [{"epoch": 1, "train_ce": 0.25, "train_ratio": 0.14, "dev_loss": 0.57, "dev_l_re": 0.57,
               "dev_accuracy": 0.76, "dev_recall_pos": 0.57},
              {"epoch": 2, "train_ce": 0.21, "train_ratio": 0.13, "dev_loss": 0.53, "dev_l_re": 0.53,
               "dev_accuracy": 0.71, "dev_recall_pos": 0.48}]
    (teacher / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    (teacher / "metrics.json").write_text(json.dumps({"best_epoch": 2}))
    # ... and a REKD student whose training selection doubles in its second epoch (the headline's first seed)
    student = checkpoints / "text" / "seeds" / "student-rekd-s2026"
    student.mkdir(parents=True)
    epochs = [{"epoch": 1, "tau": 0.76, "train_ratio": 0.11, "train_kd_r": 30.0, "train_sel": 100.0, "dev_accuracy": 0.77,
               "dev_ratio_argmax": 0.12},
              {"epoch": 2, "tau": 0.12, "train_ratio": 0.24, "train_kd_r": 36.0, "train_sel": 900.0, "dev_accuracy": 0.56,
               "dev_ratio_argmax": 0.13}]
    (student / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    config = {"format": "rekd-checkpoint", "version": 1, "task": "text", "mode": "rekd", "ratio": 0.1, "labels": ["neg", "pos"],
              "backbone": {}, "dropout": 0.1, "processor": {}, "training": {"alpha": 0.5, "lambda_r": 0.5, "lambda_sel": 1e-4}}
    (student / "config.json").write_text(json.dumps(config))


def test_report_tables_targets_and_plots(make_report, tmp_path):
    results, method, out = tmp_path / "results.csv", tmp_path / "METHOD.md", tmp_path / "docs" / "RESULTS.md"
    write_results(results)
    method.write_text(METHOD)
    write_teacher_log(tmp_path / "checkpoints")
    (tmp_path / "diagnostics.csv").write_text(DIAGNOSTICS)
    assert make_report.main(["--results", str(results), "--out", str(out), "--method", str(method),
                             "--checkpoints", str(tmp_path / "checkpoints"),
                             "--diagnostics", str(tmp_path / "diagnostics.csv")]) == 0
    report = out.read_text()
    # Main table: CLS, RE and REKD mean +- std over the seeds, beside the paper's BERT-Mini row.
    assert ("| IMDB | student text-student | 0.830 (1 seed) | 0.780 ± 0.010 (3 seeds) | 0.803 ± 0.006 (3 seeds) "
            "| +0.023 | BERT-Mini | 0.877 | 0.863 | 0.892 | +0.029 |") in report
    # Targets: the teacher misses 0.85, REKD beats RE by more than the seed std, one teacher seed only.
    assert "| text teacher RE accuracy ≥ 0.85 | 0.8400 (1 seed) | **no** |" in report
    assert "| text student REKD − RE > seed std | +0.0233 against std 0.0100 (3 / 3 seeds) | yes |" in report
    assert "| text headline trio at 3 seeds | teacher RE 1, student RE 3, student REKD 3 | **no** |" in report
    # ... and beside it, the REKD variant that dev accuracy alone would choose, on the same rule
    assert ("| text student REKD − RE > seed std, the REKD variant chosen on dev (not the headline) | example-cost: "
            "+0.0100 against std 0.0141 (2 / 3 seeds) | **no** |") in report
    assert "largest gap 0.0100 | yes |" in report
    assert "| text/teacher-re | 0.10 | 199 | 0.210 | 0.050 | 0.130 |" in report  # plausibility
    # The best teacher of any run is one seed: its model's mean over its seeds stands beside it.
    assert "RE at 0.10 0.850 (`text/variants/teacher-re-dropout-s2027`, its model 0.830 ± 0.028 (2 seeds))" in report
    assert "CLS 0.990 (`text/variants/teacher-cls-long`)" in report
    assert "Teacher / student parameters (generator + predictor): text 4.00 M / 0.50 M = 8.0x" in report
    # Findings, from the numbers: the teacher is ahead of the student RE and overfits (its log).
    assert "The teacher RE is ahead of the student RE (0.840 against 0.780)." in report
    assert "prediction agreement 0.600 (RE) → 0.800 (REKD), mask IoU 0.200 → 0.500" in report
    assert "dev accuracy went from 0.760 → 0.710 over the epochs: it overfits the training set." in report
    assert ("Trained for longer than the headline's 2 epochs, the RE teacher reaches 0.845 in 4 epochs "
            "(`text/variants/teacher-re-4ep`, 0.17 h).") in report
    assert ("Distilling one part from the headline teacher (the paper's ablation): only the prediction, 0.850 ± 0.014 "
            "(2 seeds). The student RE is 0.780 ± 0.010 (3 seeds) and the full REKD 0.803 ± 0.006 (3 seeds).") in report
    assert ("The REKD student selected 0.240 of the features while training in epoch 2 (target 0.10; dev accuracy "
            "over the epochs 0.770 → 0.560)") in report
    assert "(epoch 1 (ending at tau 0.76): 7.50 against 0.005; epoch 2 (ending at tau 0.12): 9.00 against 0.045)" in report
    assert ("Its own argmax selection on dev over the epochs, 0.120 → 0.130, stays near the target: what widens is the "
            "sampled training masks") in report
    # Selection diagnostics: the table and what it shows.
    assert ("| checkpoints/text/teacher-re | RE | 0.10 | 0.700 | 0.800 | 0.150 (pos 0.060 – neg 0.240) | 0.500 / 0.500 "
            "| 0.510 | 0.400 | 0.550 |") in report
    assert "2 of 4 generators select, on their own, at least twice as much of one class" in report
    assert "(top-k accuracy below argmax accuracy: 2 of them)" in report
    assert "1 of 4 models do better on a random selection of the same size than on their own top-k selection " \
           "(checkpoints/vision/student-re)" in report
    # ... though its ranking is informative: what it ranks lowest scores far below what it ranks highest
    assert ("Yet 1 of those rank the features informatively: the k they rank lowest score well below the k they rank "
            "highest (checkpoints/vision/student-re: bottom-k 0.200, top-k 0.340, random 0.420, fixed positions 0.300).") in report
    # the student with its teacher's skew, not the one without it
    assert ("1 REKD students select most of the class that their teacher selects most of: runs/text/seeds/student-rekd-s2026 "
            "(pos 0.040 – neg 0.200; top-k 0.750, argmax 0.840) from checkpoints/text/teacher-re (pos 0.060 – neg 0.240).") in report
    assert "no model is above chance" in report
    # Rows too far from their run's test accuracy for sampling alone are flagged as measured on an older checkpoint.
    assert ("**Stale:** checkpoints/text/teacher-re (top-k 0.700 here, test accuracy 0.840); "
            "runs/text/seeds/student-rekd-s2026 (top-k 0.750 here, test accuracy 0.800) – ") in report
    # A variant beside the headline runs of its role, mode and ratio, and kept out of the main table,
    # even with a backbone of its own.
    assert "| text/variants/teacher-cls-wide | 0.5000 (1 seed) |" in report and "teacher text-wide" not in report
    assert "| text/variants/student-re-example-cost | 0.8200 ± 0.0141 (2 seeds) |" in report
    assert "| 0.7800 ± 0.0100 (3 seeds) |" in report
    # ... and a variant that extends another's name beside that one (one change more), named.
    assert "| text/variants/student-rekd-example-cost | 0.8300 ± 0.0100 (3 seeds) |" in report
    assert "| 0.8033 ± 0.0058 (3 seeds) |\n| text/variants/student-rekd-example-cost-decay | 0.8600 (1 seed) |" in report
    assert report.count("| example-cost: 0.8300 ± 0.0100 (3 seeds) |") == 1
    # A variant run at several ratios is its own series of the sweep, and each of its points is set
    # beside the sweep's run of the same model and ratio.
    assert "| student RE | student REKD | student REKD (matched-teacher) |" in report
    assert "| 0.25 | not run | 0.825 (1 seed); achieved 0.260 | 0.845 (1 seed); achieved 0.260 | 0.865 (1 seed)" in report
    assert "| text/variants/student-rekd-matched-teacher-r0.05 | 0.7650 (1 seed) |" in report
    # each variant's teacher, read as a run name with its test accuracy where the results file has it
    assert "| text/sweep/teacher-re-r0.05 (0.625) |" in report and "| runs/text/sweep/teacher-re-r0.25 |" in report
    assert report.count("| 0.7450 (1 seed) |") == 1  # the sweep's REKD at 0.05, beside the matched variant
    # The one RE run on its own seed's split (written before split_seed: its seed) is named.
    assert "1 RE / REKD runs were trained before" in report
    assert "gives leak-free epoch choices:\n\n`text/variants/student-re-example-cost-s2027`.\n" in report
    # Every REKD against its RE counterpart (the RE variant of the same name, else the RE runs without a variant);
    # the choice among them is made on dev accuracy alone.
    assert ("| text | headline (the paper's REKD) | text/teacher-re (0.840) | 0.1200 | 0.8100 | 0.8033 ± 0.0058 (3 seeds) | headline: 0.7800 ± 0.0100 "
            "(3 seeds) | +0.0233 against 0.0100 | yes |") in report
    assert ("| text | example-cost |  |  | 0.9000 | 0.8300 ± 0.0100 (3 seeds) | example-cost: 0.8200 ± 0.0141 (2 seeds) "
            "| +0.0100 against 0.0141 | **no** |") in report
    assert "| text | distil-prediction |  |  |  | 0.8500 ± 0.0141 (2 seeds) |" in report
    assert ("Chosen on dev alone, among the REKD rows with at least 3 seeds and their dev accuracies: text: "
            "example-cost (dev 0.9000; test 0.8300, does not clear the bar).") in report
    # Training curves of the shipped model, its kept epoch in bold.
    assert "| text/teacher-re | **2** | 0.210 | 0.130 | 0.530 | 0.710 | 0.4800 |" in report
    # The limits: the teachers' lead at CLS, and how far dev runs above test (six runs record a dev accuracy:
    # the REKD seeds 0.81 against 0.80, 0.81, 0.80; the example-cost seeds 0.90 against 0.82, 0.83, 0.84).
    assert "With every feature read, the teacher leads the student by +0.050 (CLS 0.880 against 0.830)." in report
    assert ("Dev minus test accuracy over the 6 text runs that record both: +0.038 ± 0.035; a dev figure overstates "
            "the test set's. IMDB's test reviews are of other movies") in report
    # The sweep plots' CLS levels are the headline CLS runs, not a CLS recipe variant.
    assert "Dotted lines, every feature read (the headline CLS runs): teacher CLS 0.880 (1 seed); student CLS 0.830 (1 seed)." in report
    plot = out.parent / "results" / "text_sweep.png"
    assert plot.is_file() and plot.stat().st_size > 10_000 and "(results/text_sweep.png)" in report


def test_report_without_the_paper(make_report, tmp_path):
    results, out = tmp_path / "results.csv", tmp_path / "RESULTS.md"
    write_results(results)
    make_report.main(["--results", str(results), "--out", str(out), "--method", str(tmp_path / "missing.md"),
                      "--checkpoints", str(tmp_path / "no-checkpoints"), "--diagnostics", str(tmp_path / "none.csv")])
    report = out.read_text()
    assert "| IMDB | student text-student | 0.830 (1 seed) |" in report
    assert "Training curves" not in report and "training cross-entropy" not in report
    assert "How the selections behave" not in report


def test_report_reads_diagnostics_written_before_the_bottom_k_and_fixed_position_columns(make_report, tmp_path):
    results, out, diagnostics = tmp_path / "results.csv", tmp_path / "RESULTS.md", tmp_path / "diagnostics.csv"
    write_results(results)
    old = [line.rsplit(",", 2)[0] for line in DIAGNOSTICS.splitlines()]  # drop bottomk and fixed_positions accuracy
    diagnostics.write_text("\n".join(old) + "\n")
    make_report.main(["--results", str(results), "--out", str(out), "--method", str(tmp_path / "missing.md"),
                      "--checkpoints", str(tmp_path / "no-checkpoints"), "--diagnostics", str(diagnostics)])
    report = out.read_text()
    assert "| checkpoints/vision/student-re | RE | 0.15 | 0.340 | 0.100 |" in report
    assert "| 0.420 | — | — |" in report and "rank the features informatively" not in report


def test_a_variant_named_as_the_headline_is_reported_as_it(make_report, tmp_path):
    """A recipe whose ``headline`` names a variant of a group: that variant's runs are the group's main
    table row, targets and solid sweep series; the runs without a variant follow under the given name."""
    results, out, recipe = tmp_path / "results.csv", tmp_path / "RESULTS.md", tmp_path / "recipe.yaml"
    rows = [_row("vision/teacher-cls", "teacher", "cls", 0.15, 2026, 0.56),
            _row("vision/teacher-re", "teacher", "re", 0.15, 2026, 0.41),
            _row("vision/student-cls", "student", "cls", 0.15, 2026, 0.51),
            _row("vision/variants/teacher-cls-pconv", "teacher", "cls", 0.15, 2026, 0.58, backbone="vit-p"),
            _row("vision/variants/teacher-re-pconv", "teacher", "re", 0.15, 2026, 0.46, backbone="vit-p")]
    for seed, (re_acc, rekd_acc, p_re, p_rekd) in zip((2026, 2027, 2028), ((0.41, 0.40, 0.42, 0.43), (0.42, 0.39, 0.42, 0.44),
                                                                            (0.41, 0.40, 0.41, 0.43))):
        rows += [_row(f"vision/seeds/student-re-s{seed}", "student", "re", 0.15, seed, re_acc),
                 _row(f"vision/seeds/student-rekd-s{seed}", "student", "rekd", 0.15, seed, rekd_acc),
                 _row(f"vision/variants/student-re-pconv-s{seed}", "student", "re", 0.15, seed, p_re, backbone="vit-s-p"),
                 _row(f"vision/variants/student-rekd-pconv-s{seed}", "student", "rekd", 0.15, seed, p_rekd,
                      backbone="vit-s-p", dev_accuracy=0.44)]
    for ratio in (0.05, 0.5):
        rows += [_row(f"vision/sweep/student-re-r{ratio}", "student", "re", ratio, 2026, 0.3 + ratio / 4),
                 _row(f"vision/variants/student-re-pconv-r{ratio}", "student", "re", ratio, 2026, 0.32 + ratio / 4,
                      backbone="vit-s-p")]
    for seed, (re_acc, rekd_acc) in zip((2026, 2027), ((0.44, 0.47), (0.45, 0.47))):  # a second headline ratio, 2 seeds
        suffix = "" if seed == 2026 else f"-s{seed}"
        rows += [_row(f"vision/variants/student-re-pconv-r0.25{suffix}", "student", "re", 0.25, seed, re_acc,
                      backbone="vit-s-p"),
                 _row(f"vision/variants/student-rekd-pconv-r0.25{suffix}", "student", "rekd", 0.25, seed, rekd_acc,
                      backbone="vit-s-p"),
                 _row(f"vision/sweep/student-rekd-r0.25{suffix}", "student", "rekd", 0.25, seed, 0.3)]  # linear: not it
    rows.append(_row("vision/variants/student-rekd-distil-prediction", "student", "rekd", 0.15, 2026, 0.42))
    for row in rows:
        append_result(results, row)
    recipe.write_text("headline:\n  vision: {variant: pconv, unnamed: linear}\nruns: []\n")
    args = ["--results", str(results), "--out", str(out), "--method", str(tmp_path / "missing.md"),
            "--checkpoints", str(tmp_path / "none"), "--diagnostics", str(tmp_path / "none.csv")]

    make_report.main([*args, "--recipe", str(recipe)])
    report = out.read_text()
    table = report[report.index("## Main table"):report.index("## Targets")]
    assert table.index("| CIFAR-10 | student vit-s-p | not run | 0.417 ± 0.006 (3 seeds) | 0.433 ± 0.006 (3 seeds) | +0.017 |") \
        < table.index("| CIFAR-10 | student vision-student (linear) | 0.510 (1 seed) | 0.413 ± 0.006 (3 seeds) |")
    assert "| vision teacher RE accuracy ≥ 0.60 | 0.4600 (1 seed) | **no** |" in report
    assert "| vision student REKD − RE > seed std | +0.0167 against std 0.0058 (3 / 3 seeds) | yes |" in report
    # dev accuracy alone picks the headline itself: no second targets row
    assert "vision: pconv (headline) (dev 0.4400;" in report and "chosen on dev (not the headline)" not in report
    assert "| vision | pconv (headline) | " in report and "| pconv (headline): 0.4167 ± 0.0058 (3 seeds)" in report
    assert "| vision | linear | " in report and "| linear: 0.4133 ± 0.0058 (3 seeds)" in report
    assert ("The same rule away from the headline ratio, for the headline students, at each ratio where their RE "
            "and REKD both have at least 2 seeds (supplementary: the target is set at the headline ratio): vision at "
            "0.25: REKD 0.4700 ± 0.0000 (2 seeds) against RE 0.4450 ± 0.0071 (2 seeds), +0.0250 against 0.0071 "
            "(clears the rule there).") in report
    assert "| target ratio | teacher RE | student RE | student REKD | student RE (linear) |" in report
    assert "Dotted lines, every feature read (the headline CLS runs): teacher CLS 0.580 (1 seed)." in report
    # the paper's ablation was run on the linear models: it is set beside theirs, not the headline's
    assert ("Distilling one part from the linear teacher (the paper's ablation): only the prediction, 0.420 (1 seed). "
            "The student RE is 0.413 ± 0.006 (3 seeds) and the full REKD 0.397 ± 0.006 (3 seeds).") in report

    make_report.main([*args, "--recipe", str(tmp_path / "no-headline.yaml")])  # the runs without a variant lead
    report = out.read_text()
    assert "| vision student REKD − RE > seed std | -0.0167 against std 0.0058 (3 / 3 seeds) | **no** |" in report
    assert "(linear)" not in report and "| vision | pconv | " in report


def test_a_headline_of_one_seed_asks_for_seeds(make_report, tmp_path):
    """Before the seeds are run, the REKD > RE row has no spread to beat: it says so, not "nan"."""
    results, out = tmp_path / "results.csv", tmp_path / "RESULTS.md"
    for row in (_row("text/teacher-re", "teacher", "re", 0.1, 2026, 0.84),
                _row("text/student-re", "student", "re", 0.1, 2026, 0.78),
                _row("text/student-rekd", "student", "rekd", 0.1, 2026, 0.80)):
        append_result(results, row)
    make_report.main(["--results", str(results), "--out", str(out), "--method", str(tmp_path / "missing.md"),
                      "--checkpoints", str(tmp_path / "none"), "--diagnostics", str(tmp_path / "none.csv")])
    report = out.read_text()
    assert "| text student REKD − RE > seed std | +0.0200 against std — (1 / 1 seeds) | needs seeds |" in report
    assert "nan" not in report


def test_rekd_gain_is_plotted_against_the_teachers_lead(make_report, tmp_path):
    """Each REKD family's gain over its RE against its teacher's lead over that RE: three families whose
    gain is the lead plus 0.01 correlate perfectly; a teacher is found under runs/ or checkpoints/."""
    results, out = tmp_path / "results.csv", tmp_path / "docs" / "RESULTS.md"
    rows = [_row("text/teacher-re", "teacher", "re", 0.1, 2026, 0.80),
            _row("text/variants/teacher-re-a", "teacher", "re", 0.1, 2026, 0.82),
            _row("text/variants/teacher-re-b", "teacher", "re", 0.1, 2026, 0.84)]
    for i, seed in enumerate((2026, 2027, 2028)):
        rows.append(_row(f"text/seeds/student-re-s{seed}", "student", "re", 0.1, seed, 0.79 + i / 100))
        for family, teacher, base in (("", "checkpoints/text/teacher-re", 0.80), ("-a", "runs/text/variants/teacher-re-a", 0.82),
                                      ("-b", "checkpoints/text/variants/teacher-re-b", 0.84)):
            name = f"text/seeds/student-rekd-s{seed}" if not family else f"text/variants/student-rekd{family}-s{seed}"
            rows.append(_row(name, "student", "rekd", 0.1, seed, base + i / 100, teacher=teacher))
    for row in rows:
        append_result(results, row)
    make_report.main(["--results", str(results), "--out", str(out), "--method", str(tmp_path / "missing.md"),
                      "--checkpoints", str(tmp_path / "none"), "--diagnostics", str(tmp_path / "none.csv")])
    report = out.read_text()
    assert "Pearson correlation of gain and lead: text r = 1.00 over 3 families." in report
    plot = out.parent / "results" / "rekd_gain.png"
    assert plot.is_file() and plot.stat().st_size > 10_000 and "(results/rekd_gain.png)" in report
    runs = make_report.pd.read_csv(results)
    runs["teacher"] = runs.teacher.fillna("")
    students = runs[runs.run.str.startswith("text/variants/student-rekd-a")]
    assert make_report.teacher_accuracy(students, runs) == pytest.approx(0.82)
    assert math.isnan(make_report.teacher_accuracy(runs[runs.run == "text/seeds/student-re-s2026"], runs))  # names none
