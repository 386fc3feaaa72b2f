"""The Elasticsearch 9 monitoring store (elasticsearch-py 9): the production backend of ``MonitoringStore``.

What it creates (``es_layout``; the definitions are the JSON files of ``deploy/elasticsearch/``): an
ILM policy, component and index templates, and per model two **data streams** —
``logs-pushbutton.requests-<model>`` (one document per request) and ``logs-pushbutton.rows-<model>``
(one per input row, features typed from the spec by a per-model index template) — written with
``_op_type: create`` and an ``_id`` derived from the record's key (``es_docs``), so a replay is a 409,
which counts as success; plus regular indices for indicator results (keyed by ``IndicatorResult.key``),
labels and the models' schemas.

Behaviour (the contract of ``base``), and what it costs here:

* **bulk writes**, ``bulk_docs`` documents a request; documents rejected with 429 (or 502/503/504),
  and whole requests answered so, are retried with exponential backoff (``backoff_s`` doubling up to
  ``max_backoff_s``, ``max_retries`` times), then ``StoreUnavailable`` is raised naming how many were
  refused — never dropped: the caller still holds them (the logger answers 503, the gateway's emitter
  spools and replays; a replay is idempotent). Unreachable nodes are retried alike. Any other refusal
  (a mapping error) is a ``StoreError`` naming the document;
* **halves merge**: a 409 whose stored document lacks what the new one brings is merged
  (``es_docs.merge``) and written back to its backing index under ``if_seq_no``/``if_primary_term``
  (a concurrent change makes it read and merge again). Elasticsearch keeps ``_id`` unique only within
  one backing index: a replay that crosses a rollover (daily by default) stores a second copy, which
  ``rows``/``records`` fold into one (first non-null value per field); aggregations would count it twice;
* **window aggregations** (``aggregate``) are one ``size: 0`` search (``es_aggs``), no rows read;
* ``rows``/``records``/``labels``/``purge`` page with a **point in time** and ``search_after``
  (``page_size`` hits a request, sorted by ``_shard_doc``): a window of N rows costs N/10,000 round
  trips and ~1 KB of JSON per row at 20 features (1M rows: ~100 requests, ~1 GB, tens of seconds) —
  prefer ``aggregate`` for large windows. More than ``max_rows`` rows is a ``StoreError`` saying so,
  never a silently truncated frame;
* **visibility**: with ``refresh=false`` (the default) a write is searchable after the index's refresh
  interval (1 s); ``refresh=wait_for`` makes every write wait for it (read-your-writes);
* **retention**: the ILM policy ``pushbutton-logs`` deletes backing indices ``retention_days`` after
  their rollover (so data lives retention + up to one rollover period); ``set_retention(model, days)``
  gives a model its own policy; ``purge(model, before)`` deletes exactly (``_delete_by_query``), the
  SQL store's contract;
* **errors**: 401/403 and other refusals are ``StoreError`` naming the operation (403: the privilege);
  connection failures and 429/5xx after the retries are ``StoreUnavailable``. Credentials are never
  in messages or logs (``url`` is redacted).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import elasticsearch as es
import pandas as pd

from pushbutton.monitoring import aggregate as agg
from pushbutton.monitoring.records import InferenceRecord, Label, is_node_predictor
from pushbutton.monitoring.results import IndicatorResult
from pushbutton.monitoring.store import convert, es_aggs, es_docs
from pushbutton.monitoring.store import es_connection as conn
from pushbutton.monitoring.store import es_layout as L
from pushbutton.monitoring.store.base import (
    PREDICTION,
    PROBA_PREFIX,
    FeatureLike,
    LabelResult,
    ModelSchema,
    MonitoringStore,
    StoreCounters,
    StoreError,
    WriteResult,
)
from pushbutton.monitoring.store.es_alerts import EsAlerts
from pushbutton.monitoring.store.es_client import Client
from pushbutton.monitoring.store.es_models import Models

MAX_TERMS = 1000  # request ids per terms query
MAX_SERIES = 10_000  # indicator series (indicator x version x predictor) per model read at once
MAX_LAST = 100  # top_hits' limit (index.max_inner_result_window)
ROW_SOURCE = ["@timestamp", "request_id", "row", "predictor", "version", "model_id", "latency_ms", "status",
              "req", "resp", PREDICTION, "proba.*"]  # fmt: skip


class ElasticsearchStore(EsAlerts, MonitoringStore):
    def __init__(
        self,
        url: str | None = None,
        *,
        settings: conn.EsSettings | None = None,
        definitions: Path | None = None,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        if settings is None:
            if not url:
                raise StoreError(
                    "ElasticsearchStore needs a URL or settings (fix: elasticsearch+https://host:9200)"
                )
            settings = conn.from_url(url)
        self.settings = settings
        self.url = settings.redacted
        self.layout = L.Layout(definitions)
        self.clock = clock
        self.es = Client(client or es.Elasticsearch(**settings.client_kwargs()), settings, self.url, sleep)
        self.refresh = settings.refresh if settings.refresh != "false" else None
        self.schemas = Models(self.es, self.layout, settings, self.refresh)

    @classmethod
    def from_connection(
        cls,
        host: str | None,
        login: str | None = None,
        password: str | None = None,
        extra: dict[str, Any] | None = None,
        *,
        port: int | None = None,
        schema: str | None = None,
        **kwargs: Any,
    ) -> ElasticsearchStore:
        """The store of an Airflow Connection's fields (``es_connection`` documents them)."""
        return cls(
            settings=conn.from_connection(host, login, password, extra, port=port, schema=schema), **kwargs
        )

    def __repr__(self) -> str:
        return f"ElasticsearchStore({self.url!r})"

    def close(self) -> None:
        self.es.close()

    def ping(self) -> None:
        info = self.es.call("reach the cluster", "info")
        version = str(info.get("version", {}).get("number", "0"))
        if int(version.split(".")[0] or 0) < 9:
            raise StoreError(
                f"{self.url} runs Elasticsearch {version}; pushbutton needs 9.x (fix: upgrade the cluster)"
            )

    # --- definitions and schemas (es_models) -----------------------------------------------------

    def bootstrap(self) -> None:
        """Create (or update) the ILM policy, templates and indices of ``deploy/elasticsearch``; idempotent."""
        self.schemas.bootstrap()

    def set_retention(self, model: str, days: float) -> None:
        """Give ``model``'s log streams their own ILM policy deleting after ``days`` (``logging.retention_days``)."""
        self.schemas.set_retention(model, days)

    def ensure_model(
        self,
        model: str,
        features: Sequence[FeatureLike | tuple[str, str] | str],
        prediction: FeatureLike | tuple[str, str] | None = None,
        exclude: Sequence[str] = (),
    ) -> ModelSchema:
        return self.schemas.ensure(model, features, prediction, exclude)

    def schema(self, model: str) -> ModelSchema | None:
        return self.schemas.schema(model)

    def models(self) -> list[str]:
        named = self.es.search("list models", L.MODELS, size=MAX_SERIES, source=["model"])
        logged = self.es.search("list models", L.REQUESTS_PREFIX + "*", size=0,
                                aggs={"models": {"terms": {"field": "model", "size": MAX_SERIES}}})  # fmt: skip
        found = {h["_source"]["model"] for h in named["hits"]["hits"]}
        found |= {b["key"] for b in logged.get("aggregations", {}).get("models", {}).get("buckets", [])}
        return sorted(found)

    # --- the request log -------------------------------------------------------------------------

    def write_records(self, records: Sequence[InferenceRecord]) -> WriteResult:
        if not records:
            return WriteResult(0, 0)
        self.schemas.bootstrap()
        by_model: dict[str, list[InferenceRecord]] = {}
        for record in records:
            by_model.setdefault(record.model, []).append(record)
        schemas = {model: self.schemas.schema(model) for model in by_model}
        for model, group in by_model.items():
            schema = schemas[model]
            seen = dict.fromkeys(
                c for r in group if r.probabilities is not None for c in r.classes
            )  # first seen first
            if schema is not None and set(seen) - set(schema.classes):
                self.schemas.add_classes(model, seen)
                schemas[model] = self.schemas.schema(model)
        docs: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}

        def put(index: str, kind: str, key: str, doc: dict[str, Any]) -> None:
            stored = docs.get((index, key))
            docs[(index, key)] = (kind, es_docs.merge(kind, stored[1], doc) if stored else doc)

        rows = untyped = 0
        for record in records:
            schema = schemas[record.model]
            put(L.requests_stream(record.model), "request", *es_docs.request_doc(record, schema))
            if schema is None:
                untyped += 1
                continue
            if is_node_predictor(record.predictor):  # a graph node's record: request log only
                continue
            for key, doc in es_docs.row_docs(record, schema):
                put(L.rows_stream(record.model), "row", key, doc)
                rows += 1
        self.es.create_merging(
            "write log documents",
            [(i, k, kind, doc) for (i, k), (kind, doc) in docs.items()],
            es_docs.merge,
            refresh=self.refresh,
        )
        return WriteResult(len(records), rows, untyped)

    def rows(
        self,
        model: str,
        start: datetime,
        end: datetime,
        *,
        version: str | None = None,
        predictor: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        query = es_aggs.window_query(start, end, version=version, predictor=predictor)
        schema = self.schemas.schema(model)
        if schema is None:
            return convert.empty_frame(None)
        wanted = [c for c in schema.features if columns is None or c.name in columns]
        names = [c.name for c in wanted]
        source = ROW_SOURCE + (["features"] if columns is None else [f"features.{n}" for n in names])
        tuples, ids = [], []
        for hit in self.es.scan(f"read the rows of {model!r}", L.rows_stream(model), query, source,
                                limit=self.settings.max_rows):  # fmt: skip
            tuples.append(es_docs.row_tuple(hit["_source"], names, schema.classes))
            ids.append(hit["_id"])
        frame = convert.frame(tuples, schema, wanted, [PROBA_PREFIX + c for c in schema.classes])
        if pd.Index(ids, dtype=object).has_duplicates:
            frame = _fold(frame, ids, tuples)
        return frame

    def records(self, model: str, start: datetime, end: datetime, *, limit: int | None = None) -> list[dict]:
        found: dict[str, dict[str, Any]] = {}
        sort = [{"@timestamp": "asc"}, {"_shard_doc": "asc"}]
        for hit in self.es.scan(f"read the records of {model!r}", L.requests_stream(model),
                                es_aggs.window_query(start, end), True, sort=sort, stop=limit):  # fmt: skip
            stored = found.get(hit["_id"])
            found[hit["_id"]] = es_docs.merge_request(stored, hit["_source"]) if stored else hit["_source"]
        return [es_docs.record_dict(source) for source in found.values()]

    def versions(self, model: str, start: datetime, end: datetime) -> list[tuple[str, str, int]]:
        aggs = {"p": {"terms": {"field": "predictor", "size": es_aggs.MAX_BUCKETS},
                      "aggs": {"v": {"terms": {"field": "version", "size": es_aggs.MAX_BUCKETS}}}}}  # fmt: skip
        found = self.es.search(f"read the versions of {model!r}", L.requests_stream(model), size=0,
                               query=es_aggs.window_query(start, end), aggs=aggs)  # fmt: skip
        out = [(p["key"], v["key"], int(v["doc_count"]))
               for p in found.get("aggregations", {}).get("p", {}).get("buckets", []) for v in p["v"]["buckets"]]  # fmt: skip
        return sorted((x for x in out if not is_node_predictor(x[0])), key=lambda x: (-x[2], x[0], x[1]))

    def aggregate(
        self, model: str, start: datetime, end: datetime, *, task: str = ""
    ) -> agg.WindowAggregates:
        schema = self.schemas.schema(model)
        if schema is None:
            return agg.window_aggregates(convert.empty_frame(None), [], task=task)
        body = es_aggs.aggregation_body(schema, start, end, task)
        found = self.es.search(f"aggregate the window of {model!r}", L.rows_stream(model), **body)
        return es_aggs.parse(found, schema, task)

    # --- labels ----------------------------------------------------------------------------------

    def _known(self, model: str, ids: Iterable[str], *extra: dict[str, Any]) -> set[str]:
        """Which of ``ids`` have a record in ``model``'s request log (matching ``extra`` filters)."""
        ids, known = sorted(set(ids)), set()
        for i in range(0, len(ids), MAX_TERMS):
            part = ids[i : i + MAX_TERMS]
            query = {"bool": {"filter": [{"terms": {"request_id": part}}, *extra]}}
            found = self.es.search(f"look up request ids of {model!r}", L.requests_stream(model), size=0, query=query,
                                   aggs={"ids": {"terms": {"field": "request_id", "size": len(part)}}})  # fmt: skip
            known.update(b["key"] for b in found.get("aggregations", {}).get("ids", {}).get("buckets", []))
        return known

    def write_labels(
        self, model: str, labels: Iterable[Label], *, now: datetime | None = None
    ) -> LabelResult:
        self.schemas.bootstrap()
        received = now if now is not None else datetime.fromtimestamp(self.clock(), UTC)
        latest = {(x.request_id, int(x.row)): x.label for x in labels}
        if not latest:
            return LabelResult(0, 0)
        operations = [
            ({"index": {"_index": L.LABELS, "_id": es_docs.doc_id("label", model, rid, row)}},
             {"model": model, "request_id": rid, "row": row, "label": json.dumps(convert.plain(value)),
              "received": es_aggs.iso(received)})
            for (rid, row), value in latest.items()
        ]  # fmt: skip
        results = self.es.bulk(
            f"write {len(operations)} labels of {model!r}", operations, refresh=self.refresh
        )
        self.es.raise_refused([(op[0]["index"]["_id"], r) for op, r in zip(operations, results, strict=True)
                             if r["status"] >= 300])  # fmt: skip
        ids = sorted({rid for rid, _ in latest})
        known = self._known(model, ids)
        unknown = tuple(i for i in ids if i not in known)
        return LabelResult(len(operations), len(ids) - len(unknown), unknown)

    def labels(
        self,
        model: str,
        start: datetime,
        end: datetime,
        *,
        version: str | None = None,
        predictor: str | None = None,
    ) -> pd.DataFrame:
        window = es_aggs.window_query(start, end, version=version, predictor=predictor)
        stored = [
            (h["_source"]["request_id"], h["_source"]["row"], h["_source"]["label"])
            for h in self.es.scan(f"read the labels of {model!r}", L.LABELS, {"term": {"model": model}},
                                  ["request_id", "row", "label"])
        ]  # fmt: skip
        known = self._known(model, {rid for rid, _, _ in stored}, *window["bool"]["filter"])
        schema = self.schemas.schema(model)
        return convert.labels_frame(
            [t for t in stored if t[0] in known], schema.prediction.type if schema else "string"
        )

    # --- indicator results -----------------------------------------------------------------------

    def write_indicators(self, results: Iterable[IndicatorResult]) -> int:
        self.schemas.bootstrap()
        operations = []
        for r in results:
            series = json.dumps([r.model, r.indicator_id, r.version, r.predictor])
            document = {
                "model": r.model, "version": r.version, "predictor": r.predictor, "indicator_id": r.indicator_id,
                "indicator_type": r.indicator_type, "series": series, "status": r.status,
                "window_start": es_aggs.iso(r.window_start), "window_end": es_aggs.iso(r.window_end),
                "computed_at": es_aggs.iso(r.computed_at), "value": es_docs.clean(r.value),
                "threshold": es_docs.clean(r.threshold), "flagged": r.flagged, "sample_size": r.sample_size,
                "reference_size": r.reference_size, "run_id": r.run_id, "message": r.message,
                "result": json.dumps(r.as_dict(), default=convert.plain, allow_nan=True),
            }  # fmt: skip
            key = es_docs.doc_id("indicator", *r.key)
            operations.append(({"index": {"_index": L.INDICATORS, "_id": key}}, {k: v for k, v in document.items()
                                                                                 if v is not None}))  # fmt: skip
        if not operations:
            return 0
        found = self.es.bulk(f"write {len(operations)} indicator results", operations, refresh=self.refresh)
        self.es.raise_refused([(op[0]["index"]["_id"], r) for op, r in zip(operations, found, strict=True)
                             if r["status"] >= 300])  # fmt: skip
        return len(operations)

    def indicators(
        self,
        model: str,
        *,
        version: str | None = None,
        predictor: str | None = None,
        indicator_id: str | None = None,
        last: int = 1,
    ) -> list[IndicatorResult]:
        if last < 1:
            raise ValueError(f"last must be >= 1, got {last}")
        if last > MAX_LAST:
            raise ValueError(
                f"last must be <= {MAX_LAST} on Elasticsearch (index.max_inner_result_window), got {last}"
            )
        filters: list[dict[str, Any]] = [{"term": {"model": model}}]
        for field, value in (("version", version), ("predictor", predictor), ("indicator_id", indicator_id)):
            if value is not None:
                filters.append({"term": {field: value}})
        aggs = {"series": {"terms": {"field": "series", "size": MAX_SERIES}, "aggs": {"last": {"top_hits": {
            "size": last, "sort": [{"window_end": {"order": "desc"}}], "_source": ["result"]}}}}}  # fmt: skip
        found = self.es.search(f"read the indicators of {model!r}", L.INDICATORS, size=0,
                               query={"bool": {"filter": filters}}, aggs=aggs)  # fmt: skip
        out = [
            IndicatorResult.from_dict(json.loads(hit["_source"]["result"]))
            for bucket in found.get("aggregations", {}).get("series", {}).get("buckets", [])
            for hit in bucket["last"]["hits"]["hits"]
        ]
        out.sort(key=lambda r: (r.indicator_id, r.version, r.predictor))
        out.sort(key=lambda r: r.window_end, reverse=True)
        return out

    # --- retention and status --------------------------------------------------------------------

    def purge(self, model: str, before: datetime) -> int:
        cutoff = es_aggs.iso(before)
        old = {"range": {"@timestamp": {"lt": cutoff}}}
        requests = L.requests_stream(model)
        old_ids = {h["_source"]["request_id"] for h in self.es.scan(f"find the old records of {model!r}", requests,
                                                                   old, ["request_id"])}  # fmt: skip
        kept = self._known(model, old_ids, {"range": {"@timestamp": {"gte": cutoff}}})
        drop = sorted(old_ids - kept)
        for i in range(0, len(drop), MAX_TERMS):
            query = {
                "bool": {
                    "filter": [{"term": {"model": model}}, {"terms": {"request_id": drop[i : i + MAX_TERMS]}}]
                }
            }
            self.es.call(f"purge the labels of {model!r}", "delete_by_query", index=L.LABELS, query=query,
                         refresh=True, conflicts="proceed", missing_ok=True)  # fmt: skip
        self.es.call(f"purge the rows of {model!r}", "delete_by_query", index=L.rows_stream(model), query=old,
                     refresh=True, conflicts="proceed", missing_ok=True)  # fmt: skip
        found = self.es.call(f"purge the records of {model!r}", "delete_by_query", index=requests, query=old,
                             refresh=True, conflicts="proceed", missing_ok=True)  # fmt: skip
        return int((found or {}).get("deleted", 0))

    def counters(self, model: str | None = None) -> StoreCounters:
        index = L.requests_stream(model) if model is not None else L.REQUESTS_PREFIX + "*"
        aggs = {
            "per_model": {"terms": {"field": "model", "size": MAX_SERIES}},
            "incomplete": {"filter": {"term": {"complete": False}}},
            "errors": {"filter": {"range": {"status": {"gte": 400}}}},
            "rows": {"sum": {"field": "n_rows"}},
            "first": {"min": {"field": "@timestamp"}},
            "last": {"max": {"field": "@timestamp"}},
        }
        found = self.es.search("count the log", index, size=0, track_total_hits=True, aggs=aggs).get(
            "aggregations"
        )
        scope = {"term": {"model": model}} if model is not None else {"match_all": {}}
        labels = self.es.search("count the labels", L.LABELS, size=0, track_total_hits=True, query=scope)
        flags = {"series": {"terms": {"field": "series", "size": MAX_SERIES}, "aggs": {"latest": {"top_hits": {
            "size": 1, "sort": [{"window_end": {"order": "desc"}}], "_source": ["flagged"]}}}}}  # fmt: skip
        results = self.es.search("count the indicators", L.INDICATORS, size=0, track_total_hits=True, query=scope,
                                 aggs=flags)  # fmt: skip
        latest = [b["latest"]["hits"]["hits"][0]["_source"] for b in
                  results.get("aggregations", {}).get("series", {}).get("buckets", [])]  # fmt: skip
        if not found:
            found = {
                "per_model": {"buckets": []},
                "incomplete": {},
                "errors": {},
                "rows": {},
                "first": {},
                "last": {},
            }

        def when(name: str) -> datetime | None:
            text = found[name].get("value_as_string")
            return (
                pd.Timestamp(text).to_pydatetime() if text and found[name].get("value") is not None else None
            )

        per_model = {b["key"]: int(b["doc_count"]) for b in found["per_model"]["buckets"]}
        return StoreCounters(
            records=sum(per_model.values()),
            incomplete=int(found["incomplete"].get("doc_count", 0)),
            errors=int(found["errors"].get("doc_count", 0)),
            rows=int(found["rows"].get("value") or 0),
            labels=_total(labels),
            indicators=_total(results),
            flagged=sum(1 for s in latest if s.get("flagged") is True),
            first=when("first"),
            last=when("last"),
            per_model=per_model,
        )

    def refresh_all(self) -> None:
        """Make every write searchable now (``POST _refresh``; needs the ``maintenance`` privilege)."""
        indices = [L.REQUESTS_PREFIX + "*", L.ROWS_PREFIX + "*", L.LABELS, L.INDICATORS, L.MODELS]
        self.es.call("refresh the indices", "indices.refresh", index=indices, missing_ok=True)


def _fold(frame: pd.DataFrame, ids: list[str], tuples: list[tuple]) -> pd.DataFrame:
    """One row per ``_id``: copies of a document in two backing indices (a replay that crossed a
    rollover, where ``_id`` is no longer unique) folded into one — the first non-null value of each
    column in scan order, complete when some copy had the request and some the response."""
    halves = (
        pd.DataFrame({"req": [t[8] for t in tuples], "resp": [t[9] for t in tuples]})
        .groupby(ids, sort=False)
        .max()
    )
    folded = frame.groupby(pd.Index(ids, dtype=object), sort=False).first()
    folded["complete"] = ((halves["req"] == 1) & (halves["resp"] == 1)).reindex(folded.index).to_numpy()
    return folded.reset_index(drop=True)


def _total(found: dict[str, Any]) -> int:
    total = found.get("hits", {}).get("total", 0)
    return int(total.get("value", 0) if isinstance(total, dict) else total)
