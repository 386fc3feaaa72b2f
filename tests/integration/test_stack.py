"""A real MLflow server, the request logger and the gateway started and stopped by the stack code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from pushbutton import stack
from pushbutton.errors import StackError
from pushbutton.procs import port_free, process_cmdline

pytestmark = pytest.mark.integration


@pytest.fixture
def cfg(platform_home):
    try:
        yield platform_home
    finally:
        stack.down(platform_home)


def _our_webhooks(cfg):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=cfg.mlflow_url, registry_uri=cfg.mlflow_url)
    return client, [w for w in client.list_webhooks() if w.name == stack.WEBHOOK_NAME]


@contextmanager
def _receiver(host: str, port: int) -> Iterator[list[tuple[str, dict, bytes]]]:
    """A stand-in for the Airflow plugin's webhook endpoint, recording each delivery."""
    received: list[tuple[str, dict, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, dict(self.headers), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_mlflow_up_twice_webhook_once_signed_after_restart_and_down_leaves_nothing(cfg):
    first = stack.up(cfg, airflow=False)
    assert list(first.components) == ["mlflow", "logger", "gateway"]
    assert all(c.started for c in first.components.values())
    assert httpx.get(f"{cfg.mlflow_url}/health").text == "OK"
    assert httpx.get(f"{cfg.gateway_url}/health").is_success  # the gateway is part of every stack
    assert httpx.get(f"{cfg.logger_url}/health").is_success  # ... and the request logger beside it
    assert f"logger   {cfg.logger_url}" in first.describe()
    full = stack.status(cfg)
    report = full["components"]
    assert report["mlflow"] == {**report["mlflow"], "running": True, "healthy": True}
    assert report["logger"] == {**report["logger"], "running": True, "healthy": True, "url": cfg.logger_url,
                                "pid": first.components["logger"].pid}  # fmt: skip
    assert report["gateway"] == {**report["gateway"], "running": True, "healthy": True}
    assert report["airflow"]["running"] is False
    # logging health from the live processes: the logger's counters, on the stack's monitoring store,
    # and the gateway's emitter sending to this logger
    logging = full["logging"]
    counts = ("received", "rejected", "dropped", "store_up")
    assert [logging[k] for k in counts] == [0, 0, 0, True]
    assert logging["logger"]["store"] == cfg.monitoring
    assert logging["emitter"]["logger_url"] == cfg.logger_url

    second = stack.up(cfg, airflow=False)
    assert not any(c.started for c in second.components.values())
    assert {n: c.pid for n, c in second.components.items()} == {n: c.pid for n, c in first.components.items()}
    assert "already running" in second.describe()
    client, hooks = _our_webhooks(cfg)
    assert len(hooks) == 1
    assert hooks[0].webhook_id == first.webhook_id
    assert second.webhook_id is None  # nothing started, nothing re-registered
    assert hooks[0].url == f"{cfg.airflow_url}/pushbutton/webhooks/mlflow"
    assert [str(e) for e in hooks[0].events] == ["model_version.created"]

    # Restart MLflow: the stored secret must still decrypt (persistent encryption key) and sign.
    assert {"mlflow", "logger", "gateway"} <= set(stack.down(cfg))
    third = stack.up(cfg, airflow=False)
    assert third.components["mlflow"].started
    client, hooks = _our_webhooks(cfg)
    assert [h.webhook_id for h in hooks] == [first.webhook_id] == [third.webhook_id]  # updated, not added
    with _receiver(cfg.host, cfg.airflow_port) as received:
        result = client.test_webhook(first.webhook_id)
    assert result.success, result.error_message
    path, headers, body = received[0]
    assert path == stack.WEBHOOK_PATH
    signed = f"{headers['X-MLflow-Delivery-Id']}.{headers['X-MLflow-Timestamp']}.".encode() + body
    digest = hmac.new(stack.webhook_secret(cfg).encode(), signed, hashlib.sha256).digest()
    assert headers["X-MLflow-Signature"] == "v1," + base64.b64encode(digest).decode()

    pids = [c.pid for c in third.components.values()]
    assert third.components["logger"].pid not in [c.pid for c in first.components.values()]
    stopped = stack.down(cfg)
    assert {"mlflow", "logger", "gateway"} <= set(stopped)
    assert stack.stack_processes(cfg) == []
    assert not any(process_cmdline(pid) != "?" for pid in pids)
    assert stack.process_group(cfg).names() == []
    assert all(port_free(cfg.host, port) for port in (cfg.mlflow_port, cfg.logger_port, cfg.gateway_port))
    after = stack.status(cfg)
    assert not any(c["running"] for c in after["components"].values())
    assert set(after["logging"].values()) == {None}  # nothing to ask: unknown, not zero
    assert stack.down(cfg) == []  # idempotent


@pytest.mark.parametrize(
    ("command", "what"),
    [("mlflow_command", "the MLflow tracking server"), ("logger_command", "the request logger")],
    ids=["mlflow", "logger"],
)
def test_failed_start_stops_what_it_started(cfg, monkeypatch, command, what):
    original = getattr(stack, command)

    def broken(settings):
        return [*original(settings), "--no-such-option"]

    monkeypatch.setattr(stack, command, broken)
    with pytest.raises(StackError, match=f"{what} exited during start-up") as err:
        stack.up(cfg, airflow=False)
    assert "no-such-option" in str(err.value)  # the log tail explains why
    assert stack.process_group(cfg).names() == []
    assert stack.stack_processes(cfg) == []


def test_mlflows_created_delivery_names_the_same_cicd_run_as_push(cfg):
    """The webhook and `push`'s REST trigger must name one run: read from MLflow's real delivery."""
    import time

    from pushbutton.config import REPO_ROOT
    from pushbutton.registry import Registry
    from pushbutton.spec import load_model_dir
    from pushbutton.training import train_and_register
    from pushbutton.webhook import cicd_run_id, created_version

    stack.up(cfg, airflow=False)
    model_dir = REPO_ROOT / "models" / "iris"
    with _receiver(cfg.host, cfg.airflow_port) as received:
        pushed = train_and_register(
            load_model_dir(model_dir), model_dir, Registry(cfg.mlflow_url), source="test"
        )
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:  # MLflow delivers from a thread pool
            time.sleep(0.05)
    assert received, "MLflow delivered no model_version.created"
    name, version, mlflow_run = created_version(received[0][2])
    assert (name, version) == ("iris", pushed.version)
    assert cicd_run_id(version, mlflow_run) == cicd_run_id(pushed.version, pushed.run_id)
    assert pushed.run_id[:8] in cicd_run_id(version, mlflow_run)
