"""The plugin's ``POST /pushbutton/alerts/{source}``: token check, payload errors, unknown models, and
the same path as internal rules (dedupe, history) — with the asset event and Airflow's run counts
replaced by recorders. The store is a real SQLite monitoring store."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import operators.alert_intake as intake
import plugins.pushbutton_plugin as plugin
from pushbutton.config import settings
from pushbutton.dagstubs import INDEX, STUB_DIR
from pushbutton.monitoring.store import open_store
from tests.unit.test_alert_actions import ALERTMANAGER

TOKEN = "alert-intake-token-for-tests"
URL = "/alerts/alertmanager"


@pytest.fixture
def endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    index = tmp_path / STUB_DIR / INDEX
    index.parent.mkdir()
    index.write_text(json.dumps({"iris": "/models/iris"}))
    monkeypatch.setenv("PUSHBUTTON_STUBS_DIR", str(tmp_path))
    monkeypatch.setenv("PUSHBUTTON_MONITORING_URL", f"sqlite:///{tmp_path / 'monitoring.db'}")
    settings.cache_clear()
    monkeypatch.setattr(intake, "expected_token", lambda: TOKEN)
    emitted: list[tuple[str, dict]] = []
    running: dict[str, int] = {}
    monkeypatch.setattr(intake, "_emit", lambda model, extra: emitted.append((model, extra)))
    monkeypatch.setattr(intake, "_dr_count", lambda dag_id, states: running.get(dag_id, 0))
    with TestClient(plugin.app) as client:
        yield client, emitted, running
    settings.cache_clear()


def post(client, body, token: str | None = TOKEN, url: str = URL):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post(url, json=body, headers=headers)


def test_good_token_retrains_once_and_records_the_alert(endpoint) -> None:
    client, emitted, _ = endpoint
    answer = post(client, ALERTMANAGER)
    assert answer.status_code == 200, answer.text
    assert [(m, e["rule"], e["source"]) for m, e in emitted] == [
        ("iris", "alertmanager:IrisDrift", "alertmanager")
    ]
    assert post(client, ALERTMANAGER).status_code == 200  # Alertmanager re-sends the group: nothing new
    assert len(emitted) == 1
    with open_store(settings().monitoring) as store:
        [event] = store.alerts("iris")
    assert event.outcome("retrain").outcome == "requested" and event.source == "alertmanager"


def test_a_storm_of_different_alerts_within_the_cooldown_retrains_once(endpoint) -> None:
    client, emitted, _ = endpoint
    for n in range(50):
        body = copy.deepcopy(ALERTMANAGER)
        body["alerts"][0]["fingerprint"] = f"fp-{n}"
        assert post(client, body).status_code == 200
    assert len(emitted) == 1
    with open_store(settings().monitoring) as store:
        outcomes = [e.outcome("retrain").outcome for e in store.alerts("iris", limit=100)]
    assert sorted(set(outcomes)) == ["deduplicated", "requested"] and outcomes.count("requested") == 1


def test_a_running_retrain_absorbs_the_request(endpoint) -> None:
    client, emitted, running = endpoint
    running["iris__retrain"] = 1
    assert post(client, ALERTMANAGER).status_code == 200
    assert emitted == []
    assert "absorbed" in post(client, ALERTMANAGER).json()["events"][0]


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("wrong-token", 401), (TOKEN + "x", 401)])
def test_bad_or_missing_token_is_401_and_nothing_happens(endpoint, token, status) -> None:
    client, emitted, _ = endpoint
    answer = post(client, ALERTMANAGER, token)
    assert answer.status_code == status and "bearer token" in answer.json()["detail"]
    assert emitted == []


def test_intake_without_a_configured_token_is_503(endpoint, monkeypatch) -> None:
    client, _, _ = endpoint
    monkeypatch.setattr(intake, "expected_token", lambda: None)
    answer = post(client, ALERTMANAGER)
    assert answer.status_code == 503 and "pushbutton_alerts" in answer.json()["detail"]


def test_unknown_model_is_404_and_bad_payload_400(endpoint) -> None:
    client, emitted, _ = endpoint
    body = copy.deepcopy(ALERTMANAGER)
    body["commonLabels"]["model"] = "irsi"
    answer = post(client, body)
    assert answer.status_code == 404 and "unknown model(s) irsi" in answer.json()["detail"]
    assert post(client, {**ALERTMANAGER, "version": "2"}).status_code == 400
    assert post(client, ALERTMANAGER, url="/alerts/nagios").status_code == 400
    assert emitted == []
    with open_store(settings().monitoring) as store:
        assert store.alerts("irsi") == [] and store.alerts("iris") == []
