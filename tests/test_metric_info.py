"""rekd_core/metric_info.py: one name, label, meaning and direction per metric, read by the dashboard's tables."""
from __future__ import annotations

from rekd_core.metric_info import METRICS, describe
from rekd_core.results import NUMERIC_FIELDS


def test_every_metric_has_a_short_label_a_meaning_and_a_direction_where_one_is_better():
    for name, info in METRICS.items():
        assert info.name == name and 0 < len(info.label) <= 12 and info.meaning.endswith(".")
        assert info.better in ("higher", "lower", None)
    assert METRICS["sufficiency"].better == "lower" and METRICS["comprehensiveness"].better == "higher"
    achieved = METRICS["achieved_ratio"]
    assert achieved.better is None and achieved.help == achieved.meaning
    assert METRICS["accuracy"].help.endswith("(higher is better)")


def test_the_results_files_metrics_are_described():
    measured = [name for name in NUMERIC_FIELDS if name in METRICS]
    assert {"accuracy", "f1", "teacher_agreement", "teacher_mask_iou", "sufficiency", "comprehensiveness",
            "plausibility_f1"} <= set(measured)


def test_describe_reads_roles_and_aggregates():
    assert describe("teacher_mask_iou") == ("IoU w/ T", METRICS["teacher_mask_iou"].help)
    label, help_text = describe("student_sufficiency")
    assert label == "S suff." and "The student's suff." in help_text and "lower is better" in help_text
    assert describe("accuracy_std") == ("acc ±", METRICS["accuracy"].help + " (standard deviation over seeds)")
    assert describe("teacher_plausibility_f1_mean")[0] == "T F1 human"
    assert describe("input") is None and describe("seed_mean") is None and describe("teacher_input") is None
