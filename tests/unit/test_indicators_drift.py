"""The drift indicator on synthetic data with known answers, and its two detector backends."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from indicators.base import META, Inputs
from indicators.configs import DriftConfig
from indicators.drift import AlibiDetector, DriftIndicator, ScipyDetector, alibi_installed, correct
from tests.prerequisites import require_all

FEATURES = {"a": "double", "b": "double", "c": "double", "d": "double"}
# alibi-detect is in requirements.txt: missing, its tests skip locally and run (and fail) under CI
needs_alibi = pytest.mark.skipif(
    not alibi_installed() and not require_all(), reason="alibi-detect is not installed (fix: make venv)"
)


def _frame(rows: int, seed: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(0.0, 1.0, rows) for name in FEATURES})
    for name, by in (shift or {}).items():
        frame[name] += by
    return frame


def _inputs(current: pd.DataFrame, reference: pd.DataFrame | None, features=FEATURES) -> Inputs:
    return Inputs(current=current, reference=reference, features=features, task="classification")


@pytest.mark.parametrize("backend", ["scipy", pytest.param("alibi", marks=needs_alibi)])
def test_same_distribution_is_not_flagged(backend: str) -> None:
    verdict = DriftIndicator({"method": "ks", "backend": backend}).compute(
        _inputs(_frame(2000, 2), _frame(2000, 1))
    )
    assert verdict.status == "ok", verdict.message
    assert verdict.flagged is False
    assert verdict.value == 0.0
    assert verdict.sample_size == verdict.reference_size == 2000
    assert all(verdict.details[name]["p_value"] > 0.0125 for name in FEATURES)
    assert verdict.details[META]["backend"] == ("alibi-detect" if backend == "alibi" else "scipy")


@pytest.mark.parametrize("backend", ["scipy", pytest.param("alibi", marks=needs_alibi)])
def test_a_mean_shifted_by_two_std_is_flagged(backend: str) -> None:
    current = _frame(500, 2, shift={"b": 2.0, "d": 2.0})
    verdict = DriftIndicator({"method": "ks", "backend": backend}).compute(_inputs(current, _frame(2000, 1)))
    assert verdict.flagged is True
    assert verdict.value == 0.5  # two of four features
    assert {n for n in FEATURES if verdict.details[n]["flagged"]} == {"b", "d"}
    assert verdict.details["b"]["distance"] > 0.6  # KS statistic of N(0,1) vs N(2,1) is about 0.68
    assert verdict.threshold == 0.0
    assert "b, d" in verdict.message


def test_drift_share_sets_how_many_features_must_move() -> None:
    current = _frame(500, 2, shift={"b": 2.0})
    verdict = DriftIndicator({"backend": "scipy", "drift_share": 0.5}).compute(
        _inputs(current, _frame(2000, 1))
    )
    assert (verdict.value, verdict.flagged) == (0.25, False)


def test_an_empty_window_is_empty_not_no_drift() -> None:
    verdict = DriftIndicator().compute(_inputs(_frame(0, 1), _frame(100, 1)))
    assert verdict.status == "empty"
    assert verdict.flagged is None and verdict.value is None
    assert "not 'no drift'" in verdict.message


def test_a_missing_reference_is_reported() -> None:
    for reference in (None, _frame(0, 1)):
        verdict = DriftIndicator().compute(_inputs(_frame(100, 1), reference))
        assert verdict.status == "missing_reference"
        assert verdict.flagged is None
    lacking = _frame(100, 1).drop(columns=["c"])
    verdict = DriftIndicator().compute(_inputs(_frame(100, 2), lacking))
    assert verdict.status == "missing_reference"
    assert "no column for c" in verdict.message


def test_too_few_rows_are_insufficient() -> None:
    verdict = DriftIndicator({"min_rows": 50}).compute(_inputs(_frame(49, 2), _frame(500, 1)))
    assert verdict.status == "insufficient"
    assert "49 rows" in verdict.message and "min_rows" in verdict.message


def test_a_large_window_is_sampled_the_same_way_each_time() -> None:
    current, reference = _frame(3000, 2, shift={"a": 0.3}), _frame(1500, 1)
    indicator = DriftIndicator({"backend": "scipy", "max_rows": 1000})
    first, again = (
        indicator.compute(_inputs(current, reference)),
        indicator.compute(_inputs(current, reference)),
    )
    assert (first.sample_size, first.reference_size) == (1000, 1000)
    assert first.details[META]["window_rows"] == 3000
    assert first.details == again.details  # seeded: the same window, the same verdict
    everything = DriftIndicator({"backend": "scipy", "max_rows": None}).compute(_inputs(current, reference))
    assert (everything.sample_size, everything.reference_size) == (3000, 1500)
    assert everything.details["a"]["p_value"] != first.details["a"]["p_value"]


def test_rows_missing_a_number_are_left_out() -> None:
    current = _frame(300, 2)
    current.loc[:9, "a"] = np.nan
    verdict = DriftIndicator({"backend": "scipy"}).compute(_inputs(current, _frame(500, 1)))
    assert verdict.sample_size == 290
    assert verdict.details[META]["rows_dropped"] == {"current": 10}


def _mixed(rows: int, seed: int, colour_p: tuple[float, float, float], flag_p: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(0, 1, rows),
            "colour": rng.choice(["red", "green", "blue"], rows, p=colour_p),
            "flag": rng.random(rows) < flag_p,
        }
    )


MIXED = {"x": "double", "colour": "string", "flag": "boolean"}


@needs_alibi
@pytest.mark.parametrize(
    ("method", "features"),
    [("ks", ["x"]), ("cvm", ["x"]), ("chi2", ["colour", "flag"]), ("tabular", None), ("fet", ["flag"])],
)
@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
def test_both_backends_agree(method: str, features: list[str] | None, correction: str) -> None:
    reference = _mixed(800, 1, (0.5, 0.3, 0.2), 0.3)
    current = _mixed(600, 2, (0.4, 0.3, 0.3), 0.4)
    inputs = Inputs(current=current, reference=reference, features=MIXED)
    params = {"method": method, "features": features, "correction": correction}
    alibi = DriftIndicator({**params, "backend": "alibi"}).compute(inputs)
    scipy = DriftIndicator({**params, "backend": "scipy"}).compute(inputs)
    assert alibi.status == scipy.status == "ok", (alibi.message, scipy.message)
    names = features or list(MIXED)
    for name in names:
        a, s = alibi.details[name], scipy.details[name]
        assert a["test"] == s["test"]
        np.testing.assert_allclose(a["p_value"], s["p_value"], rtol=1e-5, atol=1e-12)  # alibi keeps float32
        np.testing.assert_allclose(a["distance"], s["distance"], rtol=1e-5)
        assert a["flagged"] == s["flagged"]
    assert (alibi.value, alibi.flagged) == (scipy.value, scipy.flagged)
    np.testing.assert_allclose(
        alibi.details[META]["p_value_threshold"], scipy.details[META]["p_value_threshold"]
    )
    if method == "tabular":
        assert [scipy.details[n]["test"] for n in names] == ["ks", "chi2", "chi2"]  # by schema type


@needs_alibi
def test_the_correction_is_alibi_detects() -> None:
    from alibi_detect.utils.statstest import fdr

    rng = np.random.default_rng(3)
    for trial in range(200):
        n = int(rng.integers(1, 12))
        p_values = rng.random(n) ** rng.uniform(1, 6)  # skewed towards small p-values
        q = float(rng.choice([0.01, 0.05, 0.1]))
        threshold, drifted, is_drift = correct(p_values, q, "fdr")
        alibi_drift, alibi_threshold = fdr(p_values, q_val=q)
        assert is_drift == bool(alibi_drift), trial
        if alibi_drift:
            assert threshold == pytest.approx(float(alibi_threshold))
            assert (drifted == (p_values < alibi_threshold)).all()
        threshold, drifted, is_drift = correct(p_values, q, "bonferroni")
        assert threshold == pytest.approx(q / n)
        assert is_drift == bool((p_values < q / n).any())


def test_fdr_by_hand() -> None:
    """Benjamini-Hochberg at q=0.05 over 4 p-values: lines 0.0125, 0.025, 0.0375, 0.05 by rank. Sorted,
    0.001 < 0.0125, 0.03 is not < 0.025, but 0.036 < 0.0375: step-up, so ranks 1-3 have drifted."""
    threshold, drifted, is_drift = correct(np.array([0.036, 0.001, 0.03, 0.2]), 0.05, "fdr")
    assert threshold == pytest.approx(0.0375)
    assert drifted.tolist() == [True, True, True, False]
    assert is_drift is True
    bonferroni = correct(np.array([0.036, 0.001, 0.03, 0.2]), 0.05, "bonferroni")
    assert bonferroni[0] == pytest.approx(0.0125) and bonferroni[1].tolist() == [False, True, False, False]
    threshold, drifted, is_drift = correct(np.array([0.04, 0.5]), 0.05, "fdr")
    assert (threshold, drifted.tolist(), is_drift) == (0.025, [False, False], False)


@pytest.mark.parametrize("backend", ["scipy", pytest.param("alibi", marks=needs_alibi)])
def test_classifier_drift_sees_a_shift_the_marginals_hide(backend: str) -> None:
    """x and y keep their marginals but lose their correlation: only a multivariate test sees it."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=600)
    reference = pd.DataFrame({"x": x, "y": x + rng.normal(scale=0.1, size=600)})
    current = pd.DataFrame({"x": rng.normal(size=600), "y": rng.normal(size=600) * reference.y.std()})
    features = {"x": "double", "y": "double"}
    params = {"method": "classifier", "backend": backend, "n_folds": 2}
    drifted = DriftIndicator(params).compute(Inputs(current=current, reference=reference, features=features))
    same = DriftIndicator(params).compute(
        Inputs(
            current=reference.sample(frac=1.0, random_state=1).iloc[:300],
            reference=reference,
            features=features,
        )
    )
    assert drifted.flagged is True, drifted.message
    assert drifted.details[META]["p_value"] < 0.001
    assert drifted.value > same.value


def test_a_string_feature_under_a_numeric_test_fails_only_this_indicator() -> None:
    inputs = Inputs(
        current=_mixed(100, 2, (0.4, 0.3, 0.3), 0.4),
        reference=_mixed(100, 1, (0.5, 0.3, 0.2), 0.3),
        features=MIXED,
    )
    verdict = DriftIndicator({"method": "ks", "backend": "scipy"}).compute(inputs)
    assert verdict.status == "error"
    assert "'colour' is a string input; use method 'tabular'" in verdict.message
    assert "Traceback" in verdict.details["traceback"]


def test_detectors_share_one_interface() -> None:
    config = DriftConfig(method="ks")
    columns = [np.arange(50, dtype=float)], [np.arange(50, dtype=float) + 100]
    for detector in (ScipyDetector(),) + ((AlibiDetector(),) if alibi_installed() else ()):
        found = detector.run("ks", *columns, ["numeric"], config)
        assert found.is_drift and found.drifted.tolist() == [True]
        assert found.distances[0] == pytest.approx(1.0)
