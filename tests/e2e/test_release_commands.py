"""What the README promises beyond the demo, on the tier's shared demo stack (real Airflow): the
``pushbutton promote`` / ``rollback`` CLI and their DAGs (a decision fails at once, a busy promotion
lock is retried), the monitor's probe task, and no secret in ``<home>/logs`` after the whole run."""

from __future__ import annotations

import json
import threading
from urllib.parse import quote

import pytest

from pushbutton.cli import main as cli
from pushbutton.config import Settings

pytestmark = pytest.mark.e2e


def aliases(cfg: Settings) -> dict[str, str]:
    from pushbutton.actions import model_status

    return model_status(cfg, "iris")["aliases"]


def latest_event(cfg: Settings) -> tuple[str, str, str]:
    from pushbutton.history import HistoryStore

    event = HistoryStore(cfg.store).events("iris", limit=1)[0]
    return event["action"], event["version"], event["actor"]


def serving(cfg: Settings) -> set[tuple[int, str]]:
    from tests.e2e.test_demo import iris_answers

    return iris_answers(cfg, 20)


def test_promote_and_rollback_through_the_cli(demo, capsys: pytest.CaptureFixture[str]) -> None:
    """``pushbutton promote iris --version N`` runs ``pushbutton__promote`` and waits for it; ``rollback``
    brings the champion before it back. A promotion the platform refuses fails at once, no retry."""
    from pushbutton.airflow_client import AirflowClient

    cfg, report, _ = demo
    before = aliases(cfg)["champion"]
    target = report["versions"]["v2"] if before != report["versions"]["v2"] else report["versions"]["v1"]

    assert cli(["promote", "iris", "--version", target]) == 0
    promoted = json.loads(capsys.readouterr().out)
    assert (promoted["dag_id"], promoted["state"]) == ("pushbutton__promote", "success")
    assert aliases(cfg)["champion"] == target and aliases(cfg)["previous"] == before
    assert serving(cfg) == {(200, target)}
    assert latest_event(cfg) == ("promote", target, "admin")  # who triggered the DAG through the API

    assert cli(["rollback", "iris"]) == 0
    rolled_back = json.loads(capsys.readouterr().out)
    assert (rolled_back["dag_id"], rolled_back["state"]) == ("pushbutton__rollback", "success")
    assert aliases(cfg)["champion"] == before and serving(cfg) == {(200, before)}
    assert latest_event(cfg) == ("rollback", before, "admin")

    assert cli(["promote", "iris", "--version", "999"]) == 1  # a decision: no such version
    out, err = capsys.readouterr()
    refused = json.loads(out)
    assert "error: promote of 'iris' failed in task 'promote'" in err and "999" in err
    with AirflowClient.from_settings(cfg) as client:
        [task] = client.task_instances("pushbutton__promote", refused["run_id"])
    assert (task["state"], task["try_number"]) == ("failed", 1)  # not retried
    assert aliases(cfg)["champion"] == before and serving(cfg) == {(200, before)}


def test_a_promotion_that_finds_the_lock_busy_is_retried(demo) -> None:
    """Another promotion of iris holds the model's lock (the test holds it, as a stuck promotion
    would): the promote task's wait for it times out (LockBusy), the task goes up for retry instead of
    failing, and the retry — once the lock is free — promotes."""
    from pushbutton.actions import request_promotion
    from pushbutton.airflow_client import AirflowClient
    from pushbutton.history import HistoryStore

    cfg, report, _ = demo
    before = aliases(cfg)["champion"]
    target = report["versions"]["v2"] if before != report["versions"]["v2"] else report["versions"]["v1"]
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with HistoryStore(cfg.store).lock("iris", timeout=10):
            holding.set()
            release.wait(600)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        assert holding.wait(30), "could not take the promotion lock"
        run = request_promotion(cfg, "promote", "iris", target, wait=False)
        with AirflowClient.from_settings(cfg) as client:
            retrying = _wait_for_state(client, run["run_id"], "up_for_retry", timeout=400)
            assert retrying["try_number"] == 1
            assert aliases(cfg)["champion"] == before  # nothing moved while the lock was held
            release.set()
            holder.join(30)
            assert client.wait_run("pushbutton__promote", run["run_id"], timeout=300)["state"] == "success"
            [task] = client.task_instances("pushbutton__promote", run["run_id"])
    finally:
        release.set()
        holder.join(30)
    assert (task["state"], task["try_number"]) == ("success", 2)
    assert aliases(cfg)["champion"] == target and serving(cfg) == {(200, target)}
    assert latest_event(cfg) == ("promote", target, "admin")


def _wait_for_state(client, run_id: str, state: str, timeout: float) -> dict:
    """The promote task instance once it is in ``state`` (fails the test on a final state first)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        [task] = client.task_instances("pushbutton__promote", run_id) or [{"state": None}]
        if task["state"] == state:
            return task
        assert task["state"] not in ("success", "failed", "upstream_failed"), task
        assert time.monotonic() < deadline, f"the promote task is {task['state']} after {timeout:.0f}s"
        time.sleep(2)


def test_the_monitor_dag_probes_what_serves(demo) -> None:
    """``iris__monitor`` (unscheduled on test stacks, so triggered here): its probe task sends the first
    golden row through the gateway and returns who answered."""
    from pushbutton.airflow_client import AirflowClient

    cfg, _, _ = demo
    champion = aliases(cfg)["champion"]
    with AirflowClient.from_settings(cfg) as client:
        dag = client.get_dag("iris__monitor")  # PUSHBUTTON_SCHEDULES=off: no `*/30` run starts mid-test
        assert (dag["timetable_periodic"], dag["next_dagrun_run_after"]) == (False, None), dag
        run = client.trigger("iris__monitor", note="e2e: probe")
        assert client.wait_run("iris__monitor", run["dag_run_id"], timeout=300)["state"] == "success"
        path = f"/dags/iris__monitor/dagRuns/{quote(run['dag_run_id'], safe='')}/taskInstances/probe_serving"
        value = client.request("GET", f"{path}/xcomEntries/return_value")["value"]
    probe = json.loads(value) if isinstance(value, str) else value
    assert (probe["model"], probe["serving"]) == ("iris", True)
    answer = probe["probe"]["answer"]
    assert (answer["predictor"], answer["version"]) == ("champion", champion)
    assert answer["response"]["data"]["ndarray"] == [int(probe["probe"]["expected"])]


def test_external_alerts_reach_the_history_through_the_real_api_server(demo) -> None:
    """``POST /pushbutton/alerts/alertmanager`` on the real API server: no or a wrong token is 401, an
    unknown model 404, a good delivery lands in the alert history (notify: no notifier configured)."""
    import httpx

    from pushbutton.monitoring.store import open_store
    from pushbutton.stack import alerts_token, webhook_secret
    from tests.unit.test_alert_actions import ALERTMANAGER

    cfg, _, _ = demo
    url = f"{cfg.airflow_url}/pushbutton/alerts/alertmanager"
    body = json.loads(json.dumps(ALERTMANAGER))
    body["alerts"][0]["labels"] |= {"action": "notify", "alertname": "E2eProbe"}
    good = {"Authorization": f"Bearer {alerts_token(webhook_secret(cfg))}"}
    assert httpx.post(url, json=body, timeout=30).status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer nope"}, timeout=30).status_code == 401
    unknown = json.loads(json.dumps(body))
    unknown["commonLabels"]["model"] = "no-such-model"
    answer = httpx.post(url, json=unknown, headers=good, timeout=30)
    assert answer.status_code == 404 and "no-such-model" in answer.json()["detail"]
    answer = httpx.post(url, json=body, headers=good, timeout=30)
    assert answer.status_code == 200, answer.text
    with open_store(cfg=cfg) as store:
        [event] = store.alerts("iris", rule="alertmanager:E2eProbe")
    assert event.source == "alertmanager" and event.outcome("notify").outcome == "skipped"


@pytest.mark.last
def test_no_secret_reaches_the_logs(demo) -> None:
    """After every e2e test on the stack and ``pushbutton down``: no file under ``<home>/logs`` (server
    logs, task logs, the DAG processor's) holds the webhook secret, the Airflow admin password or
    MLflow's webhook encryption key."""
    from pushbutton.airflow_client import PASSWORD_FILE, read_password
    from pushbutton.stack import alerts_token, down, layout, webhook_secret

    cfg, _, _ = demo
    down(cfg)  # every process stopped: the logs are complete
    paths = layout(cfg)
    secrets = {
        "the webhook secret": webhook_secret(cfg),
        "the Airflow admin password": read_password(cfg.home / "airflow" / PASSWORD_FILE),
        "MLflow's webhook encryption key": (paths.secrets / "mlflow_webhook_key").read_text().strip(),
        "the alert intake token": alerts_token(webhook_secret(cfg)),
    }
    assert all(len(secret) >= 16 for secret in secrets.values()), "a secret was not found"
    logs = [p for p in paths.logs.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.log" for p in logs) and any("dag_id=iris__cicd" in str(p) for p in logs)
    leaks = [
        f"{what} in {path.relative_to(cfg.home)}"
        for path in logs
        for what, secret in secrets.items()
        if secret.encode() in path.read_bytes()
    ]
    assert leaks == [], f"{len(logs)} log files scanned"
