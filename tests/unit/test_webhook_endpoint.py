"""The Airflow plugin's webhook endpoint (FastAPI app) with Airflow's ``trigger_dag`` replaced by a
recorder: which delivery triggers what, and which status MLflow's webhook delivery sees.

The end-to-end path (real MLflow webhook → plugin on the real API server → DAG run) is in
``tests/e2e/test_demo.py``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.exceptions import DagNotFound, DagRunAlreadyExists
from fastapi.testclient import TestClient

import plugins.pushbutton_plugin as plugin
from pushbutton.config import settings
from pushbutton.dagstubs import INDEX, STUB_DIR
from pushbutton.webhook import SIGNATURE, TIMESTAMP, cicd_run_id
from tests.webhook_deliveries import created_body, signed_headers

SECRET = "s3cret-for-endpoint-tests"
URL = "/webhooks/mlflow"


def delivery(name: str, version: str = "3", secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = created_body(name, version)
    return body, signed_headers(secret, body)


@pytest.fixture
def endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The app, a stub root whose index knows ``iris`` and ``fresh``, and DAGs for ``iris`` only."""
    index = tmp_path / STUB_DIR / INDEX
    index.parent.mkdir()
    index.write_text(json.dumps({"iris": "/models/iris", "fresh": "/models/fresh"}))
    monkeypatch.setenv("PUSHBUTTON_STUBS_DIR", str(tmp_path))
    settings.cache_clear()
    monkeypatch.setattr(plugin, "_secret", lambda: SECRET)
    runs: dict[str, set[str]] = {"iris__cicd": set()}
    calls: list[dict] = []

    def trigger_dag(dag_id: str, run_id: str, conf: dict, **kwargs) -> None:
        calls.append({"dag_id": dag_id, "run_id": run_id, "conf": conf})
        if dag_id not in runs:
            raise DagNotFound(f"Dag id {dag_id} not found")
        if run_id in runs[dag_id]:
            raise DagRunAlreadyExists(SimpleNamespace(dag_id=dag_id, run_id=run_id))
        runs[dag_id].add(run_id)

    monkeypatch.setattr("airflow.api.common.trigger_dag.trigger_dag", trigger_dag)
    with TestClient(plugin.app) as client:
        yield client, runs, calls
    settings.cache_clear()


def test_a_signed_delivery_triggers_cicd_once(endpoint) -> None:
    client, runs, calls = endpoint
    body, headers = delivery("iris")
    first = client.post(URL, content=body, headers=headers)
    assert first.status_code == 200 and first.json()["status"] == "triggered"
    assert calls == [
        {"dag_id": "iris__cicd", "run_id": cicd_run_id("3", "0a1b2c3d4e5f"), "conf": {"version": "3"}}
    ]
    again = client.post(URL, content=body, headers=headers)
    assert again.status_code == 200 and again.json()["status"] == "already triggered"
    assert runs["iris__cicd"] == {cicd_run_id("3", "0a1b2c3d4e5f")}


def test_a_bad_signature_is_401_and_triggers_nothing(endpoint) -> None:
    client, _, calls = endpoint
    body, headers = delivery("iris", secret="not-the-secret")
    answer = client.post(URL, content=body, headers=headers)
    assert answer.status_code == 401 and "signature" in answer.json()["detail"]
    assert calls == []


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (SIGNATURE, "v1,é".encode()),  # Starlette decodes latin-1: a non-ASCII str reaches verify
        (TIMESTAMP, b"9" * 400),
        (TIMESTAMP, b"nan"),
        (TIMESTAMP, b"inf"),
        (TIMESTAMP, b""),
    ],
    ids=["non-ascii-signature", "400-digit-timestamp", "nan-timestamp", "inf-timestamp", "empty-timestamp"],
)
def test_a_crafted_header_is_401_logged_and_triggers_nothing(endpoint, caplog, header, value) -> None:
    client, _, calls = endpoint
    body, headers = delivery("iris")
    with caplog.at_level(logging.WARNING, logger="pushbutton.webhook"):
        answer = client.post(URL, content=body, headers={**headers, header: value})
    assert answer.status_code == 401 and answer.json()["detail"].startswith("rejected: ")
    assert calls == []
    assert [r.getMessage() for r in caplog.records if r.name == "pushbutton.webhook"] == [
        f"webhook rejected from testclient: {answer.json()['detail'].removeprefix('rejected: ')}"
    ]


def test_an_unknown_model_is_404(endpoint) -> None:
    client, _, _ = endpoint
    body, headers = delivery("nobody")
    answer = client.post(URL, content=body, headers=headers)
    assert answer.status_code == 404 and "no pushbutton model 'nobody'" in answer.json()["detail"]
    assert "Retry-After" not in answer.headers


def test_a_new_model_whose_dag_is_not_parsed_yet_is_503_with_retry_after(endpoint) -> None:
    client, _, _ = endpoint
    body, headers = delivery("fresh")
    answer = client.post(URL, content=body, headers=headers)
    assert answer.status_code == 503  # MLflow's delivery retries 503, honouring Retry-After
    assert answer.headers["Retry-After"] == str(plugin.RETRY_AFTER_SECONDS)
    detail = answer.json()["detail"]
    assert "/models/fresh" in detail and "not parsed" in detail and "import errors" in detail


def test_other_events_are_ignored(endpoint) -> None:
    client, _, calls = endpoint
    body = json.dumps({"entity": "registered_model", "action": "created", "data": {"name": "iris"}}).encode()
    answer = client.post(URL, content=body, headers=signed_headers(SECRET, body, "d-2"))
    assert answer.status_code == 200 and answer.json()["status"] == "ignored"
    assert calls == []


def test_no_unauthenticated_api_docs(endpoint) -> None:
    client, _, _ = endpoint
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN and skip login
    assert client.get("/redoc").status_code == 404
