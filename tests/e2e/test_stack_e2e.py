"""``pushbutton up`` → a DAG runs through the REST API v2 → ``pushbutton down`` leaves nothing behind;
and a model's schedules on the real scheduler never fire a tick from before the model appeared."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from pushbutton import stack
from pushbutton.airflow_client import AirflowClient
from pushbutton.cli import main
from pushbutton.config import REPO_ROOT, settings
from pushbutton.errors import Conflict
from pushbutton.procs import process_cmdline

pytestmark = pytest.mark.e2e

DAG = '''
"""A tiny DAG whose task checks what the stack hands to tasks (settings, Connections)."""
from airflow.sdk import BaseHook, dag, task


@dag(dag_id="pb_e2e_hello", schedule=None, tags=["pushbutton-e2e"])
def pb_e2e_hello():
    @task
    def check(expected_port: str, expected_home: str) -> str:
        import os

        mlflow = BaseHook.get_connection("pushbutton_mlflow")
        assert str(mlflow.port) == expected_port, (mlflow.port, expected_port)
        assert mlflow.extra_dejson["webhook_secret"], "webhook secret missing from the connection"
        assert BaseHook.get_connection("pushbutton_seldon").extra_dejson["runtime"] == "local"
        assert os.environ["PUSHBUTTON_HOME"] == expected_home
        assert os.environ["MLFLOW_TRACKING_URI"].endswith(f":{expected_port}")
        return "ok"

    check("{{ dag_run.conf['port'] }}", "{{ dag_run.conf['home'] }}")


pb_e2e_hello()
'''


APPROVAL_DAG = """
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import dag, task


@dag(dag_id="pb_e2e_approval", schedule=None, tags=["pushbutton-e2e"])
def pb_e2e_approval():
    @task
    def after() -> str:
        return "shipped"

    ApprovalOperator(task_id="approve", subject="Ship it?") >> after()


pb_e2e_approval()
"""


@dataclass(frozen=True)
class Ticks:
    """A model whose weekly retrain ticked an hour ago and whose hourly monitor ticked 2 minutes ago:
    both within the 10% window in which Airflow 3.3 would run the past tick at once (issue 13 §1)."""

    retrain: str
    monitor: str
    next_retrain: datetime
    next_monitor: datetime

    @classmethod
    def around(cls, now: datetime) -> Ticks:
        weekly = (now - timedelta(hours=1)).replace(second=0, microsecond=0)
        hourly = (now - timedelta(minutes=2)).replace(second=0, microsecond=0)
        return cls(
            retrain=f"{weekly.minute} {weekly.hour} * * {weekly.isoweekday() % 7}",
            monitor=f"{hourly.minute} * * * *",
            next_retrain=weekly + timedelta(days=7),
            next_monitor=hourly + timedelta(hours=1),
        )


@pytest.fixture
def cfg(platform_home, tmp_path, monkeypatch):
    dags, models = tmp_path / "dags", tmp_path / "models"
    dags.mkdir()
    models.mkdir()
    (dags / "pb_e2e_hello.py").write_text(textwrap.dedent(DAG))
    (dags / "pb_e2e_approval.py").write_text(APPROVAL_DAG)
    for source in (REPO_ROOT / "dags").glob("*.py"):  # the factory the model stubs import
        shutil.copy(source, dags / source.name)
    ticks = Ticks.around(datetime.now(UTC))
    shutil.copytree(
        REPO_ROOT / "models" / "iris", models / "ticker", ignore=shutil.ignore_patterns("__pycache__")
    )
    spec = models / "ticker" / "model.yaml"
    spec.write_text(
        spec.read_text()
        .replace("name: iris", "name: ticker")
        .replace('retrain: "0 3 * * 1"', f'retrain: "{ticks.retrain}"')
        .replace('monitor: "*/30 * * * *"', f'monitor: "{ticks.monitor}"')
    )
    monkeypatch.setenv("PUSHBUTTON_DAGS_DIR", str(dags))
    monkeypatch.setenv("PUSHBUTTON_MODELS_DIR", str(models))
    monkeypatch.setenv("PUSHBUTTON_SCHEDULES", "on")  # this stack keeps its schedules: they are tested
    monkeypatch.setattr(sys.modules[__name__], "TICKS", ticks)
    settings.cache_clear()
    try:
        yield settings()
    finally:
        stack.down(settings())


def _check_webhook_reaches_the_plugin(cfg) -> None:
    """The stack loads the pushbutton plugin; MLflow signs a test delivery and the plugin accepts it."""
    health = httpx.get(f"{cfg.airflow_url}/pushbutton/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}, (
        f"the pushbutton plugin is not served by the Airflow API server ({cfg.plugins_dir}): "
        f"HTTP {health.status_code} {health.text[:200]}"
    )
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=cfg.mlflow_url, registry_uri=cfg.mlflow_url)
    [hook] = [w for w in client.list_webhooks() if w.name == stack.WEBHOOK_NAME]
    result = client.test_webhook(hook.webhook_id)
    # 404: signature accepted, but the example payload names a model without a DAG (nothing triggered)
    assert result.response_status in (200, 404), (result.response_status, result.response_body)


TICKS: Ticks | None = None  # set by the cfg fixture


def _check_no_past_tick_runs(client: AirflowClient) -> None:
    """On the real scheduler: the model's schedules wait for their next tick (the DAG processor has
    computed it when the DAG is registered; the old factory's was the past tick, run at once)."""
    assert TICKS is not None
    for kind, expected in (("retrain", TICKS.next_retrain), ("monitor", TICKS.next_monitor)):
        dag = client.wait_dag(f"ticker__{kind}", timeout=120, poll=0.5)
        assert dag["is_paused"] is False
        assert datetime.fromisoformat(dag["next_dagrun_run_after"]) == expected, (kind, dag)
        assert client.list_runs(f"ticker__{kind}") == []


def _wait_for(fetch, timeout: float, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while not (found := fetch()):
        assert time.monotonic() < deadline, f"nothing after {timeout}s"
        time.sleep(poll)
    return found


def _pids_mentioning(home: Path) -> list[int]:
    """Processes whose command line or environment mentions the platform home."""
    needle = str(home).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes() or needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid() and process_cmdline(pid) != "?"]


def test_up_run_a_dag_down(cfg, capsys):
    t0 = time.monotonic()
    assert main(["up"]) == 0
    up_seconds = time.monotonic() - t0
    described = capsys.readouterr().out
    assert cfg.airflow_url in described and "simple_auth_manager_passwords.json.generated" in described

    assert main(["status"]) == 0  # every component running
    capsys.readouterr()

    _check_webhook_reaches_the_plugin(cfg)

    with AirflowClient.from_settings(cfg) as client:
        assert all(v["status"] == "healthy" for v in client.health().values())
        t1 = time.monotonic()
        dag = client.wait_dag("pb_e2e_hello", timeout=120, poll=0.5)
        parse_seconds = time.monotonic() - t1
        assert dag["is_paused"] is False  # DAGS_ARE_PAUSED_AT_CREATION=False
        client.wait_dag("pb_e2e_approval", timeout=60, poll=0.5)
        assert [d["dag_id"] for d in client.list_dags(tags=["pushbutton-e2e"])] == [
            "pb_e2e_approval",
            "pb_e2e_hello",
        ]
        assert client.import_errors() == []
        _check_no_past_tick_runs(client)

        t2 = time.monotonic()
        conf = {"port": cfg.mlflow_port, "home": str(cfg.home)}
        run = client.trigger("pb_e2e_hello", conf=conf, note="e2e")
        done = client.wait_run("pb_e2e_hello", run["dag_run_id"], timeout=180, poll=0.5)
        run_seconds = time.monotonic() - t2
        tasks = client.task_instances("pb_e2e_hello", run["dag_run_id"])
        assert done["state"] == "success", tasks
        assert [(t["task_id"], t["state"]) for t in tasks] == [("check", "success")]

        # human in the loop: the approval waits for an answer through the REST API
        t4 = time.monotonic()
        run = client.trigger("pb_e2e_approval")
        pending = _wait_for(lambda: client.pending_hitl("pb_e2e_approval"), timeout=120)
        assert [(h["task_instance"]["task_id"], h["options"]) for h in pending] == [
            ("approve", ["Approve", "Reject"])
        ]
        client.respond_hitl("pb_e2e_approval", run["dag_run_id"], "approve", ["Approve"])
        with pytest.raises(Conflict):
            client.respond_hitl("pb_e2e_approval", run["dag_run_id"], "approve", ["Approve"])
        done = client.wait_run("pb_e2e_approval", run["dag_run_id"], timeout=180, poll=0.5)
        hitl_seconds = time.monotonic() - t4
        assert done["state"] == "success"
        assert client.pending_hitl() == []

    t3 = time.monotonic()
    assert main(["down"]) == 0
    down_seconds = time.monotonic() - t3
    assert "airflow" in capsys.readouterr().out
    assert stack.stack_processes(cfg) == []
    assert _pids_mentioning(cfg.home) == []
    with capsys.disabled():
        print(
            f"\n[stack e2e] up {up_seconds:.1f}s, DAG parsed {parse_seconds:.1f}s, "
            f"run {run_seconds:.1f}s, approval run {hitl_seconds:.1f}s, down {down_seconds:.1f}s"
        )
