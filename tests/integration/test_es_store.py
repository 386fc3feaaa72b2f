"""The Elasticsearch monitoring store over HTTP, against a STAND-IN for Elasticsearch 9 (tests/es_fake.py):
no Elasticsearch server can run here, so these tests check what the store sends and how it reads the
answers — request bodies validated by the stand-in, retries, merging, paging — not Elasticsearch itself.

The SQL store's contract (tests/unit/test_monitoring_store.py) re-runs here on the Elasticsearch store,
and the same traffic written to both stores must read back the same."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pandas as pd
import pytest

from pushbutton.monitoring.records import InferenceRecord, Label
from pushbutton.monitoring.store import StoreError, StoreUnavailable
from pushbutton.monitoring.store import es_layout as L
from pushbutton.monitoring.store.elasticsearch import ElasticsearchStore
from pushbutton.monitoring.store.sql import SqlStore
from tests.es_fake import EsStandIn
from tests.unit import test_monitoring_store as contract
from tests.unit.test_monitoring_store import FEATURES, T0, record, result

pytestmark = [pytest.mark.integration, pytest.mark.standin]

HOUR = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
ROWS, REQUESTS = L.rows_stream("shop"), L.requests_stream("shop")


@pytest.fixture
def standin() -> Iterator[EsStandIn]:
    with EsStandIn() as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


def es_store(standin: EsStandIn, sleeps: list[float], options: str = "") -> ElasticsearchStore:
    url = f"elasticsearch+http://127.0.0.1:{standin.port}?refresh=wait_for{options}"
    return ElasticsearchStore(url, sleep=sleeps.append)


@pytest.fixture
def store(standin: EsStandIn, sleeps: list[float]) -> Iterator[ElasticsearchStore]:
    found = es_store(standin, sleeps)
    found.ensure_model("shop", FEATURES, ("label", "long"))
    yield found
    found.close()


CONTRACT: list[Callable[..., None]] = [
    contract.test_round_trip_to_a_typed_frame,
    contract.test_writes_are_idempotent,
    contract.test_halves_written_apart_merge_into_one_complete_record,
    contract.test_filters_and_versions,
    contract.test_untyped_model_is_kept_in_the_request_table,
    contract.test_positional_rows_follow_the_spec_order,
    contract.test_a_changed_feature_type_is_refused_with_the_fix,
    contract.test_labels_are_kept_and_unknown_ids_reported,
    contract.test_indicator_results_replace_on_recompute_and_read_newest_first,
    contract.test_purge_at_the_retention_edge,
    contract.test_counters,
    contract.test_alert_history_replaces_by_id_and_reads_newest_first,
]


@pytest.mark.parametrize("check", CONTRACT, ids=[c.__name__.removeprefix("test_") for c in CONTRACT])
def test_sql_store_contract_on_elasticsearch(store: ElasticsearchStore, check: Callable[..., None]) -> None:
    check(store)


# --- what gets created ---------------------------------------------------------------------------


def test_definitions_templates_and_typed_data_streams(store: ElasticsearchStore, standin: EsStandIn):
    store.write_records([record("r1"), record("u1", model="unknown-model")])
    policy = standin.policies[L.POLICY]
    assert policy["phases"]["delete"]["min_age"] == "30d" and "rollover" in policy["phases"]["hot"]["actions"]
    assert standin.templates[L.model_template_name("shop")]["priority"] == 600
    features = standin.mapping(ROWS)["properties"]["features"]["properties"]
    assert {n: f["type"] for n, f in features.items()} == {
        "x": "double",
        "n": "long",
        "flag": "boolean",
        "city": "keyword",
    }
    assert standin.mapping(ROWS)["properties"]["prediction"]["type"] == "long"
    assert (
        standin.mapping(ROWS)["properties"]["proba"]["properties"]["1"]["type"] == "double"
    )  # dynamic template
    for stream in (ROWS, REQUESTS, L.requests_stream("unknown-model")):
        assert standin.streams[stream].template.startswith("pushbutton-")  # not the built-in logs template
        assert standin.settings(stream)["index.mode"] == "standard"
        assert standin.settings(stream)["index.lifecycle.name"] == L.POLICY
    assert L.rows_stream("unknown-model") not in standin.streams  # an untyped model keeps its requests only


def test_every_log_write_is_a_create_with_an_id_into_a_data_stream(
    store: ElasticsearchStore, standin: EsStandIn
):
    store.write_records([record("r1", half="request")])
    store.write_records([record("r1", half="response"), record("r2")])
    store.write_records([record("r1"), record("r2")])  # a replay
    ops = [(line, call.params) for call in standin.calls("bulk") for line in call.body[::2]]
    into_streams = [
        (op, params) for op, params in ops if next(iter(op.values()))["_index"].startswith("logs-")
    ]
    assert into_streams and all(list(op) == ["create"] and op["create"]["_id"] for op, _ in into_streams)
    assert all(params["require_data_stream"] == "true" for _, params in into_streams)
    merges = [op["index"] for op, _ in ops if "index" in op and op["index"]["_index"].startswith(".ds-")]
    assert merges and all(
        "if_seq_no" in m and "if_primary_term" in m for m in merges
    )  # optimistic concurrency
    assert len(standin.documents(REQUESTS)) == 2 and len(standin.documents(ROWS)) == 4  # no duplicates


def test_a_models_retention_becomes_its_ilm_policy(store: ElasticsearchStore, standin: EsStandIn):
    store.write_records([record("r1")])
    store.set_retention("shop", 7)
    name = L.model_policy_name("shop")
    assert standin.policies[name]["phases"]["delete"]["min_age"] == "7d"
    assert (
        standin.settings(ROWS)["index.lifecycle.name"]
        == name
        == standin.settings(REQUESTS)["index.lifecycle.name"]
    )
    assert standin.templates[L.model_template_name("shop")]["template"]["settings"] == {
        "index.lifecycle.name": name
    }
    store.ensure_model("shop", FEATURES, ("label", "long"))  # a later ensure keeps the model's policy
    assert standin.templates[L.model_template_name("shop")]["template"]["settings"] == {
        "index.lifecycle.name": name
    }


def test_excluded_features_are_never_stored(standin: EsStandIn, sleeps: list[float]):
    with es_store(standin, sleeps) as store:
        store.ensure_model("shop", FEATURES, ("label", "long"), exclude=["city"])
        store.write_records([record("r1")])
        assert "city" not in store.rows("shop", *HOUR).columns
    assert all("city" not in doc["features"] for doc in standin.documents(ROWS))
    assert all("Oslo" not in doc["request_body"] for doc in standin.documents(REQUESTS))


# --- reading -------------------------------------------------------------------------------------


def traffic() -> list[InferenceRecord]:
    """Three predictors/versions, a lone half, an error and a failed parse, over two windows."""
    records = [record(f"c{i}", T0 + timedelta(minutes=i), latency_ms=10.0 + i) for i in range(8)]
    records += [record(f"n{i}", T0 + timedelta(minutes=i), version="2", predictor="candidate", latency_ms=30.0)
                for i in range(3)]  # fmt: skip
    records += [record("lone", T0, half="request"), record("err", T0, status=500, latency_ms=5.0)]
    records += [record("late", T0 + timedelta(hours=2))]
    return records


def test_same_answers_as_the_sql_store(store: ElasticsearchStore, tmp_path):
    with SqlStore(f"sqlite:///{tmp_path / 'm.db'}") as sql:
        sql.ensure_model("shop", FEATURES, ("label", "long"))
        results = [
            result(T0, 0.1),
            result(T0 + timedelta(minutes=30), 0.4, flagged=True),
            result(T0, 0.2, version="2"),
        ]
        for target in (sql, store):
            target.write_records(traffic())
            target.write_labels("shop", [Label("c1", 1), Label("c2", 0, row=1), Label("ghost", 1)], now=T0)
            target.write_indicators(results)
        key = ["request_id", "row"]
        rows = [s.rows("shop", *HOUR).sort_values(key).reset_index(drop=True) for s in (sql, store)]
        pd.testing.assert_frame_equal(rows[0], rows[1])
        assert _same_records(sql.records("shop", *HOUR), store.records("shop", *HOUR))
        assert sql.versions("shop", *HOUR) == store.versions("shop", *HOUR)
        assert sql.counters() == store.counters()
        labels = [s.labels("shop", *HOUR).sort_values(key).reset_index(drop=True) for s in (sql, store)]
        pd.testing.assert_frame_equal(labels[0], labels[1])
        newest_first = [s.indicators("shop", last=5) for s in (sql, store)]  # ties in any order: sort them
        assert [r.window_end for r in newest_first[1]] == sorted(
            (r.window_end for r in newest_first[1]), reverse=True
        )
        assert sorted(newest_first[0], key=lambda r: r.key) == sorted(newest_first[1], key=lambda r: r.key)
        for task in ("classification", "regression"):
            mine, theirs = store.aggregate("shop", *HOUR, task=task), sql.aggregate("shop", *HOUR, task=task)
            for name in ("requests", "features", "predictions"):
                pd.testing.assert_frame_equal(getattr(mine, name), getattr(theirs, name), check_dtype=False,
                                              check_index_type=False)  # fmt: skip


def _same_records(a: list[dict], b: list[dict]) -> bool:
    """Equal, oldest first (records of the same time in any order)."""
    assert [r["time"] for r in a] == [r["time"] for r in b]
    return sorted(a, key=lambda r: r["request_id"]) == sorted(b, key=lambda r: r["request_id"])


def test_aggregation_is_one_search_that_reads_no_rows(store: ElasticsearchStore, standin: EsStandIn):
    store.write_records(traffic())
    before = len(standin.requests)
    result = store.aggregate("shop", *HOUR, task="classification")
    sent = [r for r in standin.requests[before:] if "/_search" in r.path or "/_pit" in r.path]
    assert [r.path for r in sent] == [f"/{ROWS}/_search"]  # no point in time: no document is read
    body = sent[0].body
    assert body["size"] == 0 and body["query"]["bool"]["filter"][0]["range"]["@timestamp"]["lt"].startswith(
        "2025-03-01T13"
    )
    champion = result.requests.set_index(["predictor", "version"]).loc[("champion", "1")]
    assert (champion["requests"], champion["incomplete"], champion["errors"]) == (10, 1, 1)
    assert champion["error_rate"] == pytest.approx(1 / 9)


def test_store_aggregate_reads_the_window(standin: EsStandIn, sleeps: list[float]):
    with es_store(standin, sleeps) as store:
        store.ensure_model("m", [("x", "double")], ("y", "double"))
        store.write_records([
            InferenceRecord(f"r{i}", "m", "champion", "1", request_event_id=f"q{i}", response_event_id=f"p{i}",
                            request_time=T0 + timedelta(seconds=i), response_time=T0 + timedelta(seconds=i),
                            latency_ms=float(i), status=200, names=("x",), inputs=[[float(i)]], predictions=[i * 2.0])
            for i in range(10)
        ])  # fmt: skip
        result = store.aggregate("m", T0, T0 + timedelta(seconds=5), task="regression")
    assert result.requests["requests"].tolist() == [5]
    assert result.features["mean"].tolist() == [2.0]
    assert result.predictions["max"].tolist() == [8.0]


def test_rows_page_through_a_point_in_time(standin: EsStandIn, sleeps: list[float]):
    with es_store(standin, sleeps, "&page_size=3") as store:
        store.ensure_model("shop", FEATURES, ("label", "long"))
        store.write_records([record(f"r{i}") for i in range(4)])  # 8 rows
        frame = store.rows("shop", *HOUR)
    assert len(frame) == 8 and frame.groupby("request_id").size().tolist() == [2, 2, 2, 2]
    searches = [c.body for c in standin.calls("search") if "pit" in (c.body or {})]
    assert (
        len(searches) == 3
        and "search_after" not in searches[0]
        and all("search_after" in s for s in searches[1:])
    )
    assert len(standin.calls("open_pit")) == len(standin.calls("close_pit")) and not standin.pits  # closed


def test_a_window_over_max_rows_is_a_clear_error(standin: EsStandIn, sleeps: list[float]):
    with es_store(standin, sleeps, "&max_rows=5") as store:
        store.ensure_model("shop", FEATURES, ("label", "long"))
        store.write_records([record(f"r{i}") for i in range(3)])  # 6 rows
        with pytest.raises(
            StoreError, match=r"holds more than 5 rows \(fix: narrow the window, aggregate it"
        ):
            store.rows("shop", *HOUR)
        assert len(store.rows("shop", T0, T0 + timedelta(microseconds=1), predictor="shadow")) == 0
    assert not standin.pits


def test_a_replay_across_a_rollover_reads_as_one_record(store: ElasticsearchStore, standin: EsStandIn):
    store.write_records([record("r1", half="request")])
    standin.rollover(ROWS)
    standin.rollover(REQUESTS)
    store.write_records([record("r1", half="response")])  # _id is unique per backing index only
    assert len(standin.documents(ROWS)) == 4  # two copies of each row, in two backing indices
    frame = store.rows("shop", *HOUR).sort_values("row")
    assert len(frame) == 2 and frame["prediction"].tolist() == [1, 0] and frame["x"].iloc[0] == 1.5
    assert frame["complete"].all()
    (only,) = store.records("shop", *HOUR)
    assert only["complete"] and only["time"] == T0


# --- failures ------------------------------------------------------------------------------------


def test_documents_refused_with_429_are_retried_with_backoff(store: ElasticsearchStore, standin: EsStandIn,
                                                            sleeps: list[float]):  # fmt: skip
    standin.reject_items(429, times=2, items=3)
    standin.fail(429, times=1, route="bulk")  # and one whole request
    assert store.write_records([record("r1"), record("r2")]).rows == 4
    assert sleeps == [0.25, 0.25, 0.5]  # the request's retry, then the refused items' own doubling backoff
    assert len(standin.documents(REQUESTS)) == 2 and len(standin.documents(ROWS)) == 4


def test_429_exhausted_is_store_unavailable_and_a_replay_loses_nothing(
    standin: EsStandIn, sleeps: list[float]
):
    with es_store(standin, sleeps, "&max_retries=2") as store:
        store.ensure_model("shop", FEATURES, ("label", "long"))
        standin.reject_items(429, times=3, items=1)
        with pytest.raises(StoreUnavailable, match=r"1 of 3 documents still refused with 429 "
                           r"\(es_rejected_execution_exception\) after 3 attempts; nothing was dropped"):  # fmt: skip
            store.write_records([record("r1")])
        assert len(sleeps) == 2
        store.write_records([record("r1")])  # what the logger's caller does: send it again
        assert len(store.rows("shop", *HOUR)) == 2 and len(store.records("shop", *HOUR)) == 1


def test_an_outage_is_store_unavailable_then_writes_resume(store: ElasticsearchStore, standin: EsStandIn):
    store.write_records([record("r0")])
    with standin.outage():
        with pytest.raises(
            StoreUnavailable, match=r"cannot write log documents \(3\) in elasticsearch\+http://.*unreachable"
        ):
            store.write_records([record("r1")])
        with pytest.raises(StoreUnavailable, match="cannot reach the cluster"):
            store.ping()
    store.ping()
    store.write_records([record("r1")])
    assert len(store.rows("shop", *HOUR)) == 4


def test_refusals_name_the_operation_and_the_fix(store: ElasticsearchStore, standin: EsStandIn, sleeps):
    standin.forbid("policy")
    with pytest.raises(StoreError, match=r"cannot create the ILM policy pushbutton-logs in .*: 403 security_exception.*"
                       r"\(fix: grant the privileges"):  # fmt: skip
        es_store(standin, sleeps).write_records([record("r1")])
    with EsStandIn(product_header=False) as other, pytest.raises(StoreError, match="is not Elasticsearch"):
        es_store(other, sleeps).ping()


def test_secrets_are_never_in_messages_or_logs(caplog: pytest.LogCaptureFixture, sleeps: list[float]):
    caplog.set_level(logging.DEBUG)
    with EsStandIn(users={"writer": "s3cr3t-pw"}, api_keys={"kid:s3cr3t-key"}) as server:
        base = f"127.0.0.1:{server.port}"
        good = ElasticsearchStore(
            f"elasticsearch+http://writer:s3cr3t-pw@{base}?refresh=wait_for", sleep=sleeps.append
        )
        good.ensure_model("shop", FEATURES, ("label", "long"))
        good.write_records([record("r1")])
        keyed = ElasticsearchStore.from_connection(f"http://{base}", extra={"api_key": "kid:s3cr3t-key"})
        assert keyed.counters().records == 1
        wrong = ElasticsearchStore(f"elasticsearch+http://writer:wrong-s3cr3t@{base}", sleep=sleeps.append)
        with pytest.raises(
            StoreError, match=r"401 security_exception.*check the connection's login/password"
        ) as refused:
            wrong.ping()
        with server.outage(), pytest.raises(StoreUnavailable) as unreachable:
            good.write_records([record("r2")])
    texts = [
        caplog.text,
        str(refused.value),
        str(unreachable.value),
        repr(good),
        good.url,
        keyed.url,
        wrong.url,
    ]
    assert all("s3cr3t" not in text for text in texts)
    assert good.url == f"elasticsearch+http://writer:***@{base}" and keyed.url.endswith("?api_key=***")


# --- the stand-in refuses what Elasticsearch would ------------------------------------------------


def test_the_standin_refuses_malformed_requests(standin: EsStandIn, store: ElasticsearchStore):
    compat = {"Accept": "application/vnd.elasticsearch+json; compatible-with=9"}
    ndjson = {**compat, "Content-Type": "application/vnd.elasticsearch+x-ndjson; compatible-with=9"}
    json_type = {**compat, "Content-Type": "application/vnd.elasticsearch+json; compatible-with=9"}

    def send(method: str, path: str, body: str, headers: dict[str, str]) -> httpx.Response:
        return httpx.request(method, standin.url + path, content=body, headers=headers)

    create = '{"create": {"_index": "logs-pushbutton.requests-shop", "_id": "x"}}\n{"@timestamp": "2025-03-01T00:00:00Z"}'
    assert (
        send("POST", "/_bulk", create, ndjson)
        .json()["error"]["reason"]
        .startswith("The bulk request must be terminated")
    )
    no_id = (
        '{"create": {"_index": "logs-pushbutton.requests-shop"}}\n{"@timestamp": "2025-03-01T00:00:00Z"}\n'
    )
    assert send("POST", "/_bulk", no_id, ndjson).json()["error"]["type"] == "standin_rule_violation"
    index_op = '{"index": {"_index": "logs-pushbutton.requests-shop", "_id": "x"}}\n{"@timestamp": "2025-03-01T00:00:00Z"}\n'
    item = send("POST", "/_bulk", index_op, ndjson).json()["items"][0]["index"]
    assert item["error"]["reason"] == "only write ops with an op_type of create are allowed in data streams"
    bad_type = '{"create": {"_index": "logs-pushbutton.rows-shop", "_id": "y"}}\n' \
               '{"@timestamp": "2025-03-01T00:00:00Z", "features": {"n": "many"}}\n'  # fmt: skip
    assert (
        send("POST", "/_bulk", bad_type, ndjson).json()["items"][0]["create"]["error"]["type"]
        == "document_parsing_exception"
    )
    unknown_agg = '{"size": 0, "aggs": {"a": {"percentile": {"field": "latency_ms"}}}}'
    assert (
        send("POST", f"/{ROWS}/_search", unknown_agg, json_type).json()["error"]["reason"]
        == "Unknown aggregation type [percentile]"
    )
    clash = '{"index_patterns": ["logs-pushbutton.rows-*"], "priority": 500}'
    assert (
        "same priority [500]"
        in send("PUT", "/_index_template/mine", clash, json_type).json()["error"]["reason"]
    )
    bad_mapping = '{"template": {"mappings": {"properties": {"x": {"type": "long", "ignore_abov": 3}}}}}'
    assert (
        "unknown parameter [ignore_abov]"
        in send("PUT", "/_component_template/c", bad_mapping, json_type).json()["error"]["reason"]
    )
    nan = '{"size": 0, "query": {"range": {"latency_ms": {"gte": NaN}}}}'
    assert send("POST", f"/{ROWS}/_search", nan, json_type).status_code == 400
    old = {"Accept": "application/vnd.elasticsearch+json; compatible-with=7"}
    assert send("GET", "/", "", old).status_code == 406
    assert send("GET", "/", "", compat).headers["X-Elastic-Product"] == "Elasticsearch"
