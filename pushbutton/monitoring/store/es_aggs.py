"""Window aggregations as Elasticsearch queries: ``aggregate.WindowAggregates`` answered by one search with
``size: 0`` over the model's rows stream, instead of reading the window's rows.

One ``terms`` bucket per predictor and per version (sorted by key, as pandas' groupby sorts), in each:

* ``requests`` — a ``filter`` on ``row: 0`` (one document per request that has rows: what the pandas
  version counts), with ``incomplete``/``answered``/``errors`` filters and ``percentiles`` of
  ``latency_ms`` at 50 and 99;
* per numeric (and boolean) feature ``extended_stats`` (count, mean, min, max, sample std as
  ``std_deviation_sampling``) and ``percentiles`` at 5/25/50/75/95; per string feature
  ``value_count``, ``cardinality`` and a ``terms`` of size 1 (the most frequent value; ties go to the
  smallest, as pandas' ``mode`` does);
* the prediction: classification — ``terms`` (class counts); regression — the numeric figures above.

Differences from the pandas figures, by design of Elasticsearch: ``percentiles`` are TDigest estimates
(exact for small buckets, within a fraction of a percent beyond), ``cardinality`` is a HyperLogLog++
estimate (exact below its ``precision_threshold``, 3000 distinct values by default). The test stand-in
computes exact figures, so tests check the plumbing, not Elasticsearch's estimators.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from pushbutton.monitoring.aggregate import (
    FEATURE_COLUMNS,
    GROUP,
    QUANTILE_NAMES,
    QUANTILES,
    REQUEST_COLUMNS,
    WindowAggregates,
)
from pushbutton.monitoring.store.base import PREDICTION, ModelSchema, StoreError

MAX_BUCKETS = 1000  # predictors, versions per predictor, classes: far above what a deployment serves
PERCENTS = [round(q * 100, 6) for q in QUANTILES]
NUMERIC = ("double", "float", "long", "integer", "boolean")


def iso(when: datetime) -> str:
    if when.tzinfo is None:
        raise StoreError(f"time {when.isoformat()} has no timezone; pass UTC times (datetime.now(UTC))")
    return when.isoformat()


def window_query(
    start: datetime, end: datetime, *, version: str | None = None, predictor: str | None = None
) -> dict[str, Any]:
    """``start <= @timestamp < end`` (and the version/predictor), as a non-scoring filter."""
    clauses: list[dict[str, Any]] = [{"range": {"@timestamp": {"gte": iso(start), "lt": iso(end)}}}]
    if version is not None:
        clauses.append({"term": {"version": version}})
    if predictor is not None:
        clauses.append({"term": {"predictor": predictor}})
    return {"bool": {"filter": clauses}}


def _numeric_aggs(name: str, field: str) -> dict[str, Any]:
    return {
        f"{name}_stats": {"extended_stats": {"field": field}},
        f"{name}_q": {"percentiles": {"field": field, "percents": PERCENTS}},
    }


def aggregation_body(schema: ModelSchema, start: datetime, end: datetime, task: str) -> dict[str, Any]:
    """The search body behind ``ElasticsearchStore.aggregate``."""
    inner: dict[str, Any] = {
        "requests": {
            "filter": {"term": {"row": 0}},
            "aggs": {
                "incomplete": {"filter": {"term": {"complete": False}}},
                "answered": {"filter": {"exists": {"field": "status"}}},
                "errors": {"filter": {"range": {"status": {"gte": 400}}}},
                "latency": {"percentiles": {"field": "latency_ms", "percents": [50, 99]}},
            },
        }
    }
    for i, column in enumerate(schema.features):
        field = f"features.{column.name}"
        if column.type in NUMERIC:
            inner.update(_numeric_aggs(f"f{i}", field))
        else:
            inner[f"f{i}_count"] = {"value_count": {"field": field}}
            inner[f"f{i}_distinct"] = {"cardinality": {"field": field}}
            inner[f"f{i}_top"] = {"terms": {"field": field, "size": 1}}
    if task == "classification":
        inner["classes"] = {"terms": {"field": PREDICTION, "size": MAX_BUCKETS, "order": {"_key": "asc"}}}
    elif schema.prediction.type in NUMERIC:
        inner.update(_numeric_aggs("prediction", PREDICTION))
    return {
        "size": 0,
        "query": window_query(start, end),
        "aggs": {
            "predictor": {
                "terms": {"field": "predictor", "size": MAX_BUCKETS, "order": {"_key": "asc"}},
                "aggs": {
                    "version": {
                        "terms": {"field": "version", "size": MAX_BUCKETS, "order": {"_key": "asc"}},
                        "aggs": inner,
                    }
                },
            }
        },
    }


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _percentile(agg: dict[str, Any], percent: float) -> float:
    values = agg.get("values", {})
    for key, value in values.items():
        if abs(float(key) - percent) < 1e-9:
            return _num(value)
    return float("nan")


def _stats(bucket: dict[str, Any], name: str) -> dict[str, float]:
    stats = bucket[f"{name}_stats"]
    count = int(stats.get("count") or 0)
    out = {
        "count": count,
        "mean": _num(stats.get("avg")),
        "std": _num(stats.get("std_deviation_sampling")) if count > 1 else float("nan"),
        "min": _num(stats.get("min")),
        "max": _num(stats.get("max")),
    }
    for percent, label in zip(PERCENTS, QUANTILE_NAMES, strict=True):
        out[label] = _percentile(bucket[f"{name}_q"], percent)
    return out


def _key(bucket: dict[str, Any], kind: str) -> Any:
    if kind == "boolean":
        return bucket.get("key_as_string", str(bool(bucket["key"])).lower()) == "true"
    if kind in ("long", "integer"):
        return int(bucket["key"])
    if kind in ("double", "float"):
        return float(bucket["key"])
    return bucket["key"]


def parse(response: dict[str, Any], schema: ModelSchema, task: str) -> WindowAggregates:
    """The search response of ``aggregation_body`` as the frames ``aggregate.window_aggregates`` makes."""
    requests, features, predictions = [], [], []
    for p in response.get("aggregations", {}).get("predictor", {}).get("buckets", []):
        for v in p["version"]["buckets"]:
            group = {"predictor": p["key"], "version": v["key"]}
            r = v["requests"]
            answered, errors = int(r["answered"]["doc_count"]), int(r["errors"]["doc_count"])
            requests.append(
                {
                    **group,
                    "requests": int(r["doc_count"]),
                    "rows": int(v["doc_count"]),
                    "incomplete": int(r["incomplete"]["doc_count"]),
                    "errors": errors,
                    "error_rate": errors / answered if answered else float("nan"),
                    "latency_p50_ms": _percentile(r["latency"], 50),
                    "latency_p99_ms": _percentile(r["latency"], 99),
                }
            )
            size = int(v["doc_count"])
            for i, column in enumerate(schema.features):
                if column.type in NUMERIC:
                    row: dict[str, Any] = {**_stats(v, f"f{i}"), "distinct": float("nan"), "top": None}
                else:
                    top = v[f"f{i}_top"]["buckets"]
                    row = {name: float("nan") for name in ("mean", "std", "min", "max", *QUANTILE_NAMES)}
                    row |= {
                        "count": int(v[f"f{i}_count"]["value"] or 0),
                        "distinct": int(v[f"f{i}_distinct"]["value"] or 0),
                        "top": top[0]["key"] if top else None,
                    }
                row["null_share"] = 1.0 - row["count"] / size if size else float("nan")
                features.append({**group, "feature": column.name, **row})
            if task == "classification":
                kind = schema.prediction.type
                buckets = v["classes"]["buckets"]
                total = sum(int(b["doc_count"]) for b in buckets)
                for b in buckets:
                    count = int(b["doc_count"])
                    predictions.append(
                        {**group, "class": _key(b, kind), "count": count, "share": count / total}
                    )
            elif "prediction_stats" in v:
                predictions.append({**group, **_stats(v, "prediction")})
    prediction_columns = (
        [*GROUP, "class", "count", "share"]
        if task == "classification"
        else [*GROUP, "count", "mean", "std", "min", "max", *QUANTILE_NAMES]
    )
    feature_frame = pd.DataFrame(features, columns=FEATURE_COLUMNS)
    if not feature_frame.empty:
        feature_frame["count"] = feature_frame["count"].astype(int)
        feature_frame["distinct"] = feature_frame["distinct"].astype(np.float64)
    return WindowAggregates(
        pd.DataFrame(requests, columns=REQUEST_COLUMNS),
        feature_frame,
        pd.DataFrame(predictions, columns=prediction_columns),
    )
