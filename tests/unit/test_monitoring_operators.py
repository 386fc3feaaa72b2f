"""The monitoring adapters: ``IndicatorStoreHook``'s Connection, the write operator, and the shape of
the ``<model>__monitor`` DAG (parsed by Airflow's DagBag, cheaply)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from operators.monitoring import (
    IndicatorComputeOperator,
    IndicatorStoreHook,
    IndicatorWriteOperator,
    RequestLogPurgeOperator,
    connection_url,
)
from pushbutton.config import Settings
from pushbutton.monitoring.results import IndicatorResult
from pushbutton.monitoring.store import open_store
from tests.unit.test_dag_factory import models, parse  # noqa: F401 - the fixture is used by name

END = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def conn(conn_type: str = "generic", extra: dict | None = None, **fields) -> SimpleNamespace:
    values = dict(conn_id="pushbutton_monitoring", conn_type=conn_type, host=None, port=None, schema=None,
                  login=None, password=None, extra_dejson=extra or {})  # fmt: skip
    return SimpleNamespace(**(values | fields))


def test_a_connection_names_a_sql_url_or_elasticsearch_fields() -> None:
    assert connection_url(conn(extra={"url": "postgresql+psycopg://pb@db/monitoring"})) == (
        "postgresql+psycopg://pb@db/monitoring"
    )
    assert connection_url(conn()) is None  # nothing said: the platform default
    es = conn("elasticsearch", {"index_prefix": "pb", "verify_certs": "false"}, host="es.example.com",
              login="writer", password="p@ss:word/1")  # fmt: skip
    assert connection_url(es) == (
        "elasticsearch+https://writer:p%40ss%3Aword%2F1@es.example.com:9200?index_prefix=pb&verify_certs=false"
    )
    plain = conn(extra={"backend": "elasticsearch"}, host="127.0.0.1", port=9201, schema="http")
    assert connection_url(plain) == "elasticsearch+http://127.0.0.1:9201"
    with pytest.raises(AirflowFailException, match="host: empty \\(fix: the Elasticsearch host"):
        connection_url(conn("elasticsearch"))
    with pytest.raises(AirflowFailException, match="schema: 'ftp' \\(fix: https or http\\)"):
        connection_url(conn("elasticsearch", host="es", schema="ftp"))


def test_the_hook_reads_its_connection_or_falls_back_to_the_platform_store(platform_home: Settings,
                                                                           monkeypatch) -> None:  # fmt: skip
    monkeypatch.delenv("AIRFLOW_CONN_PUSHBUTTON_MONITORING", raising=False)
    assert IndicatorStoreHook().url() == platform_home.monitoring
    url = f"sqlite:///{platform_home.home / 'elsewhere.db'}"
    monkeypatch.setenv("AIRFLOW_CONN_PUSHBUTTON_MONITORING", json.dumps({"conn_type": "generic",
                                                                          "extra": {"url": url}}))  # fmt: skip
    assert IndicatorStoreHook().url() == url


class FakeTi:
    def __init__(self, results):
        self.results = results
        self.pushed: dict = {}

    def xcom_pull(self, task_ids=None, key="return_value"):
        return self.results if key == "results" else None


def test_the_write_operator_writes_what_the_compute_task_left(platform_home: Settings, monkeypatch) -> None:
    platform_home.home.mkdir(parents=True)
    monkeypatch.delenv("AIRFLOW_CONN_PUSHBUTTON_MONITORING", raising=False)
    found = IndicatorResult("feature_drift", "drift", "iris", "1", "champion", END - timedelta(minutes=30), END,
                            "ok", value=0.5, threshold=0.0, flagged=True, details={"x": {"p_value": None}})  # fmt: skip
    operator = IndicatorWriteOperator(task_id="write_indicators", model="iris")
    answer = operator.execute({"ti": FakeTi([found.as_dict()])})
    assert answer == {"written": 1, "flagged": ["feature_drift (champion v1)"], "errors": []}
    operator.execute({"ti": FakeTi([found.as_dict()])})  # a cleared task writes again: it replaces
    with open_store(cfg=platform_home) as store:
        assert store.indicators("iris") == [found]
    with pytest.raises(AirflowFailException, match="results of shop handed to the writer of iris"):
        operator.execute({"ti": FakeTi([{**found.as_dict(), "model": "shop"}])})
    with pytest.raises(AirflowFailException, match="left no 'results' XCom to write"):
        operator.execute({"ti": FakeTi(None)})


def test_the_compute_operator_templates_its_window() -> None:
    assert {"model", "window_start", "window_end"} <= set(IndicatorComputeOperator.template_fields)


def test_the_monitor_dag_probes_computes_writes_and_logs_the_report(tmp_path: Path, models: Path) -> None:  # noqa: F811
    result = parse(tmp_path, models)
    dag = result["dags"]["iris__monitor"]
    assert dag["tasks"] == {
        "probe_serving": [],
        "compute_indicators": ["write_indicators"],
        "write_indicators": ["evaluate_alerts", "log_report"],
        "log_report": ["purge_request_log"],
        "purge_request_log": [],
        "evaluate_alerts": ["request_retrain"],  # the alert rules, right after the indicators
        "request_retrain": [],
    }
    assert dag["params"] == ["window_end", "window_start"]
    assert dag["schedule"] == "*/30 * * * *"
    assert result["heavy"] == []  # pandas, the store and the indicators load inside the tasks only


def test_the_purge_task_deletes_the_log_past_retention_before_the_runs_time(platform_home: Settings,
                                                                           monkeypatch) -> None:  # fmt: skip
    from pushbutton.monitoring.records import InferenceRecord

    platform_home.home.mkdir(parents=True)
    monkeypatch.delenv("AIRFLOW_CONN_PUSHBUTTON_MONITORING", raising=False)
    run_after = datetime(2026, 12, 31, 0, 0, tzinfo=UTC)  # just after midnight, 30 days after the edge
    edge = run_after - timedelta(days=30)

    def logged(request_id: str, at: datetime) -> InferenceRecord:
        return InferenceRecord(request_id, "iris", "champion", "1", request_time=at, response_time=at,
                               status=200, names=("x",), inputs=[[1.0]], predictions=[0])  # fmt: skip

    with open_store(cfg=platform_home) as store:
        store.ensure_model("iris", [("x", "double")], ("label", "long"))
        store.write_records([logged("old", edge - timedelta(seconds=1)), logged("edge", edge),
                             logged("new", run_after - timedelta(minutes=1))])  # fmt: skip
    operator = RequestLogPurgeOperator(task_id="purge_request_log", model="iris", retention_days=30,
                                       at=run_after.isoformat())  # fmt: skip
    assert operator.execute({}) == {"model": "iris", "before": edge.isoformat(), "purged": 1}
    assert operator.execute({})["purged"] == 0  # a re-run of the same run deletes nothing more
    with open_store(cfg=platform_home) as store:
        kept = store.records("iris", edge - timedelta(days=1), run_after)
    assert [r["request_id"] for r in kept] == ["edge", "new"]
    with pytest.raises(AirflowFailException, match="at: empty"):
        RequestLogPurgeOperator(task_id="p", model="iris", retention_days=30, at="").execute({})
