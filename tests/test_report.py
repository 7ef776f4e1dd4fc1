"""scripts/make_report.py: the report's tables, plots and captions come from the results file (older
layouts included), the findings from a file written by hand."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from rekd_core.results import READ_AT, append_result

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
    return {"epochs": 2, "run": run, "task": task, "role": role, "mode": mode, "backbone": f"{task}-{role}",
            "ratio": ratio, "seed": seed, "accuracy": accuracy, "f1": accuracy,
            "achieved_ratio": 1.0 if mode == "cls" else ratio + 0.01,
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
        rows.append(_row(f"text/variants/student-rekd-distil-prediction-s{seed}", "student", "rekd", 0.1, seed,
                         accuracy, split_seed=2026))
    rows.append(_row("text/variants/student-re-example-cost", "student", "re", 0.1, 2026, 0.81))
    rows.append(_row("text/variants/student-re-example-cost-s2027", "student", "re", 0.1, 2027, 0.83))
    for seed, accuracy in ((2026, 0.82), (2027, 0.83), (2028, 0.84)):  # best on dev, not above its RE on test
        rows.append(_row(f"text/variants/student-rekd-example-cost-s{seed}", "student", "rekd", 0.1, seed, accuracy,
                         split_seed=2026, dev_accuracy=0.9))
    rows.append(_row("text/variants/student-rekd-example-cost-decay", "student", "rekd", 0.1, 2026, 0.86))
    for row in rows:
        append_result(path, row)




def _report(make_report, tmp_path: Path, *extra: str) -> str:
    out = tmp_path / "docs" / "RESULTS.md"
    assert make_report.main(["--results", str(tmp_path / "results.csv"), "--out", str(out),
                             "--method", str(tmp_path / "METHOD.md"), "--findings", str(tmp_path / "findings.md"),
                             "--recipe", str(tmp_path / "recipe.yaml"), *extra]) == 0
    return out.read_text()


def test_report_tables_plots_and_findings(make_report, tmp_path):
    write_results(tmp_path / "results.csv")
    (tmp_path / "METHOD.md").write_text(METHOD)
    (tmp_path / "findings.md").write_text("## Findings\n\n- REKD is ahead, written by a person.\n")
    report = _report(make_report, tmp_path)
    # Main table: CLS, RE and REKD mean ± the 95% interval's half-width (t with n - 1 = 2: 4.303 x 0.01 / sqrt 3)
    assert ("| IMDB | student text-student | 0.830 ± 0.005 (1 seed, 25000 test examples) | 0.780 ± 0.025 (3 seeds) "
            "| 0.803 ± 0.014 (3 seeds) "
            "| +0.023 | BERT-Mini | 0.877 | 0.863 | 0.892 |") in report
    # a single run: the binomial interval of its test set (1.96 x sqrt(0.88 x 0.12 / 25000) = 0.004)
    assert ("| IMDB | teacher text-teacher | 0.880 ± 0.004 (1 seed, 25000 test examples) | 0.840 ± 0.005 (1 seed, "
            "25000 test examples) |") in report
    assert "text-wide" not in report.split("## Accuracy against the ratio")[0]  # a variant's backbone: not headline
    # The findings are the hand-written file, set in as it is, before the tables.
    assert report.index("- REKD is ahead, written by a person.") < report.index("## Main table")
    # The sweep: a table per group, a variant run at several ratios its own series, and its plot.
    assert "| ratio | teacher RE | student RE | student REKD | student REKD (matched-teacher) |" in report
    assert "| 0.25 | not run | 0.825 (1 seed) | 0.845 (1 seed) | 0.865 (1 seed) |" in report
    assert (tmp_path / "docs" / "results" / "text_sweep.png").stat().st_size > 10_000
    assert "| text/teacher-re | 0.10 | 199 | 0.210 | 0.050 | 0.130 |" in report  # plausibility
    # Variants: REKD against the RE of its own family, else the RE of the runs without a variant.
    assert ("| IMDB | example-cost | 0.820 ± 0.127 (2 seeds) | 0.830 ± 0.025 (3 seeds) | +0.010 (example-cost) |"
            in report)
    assert "| IMDB | example-cost-decay | not run | 0.860 (1 seed) | +0.040 (example-cost) |" in report
    assert "| IMDB | distil-prediction | not run | 0.850 ± 0.127 (2 seeds) | +0.070 (no variant) |" in report
    # Nothing read at several ratios: the section says so instead of a table.
    assert "## Models that hold at any ratio" in report
    assert "Nothing read at several ratios yet: not measured yet." in report
    # No targets of one issue and no generated prose about the findings.
    assert "Targets of issue" not in report and "What limits the targets" not in report


def test_mean_and_95_percent_interval(make_report):
    from report.common import ci95, mean_ci

    values = make_report.sys.modules["pandas"].Series([0.78, 0.79, 0.77])
    assert ci95(values) == pytest.approx(4.303 * 0.01 / 3 ** 0.5)
    assert mean_ci(values) == "0.780 ± 0.025 (3 seeds)" and mean_ci(values[:1]) == "0.780 (1 seed)"
    assert mean_ci(values[:0]) == "not run"


def test_models_read_at_many_ratios(make_report, tmp_path):
    """The range model read at each ratio against the fixed-ratio models at their own ratios and the
    fixed-ratio model read away from its ratio: a plot, and the gap at each ratio, "not measured yet" where
    a reading is missing."""
    rows = [_row("text/student-re", "student", "re", 0.1, 2026, 0.83),
            _row("text/seeds/student-re-s2027", "student", "re", 0.1, 2027, 0.81)]
    rows += [_row(f"text/sweep/student-re-r{ratio}", "student", "re", ratio, 2026, accuracy)
             for ratio, accuracy in ((0.05, 0.70), (0.5, 0.80))]
    rows.append(_row("text/range/student-re", "student", "re", 0.1, 2026, 0.815, ratio_range="0.05-0.5"))
    for ratio, accuracy in ((0.05, 0.69), (0.1, 0.81)):  # not yet read at 0.5
        rows.append(_row("text/range/student-re", "student", "re", 0.1, 2026, accuracy, ratio_range="0.05-0.5",
                         source=READ_AT, read_ratio=ratio, test_examples=5000))
    for ratio, accuracy in ((0.05, 0.60), (0.1, 0.82), (0.5, 0.65)):
        rows.append(_row("text/student-re", "student", "re", 0.1, 2026, accuracy, source=READ_AT, read_ratio=ratio))
    for row in rows:
        append_result(tmp_path / "results.csv", row)
    report = _report(make_report, tmp_path)
    section = report[report.index("## Models that hold at any ratio"):]
    assert "| ratio | student RE (text-student) |" in section
    assert "| 0.05 | -0.010, yes (0.690 / 0.700 / 0.600) |" in section
    assert "| 0.10 | -0.010, yes (0.810 / 0.820 / 0.820) |" in section  # fixed: the mean of the two seeds
    assert "| 0.50 | not measured yet (– / 0.800 / 0.650) |" in section
    assert (tmp_path / "docs" / "results" / "text_ratio_range.png").stat().st_size > 10_000
    # The range model and the readings stay out of the main table and the sweep.
    assert "| IMDB | student text-student | not run | 0.820 ± 0.127 (2 seeds) |" in report
    assert ("| ratio | student RE |\n| --- | --- |\n| 0.05 | 0.700 (1 seed) |\n| 0.10 | 0.820 ± 0.127 (2 seeds) |"
            in report)


def test_a_variant_named_as_the_headline_is_reported_as_it(make_report, tmp_path):
    """A recipe whose ``headline`` names a variant of a group: that variant's runs are the group's main
    table row and solid sweep series; the runs without a variant follow under the given name."""
    rows = [_row("vision/teacher-cls", "teacher", "cls", 0.15, 2026, 0.56),
            _row("vision/teacher-re", "teacher", "re", 0.15, 2026, 0.41),
            _row("vision/student-cls", "student", "cls", 0.15, 2026, 0.51),
            _row("vision/variants/teacher-cls-pconv", "teacher", "cls", 0.15, 2026, 0.58, backbone="vit-p"),
            _row("vision/variants/teacher-re-pconv", "teacher", "re", 0.15, 2026, 0.46, backbone="vit-p")]
    for seed, (re_acc, rekd_acc, p_re, p_rekd) in zip((2026, 2027, 2028),
                                                      ((0.41, 0.40, 0.42, 0.43), (0.42, 0.39, 0.42, 0.44),
                                                       (0.41, 0.40, 0.41, 0.43))):
        rows += [_row(f"vision/seeds/student-re-s{seed}", "student", "re", 0.15, seed, re_acc),
                 _row(f"vision/seeds/student-rekd-s{seed}", "student", "rekd", 0.15, seed, rekd_acc),
                 _row(f"vision/variants/student-re-pconv-s{seed}", "student", "re", 0.15, seed, p_re,
                      backbone="vit-s-p"),
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
        append_result(tmp_path / "results.csv", row)
    (tmp_path / "recipe.yaml").write_text("headline:\n  vision: {variant: pconv, unnamed: linear}\nruns: []\n")
    report = _report(make_report, tmp_path)
    table = report[report.index("## Main table"):report.index("## Accuracy against the ratio")]
    assert table.index("| CIFAR-10 | student vit-s-p | not run | 0.417 ± 0.014 (3 seeds) | 0.433 ± 0.014 (3 seeds) "
                       "| +0.017 |") < table.index(
        "| CIFAR-10 | student vision-student (linear) | 0.510 ± 0.006 (1 seed, 25000 test examples) |")
    assert "| ratio | teacher RE (pconv, headline) | student RE (pconv, headline) | student REKD (pconv, headline) " \
           "| student RE (linear) |" in report
    assert ("| CIFAR-10 | pconv (headline) | 0.417 ± 0.014 (3 seeds) | 0.433 ± 0.014 (3 seeds) | +0.017 (pconv) |"
            in report)
    assert "| CIFAR-10 | distil-prediction | not run | 0.420 (1 seed) | +0.007 (linear) |" in report

    (tmp_path / "recipe.yaml").write_text("runs: []\n")  # no headline named: the runs without a variant lead
    report = _report(make_report, tmp_path)
    assert "(linear)" not in report and "| CIFAR-10 | pconv | " in report


def test_range_comparison_sets_a_longer_trained_range_model_aside():
    """The range series compares like with like: a range model trained for more epochs than the fixed-ratio
    models of its kind is not averaged into it."""
    import pandas as pd

    from rekd_core.results import FIXED, RANGE, range_comparison

    kind = dict(task="vision", group="vision", role="student", mode="rekd", family="linear", backbone="vit-2x64")

    def row(run, accuracy, epochs, source, ratio_range):
        return {**kind, "run": run, "accuracy": accuracy, "epochs": epochs, "source": source,
                "ratio_range": ratio_range, "ratio": 0.15, "read_ratio": 0.15}

    frame = pd.DataFrame([row("fixed", 0.40, 3, "training", ""), row("range", 0.38, 3, "read_at", "0.05-0.5"),
                          row("range-6ep", 0.41, 6, "read_at", "0.05-0.5")])
    table = range_comparison(frame).set_index("series")
    assert table.loc[RANGE, "accuracy"] == pytest.approx(0.38) and table.loc[RANGE, "run"] == "range"
    assert table.loc[FIXED, "accuracy"] == pytest.approx(0.40)


def test_a_family_trained_over_ratios_only_is_in_the_main_table_with_its_base_familys_cls(make_report, tmp_path):
    """The text headline is trained over ratios (minilm-range): its rows read at the headline ratio lead the main
    table, beside the CLS runs of its base family (minilm); a family with fixed-ratio runs keeps its range runs out."""
    path = tmp_path / "results.csv"
    rows = [_row("text/variants/teacher-cls-minilm", "teacher", "cls", 1.0, 2026, 0.873, test_examples=5000),
            _row("text/variants/teacher-re-minilm-range", "teacher", "re", 0.1, 2026, 0.865, test_examples=5000,
                 ratio_range="0.05-0.5"),
            _row("text/teacher-re", "teacher", "re", 0.1, 2026, 0.77),
            _row("text/range/teacher-re", "teacher", "re", 0.1, 2026, 0.99, ratio_range="0.05-0.5")]
    for row in rows:
        append_result(path, row)
    (tmp_path / "METHOD.md").write_text(METHOD)
    (tmp_path / "findings.md").write_text("")
    (tmp_path / "recipe.yaml").write_text("headline:\n  text: {variant: minilm-range, unnamed: scratch}\nruns: []\n")
    report = _report(make_report, tmp_path)
    table = report[report.index("## Main table"):report.index("## Variants")]
    assert ("| IMDB | teacher text-teacher | 0.873 ± 0.009 (1 seed, 5000 test examples) (minilm) "
            "| 0.865 ± 0.009 (1 seed, 5000 test examples) |") in table
    assert "| IMDB | teacher text-teacher (scratch) | not run | 0.770 ± 0.005 (1 seed, 25000 test examples) |" in table
