"""`pushbutton status MODEL`: each version's last CI/CD run (run id, state), its failing task and a
one-line reason, read through the REST API v2 (``AirflowClient`` over a mock transport); without
Airflow, status still answers from MLflow and says why the run information is missing."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

import pushbutton.config
from pushbutton import actions
from pushbutton import registry as reg
from pushbutton.airflow_client import AirflowClient
from pushbutton.cli import main
from pushbutton.config import Settings
from pushbutton.errors import StackError
from pushbutton.runs import one_line
from pushbutton.serving.local import LocalRuntime

MISSING = (
    "requirements.txt:3: package 'nosuch-pkg' does not exist on the package index (fix: correct its name in "
    "requirements.txt (the name pip installs: scikit-learn, not sklearn) or remove it, then push again)"
)
APPROVAL_RUN = "manual__2026-11-30T10:00:00+00:00"


def version(number: str, mlflow_run: str, **tags: str) -> reg.Version:
    return reg.Version("iris", number, mlflow_run, "src", {reg.MLFLOW_RUN: mlflow_run, **tags})


VERSIONS = [
    version("1", "11112222aaaa"),
    version("2", "0123456789ab"),  # registered after the model was deleted and pushed again
    version("3", "ffff0000bbbb"),
    version("4", "abcd1234cccc", **{reg.STATUS: "failed", reg.REASON: f"build failed: {MISSING}"}),
]


def run(run_id: str, state: str, conf: dict | None = None) -> dict:
    return {"dag_run_id": run_id, "state": state, "conf": conf or {}, "start_date": "2026-11-30T09:00:00Z"}


RUNS = [  # newest first, as the API orders them (order_by=-run_after)
    run("registered__v4__abcd1234", "failed", {"version": "4"}),
    run(APPROVAL_RUN, "running", {"version": "3"}),
    run("registered__v3__ffff0000", "failed", {"version": "3"}),  # an older run of v3
    run("registered__v2__deadbeef", "success", {"version": "2"}),  # the earlier model's v2
    run("registered__v1__11112222", "success", {"version": "1"}),
]


def ti(task_id: str, state: str, end: str | None = None, try_number: int = 1) -> dict:
    return {"task_id": task_id, "state": state, "end_date": end, "try_number": try_number, "map_index": -1}


TASKS = {
    "registered__v4__abcd1234": [
        ti("build", "failed", "2026-11-30T09:01:00Z"),
        ti("test", "upstream_failed"),
        ti("fail_on_error", "failed", "2026-11-30T09:01:05Z"),
    ],
    APPROVAL_RUN: [ti("build", "success", "x"), ti("test", "success", "y"), ti("approve", "awaiting_input")],
}


def failure_log(value: str) -> dict:
    detail = {"exc_type": "AirflowFailException", "exc_value": value, "frames": []}
    return {"content": [{"level": "error", "event": "Task failed with exception", "error_detail": [detail]}]}


LOGS = {
    "build": failure_log(MISSING + "\nInstaller output (tail):\nerror: No solution found"),
    "fail_on_error": failure_log("iris v4: step 'build' failed; its log says which check and why"),
}


def airflow(requests: list[str]) -> AirflowClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "t"})
        path = request.url.path.removeprefix("/api/v2/dags/iris__cicd/dagRuns")
        requests.append(path)
        if path == "":
            return httpx.Response(200, json={"dag_runs": RUNS, "total_entries": len(RUNS)})
        run_id, _, rest = path.lstrip("/").partition("/")
        if rest == "taskInstances":
            tasks = TASKS[run_id]
            return httpx.Response(200, json={"task_instances": tasks, "total_entries": len(tasks)})
        task = rest.split("/")[1]
        return httpx.Response(200, json=LOGS[task])

    return AirflowClient("http://airflow.test", "admin", "pw", transport=httpx.MockTransport(handler))


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setattr(reg.Registry, "ping", lambda self: None)
    monkeypatch.setattr(reg.Registry, "versions", lambda self, name: list(VERSIONS))
    monkeypatch.setattr(reg.Registry, "by_alias", lambda self, name, alias: None)
    monkeypatch.setattr(LocalRuntime, "status", lambda self, namespace, model: {"route": None})
    cfg = Settings(home=tmp_path / "home", models_dir=tmp_path / "models")
    cfg.home.mkdir()  # the serving history's SQLite file lives there
    monkeypatch.setattr(pushbutton.config, "settings", lambda: cfg)
    return cfg


def test_each_version_shows_its_last_run_failing_task_and_reason(cfg, monkeypatch) -> None:
    requests: list[str] = []
    monkeypatch.setattr(actions, "_client", lambda settings: airflow(requests))
    status = actions.model_status(cfg, "iris")
    assert status["cicd"] == {"dag_id": "iris__cicd", "available": True}
    last = {v["version"]: v["last_run"] for v in status["versions"]}
    assert last["4"] == {
        "run_id": "registered__v4__abcd1234",
        "state": "failed",
        "started": "2026-11-30T09:00:00Z",
        "ended": None,
        "failed_task": "build",  # not the watcher, which fails whenever a step did
        "reason": MISSING,  # its first line: the installer's output stays in the log
    }
    assert (last["3"]["run_id"], last["3"]["state"], last["3"]["task"], last["3"]["task_state"]) == (
        APPROVAL_RUN,
        "running",
        "approve",
        "awaiting_input",
    )
    assert last["2"] is None  # run registered__v2__deadbeef released an earlier model's v2
    assert (last["1"]["run_id"], last["1"]["state"]) == ("registered__v1__11112222", "success")
    v4 = next(v for v in status["versions"] if v["version"] == "4")
    assert (v4["status"], v4["reason"]) == ("failed", f"build failed: {MISSING}")  # MLflow's side
    logs = [r for r in requests if "/logs/" in r]
    assert logs == ["/registered__v4__abcd1234/taskInstances/build/logs/1"]  # one log read per failed run


def test_without_airflow_status_answers_from_mlflow_and_says_why(cfg, monkeypatch, capsys) -> None:
    def unreachable(settings: Settings) -> AirflowClient:
        raise StackError(f"Airflow password file {cfg.home}/airflow/x does not exist; start the stack")

    monkeypatch.setattr(actions, "_client", unreachable)
    assert main(["status", "iris"]) == 0
    out, err = capsys.readouterr()
    status = json.loads(out)
    assert status["cicd"]["available"] is False
    assert status["cicd"]["why"].startswith(
        "Airflow could not be asked for the iris__cicd runs: Airflow password"
    )
    assert all("last_run" not in v for v in status["versions"])
    assert [v["reason"] for v in status["versions"]][3] == f"build failed: {MISSING}"
    assert err == f"warning: no CI/CD run information: {status['cicd']['why']}\n"


def test_an_airflow_that_does_not_answer_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    client = AirflowClient("http://127.0.0.1:9", "admin", "pw", transport=httpx.MockTransport(refused))
    monkeypatch.setattr(actions, "_client", lambda settings: client)
    info, runs = actions._cicd_runs(Settings(home=Path("/nonexistent")), "iris", VERSIONS)
    assert info["available"] is False and runs == {}
    assert "Connection refused" in info["why"] and "`pushbutton up`" in info["why"]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("quality gate failed:\n  - accuracy 0.5 < min 0.9\n  - f1_macro 0.4 < min 0.8", None),
        (MISSING + "\nInstaller output (tail):\nerror: …", MISSING),
        ("", None),
        ("x" * 400, "x" * 299 + "…"),
    ],
    ids=["gate", "first-line", "empty", "long"],
)
def test_one_line(text: str, line: str | None) -> None:
    expected = (
        "quality gate failed: accuracy 0.5 < min 0.9; f1_macro 0.4 < min 0.8" if "gate" in text else line
    )
    assert one_line(text) == expected
