"""The Elasticsearch store's parts that need no server: connection settings, the definitions in
deploy/elasticsearch, documents and their merge rules, aggregation bodies. (The wire-level tests, against
a stand-in for Elasticsearch, are in tests/integration/test_es_store.py.)"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta

import pytest

from pushbutton.monitoring.store import StoreError, es_aggs, es_docs, open_store
from pushbutton.monitoring.store import es_layout as L
from pushbutton.monitoring.store.base import Column, ModelSchema
from pushbutton.monitoring.store.elasticsearch import ElasticsearchStore
from pushbutton.monitoring.store.es_connection import from_connection, from_url
from tests.unit.test_monitoring_store import FEATURES, T0, record

SCHEMA = ModelSchema(
    "shop", tuple(Column(n, t) for n, t in FEATURES), Column("prediction", "long"), ("0", "1")
)


# --- connection ----------------------------------------------------------------------------------


def test_url_with_credentials_and_options():
    settings = from_url(
        "elasticsearch+https://writer:p%40ss@es1.example:9201,es2.example?retention_days=7&verify_certs=false"
    )
    assert settings.hosts == ["https://es1.example:9201", "https://es2.example:9200"]
    assert (settings.username, settings.password.get_secret_value()) == ("writer", "p@ss")
    assert settings.retention_days == 7 and settings.verify_certs is False
    kwargs = settings.client_kwargs()
    assert (
        kwargs["basic_auth"] == ("writer", "p@ss") and kwargs["max_retries"] == 0
    )  # the store retries itself
    assert settings.redacted == "elasticsearch+https://writer:***@es1.example:9201,es2.example:9200"
    assert "p@ss" not in repr(settings) and "p@ss" not in settings.redacted
    assert from_url("elasticsearch://es.example").hosts == ["https://es.example:9200"]  # https by default


def test_bad_urls_and_options_are_clear_errors():
    with pytest.raises(StoreError, match=r"retention_dayz: unknown option \(fix: remove it; known: api_key"):
        from_url("elasticsearch+https://es.example?retention_dayz=7")
    with pytest.raises(
        StoreError, match=r"page_size: .*less than or equal to 10000 \(fix: correct the value\)"
    ):
        from_url("elasticsearch+https://es.example?page_size=20000")
    with pytest.raises(StoreError, match=r"scheme 'es' is not one of elasticsearch\+https"):
        from_url("es://es.example")
    with pytest.raises(StoreError, match=r"a path \(/logs\) is not supported"):
        from_url("elasticsearch+https://es.example:9200/logs")


def test_airflow_connection_fields():
    key = "bXlpZDpteWtleQ=="  # the "encoded" form Kibana shows
    settings = from_connection("es.example", extra={"api_key": key, "retention_days": 90}, port=9243)
    assert settings.hosts == ["https://es.example:9243"] and settings.retention_days == 90
    assert settings.client_kwargs()["api_key"] == key and "basic_auth" not in settings.client_kwargs()
    assert settings.redacted == "elasticsearch+https://es.example:9243?api_key=***" and key not in repr(
        settings
    )
    assert from_connection("es.example", extra={"api_key": "id:secret"}).client_kwargs()["api_key"] == (
        "id",
        "secret",
    )
    basic = from_connection("http://es.example:9200", "writer", "pw", {"refresh": "wait_for"})
    assert basic.hosts == ["http://es.example:9200"] and basic.client_kwargs()["basic_auth"] == (
        "writer",
        "pw",
    )
    assert basic.refresh == "wait_for"
    from_url_extra = from_connection(
        None, extra={"url": "elasticsearch+http://u:pw@localhost:9200", "max_rows": 10}
    )
    assert from_url_extra.username == "u" and from_url_extra.max_rows == 10
    with pytest.raises(StoreError, match=r"Airflow connection \(Elasticsearch\): host: missing"):
        from_connection(None)
    with pytest.raises(StoreError, match=r"verify_cert: unknown option"):
        from_connection("es.example", extra={"verify_cert": False})


def test_open_store_chooses_the_elasticsearch_backend_without_connecting():
    store = open_store(
        "elasticsearch+http://writer:secret@127.0.0.1:1"
    )  # nothing listens: no call is made yet
    assert isinstance(store, ElasticsearchStore)
    assert store.url == "elasticsearch+http://writer:***@127.0.0.1:1" and "secret" not in repr(store)
    store.close()


# --- definitions ---------------------------------------------------------------------------------


def test_definitions_are_the_files_of_deploy_elasticsearch():
    layout = L.Layout()
    assert layout.root.parts[-2:] == ("deploy", "elasticsearch")
    assert set(layout.component_templates()) == {
        "pushbutton-logs@settings", "pushbutton-requests@mappings", "pushbutton-rows@mappings"
    }  # fmt: skip
    templates = layout.index_templates()
    assert templates["pushbutton-requests"]["index_patterns"] == ["logs-pushbutton.requests-*"]
    assert all(t["priority"] > 100 for t in templates.values())  # above the built-in logs-*-* template
    assert set(layout.indices()) == {L.INDICATORS, L.LABELS, L.MODELS, L.ALERTS}
    on_disk = json.loads((layout.root / "ilm" / "pushbutton-logs.json").read_text())
    assert layout.policy(30) == on_disk  # the file's default is 30 days
    assert layout.policy(7)["policy"]["phases"]["delete"]["min_age"] == "7d"
    assert layout.policy(0.5)["policy"]["phases"]["delete"]["min_age"] == "12h"
    with pytest.raises(StoreError, match="retention_days must be > 0"):
        layout.policy(0)


def test_missing_definitions_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(
        StoreError, match=rf"{tmp_path}/ilm/pushbutton-logs.json: the Elasticsearch definitions are missing"
    ):
        L.Layout(tmp_path).policy(30)


def test_a_models_template_types_its_features():
    body = L.Layout().model_template(SCHEMA, "pushbutton-logs-shop")
    assert body["index_patterns"] == ["logs-pushbutton.rows-shop"] and body["priority"] == 600
    assert body["composed_of"] == ["pushbutton-logs@settings", "pushbutton-rows@mappings"]
    properties = body["template"]["mappings"]["properties"]
    assert properties["features"]["properties"] == {
        "x": {"type": "double"}, "n": {"type": "long"}, "flag": {"type": "boolean"},
        "city": {"type": "keyword", "ignore_above": 8191},
    }  # fmt: skip
    assert properties["prediction"] == {"type": "long"}
    assert body["template"]["settings"] == {"index.lifecycle.name": "pushbutton-logs-shop"}


def test_stream_names_are_safe_for_any_model_name():
    assert L.rows_stream("iris") == "logs-pushbutton.rows-iris"
    odd = L.stream_name("Shop Model/EU")
    assert odd.startswith("shop-model-eu-") and odd == odd.lower() and " " not in odd
    assert L.stream_name("Shop Model/EU") != L.stream_name("shop model eu")  # a hash keeps them apart


@pytest.mark.parametrize("name", ["request_id", "proba_x", "a*b", ".x", "x.", "_hidden", "a,b"])
def test_feature_names_elasticsearch_cannot_hold_are_refused(name: str):
    with pytest.raises(
        StoreError, match=rf"feature {re.escape(repr(name))}.*rename the input in schema.inputs"
    ):
        L.check_feature_names("shop", (Column(name),))


# --- documents -----------------------------------------------------------------------------------


def test_document_ids_come_from_the_record_key_not_the_event():
    key, doc = es_docs.request_doc(record("r1"), SCHEMA)
    assert key == es_docs.request_doc(record("r1", half="response"), SCHEMA)[0]  # both halves: one document
    assert key != es_docs.request_doc(record("r1", predictor="shadow"), SCHEMA)[0]
    assert doc["@timestamp"] == "2025-03-01T12:00:00Z" and doc["complete"] is True
    rows = list(es_docs.row_docs(record("r1"), SCHEMA))
    assert len({k for k, _ in rows}) == 2
    first = rows[0][1]
    assert first["features"] == {"x": 1.5, "n": 3, "flag": True, "city": "Oslo"}  # matched by name, typed
    assert rows[1][1]["features"] == {"flag": False, "city": "Rome"}  # "oops" and 4.5 do not fit: left out
    assert first["proba"] == {"0": 0.25, "1": 0.75} and first["prediction"] == 1


def test_halves_merge_like_the_sql_upsert():
    request = dict(es_docs.row_docs(record("r1", half="request"), SCHEMA))
    response = dict(es_docs.row_docs(record("r1", half="response"), SCHEMA))
    key = next(iter(request))
    merged = es_docs.merge_row(response[key], request[key])  # the response was stored first
    assert merged["@timestamp"] == request[key]["@timestamp"]  # the request's time wins
    assert merged["complete"] and merged["features"]["x"] == 1.5 and merged["prediction"] == 1
    assert merged["latency_ms"] == pytest.approx(40.0)
    both = dict(es_docs.row_docs(record("r1"), SCHEMA))[key]
    assert es_docs.merge_row(both, both) == both  # a replay changes nothing: no write
    _, alone = es_docs.request_doc(record("r1", half="response"), SCHEMA)
    _, other = es_docs.request_doc(record("r1", half="request"), SCHEMA)
    joined = es_docs.merge_request(alone, other)
    assert joined["complete"] and joined["@timestamp"] == other["@timestamp"]
    assert joined["latency_ms"] == pytest.approx(40.0) and joined["request_body"] == '{"data": {}}'


def test_documents_carry_no_nan():
    assert es_docs.clean(float("nan")) is None and es_docs.clean(math.inf) is None
    _, doc = es_docs.request_doc(record("r1", latency_ms=float("nan")), SCHEMA)
    assert "latency_ms" not in doc


# --- aggregations --------------------------------------------------------------------------------


def test_aggregation_body_asks_elasticsearch_for_every_figure():
    end = T0 + timedelta(minutes=30)
    body = es_aggs.aggregation_body(SCHEMA, T0, end, "classification")
    assert body["size"] == 0
    assert body["query"] == {"bool": {"filter": [
        {"range": {"@timestamp": {"gte": "2025-03-01T12:00:00+00:00", "lt": "2025-03-01T12:30:00+00:00"}}}]}}  # fmt: skip
    inner = body["aggs"]["predictor"]["aggs"]["version"]["aggs"]
    requests = inner["requests"]
    assert requests["filter"] == {"term": {"row": 0}}
    assert requests["aggs"]["latency"] == {"percentiles": {"field": "latency_ms", "percents": [50, 99]}}
    assert inner["f0_stats"] == {"extended_stats": {"field": "features.x"}}
    assert inner["f0_q"]["percentiles"]["percents"] == [5.0, 25.0, 50.0, 75.0, 95.0]
    assert inner["f2_stats"] == {"extended_stats": {"field": "features.flag"}}  # booleans count as 0/1
    assert inner["f3_distinct"] == {"cardinality": {"field": "features.city"}}
    assert inner["f3_top"] == {"terms": {"field": "features.city", "size": 1}}
    assert inner["classes"]["terms"]["field"] == "prediction"
    regression = es_aggs.aggregation_body(SCHEMA, T0, end, "regression")["aggs"]["predictor"]["aggs"][
        "version"
    ]["aggs"]
    assert "classes" not in regression and regression["prediction_stats"] == {
        "extended_stats": {"field": "prediction"}
    }
    with pytest.raises(StoreError, match="has no timezone"):
        es_aggs.window_query(datetime(2025, 1, 1), datetime(2025, 1, 2, tzinfo=UTC))
