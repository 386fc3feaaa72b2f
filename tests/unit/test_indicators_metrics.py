"""class_frequency, prediction_stability, skew, label_metric, error_rate and latency on data whose
answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from indicators.base import META, Inputs
from indicators.frequency import ClassFrequency, psi
from indicators.label_metric import LabelMetric, ndcg
from indicators.operational import ErrorRate, Latency
from indicators.skew import Skew
from indicators.stability import PredictionStability


def _predictions(counts: dict[int, int]) -> pd.DataFrame:
    return pd.DataFrame({"prediction": [cls for cls, n in counts.items() for _ in range(n)]})


def test_psi_by_hand() -> None:
    total, terms = psi(np.array([0.5, 0.3, 0.2]), np.array([0.4, 0.4, 0.2]))
    # (0.4-0.5)·ln(0.4/0.5) + (0.4-0.3)·ln(0.4/0.3) + 0
    assert terms.tolist() == pytest.approx([0.1 * math.log(0.5 / 0.4), 0.1 * math.log(0.4 / 0.3), 0.0])
    assert total == pytest.approx(0.0510826, abs=1e-7)


def test_class_frequency_psi_and_chi2_on_known_counts() -> None:
    inputs = Inputs(
        current=_predictions({0: 40, 1: 40, 2: 20}), reference=_predictions({0: 50, 1: 30, 2: 20})
    )
    verdict = ClassFrequency({"max_psi": 0.05}).compute(inputs)
    assert verdict.value == pytest.approx(0.0510826, abs=1e-7)
    assert verdict.flagged is True  # above 0.05
    # chi² of [[50,30,20],[40,40,20]]: expected 45, 35, 20 per row -> 2·(25/45 + 25/35) = 2.5397
    assert verdict.details[META]["chi2"] == pytest.approx(2 * (25 / 45 + 25 / 35))
    assert verdict.details[META]["p_value"] == pytest.approx(math.exp(-2 * (25 / 45 + 25 / 35) / 2))  # 2 dof
    assert verdict.details["1"] == {
        "share": 0.4, "reference_share": 0.3, "count": 40, "reference_count": 30,
        "psi": pytest.approx(0.1 * math.log(0.4 / 0.3)),
    }  # fmt: skip
    assert (verdict.sample_size, verdict.reference_size) == (100, 100)
    assert ClassFrequency().compute(inputs).flagged is False  # default max_psi 0.2


def test_class_frequency_treats_1_and_1_0_as_one_class_and_needs_reference_predictions() -> None:
    current = pd.DataFrame({"prediction": [1.0] * 30 + [0.0] * 30})
    verdict = ClassFrequency().compute(Inputs(current=current, reference=_predictions({0: 50, 1: 50})))
    assert verdict.value == pytest.approx(0.0)
    no_predictions = ClassFrequency().compute(Inputs(current=current, reference=pd.DataFrame({"x": [1.0]})))
    assert no_predictions.status == "missing_reference"


def test_prediction_stability_vs_reference_and_previous_window() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"prediction": rng.normal(100, 10, 5000)})
    steady = PredictionStability().compute(
        Inputs(current=pd.DataFrame({"prediction": rng.normal(100, 10, 2000)}), reference=reference)
    )
    assert steady.status == "ok" and steady.flagged is False
    assert steady.value < 0.1
    moved = PredictionStability().compute(
        Inputs(
            current=pd.DataFrame({"prediction": rng.normal(110, 10, 2000)}),
            reference=reference,
            previous=pd.DataFrame({"prediction": rng.normal(105, 10, 2000)}),
        )
    )
    assert moved.flagged is True
    assert moved.value == pytest.approx(1.0, abs=0.1)  # 10 units = one reference std
    assert moved.details["previous"]["shift"] == pytest.approx(0.5, abs=0.1)
    assert moved.details["reference"]["psi"] > 0.2
    nothing = PredictionStability().compute(Inputs(current=pd.DataFrame({"prediction": [1.0] * 40})))
    assert nothing.status == "missing_reference"


def _served(predictions: list, predictor: str, ids: list[str] | None = None) -> pd.DataFrame:
    ids = ids or [f"r{i}" for i in range(len(predictions))]
    return pd.DataFrame({"request_id": ids, "prediction": predictions, "predictor": predictor})


def test_skew_on_shadow_traffic_pairs_requests() -> None:
    champion = _served([0, 1, 2, 1] * 25, "champion")
    same = Skew().compute(Inputs(current=_served([0, 1, 2, 1] * 25, "shadow"), other=champion))
    assert (same.value, same.flagged) == (0.0, False)
    assert same.details[META]["mode"] == "paired"
    differs = Skew().compute(Inputs(current=_served([0, 1, 2, 2] * 25, "shadow"), other=champion))
    assert (differs.value, differs.flagged) == (0.25, True)
    assert differs.details[META]["agreement"] == 0.75
    assert "shadow vs champion (paired)" in differs.message
    regression = Skew().compute(
        Inputs(
            current=_served([1.0, 2.0, 3.0, 4.0] * 5, "shadow"),
            other=_served([1.0, 2.0, 3.0, 6.0] * 5, "champion"),
            task="regression",
        )
    )
    std = float(np.std([1.0, 2.0, 3.0, 6.0] * 5, ddof=1))
    assert regression.value == pytest.approx(0.5 / std)  # mean |difference| 0.5 in champion std


def test_skew_pairs_the_rows_of_multi_row_requests_in_order() -> None:
    ids = [f"r{i // 2}" for i in range(40)]  # 20 requests of two rows each
    champion = _served([0, 1] * 20, "champion", ids=ids)
    shadow = _served([0, 1] * 20, "shadow", ids=ids)
    assert Skew().compute(Inputs(current=shadow, other=champion)).value == 0.0
    swapped = _served([1, 0] * 20, "shadow", ids=ids)  # same answers per request, other rows
    assert Skew().compute(Inputs(current=swapped, other=champion)).value == 1.0


def test_skew_on_a_canary_compares_distributions() -> None:
    champion = _served([0] * 50 + [1] * 50, "champion")
    canary = _served([0] * 30 + [1] * 70, "candidate", ids=[f"c{i}" for i in range(100)])
    verdict = Skew().compute(Inputs(current=canary, other=champion))
    assert verdict.details[META]["mode"] == "distribution"
    assert verdict.value == pytest.approx(0.2)  # total variation distance: ½(|.3-.5| + |.7-.5|)
    assert verdict.flagged is True
    alone = Skew().compute(Inputs(current=canary, other=pd.DataFrame()))
    assert alone.status == "missing_reference"


def _labelled(truth: list, predicted: list, **extra: list) -> Inputs:
    ids = [f"r{i}" for i in range(len(truth))]
    current = pd.DataFrame({"request_id": ids, "prediction": predicted, **extra})
    labels = pd.DataFrame({"request_id": ids, "row": 0, "label": truth})
    return Inputs(current=current, labels=labels, task="classification")


def test_label_metric_confusion_matrix_and_macro_scores() -> None:
    inputs = _labelled([0, 0, 1, 1, 2, 2, 2], [0, 1, 1, 1, 2, 0, 2])
    verdict = LabelMetric({"min_rows": 1, "threshold": 0.8}).compute(inputs)
    meta = verdict.details[META]
    assert meta["confusion_matrix"] == {
        "labels": ["0", "1", "2"],
        "matrix": [[1, 1, 0], [0, 2, 0], [1, 0, 2]],
    }
    assert verdict.value == pytest.approx(5 / 7) and meta["metric"] == "accuracy"
    assert meta["precision_macro"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert meta["recall_macro"] == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)
    assert meta["f1_macro"] == pytest.approx((0.5 + 0.8 + 0.8) / 3)
    assert verdict.flagged is True  # 0.714 is worse than 0.8
    assert meta["log_loss"] is None  # no probabilities returned


def test_label_metric_log_loss_from_probability_columns() -> None:
    inputs = _labelled([0, 1], [0, 1], proba_0=[0.8, 0.4], proba_1=[0.2, 0.6])
    verdict = LabelMetric({"min_rows": 1, "metric": "log_loss", "threshold": 0.5}).compute(inputs)
    assert verdict.value == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert verdict.flagged is False  # lower is better: 0.367 < 0.5


def test_label_metric_regression_and_missing_labels() -> None:
    ids = ["a", "b", "c", "d"]
    current = pd.DataFrame({"request_id": ids, "prediction": [1.0, 2.0, 3.0, 5.0]})
    labels = pd.DataFrame({"request_id": ids, "label": [1.0, 2.0, 4.0, 3.0]})
    verdict = LabelMetric({"min_rows": 1}).compute(Inputs(current=current, labels=labels, task="regression"))
    meta = verdict.details[META]
    assert (meta["mse"], meta["mae"]) == (pytest.approx(5 / 4), pytest.approx(3 / 4))
    assert verdict.value == pytest.approx(math.sqrt(5 / 4)) and meta["metric"] == "rmse"
    assert meta["r2"] == pytest.approx(0.0)  # SS_res 0+0+1+4 = 5 = SS_tot (2.25+0.25+2.25+0.25 around 2.5)
    waiting = LabelMetric().compute(Inputs(current=current, task="regression"))
    assert waiting.status == "insufficient" and "no labels" in waiting.message


def test_a_corrected_label_replaces_the_first_and_unlabelled_rows_are_left_out() -> None:
    current = pd.DataFrame({"request_id": ["a", "b", "c", "d"], "prediction": [1, 0, 1, 1]})
    labels = pd.DataFrame({"request_id": ["a", "b", "a", "x"], "label": [0, 0, 1, 1]})  # x: not in window
    verdict = LabelMetric({"min_rows": 1}).compute(Inputs(current=current, labels=labels))
    assert (verdict.value, verdict.sample_size) == (1.0, 2)  # a (corrected to 1) and b


def test_ndcg_by_hand() -> None:
    """Group A ranks relevances [0, 1, 2] by score; ideal [2, 1, 0]. Group B ranks [0, 1]; ideal [1, 0].
    Group C has no relevant row (left out)."""
    groups = np.array(["A", "A", "A", "B", "B", "C"])
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.7, 0.5])
    relevance = np.array([0.0, 1.0, 2.0, 1.0, 0.0, 0.0])
    third = 1 / math.log2(3)
    a = (1 * third + 2 / 2) / (2 / 1 + 1 * third)
    b = (1 * third) / 1
    assert ndcg(groups, scores, relevance, None) == (pytest.approx((a + b) / 2), 2)
    a2 = (1 * third) / (2 + 1 * third)
    assert ndcg(groups, scores, relevance, 2) == (pytest.approx((a2 + b) / 2), 2)
    from sklearn.metrics import ndcg_score  # the same convention as scikit-learn's

    assert a == pytest.approx(ndcg_score([[0, 1, 2]], [[0.9, 0.8, 0.1]]))


def test_label_metric_ndcg_within_request_groups() -> None:
    current = pd.DataFrame({"request_id": ["q1"] * 3 + ["q2"] * 2, "prediction": [0.9, 0.8, 0.1, 0.2, 0.7]})
    labels = pd.DataFrame(
        {"request_id": ["q1"] * 3 + ["q2"] * 2, "row": [0, 1, 2, 0, 1], "label": [0, 1, 2, 1, 0]}
    )
    verdict = LabelMetric({"min_rows": 1, "metric": "ndcg", "group": "request_id"}).compute(
        Inputs(current=current, labels=labels, task="regression")
    )
    third = 1 / math.log2(3)
    assert verdict.value == pytest.approx(((third + 1) / (2 + third) + third) / 2)


def test_error_rate_counts_requests_not_rows() -> None:
    statuses = [200] * 94 + [500] * 4 + [400] * 2
    current = pd.DataFrame({"request_id": [f"r{i}" for i in range(100)], "status": statuses})
    two_rows_each = pd.concat([current, current])  # every request carried two rows
    verdict = ErrorRate().compute(Inputs(current=two_rows_each))
    assert (verdict.value, verdict.flagged, verdict.sample_size) == (0.04, True, 100)
    with_client = ErrorRate({"client_errors": True, "max_rate": 0.1}).compute(Inputs(current=current))
    assert (with_client.value, with_client.flagged) == (0.06, False)
    words = pd.DataFrame({"status": ["ok"] * 19 + ["error"], "complete": [True] * 18 + [False, True]})
    assert ErrorRate().compute(Inputs(current=words)).value == pytest.approx(2 / 20)


def test_latency_percentiles_against_ceilings() -> None:
    current = pd.DataFrame({"request_id": [f"r{i}" for i in range(100)], "latency_ms": np.arange(1.0, 101.0)})
    verdict = Latency({"p99_ms": 99.5}).compute(Inputs(current=current))
    assert verdict.value == pytest.approx(99.01)  # numpy's linear interpolation
    assert verdict.details[META]["p50_ms"] == pytest.approx(50.5)
    assert verdict.flagged is False
    slow = Latency({"p50_ms": 40, "p99_ms": 99.5}).compute(Inputs(current=current))
    assert slow.flagged is True and "p50 50.5 ms > 40" in slow.message
    few = Latency().compute(Inputs(current=current.iloc[:5]))
    assert few.status == "insufficient"


@pytest.mark.parametrize(
    "indicator", [ClassFrequency(), PredictionStability(), Skew(), LabelMetric(), ErrorRate(), Latency()]
)
def test_an_empty_window_is_empty_for_every_indicator(indicator) -> None:
    verdict = indicator.compute(Inputs(current=pd.DataFrame(), reference=_predictions({0: 5})))
    assert verdict.status == "empty" and verdict.flagged is None


def test_every_builtin_result_is_strict_json(tmp_path) -> None:
    """Results go to PostgreSQL jsonb and Elasticsearch: no NaN, no infinity, no numpy scalars left."""
    import json
    from datetime import UTC, datetime

    from indicators.registry import REGISTRY, create

    rng = np.random.default_rng(0)
    rows = 200
    current = pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "flag": rng.random(rows) < 0.5,
            "prediction": rng.integers(0, 2, rows),
            "proba_0": np.full(rows, 0.5),
            "proba_1": np.full(rows, 0.5),
            "request_id": [f"r{i}" for i in range(rows)],
            "latency_ms": rng.gamma(2.0, 3.0, rows),
            "status": 200,
        }
    )
    (tmp_path / "indicators.py").write_text("def f(inputs):\n    return {'value': 1, 'details': {'n': 2}}\n")
    inputs = Inputs(
        current=current,
        reference=current.assign(x=current.x + 1, flag=False),  # never true: an infinite odds ratio
        previous=current,
        labels=pd.DataFrame({"request_id": current.request_id, "label": current.prediction}),
        other=current,
        features={"x": "double", "flag": "boolean"},
        model_dir=tmp_path,
    )
    params = {
        "custom": {"function": "f"},
        "drift": {"method": "fet", "features": ["flag"], "backend": "scipy"},
    }
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for type_id in REGISTRY:
        verdict = create(type_id, params.get(type_id)).compute(inputs)
        assert verdict.status == "ok", (type_id, verdict.message)
        result = verdict.to_result(
            indicator_id=type_id, indicator_type=type_id, model="m", version="1", predictor="champion",
            window_start=now, window_end=now,
        )  # fmt: skip
        json.dumps(result.as_dict(), allow_nan=False)
