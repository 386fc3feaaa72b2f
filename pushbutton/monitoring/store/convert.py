"""Records to SQL rows and SQL rows to pandas, for ``sql.SqlStore`` (the hot paths, kept flat and fast).

Feature values are coerced to their column's type (``double``/``float`` → float, ``long``/``integer``
→ int, ``boolean`` → bool, ``string`` → str); a value that does not fit (``"abc"`` for a double, 1.5
for a long) is stored null — the raw request body keeps what was sent. In frames: double/float →
``float64`` (NaN for null), long/integer → ``Int64``, boolean → ``boolean``, string → ``object``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pushbutton.monitoring.records import InferenceRecord
from pushbutton.monitoring.store.base import PREDICTION, PROBA_PREFIX, ROW_COLUMNS, Column, ModelSchema

SQL_TYPES: dict[str, Any] = {
    "double": sa.Float,
    "float": sa.Float,
    "long": sa.BigInteger,
    "integer": sa.BigInteger,
    "boolean": sa.Boolean,
    "string": sa.Text,
}


def _float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # NaN: null


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, int):
        return value if not isinstance(value, bool) else int(value)
    number = _float(value)
    return int(number) if number is not None and number.is_integer() and abs(number) < 2**63 else None


_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def _bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value) if value in (0, 1) else None
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


CONVERTERS = {
    "double": _float,
    "float": _float,
    "long": _int,
    "integer": _int,
    "boolean": _bool,
    "string": _str,
}


def plain(value: Any) -> Any:
    """numpy scalars and arrays as plain Python (JSON-ready)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


# --- writing -------------------------------------------------------------------------------------

REQUEST_COLUMNS = (
    "model", "request_id", "predictor", "model_id", "ts", "version", "namespace", "request_event_id",
    "response_event_id", "request_ts", "response_ts", "latency_ms", "status", "n_rows", "request_body",
    "response_body",
)  # fmt: skip


def request_tuple(record: InferenceRecord, schema: ModelSchema | None = None) -> tuple:
    request_ts = record.request_time.timestamp() if record.request_time is not None else None
    response_ts = record.response_time.timestamp() if record.response_time is not None else None
    body = record.request_body
    if schema is not None and schema.exclude and record.inputs is not None:
        body = _scrubbed(record, schema)
    return (
        record.model, record.request_id, record.predictor, record.model_id,
        request_ts if request_ts is not None else response_ts, record.version, record.namespace,
        record.request_event_id, record.response_event_id, request_ts, response_ts, record.latency_ms,
        record.status, record.row_count, body, record.response_body,
    )  # fmt: skip


def _scrubbed(record: InferenceRecord, schema: ModelSchema) -> str:
    """The request without the excluded features (the raw body is not kept: it holds them)."""
    names = list(record.names) or list(schema.inputs)
    keep = [i for i, name in enumerate(names) if name not in schema.exclude]
    rows = [[row[i] for i in keep if i < len(row)] for row in record.inputs or ()]
    return json.dumps({"data": {"names": [names[i] for i in keep], "ndarray": rows}}, default=plain)


def _merge(column: str, table: str) -> str:
    return f'{column} = COALESCE("{table}".{column}, excluded.{column})'


def requests_upsert(mark: str) -> str:
    t = "pbmon_requests"
    coalesced = ("request_event_id", "response_event_id", "request_ts", "response_ts", "status",
                 "request_body", "response_body")  # fmt: skip
    sets = [
        f'ts = COALESCE("{t}".request_ts, excluded.request_ts, "{t}".ts)',
        f'version = CASE WHEN "{t}".version = \'\' THEN excluded.version ELSE "{t}".version END',
        f'namespace = CASE WHEN "{t}".namespace = \'\' THEN excluded.namespace ELSE "{t}".namespace END',
        *(_merge(c, t) for c in coalesced),
        f'latency_ms = COALESCE("{t}".latency_ms, excluded.latency_ms, (COALESCE("{t}".response_ts, '
        f'excluded.response_ts) - COALESCE("{t}".request_ts, excluded.request_ts)) * 1000.0)',
        f'n_rows = CASE WHEN excluded.n_rows > "{t}".n_rows THEN excluded.n_rows ELSE "{t}".n_rows END',
    ]
    return (
        f"INSERT INTO {t} ({', '.join(REQUEST_COLUMNS)}) VALUES ({', '.join([mark] * len(REQUEST_COLUMNS))}) "
        f"ON CONFLICT (model, request_id, predictor, model_id) DO UPDATE SET {', '.join(sets)}"
    )


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def rows_upsert(table: str, schema: ModelSchema, mark: str) -> str:
    t = _q(table)
    values = [c.name for c in schema.features] + [PREDICTION] + [PROBA_PREFIX + c for c in schema.classes]
    head = [
        "request_id",
        "predictor",
        "model_id",
        "row",
        "ts",
        "version",
        "latency_ms",
        "status",
        "req",
        "resp",
    ]
    columns = [*head, *values]
    lone_req = "{a}.req = 1 AND {a}.resp = 0"
    lone_resp = "{a}.resp = 1 AND {a}.req = 0"
    derived = (
        f"CASE WHEN {lone_req.format(a=t)} AND {lone_resp.format(a='excluded')} THEN (excluded.ts - {t}.ts) * 1000.0 "
        f"WHEN {lone_resp.format(a=t)} AND {lone_req.format(a='excluded')} THEN ({t}.ts - excluded.ts) * 1000.0 END"
    )
    sets = [
        f"ts = CASE WHEN {t}.req = 0 AND excluded.req = 1 THEN excluded.ts ELSE {t}.ts END",
        f"version = CASE WHEN {t}.version = '' THEN excluded.version ELSE {t}.version END",
        f"latency_ms = COALESCE({t}.latency_ms, excluded.latency_ms, {derived})",
        f"status = COALESCE({t}.status, excluded.status)",
        f"req = CASE WHEN excluded.req = 1 THEN 1 ELSE {t}.req END",
        f"resp = CASE WHEN excluded.resp = 1 THEN 1 ELSE {t}.resp END",
        *(f"{_q(c)} = COALESCE({t}.{_q(c)}, excluded.{_q(c)})" for c in values),
    ]
    return (
        f"INSERT INTO {t} ({', '.join(map(_q, columns))}) VALUES ({', '.join([mark] * len(columns))}) "
        f'ON CONFLICT (request_id, predictor, model_id, "row") DO UPDATE SET {", ".join(sets)}'
    )


class RowConverter:
    """Turns a record into its rows-table tuples for one schema (cached per schema)."""

    def __init__(self, schema: ModelSchema):
        self.schema = schema
        self.converters = [CONVERTERS[c.type] for c in schema.features]
        self.predict = CONVERTERS[schema.prediction.type]
        self._indices: dict[tuple[str, ...], list[int | None]] = {}
        self._classes: dict[tuple[str, ...], list[int | None]] = {}
        # all features doubles: a row naming them in schema order converts in one C-level map(float)
        self.all_float = all(c.type in ("double", "float") for c in schema.features)
        self.width = len(schema.features)
        self._plans: dict[tuple[str, ...], tuple[bool, list]] = {}
        self.no_features = (None,) * self.width
        self.no_proba = (None,) * len(schema.classes)

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def of(schema: ModelSchema) -> RowConverter:
        return RowConverter(schema)

    def indices(self, names: tuple[str, ...]) -> list[int | None]:
        found = self._indices.get(names)
        if found is None:
            order = {n: i for i, n in enumerate(names or self.schema.inputs or self.schema.feature_names)}
            found = self._indices[names] = [order.get(c.name) for c in self.schema.features]
        return found

    def class_indices(self, classes: tuple[str, ...]) -> list[int | None]:
        found = self._classes.get(classes)
        if found is None:
            order = {c: i for i, c in enumerate(classes)}
            found = self._classes[classes] = [order.get(c) for c in self.schema.classes]
        return found

    def _fast(self, values: Sequence[Any]) -> list[float] | None:
        if len(values) != self.width:
            return None
        try:
            return list(map(float, values))  # NaN stays NaN: stored null (SQLite) or NaN, read as NaN
        except (TypeError, ValueError):
            return None  # a null or a value that is no number: the per-value path

    def rows(self, record: InferenceRecord) -> Iterator[tuple]:
        names = record.names
        plan = self._plans.get(names)
        if plan is None:
            indices = self.indices(names)
            fast = self.all_float and indices == list(range(self.width))
            plan = self._plans[names] = (fast, list(zip(self.converters, indices, strict=True)))
        fast, pairs = plan
        head = (record.request_id, record.predictor, record.model_id)
        inputs = record.inputs or ()
        predictions = record.predictions or ()
        probabilities = record.probabilities or ()
        class_at = self.class_indices(record.classes) if probabilities else []
        tail = (
            record.time.timestamp(), record.version, record.latency_ms, record.status,
            int(record.request_event_id is not None), int(record.response_event_id is not None),
        )  # fmt: skip
        for i in range(max(len(inputs), len(predictions))):
            values = inputs[i] if i < len(inputs) else None
            if values is None:
                features: Sequence[Any] = self.no_features
            else:
                features = self._fast(values) if fast else None  # type: ignore[assignment]
                if features is None:
                    n = len(values)
                    features = [
                        convert(values[j]) if j is not None and j < n else None for convert, j in pairs
                    ]
            prediction = self.predict(predictions[i]) if i < len(predictions) else None
            proba = probabilities[i] if i < len(probabilities) else None
            if proba is None:
                probas: Sequence[Any] = self.no_proba
            else:
                probas = [_float(proba[k]) if k is not None and k < len(proba) else None for k in class_at]
            yield (*head, i, *tail, *features, prediction, *probas)


# --- reading -------------------------------------------------------------------------------------


def _typed(values: Sequence[Any], kind: str) -> Any:
    if kind in ("double", "float"):
        return np.array(values, dtype=np.float64)
    if kind in ("long", "integer"):
        return pd.array(values, dtype="Int64")
    if kind == "boolean":
        return pd.array([None if v is None else bool(v) for v in values], dtype="boolean")
    return np.array(values, dtype=object)


def empty_frame(schema: ModelSchema | None) -> pd.DataFrame:
    return frame(
        [],
        schema,
        list(schema.features) if schema else [],
        [PROBA_PREFIX + c for c in schema.classes] if schema else [],
    )


def frame(
    fetched: Sequence[Sequence[Any]], schema: ModelSchema | None, wanted: list[Column], proba: list[str]
) -> pd.DataFrame:
    """The ``rows`` frame from ``SELECT request_id, row, ts, predictor, version, model_id, latency_ms,
    status, req, resp, <wanted>, prediction, <proba>``."""
    width = 10 + len(wanted) + 1 + len(proba)
    columns: list[Sequence[Any]] = list(zip(*fetched, strict=True)) if fetched else [() for _ in range(width)]
    (request_id, row, ts, predictor, version, model_id, latency, status, req, resp, *rest) = columns
    data: dict[str, Any] = {
        "request_id": np.array(request_id, dtype=object),
        "row": np.array(row, dtype=np.int64),
        "time": pd.to_datetime(np.array(ts, dtype=np.float64), unit="s", utc=True),
        "predictor": np.array(predictor, dtype=object),
        "version": np.array(version, dtype=object),
        "model_id": np.array(model_id, dtype=object),
        "latency_ms": np.array(latency, dtype=np.float64),
        "status": pd.array(status, dtype="Int64"),
        "complete": (np.array(req, dtype=np.int8) & np.array(resp, dtype=np.int8)).astype(bool),
    }
    assert tuple(data) == ROW_COLUMNS
    for column, values in zip(wanted, rest, strict=False):
        data[column.name] = _typed(values, column.type)
    data[PREDICTION] = _typed(rest[len(wanted)], schema.prediction.type if schema else "double")
    for name, values in zip(proba, rest[len(wanted) + 1 :], strict=True):
        data[name] = np.array(values, dtype=np.float64)
    return pd.DataFrame(data)


def labels_frame(fetched: Sequence[Sequence[Any]], kind: str) -> pd.DataFrame:
    convert = CONVERTERS.get(kind, _str)
    values = [convert(json.loads(r[2])) for r in fetched]
    return pd.DataFrame(
        {
            "request_id": np.array([r[0] for r in fetched], dtype=object),
            "row": np.array([r[1] for r in fetched], dtype=np.int64),
            "label": _typed(values, kind),
        }
    )
