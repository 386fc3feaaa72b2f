"""Why a promote/rollback run failed: the failed task's exception message, read from its Airflow log
(REST API v2 ``.../taskInstances/{task_id}/logs/{try_number}``), printed by the CLI."""

from __future__ import annotations

import json

import httpx
import pytest

import pushbutton.config
from pushbutton import actions
from pushbutton.airflow_client import AirflowClient, failure_reason
from pushbutton.cli import main
from pushbutton.config import Settings
from pushbutton.errors import StackError

RUN = "manual__2026-11-22T11:01:52.510313+00:00"
REASON = (
    "model 'churn' has no 'previous' alias (there was no earlier champion); pass an explicit version number"
)
_FRAMES = [
    {
        "filename": "/work/main/.venv/lib/python3.11/site-packages/airflow/sdk/execution_time/task_runner.py",
        "lineno": 1579,
        "name": "_run_task_and_map_outcome",
    },
    {"filename": "/work/main/operators/lifecycle.py", "lineno": 191, "name": "execute"},
]
_TI = {
    "dag_id": "pushbutton__rollback",
    "run_id": RUN,
    "task_id": "rollback",
    "try_number": 1,
    "map_index": -1,
}


def log_payload(kind: str = "AirflowFailException", value: str = REASON) -> dict:
    """What Airflow 3.3 answers (``application/json``) for a task that failed, trimmed."""
    return {
        "content": [
            {"event": "::group::Log message source details", "sources": ["/home/logs/attempt=1.log"]},
            {"event": "::endgroup::"},
            {
                "timestamp": "2026-11-22T11:01:54.036541Z",
                "level": "info",
                "event": "::group::Pre Execute",
                "logger": "task",
            },
            {
                "timestamp": "2026-11-22T11:01:55.602615Z",
                "level": "error",
                "event": "Task failed with exception",
                **_TI,
                "logger": "task",
                "filename": "task_runner.py",
                "lineno": 1639,
                "error_detail": [
                    {
                        "exc_type": kind,
                        "exc_value": value,
                        "exc_notes": [],
                        "syntax_error": None,
                        "is_cause": False,
                        "frames": _FRAMES,
                        "is_group": False,
                        "exceptions": [],
                    },
                    {
                        "exc_type": "NotFound",
                        "exc_value": value,
                        "is_cause": True,
                        "frames": _FRAMES[1:],
                        "exceptions": [],
                    },
                ],
            },
            {"timestamp": "2026-11-22T11:01:55.603318Z", "level": "info", "event": "::group::Post Execute"},
            {"timestamp": "2026-11-22T11:01:55.610000Z", "level": "error", "event": "some later error line"},
        ],
        "continuation_token": None,
    }


def test_the_reason_is_the_exception_message_without_airflows_wrapper() -> None:
    assert failure_reason(log_payload()) == REASON


def test_a_pushbutton_exception_keeps_its_type() -> None:
    assert failure_reason(log_payload("GateFailed", "quality gate failed:\n  - accuracy 0.5 < 0.85")) == (
        "GateFailed: quality gate failed:\n  - accuracy 0.5 < 0.85"
    )


def test_without_error_detail_the_last_error_event_or_exception_line_stands_in() -> None:
    events = {"content": [{"level": "info", "event": "x"}, {"level": "error", "event": "Task was killed"}]}
    assert failure_reason(events) == "Task was killed"
    lines = {"content": ["[2026] INFO - starting", "airflow.exceptions.AirflowFailException: " + REASON]}
    assert failure_reason(lines) == REASON
    assert failure_reason({"content": [{"level": "info", "event": "fine"}]}) is None


def airflow(requests: list[httpx.Request]) -> AirflowClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "t"})
        requests.append(request)
        path = request.url.path
        if path.endswith("/dagRuns") and request.method == "POST":
            return httpx.Response(200, json={"dag_run_id": RUN, "state": "queued"})
        if path.endswith("/taskInstances"):
            return httpx.Response(
                200, json={"task_instances": [{**_TI, "state": "failed"}], "total_entries": 1}
            )
        if "/logs/" in path:
            return httpx.Response(200, json=log_payload())
        return httpx.Response(200, json={"dag_run_id": RUN, "state": "failed"})

    return AirflowClient("http://airflow.test", "admin", "pw", transport=httpx.MockTransport(handler))


def test_the_client_reads_the_failed_try_log_as_json() -> None:
    requests: list[httpx.Request] = []
    with airflow(requests) as client:
        assert client.failure_reasons("pushbutton__rollback", RUN) == {"rollback": REASON}
    log = requests[-1]
    assert log.url.path == f"/api/v2/dags/pushbutton__rollback/dagRuns/{RUN}/taskInstances/rollback/logs/1"
    assert log.headers["accept"] == "application/json" and log.headers["authorization"] == "Bearer t"
    assert log.url.params["map_index"] == "-1"


def test_a_failed_rollback_prints_why(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path) -> None:
    requests: list[httpx.Request] = []
    monkeypatch.setattr(actions, "_client", lambda settings: airflow(requests))
    monkeypatch.setattr(pushbutton.config, "settings", lambda: Settings(home=tmp_path))
    assert main(["rollback", "churn"]) == 1
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["state"] == "failed" and result["failed_tasks"] == ["rollback"]
    assert result["reasons"] == {"rollback": REASON}
    assert err == f"error: rollback of 'churn' failed in task 'rollback': {REASON}\n"


def test_a_run_failing_before_its_approval_says_why() -> None:
    with airflow([]) as client, pytest.raises(StackError) as failure:
        client.wait_hitl("pushbutton__rollback", RUN, timeout=0, poll=0)
    assert str(failure.value).startswith(f"pushbutton__rollback run {RUN} failed (rollback: {REASON}); see ")
