"""Latency gate decisions from known sample latencies, gate.latency / serving.timeout_seconds
validation, and the test step's hint when predict() answers labels of the wrong type."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushbutton.config import REPO_ROOT
from pushbutton.errors import SpecError
from pushbutton.gate import GateReport, answers_problem
from pushbutton.gate.latency import (
    Latency,
    champion_latency_check,
    latency_checks,
    latency_summary,
    percentile,
)
from pushbutton.spec import load_spec

IRIS = REPO_ROOT / "models" / "iris"


@pytest.fixture(scope="module")
def iris():
    return load_spec(IRIS)  # no gate.latency section: the defaults apply


def with_latency(tmp_path: Path, latency: str = "", serving: str = "") -> Path:
    text = (IRIS / "model.yaml").read_text()
    text = text.replace("  golden: golden.csv\n", f"  golden: golden.csv\n{latency}")
    text = text.replace("  replicas: 1\n", f"  replicas: 1\n{serving}")
    (tmp_path / "model.yaml").write_text(text)
    return tmp_path


def fast(ms: float = 4.0, batch_ms: float = 9.0, n: int = 200) -> Latency:
    return Latency(tuple(ms for _ in range(n)), tuple(batch_ms for _ in range(30)), 45)


def by_name(checks):
    return {c.name: c for c in checks}


def test_percentiles_interpolate_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_a_fast_model_passes_the_default_ceilings(iris) -> None:
    checks = by_name(latency_checks(iris, fast()))
    assert set(checks) == {"latency single-row p99", "latency batch p99"}  # p50s have no default
    assert all(c.passed for c in checks.values())
    assert checks["latency single-row p99"].detail == "single-row p99 4.0 ms <= max 1000 ms (200 requests)"
    assert checks["latency batch p99"].threshold == "<= 5000 ms"


def test_a_model_sleeping_five_seconds_fails_the_default_ceiling(iris) -> None:
    slow = Latency((5004.2,), (5010.0,), 45)  # the budget stopped each kind after one request
    check = by_name(latency_checks(iris, slow))["latency single-row p99"]
    assert not check.passed and check.value == 5004.2
    assert check.detail == (
        "single-row p99 5004.2 ms > max 1000 ms (gate.latency.p99_ms; 1 request): make predict() faster, "
        "or raise gate.latency.p99_ms in model.yaml"
    )
    batch = by_name(latency_checks(iris, slow))["latency batch p99"]
    assert not batch.passed and "batch (45 rows) p99 5010.0 ms > max 5000 ms" in batch.detail


def test_one_slow_request_in_two_hundred_is_not_the_p99(iris) -> None:
    samples = (3.0,) * 199 + (4000.0,)  # e.g. the first request after start-up
    assert by_name(latency_checks(iris, Latency(samples, (8.0,), 30)))["latency single-row p99"].passed
    three = (3.0,) * 197 + (4000.0,) * 3
    assert not by_name(latency_checks(iris, Latency(three, (8.0,), 30)))["latency single-row p99"].passed


def test_configured_medians_and_batch_ceilings_are_held(tmp_path: Path) -> None:
    spec = load_spec(
        with_latency(tmp_path, "  latency: {p50_ms: 20, p99_ms: 80, batch_rows: 10, batch_p99_ms: 50}\n")
    )
    assert spec.gate.latency.batch_rows == 10
    checks = by_name(latency_checks(spec, Latency((25.0,) * 100, (60.0,) * 10, 10)))
    assert not checks["latency single-row p50"].passed
    assert "(gate.latency.p50_ms; 100 requests)" in checks["latency single-row p50"].detail
    assert checks["latency single-row p99"].passed
    batch = checks["latency batch p99"]
    assert not batch.passed and "faster on whole batches" in batch.detail
    assert "raise gate.latency.batch_p99_ms in model.yaml" in batch.detail


def test_a_timed_out_request_fails_naming_the_serving_timeout(iris) -> None:
    latency = Latency((3.0, 60000.0), (9.0,), 45, single_timeouts=1, timeout_seconds=60.0)
    check = by_name(latency_checks(iris, latency))["latency single-row p99"]
    assert not check.passed
    assert check.detail.startswith(
        "1 of 2 single-row requests timed out after 60 s (serving.timeout_seconds)"
    )
    assert "raise serving.timeout_seconds and gate.latency.p99_ms" in check.detail


def test_a_candidate_much_slower_than_the_champion_fails(iris) -> None:
    check = champion_latency_check(iris, fast(400.0, 900.0), fast(100.0, 850.0), "3")
    assert not check.passed and check.name == "latency vs champion"
    assert check.detail.startswith("slower than champion v3: single-row p50 400.0 ms vs 100.0 ms (4.0x) (")
    assert "batch" not in check.detail.split("(allowed")[0]  # 900 vs 850 ms is within 2x
    assert "allowed: up to 2x the champion's median, or within 50 ms of it" in check.detail
    assert (
        "raise gate.latency.champion_slowdown in model.yaml (null turns the comparison off)" in check.detail
    )


def test_small_absolute_differences_never_fail(iris) -> None:
    check = champion_latency_check(iris, fast(12.0, 30.0), fast(3.0, 9.0), "3")  # 4x, but +9 ms
    assert check.passed and not check.skipped
    assert check.detail.startswith(
        "candidate vs champion v3: single-row p50 12.0 ms vs 3.0 ms (4.0x); batch (45 rows) p50 30.0 ms"
    )


def test_the_slowdown_factor_and_margin_are_configurable(tmp_path: Path) -> None:
    strict = load_spec(with_latency(tmp_path, "  latency: {champion_slowdown: 1.5, champion_margin_ms: 5}\n"))
    assert not champion_latency_check(strict, fast(12.0), fast(3.0), "3").passed
    assert champion_latency_check(strict, fast(4.0), fast(3.0), "3").passed  # 1.33x
    off = load_spec(with_latency(tmp_path, "  latency: {champion_slowdown: null}\n"))
    check = champion_latency_check(off, fast(5000.0), fast(3.0), "3")
    assert check.passed and check.skipped and "champion_slowdown is null" in check.detail


def test_the_report_shows_candidate_and_champion_latency(iris) -> None:
    candidate, champion = Latency((4.0, 6.0), (9.0,), 45), Latency((3.0, 5.0), (8.0,), 45)
    report = GateReport("iris", "4", checks=latency_checks(iris, candidate))
    report.latency = latency_summary(iris, candidate)
    report.champion = {"version": "3", "metrics": {}, "latency": champion.summary()}
    text = report.markdown()
    assert "| latency | candidate | champion v3 | ceiling |" in text
    assert "| single-row p50 | 5.0 ms | 4.0 ms |  |" in text
    assert "| single-row p99 | 6.0 ms | 5.0 ms | 1000 ms |" in text
    assert "| batch (45 rows) p99 | 9.0 ms | 8.0 ms | 5000 ms |" in text
    assert "| single-row requests | 2 | 2 | |" in text
    data = report.as_dict()
    assert data["latency"]["single"] == {
        "requests": 2,
        "rows": 1,
        "p50_ms": 5.0,
        "p99_ms": 5.98,
        "timeouts": 0,
    }
    assert data["latency"]["ceilings"]["p99_ms"] == 1000.0
    assert data["champion"]["latency"]["batch"]["p50_ms"] == 8.0


# --- spec validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("latency", "serving", "field", "words", "fix"),
    [
        ("  latency: {p99_ms: .inf}\n", "", "gate.latency.p99_ms", "inf is not a latency", "e.g. 1000"),
        ("  latency: {p99_ms: true}\n", "", "gate.latency.p99_ms", "true is a boolean", "write a number"),
        ("  latency: {batch_rows: 0}\n", "", "gate.latency.batch_rows", "greater than or equal to 1", "1"),
        (
            "  latency: {champion_margin_ms: -1}\n",
            "",
            "gate.latency.champion_margin_ms",
            "-1 is not a",
            "0 or",
        ),
        ("", "  timeout_seconds: 900\n", "serving.timeout_seconds", "over 600 s", "use at most 600"),
        ("", "  timeout_seconds: -3\n", "serving.timeout_seconds", "-3 is not a timeout", "e.g. 30"),
    ],
)
def test_bad_latency_and_timeout_values_name_field_and_fix(tmp_path, latency, serving, field, words, fix):
    with pytest.raises(SpecError) as caught:
        load_spec(with_latency(tmp_path, latency, serving))
    (issue,) = caught.value.issues
    assert (issue.field, words in issue.message, fix in issue.fix) == (field, True, True), str(issue)


def test_the_serving_timeout_reaches_the_predictor(tmp_path: Path) -> None:
    from pushbutton.serving.spec import Release, predictor

    spec = load_spec(with_latency(tmp_path, serving="  timeout_seconds: 2.5\n"))
    assert predictor(spec, "candidate", Release("2", "m", "e", "c")).timeout_seconds == 2.5


# --- answers that cannot be scored -------------------------------------------------------------


def test_string_labels_for_integer_training_labels_name_the_mismatch() -> None:
    problem = answers_problem("classification", [0, 1, 2], ["0", "1", "1"], [0, 1, 2, 2])
    assert problem == (
        "predict() returned strings like '0' but the training labels are integers like 0: return the "
        "estimator's labels unchanged (e.g. `return self.model.predict(X)`, without `.astype(...)`, "
        "`str(...)` or a mapping), or convert them back with `int(label)`"
    )
    assert "one label per row" not in problem


def test_integer_answers_for_string_labels_name_the_mismatch() -> None:
    problem = answers_problem("classification", ["setosa", "virginica"], [0, 2], ["setosa"])
    assert problem.startswith("predict() returned integers like 0 but the training labels are strings like")
    assert problem.endswith("convert them back with `str(label)`")


def test_other_unscorable_answers_are_named() -> None:
    assert "returned 2 answers for 3 holdout rows" in answers_problem("classification", [0, 1, 1], [0, 1])
    probabilities = answers_problem("classification", [0, 1], [[0.9, 0.1], [0.2, 0.8]])
    assert "rows like [0.9, 0.1] instead of one label per row" in probabilities
    assert "not class probabilities (`predict_proba`)" in probabilities
    scores = answers_problem("classification", [0, 1], [0.25, 0.75], [0, 1])
    assert scores.startswith("predict() returned numbers like 0.25 but the training labels are integers")
    assert "null for holdout row 2" in answers_problem("regression", [1.0, 2.0], [1.0, None])
    assert "regression model returns numbers" in answers_problem("regression", [1.0], ["1.5"])
    codes = answers_problem("classification", ["a", "b"], ["x", "y"], ["a", "b"])
    assert codes.startswith(
        "predict() returned labels like 'x', none of which is a training label ('a', 'b')"
    )


def test_labels_the_metrics_can_score_pass() -> None:
    assert answers_problem("classification", [0, 1, 2], [0, 1, 1], [0, 1, 2]) is None
    assert answers_problem("classification", [0, 1], [0.0, 1.0], [0, 1]) is None  # JSON floats of labels
    assert answers_problem("classification", [0, 1], [0, 5], [0, 1]) is None  # a wrong label: metrics say
    assert answers_problem("regression", [1.0, 2.0], [1, 2.5]) is None
