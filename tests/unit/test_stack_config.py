"""Stack configuration without starting anything: Airflow env and Connections, secrets, port
conflicts, the webhook registration logic, and the REST client against a mock transport."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from pushbutton import stack
from pushbutton.airflow_client import AirflowClient, RunTimeout, is_healthy
from pushbutton.errors import Conflict, NotFound, StackError


@pytest.fixture
def cfg(platform_home, tmp_path, monkeypatch):
    monkeypatch.setenv("PUSHBUTTON_DAGS_DIR", str(tmp_path / "dags"))
    monkeypatch.setenv("PUSHBUTTON_MODELS_DIR", str(tmp_path / "models"))
    from pushbutton.config import settings

    settings.cache_clear()
    return settings()


def test_airflow_env_has_config_connections_and_platform_settings(cfg):
    secret = stack.webhook_secret(cfg)
    env = stack.airflow_env(cfg, secret)
    assert env["AIRFLOW_HOME"] == str(cfg.home / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(cfg.dags_dir)
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(cfg.plugins_dir)
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert env["AIRFLOW__API__PORT"] == str(cfg.airflow_port)
    assert env["AIRFLOW__API__BASE_URL"] == cfg.airflow_url
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{cfg.airflow_url}/execution/"
    assert int(env["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"]) <= 10
    assert env["MLFLOW_TRACKING_URI"] == cfg.mlflow_url
    assert env["PUSHBUTTON_HOME"] == str(cfg.home)
    assert env["PUSHBUTTON_AIRFLOW_PORT"] == str(cfg.airflow_port)
    assert env[stack.MARKER] == str(cfg.home)
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)  # standalone spawns `airflow`

    mlflow_conn = json.loads(env["AIRFLOW_CONN_PUSHBUTTON_MLFLOW"])
    assert mlflow_conn["conn_type"] == "http"
    assert (mlflow_conn["host"], mlflow_conn["port"]) == (cfg.host, cfg.mlflow_port)
    assert mlflow_conn["extra"]["webhook_secret"] == secret
    seldon = json.loads(env["AIRFLOW_CONN_PUSHBUTTON_SELDON"])
    assert seldon["port"] == cfg.gateway_port
    assert seldon["extra"] == {"runtime": "local", "namespace": cfg.namespace}
    assert json.loads(env["AIRFLOW_CONN_PUSHBUTTON_STORE"])["extra"] == {"url": cfg.store}


def test_secret_reaches_only_airflow(cfg):
    secret = stack.webhook_secret(cfg)
    assert secret not in json.dumps(stack.airflow_config(cfg))
    assert secret not in " ".join(stack.mlflow_command(cfg) + stack.gateway_command(cfg))
    assert secret not in json.dumps(stack.mlflow_env(cfg))
    assert "PUSHBUTTON_WEBHOOK_SECRET" not in stack.settings_env(cfg)


def test_describe_names_credentials_file_but_shows_no_secret(cfg):
    secret = stack.webhook_secret(cfg)
    password = json.loads(stack._airflow_password(cfg).read_text())["admin"]
    info = stack.StackInfo(cfg.home, webhook_id="abc")
    info.components["airflow"] = stack.ComponentInfo("airflow", cfg.airflow_url, 123, "log", True, 12.5)
    text = info.describe()
    assert str(cfg.home / "airflow" / "simple_auth_manager_passwords.json.generated") in text
    assert str(cfg.home / "logs") in text
    assert cfg.airflow_url in text
    assert secret not in text
    assert password not in text


def test_webhook_secret_is_generated_once_with_mode_0600(cfg):
    first = stack.webhook_secret(cfg)
    path = cfg.home / "secrets" / "webhook_secret"
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stack.webhook_secret(cfg) == first
    path.chmod(0o644)
    assert stack.webhook_secret(cfg) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # tightened again


def test_webhook_secret_from_environment_wins(cfg, monkeypatch):
    from pushbutton.config import settings

    monkeypatch.setenv("PUSHBUTTON_WEBHOOK_SECRET", "from-env")
    settings.cache_clear()
    assert stack.webhook_secret(settings()) == "from-env"
    assert not (cfg.home / "secrets" / "webhook_secret").exists()


def test_airflow_password_file_is_private_json(cfg):
    path = stack._airflow_password(cfg)
    assert path.name == "simple_auth_manager_passwords.json.generated"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = json.loads(path.read_text())
    assert set(first) == {"admin"}
    assert json.loads(stack._airflow_password(cfg).read_text()) == first


@pytest.mark.parametrize(
    ("component", "setting", "what"),
    [
        ("mlflow", "PUSHBUTTON_MLFLOW_PORT", "MLflow tracking server"),
        ("airflow", "PUSHBUTTON_AIRFLOW_PORT", "airflow standalone"),
    ],
)
def test_taken_port_fails_before_anything_starts(cfg, component, setting, what):
    port = getattr(cfg, f"{component}_port")
    with socket.socket() as blocker:
        blocker.bind((cfg.host, port))
        blocker.listen()
        with pytest.raises(StackError) as err:
            stack.up(cfg, airflow=True)
    message = str(err.value)
    assert str(port) in message and setting in message and what in message
    assert stack.process_group(cfg).names() == []
    assert stack.stack_processes(cfg) == []


def test_status_and_down_on_a_home_that_never_ran(cfg):
    report = stack.status(cfg)
    assert {"mlflow", "airflow"} <= set(report["components"])
    assert not any(c["running"] for c in report["components"].values())
    assert stack.down(cfg) == []
    assert stack.down(cfg) == []


def test_down_kills_processes_that_left_their_group(cfg):
    cfg.home.mkdir(parents=True)
    env = {**os.environ, stack.MARKER: str(cfg.home)}
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], env=env, start_new_session=True
    )
    try:
        assert stack.stack_processes(cfg) == [sleeper.pid]
        assert stack.down(cfg) == ["1 leftover process(es)"]
        assert stack.stack_processes(cfg) == []
    finally:
        sleeper.kill()
        sleeper.wait()


class FakeMlflow:
    def __init__(self, hooks=()):
        self.hooks = {h.webhook_id: h for h in hooks}
        self.calls: list[tuple] = []

    def list_webhooks(self, max_results=None, page_token=None):
        class Page(list):
            token = None

        return Page(self.hooks.values())

    def create_webhook(self, name, url, events, description=None, secret=None, status=None):
        self.calls.append(("create", name, url, tuple(events), secret))
        hook = SimpleNamespace(webhook_id=f"id{len(self.hooks)}", name=name, url=url)
        self.hooks[hook.webhook_id] = hook
        return hook

    def update_webhook(self, webhook_id, url=None, events=None, secret=None, status=None, **kw):
        self.calls.append(("update", webhook_id, url, tuple(events), secret))
        return self.hooks[webhook_id]

    def delete_webhook(self, webhook_id):
        self.calls.append(("delete", webhook_id))
        del self.hooks[webhook_id]


def test_register_webhook_creates_then_updates_and_removes_duplicates(cfg):
    fake = FakeMlflow([SimpleNamespace(webhook_id="other", name="someone-else", url="x")])
    url = f"{cfg.airflow_url}/pushbutton/webhooks/mlflow"
    first = stack.register_webhook(cfg, "s3cret", client=fake)
    assert fake.calls == [("create", stack.WEBHOOK_NAME, url, ("model_version.created",), "s3cret")]
    assert stack.register_webhook(cfg, "s3cret", client=fake) == first
    assert fake.calls[-1] == ("update", first, url, ("model_version.created",), "s3cret")
    fake.hooks["dup"] = SimpleNamespace(webhook_id="dup", name=stack.WEBHOOK_NAME, url=url)
    stack.register_webhook(cfg, "s3cret", client=fake)
    assert ("delete", "dup") in fake.calls
    assert sorted(fake.hooks) == sorted(["other", first])


def test_register_webhook_error_names_url_not_secret(cfg):
    class Broken(FakeMlflow):
        def create_webhook(self, *a, **kw):
            raise RuntimeError("INVALID_PARAMETER_VALUE: scheme not allowed")

    with pytest.raises(StackError) as err:
        stack.register_webhook(cfg, "s3cret", client=Broken())
    assert "scheme not allowed" in str(err.value) and cfg.airflow_url in str(err.value)
    assert "s3cret" not in str(err.value)


# -- AirflowClient against a mock transport ---------------------------------------------------


def _client(handler) -> AirflowClient:
    return AirflowClient("http://airflow.test", "admin", "pw", transport=httpx.MockTransport(handler))


def test_client_logs_in_and_refreshes_an_expired_token():
    logins, seen = [], []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            body = json.loads(request.content)
            logins.append(body)
            return httpx.Response(201, json={"access_token": f"t{len(logins)}"})
        seen.append(request.headers["Authorization"])
        if request.headers["Authorization"] == "Bearer t1" and len(seen) > 1:
            return httpx.Response(401, json={"detail": "expired"})
        return httpx.Response(200, json={"dag_id": "d", "is_stale": False})

    with _client(handler) as client:
        assert client.get_dag("d")["dag_id"] == "d"
        assert client.get_dag("d")["dag_id"] == "d"  # 401 with t1 -> login again -> t2
    assert logins == [{"username": "admin", "password": "pw"}] * 2
    assert seen == ["Bearer t1", "Bearer t1", "Bearer t2"]


def test_client_maps_errors_with_detail():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "t"})
        if request.url.path.endswith("/hitlDetails"):
            if request.method == "GET":
                return httpx.Response(
                    200, json={"response_received": True, "created_at": "2026-01-01T00:00:00Z"}
                )
            return httpx.Response(409, json={"detail": "already answered"})
        if "boom" in request.url.path:
            return httpx.Response(500, text="internal")
        return httpx.Response(404, json={"detail": "The Dag with ID: `x` was not found"})

    with _client(handler) as client:
        with pytest.raises(NotFound, match="was not found") as nf:
            client.get_dag("x")
        assert isinstance(nf.value.__cause__, httpx.HTTPStatusError)
        with pytest.raises(Conflict, match="already answered"):
            client.respond_hitl("d", "r", "approve", ["Approve"])
        with pytest.raises(StackError, match="500"):
            client.get_dag("boom")


def test_client_bad_credentials_is_a_stack_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"detail": "Invalid credentials"})

    with _client(handler) as client, pytest.raises(StackError, match="credentials"):
        client.list_dags()


def test_client_request_shapes_and_paging():
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "t"})
        requests.append(request)
        path, params = request.url.path, request.url.params
        if path == "/api/v2/dags":
            offset = int(params["offset"])
            dags = [{"dag_id": f"d{i}"} for i in range(offset, min(offset + 100, 150))]
            return httpx.Response(200, json={"dags": dags, "total_entries": 150})
        if path.endswith("/dagRuns") and request.method == "POST":
            return httpx.Response(
                200, json={"dag_run_id": "r1", "state": "queued", **json.loads(request.content)}
            )
        if path.endswith("/hitlDetails"):
            return httpx.Response(200, json={"hitl_details": [], "total_entries": 0})
        if path.endswith("/taskInstances"):
            return httpx.Response(
                200, json={"task_instances": [{"task_id": "t", "state": "running"}], "total_entries": 1}
            )
        return httpx.Response(200, json={"dag_run_id": "r1", "state": "running"})

    with _client(handler) as client:
        assert len(client.list_dags(tags=["pushbutton"])) == 150
        assert requests[0].url.params.get_list("tags") == ["pushbutton"]
        run = client.trigger("m__cicd", conf={"version": "3"}, run_id="r1", note="n")
        assert run["logical_date"] is None and run["conf"] == {"version": "3"} and run["dag_run_id"] == "r1"
        client.pending_hitl()
        hitl = requests[-1]
        assert hitl.url.path == "/api/v2/dags/~/dagRuns/~/hitlDetails"
        assert hitl.url.params["response_received"] == "false"
        client.respond_hitl("m__cicd", "manual__2026", "approve", ["Approve"])
        patch = requests[-1]
        assert patch.method == "PATCH"
        assert (
            patch.url.path == "/api/v2/dags/m__cicd/dagRuns/manual__2026/taskInstances/approve/-1/hitlDetails"
        )
        assert json.loads(patch.content) == {"chosen_options": ["Approve"], "params_input": {}}
        with pytest.raises(RunTimeout, match="t=running"):
            client.wait_run("m__cicd", "r1", timeout=0, poll=0)


def test_is_healthy_needs_every_component():
    good = {k: {"status": "healthy"} for k in ("metadatabase", "scheduler", "dag_processor", "triggerer")}
    assert is_healthy(good)
    assert not is_healthy({**good, "triggerer": {"status": None}})
    assert not is_healthy({k: v for k, v in good.items() if k != "dag_processor"})


def test_model_code_gets_no_platform_secrets(monkeypatch):
    from pushbutton.config import Settings
    from pushbutton.procs import model_env
    from pushbutton.serving import checks, microservice

    secrets = {
        "AIRFLOW_CONN_PUSHBUTTON_MLFLOW": '{"extra": {"webhook_secret": "s3cr3t"}}',
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow:pw@db/airflow",
        "AIRFLOW_VAR_TOKEN": "t",
        "AIRFLOW_HOME": "/opt/airflow",  # its airflow.cfg holds the database URL and keys
        "AIRFLOW_CONFIG": "/opt/airflow/airflow.cfg",
        "PUSHBUTTON_WEBHOOK_SECRET": "s3cr3t",
        "PUSHBUTTON_STORE_URL": "postgresql://pushbutton:pw@db/pushbutton",
        "AWS_SECRET_ACCESS_KEY": "k",
        "PYTHONPATH": "/platform/site-packages",
    }
    kept = {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "PATH": "/usr/bin", "GUNICORN_WORKERS": "2"}
    assert model_env({**secrets, **kept}) == kept
    for name, value in {**secrets, **kept}.items():
        monkeypatch.setenv(name, value)
    for env in (microservice._child_env(Settings()), checks._env("models:/iris/1")):
        assert [name for name in secrets if name != "PYTHONPATH" and name in env] == []
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and env["GUNICORN_WORKERS"] == "2"
    assert microservice._child_env(Settings())["PYTHONPATH"] == str(microservice.RUNTIME_DIR)
    assert "PYTHONPATH" not in checks._env("models:/iris/1")
