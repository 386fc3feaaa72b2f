"""Window aggregations with hand-computed answers, and the store's default ``aggregate``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from pushbutton.monitoring.aggregate import window_aggregates
from pushbutton.monitoring.records import InferenceRecord
from pushbutton.monitoring.store.sql import SqlStore

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def frame() -> pd.DataFrame:
    """Champion v1: 3 requests (one failed, one without response), 4 rows; candidate v2: 1 request."""
    return pd.DataFrame(
        {
            "request_id": ["a", "a", "b", "c", "d"],
            "row": [0, 1, 0, 0, 0],
            "predictor": ["champion"] * 4 + ["candidate"],
            "version": ["1"] * 4 + ["2"],
            "model_id": ["m"] * 5,
            "latency_ms": [10.0, 10.0, 30.0, np.nan, 50.0],
            "status": pd.array([200, 200, 500, None, 200], dtype="Int64"),
            "complete": [True, True, True, False, True],
            "x": [1.0, 2.0, 3.0, np.nan, 10.0],
            "city": ["Oslo", "Oslo", "Rome", None, "Oslo"],
            "prediction": pd.array([1, 0, 1, None, 1], dtype="Int64"),
        }
    )


def test_requests_per_predictor_and_version():
    requests = window_aggregates(frame(), ["x", "city"]).requests.set_index(["predictor", "version"])
    champion = requests.loc[("champion", "1")]
    assert (champion["requests"], champion["rows"], champion["incomplete"], champion["errors"]) == (
        3,
        4,
        1,
        1,
    )
    assert champion["error_rate"] == pytest.approx(0.5)  # 1 of the 2 answered requests
    assert champion["latency_p50_ms"] == pytest.approx(20.0)  # per request: 10 and 30
    assert champion["latency_p99_ms"] == pytest.approx(10 + 0.99 * 20)
    candidate = requests.loc[("candidate", "2")]
    assert (candidate["requests"], candidate["error_rate"], candidate["latency_p50_ms"]) == (1, 0.0, 50.0)


def test_feature_statistics():
    features = window_aggregates(frame(), ["x", "city"]).features
    x = features[(features.predictor == "champion") & (features.feature == "x")].iloc[0]
    assert (x["count"], x["null_share"]) == (3, pytest.approx(0.25))
    assert (x["mean"], x["min"], x["max"]) == (2.0, 1.0, 3.0)
    assert x["std"] == pytest.approx(1.0) and x["p50"] == 2.0 and x["p25"] == pytest.approx(1.5)
    city = features[(features.predictor == "champion") & (features.feature == "city")].iloc[0]
    assert (city["count"], city["distinct"], city["top"]) == (3, 2, "Oslo")
    assert np.isnan(city["mean"])
    assert list(features[features.predictor == "champion"]["feature"]) == ["x", "city"]


def test_class_frequencies_and_prediction_quantiles():
    classes = window_aggregates(frame(), [], task="classification").predictions
    champion = classes[classes.predictor == "champion"].set_index("class")
    assert champion["count"].to_dict() == {0: 1, 1: 2}
    assert champion["share"].to_dict() == pytest.approx({0: 1 / 3, 1: 2 / 3})
    regression = window_aggregates(frame(), [], task="regression").predictions.set_index("predictor")
    assert regression.loc["champion", "count"] == 3 and regression.loc["champion", "mean"] == pytest.approx(
        2 / 3
    )


def test_empty_window_gives_empty_frames_with_columns():
    empty = frame().iloc[0:0]
    result = window_aggregates(empty, ["x"], task="classification")
    assert result.requests.empty and "error_rate" in result.requests.columns
    assert result.features.empty and "null_share" in result.features.columns
    assert result.predictions.empty and "share" in result.predictions.columns


def test_store_aggregate_reads_the_window(tmp_path):
    with SqlStore(f"sqlite:///{tmp_path / 'm.db'}") as store:
        store.ensure_model("m", [("x", "double")], ("y", "double"))
        records = [
            InferenceRecord(
                f"r{i}", "m", "champion", "1", request_event_id=f"q{i}", response_event_id=f"p{i}",
                request_time=T0 + timedelta(seconds=i), response_time=T0 + timedelta(seconds=i),
                latency_ms=float(i), status=200, names=("x",), inputs=[[float(i)]], predictions=[i * 2.0],
            )
            for i in range(10)
        ]  # fmt: skip
        store.write_records(records)
        result = store.aggregate("m", T0, T0 + timedelta(seconds=5), task="regression")
    assert result.requests["requests"].tolist() == [5]
    assert result.features["mean"].tolist() == [2.0]
    assert result.predictions["max"].tolist() == [8.0]
