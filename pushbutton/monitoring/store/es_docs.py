"""Records to Elasticsearch documents and back, for ``elasticsearch.ElasticsearchStore``.

Two documents kinds, both written with ``_op_type: create`` into the model's data streams:

* a **request document** (``logs-pushbutton.requests-<model>``) per (request id, predictor, graph
  node): the fields of ``convert.REQUEST_COLUMNS`` (raw bodies minus excluded features);
* a **row document** (``logs-pushbutton.rows-<model>``) per input row: the request's time, predictor,
  version, latency and status copied in, ``features.<name>`` typed like the SQL columns (the same
  ``convert`` coercions: a value that does not fit its type is left out, i.e. null), ``prediction`` and
  ``proba.<class>``.

``_id`` is derived from the record's key (model, request id, predictor, graph node, and the row), not
from an event id: the request and the response half of one request have different event ids but must
land in one document. A replay of the same record is a ``create`` of an existing ``_id``: a 409,
which is success. A half written alone and its other half written later also meet as a 409; then the
stored document and the new one are merged by ``merge_request``/``merge_row`` — the SQL store's
``COALESCE`` rules (a stored value is never replaced by a missing one; the request's time wins) — and
written back to the backing index that holds it, guarded by ``if_seq_no``/``if_primary_term``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from pushbutton.monitoring.records import InferenceRecord
from pushbutton.monitoring.store import convert
from pushbutton.monitoring.store.base import PREDICTION, ModelSchema

REQUEST_TIME_FIELDS = ("request_time", "response_time")
COALESCED = ("request_event_id", "response_event_id", "request_time", "response_time", "status",
             "request_body", "response_body")  # fmt: skip
ROW_HEAD = (
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
)


def doc_id(*parts: object) -> str:
    """A stable ``_id`` (40 hex characters; Elasticsearch allows 512 bytes) from a document's key, e.g.
    ``("row", model, request_id, predictor, model_id, row)``."""
    key = "\x1f".join(str(p) for p in parts)
    return hashlib.blake2b(key.encode(), digest_size=20).hexdigest()


def iso(ts: float | None) -> str | None:
    """Epoch seconds as the ISO 8601 text a ``date_nanos`` field takes (microseconds, UTC)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def epoch(text: str | None) -> float | None:
    """An ISO 8601 time (as Elasticsearch returns it, possibly with nanoseconds) as epoch seconds."""
    if text is None:
        return None
    return pd.Timestamp(text).value / 1e9


def clean(value: Any) -> Any:
    """JSON that Elasticsearch parses: NaN and infinities become null (it has no token for them)."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return convert.plain(value)


def request_doc(record: InferenceRecord, schema: ModelSchema | None) -> tuple[str, dict[str, Any]]:
    values = dict(zip(convert.REQUEST_COLUMNS, convert.request_tuple(record, schema), strict=True))
    doc: dict[str, Any] = {
        "@timestamp": iso(values.pop("ts")),
        "request_time": iso(values.pop("request_ts")),
        "response_time": iso(values.pop("response_ts")),
    }
    doc.update({k: clean(v) for k, v in values.items()})
    doc["complete"] = record.complete
    key = doc_id("request", record.model, record.request_id, record.predictor, record.model_id)
    return key, {k: v for k, v in doc.items() if v is not None}


def row_docs(record: InferenceRecord, schema: ModelSchema) -> Iterator[tuple[str, dict[str, Any]]]:
    converter = convert.RowConverter.of(schema)
    names = [c.name for c in schema.features]
    width = len(ROW_HEAD)
    for values in converter.rows(record):
        head = dict(zip(ROW_HEAD, values[:width], strict=True))
        features = values[width : width + len(names)]
        prediction = values[width + len(names)]
        probas = values[width + len(names) + 1 :]
        doc: dict[str, Any] = {
            "@timestamp": iso(head.pop("ts")),
            "model": record.model,
            **{k: clean(v) for k, v in head.items()},
        }
        doc["req"], doc["resp"] = bool(doc["req"]), bool(doc["resp"])
        doc["complete"] = doc["req"] and doc["resp"]
        doc["features"] = {n: v for n, v in zip(names, features, strict=True) if v is not None}
        if prediction is not None:
            doc[PREDICTION] = clean(prediction)
        doc["proba"] = {c: p for c, p in zip(schema.classes, probas, strict=True) if p is not None}
        key = doc_id("row", record.model, record.request_id, record.predictor, record.model_id, head["row"])
        yield key, {k: v for k, v in doc.items() if v is not None}


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def merge_request(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The SQL store's upsert of a request row, on documents (``stored`` wins where it has a value)."""
    out = dict(stored)
    for name in COALESCED:
        value = _first(stored.get(name), new.get(name))
        if value is not None:
            out[name] = value
    out["@timestamp"] = _first(stored.get("request_time"), new.get("request_time"), stored.get("@timestamp"))
    for name in ("version", "namespace"):
        out[name] = stored.get(name) or new.get(name) or ""
    latency = _first(stored.get("latency_ms"), new.get("latency_ms"))
    if latency is None:
        sent, answered = epoch(out.get("request_time")), epoch(out.get("response_time"))
        if sent is not None and answered is not None:
            latency = (answered - sent) * 1000.0
    if latency is not None:
        out["latency_ms"] = latency
    out["n_rows"] = max(int(stored.get("n_rows") or 0), int(new.get("n_rows") or 0))
    out["complete"] = out.get("request_event_id") is not None and out.get("response_event_id") is not None
    return out


def merge_row(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The SQL store's upsert of a feature row, on documents."""
    out = dict(stored)
    s_req, s_resp, n_req, n_resp = (bool(stored.get("req")), bool(stored.get("resp")), bool(new.get("req")),
                                    bool(new.get("resp")))  # fmt: skip
    if not s_req and n_req:
        out["@timestamp"] = new["@timestamp"]
    out["version"] = stored.get("version") or new.get("version") or ""
    latency = _first(stored.get("latency_ms"), new.get("latency_ms"))
    if latency is None:
        mine, theirs = epoch(stored["@timestamp"]), epoch(new["@timestamp"])
        if s_req and not s_resp and n_resp and not n_req:
            latency = (theirs - mine) * 1000.0  # type: ignore[operator]
        elif s_resp and not s_req and n_req and not n_resp:
            latency = (mine - theirs) * 1000.0  # type: ignore[operator]
    if latency is not None:
        out["latency_ms"] = latency
    status = _first(stored.get("status"), new.get("status"))
    if status is not None:
        out["status"] = status
    out["req"], out["resp"] = s_req or n_req, s_resp or n_resp
    out["complete"] = out["req"] and out["resp"]
    for group in ("features", "proba"):
        out[group] = {**new.get(group, {}), **stored.get(group, {})}
    prediction = _first(stored.get(PREDICTION), new.get(PREDICTION))
    if prediction is not None:
        out[PREDICTION] = prediction
    return out


def merge(kind: str, stored: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    return merge_request(stored, new) if kind == "request" else merge_row(stored, new)


# --- reading -------------------------------------------------------------------------------------


def row_tuple(source: dict[str, Any], wanted: list[str], classes: tuple[str, ...]) -> tuple:
    """A rows document as the tuple ``convert.frame`` takes."""
    features = source.get("features", {})
    proba = source.get("proba", {})
    return (
        source["request_id"], source["row"], epoch(source["@timestamp"]), source["predictor"],
        source.get("version", ""), source["model_id"], source.get("latency_ms"), source.get("status"),
        int(bool(source.get("req"))), int(bool(source.get("resp"))),
        *(features.get(name) for name in wanted), source.get(PREDICTION), *(proba.get(c) for c in classes),
    )  # fmt: skip


def record_dict(source: dict[str, Any]) -> dict[str, Any]:
    """A request document as ``MonitoringStore.records`` answers it (the SQL store's keys)."""

    def when(name: str) -> datetime | None:
        text = source.get(name)
        return None if text is None else pd.Timestamp(text).to_pydatetime()

    out = {name: source.get(name) for name in convert.REQUEST_COLUMNS}
    out.pop("ts")
    out["request_ts"], out["response_ts"] = when("request_time"), when("response_time")
    out["time"] = when("@timestamp")
    out["version"], out["namespace"] = out["version"] or "", out["namespace"] or ""
    out["n_rows"] = int(out["n_rows"] or 0)
    out["complete"] = out["request_event_id"] is not None and out["response_event_id"] is not None
    return out
