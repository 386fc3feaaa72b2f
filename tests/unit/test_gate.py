"""Gate decisions: every failure names the check, the value and the threshold."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushbutton.config import REPO_ROOT
from pushbutton.gate import (
    GateReport,
    champion_check,
    comparison_blocker,
    compute_metrics,
    golden_check,
    signature_check,
    skipped_comparison,
    threshold_checks,
)
from pushbutton.spec import load_spec


@pytest.fixture(scope="module")
def iris():
    return load_spec(REPO_ROOT / "models" / "iris")


def regressor(tmp_path: Path, tolerance: float = 0.05):
    text = (REPO_ROOT / "models" / "iris" / "model.yaml").read_text()
    text = text.replace("task: classification", "task: regression")
    text = text.replace(
        "accuracy: {min: 0.85}\n    f1_macro: {min: 0.85}", "rmse: {max: 60}\n    r2: {min: 0.3}"
    )
    text = text.replace("champion_tolerance: 0.02", f"champion_tolerance: {tolerance}")
    (tmp_path / "model.yaml").write_text(text)
    return load_spec(tmp_path)


def test_classification_metrics_are_computed() -> None:
    metrics = compute_metrics("classification", [0, 1, 1, 2], [0, 1, 2, 2])
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert set(metrics) == {"accuracy", "f1_macro", "precision_macro", "recall_macro"}


def test_regression_metrics_are_computed() -> None:
    metrics = compute_metrics("regression", [1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert metrics["rmse"] == pytest.approx((4 / 3) ** 0.5)
    assert metrics["mae"] == pytest.approx(2 / 3)


def test_threshold_failure_names_metric_value_and_bound(iris) -> None:
    checks = {c.name: c for c in threshold_checks(iris, {"accuracy": 0.8, "f1_macro": 0.9})}
    assert not checks["metric accuracy"].passed
    assert checks["metric accuracy"].detail == "accuracy 0.8000 < min 0.85"
    assert checks["metric f1_macro"].passed


def test_max_threshold(tmp_path: Path) -> None:
    spec = regressor(tmp_path)
    checks = {c.name: c for c in threshold_checks(spec, {"rmse": 61.5, "r2": 0.5})}
    assert checks["metric rmse"].detail == "rmse 61.5000 > max 60.0"
    assert checks["metric r2"].passed


def test_challenger_within_tolerance_passes(iris) -> None:
    assert champion_check(iris, {"accuracy": 0.90}, {"accuracy": 0.91}, "3").passed  # 2% tolerance


def test_challenger_worse_than_tolerance_fails_with_both_values(iris) -> None:
    check = champion_check(iris, {"accuracy": 0.80}, {"accuracy": 0.95}, "3")
    assert not check.passed
    assert "accuracy 0.8000 vs champion v3 0.9500" in check.detail
    assert "needs >= 0.9310" in check.detail


def test_lower_is_better_metrics_compare_the_other_way(tmp_path: Path) -> None:
    spec = regressor(tmp_path, tolerance=0.05)
    assert champion_check(spec, {"rmse": 52.0}, {"rmse": 50.0}, "1").passed
    failed = champion_check(spec, {"rmse": 53.0}, {"rmse": 50.0}, "1")
    assert not failed.passed and "needs <= 52.5000" in failed.detail


def test_golden_mismatch_lists_rows(iris) -> None:
    check = golden_check(iris, [0, 1, 2, 1], [0, 2, 2, 0])
    assert not check.passed
    assert check.detail.startswith("2/4 rows differ: row 2: expected 1, got 2; row 4: expected 1, got 0")


def test_golden_regression_uses_tolerance(tmp_path: Path) -> None:
    spec = regressor(tmp_path)
    assert golden_check(spec, [1.0, 2.0], [1.0, 2.0 + 1e-9]).passed
    assert not golden_check(spec, [1.0, 2.0], [1.0, 2.1]).passed


def test_signature_matches_schema(iris) -> None:
    inputs = [{"name": f.name, "type": "double"} for f in iris.schema_.inputs]
    assert signature_check(iris, inputs).passed


def test_signature_mismatch_names_columns(iris) -> None:
    inputs = [{"name": "petal_width_cm", "type": "double"}, {"name": "sepal_length_cm", "type": "double"}]
    check = signature_check(iris, inputs)
    assert not check.passed and "differ from schema.inputs" in check.detail


def test_signature_type_mismatch(iris) -> None:
    inputs = [{"name": f.name, "type": "double"} for f in iris.schema_.inputs]
    inputs[2]["type"] = "string"
    check = signature_check(iris, inputs)
    assert not check.passed and "petal_length_cm: spec double, model string" in check.detail


def test_missing_signature_fails(iris) -> None:
    assert not signature_check(iris, None).passed


def test_report_passes_only_when_every_check_passes(iris) -> None:
    report = GateReport("iris", "4", checks=threshold_checks(iris, {"accuracy": 0.9, "f1_macro": 0.9}))
    assert report.passed and report.failures == []
    report.checks.append(champion_check(iris, {"accuracy": 0.5}, {"accuracy": 0.9}, "3"))
    assert not report.passed
    assert report.failures[0].startswith("champion comparison: accuracy 0.5000")
    assert "**FAIL**" in report.markdown() and report.as_dict()["passed"] is False


def test_the_champion_is_compared_only_on_inputs_it_knows(iris, tmp_path: Path) -> None:
    assert comparison_blocker(iris, iris, "3") is None
    fewer = iris.model_copy(
        update={"schema_": iris.schema_.model_copy(update={"inputs": iris.schema_.inputs[1:]})}
    )
    assert comparison_blocker(fewer, iris, "3") == (
        "champion v3 needs input(s) sepal_length_cm that this version's data lacks; "
        "clients must send the new inputs once it serves"
    )
    assert comparison_blocker(iris, fewer, "3") is None  # a new input: the champion ignores it
    assert (
        comparison_blocker(regressor(tmp_path), iris, "3")
        == "champion v3 is a classification model, this version a regression one"
    )
    other = iris.model_copy(update={"data": iris.data.model_copy(update={"target": "genus"})})
    assert comparison_blocker(other, iris, "3") == "champion v3 predicts 'species', this version 'genus'"


def test_a_skipped_comparison_passes_and_says_so(iris) -> None:
    check = skipped_comparison("champion v3 needs input(s) x")
    report = GateReport("iris", "4", checks=[check])
    assert report.passed and check.skipped
    assert "| champion comparison | skipped | skipped: champion v3 needs input(s) x" in report.markdown()
