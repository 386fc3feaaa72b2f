"""The ``notify`` action's notifier: the Connection gives the URL and the token; the alert's payload
reaches a real HTTP server (on loopback) with the links; a server error fails the notification."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from operators.alerting import AlertWebhookNotifier, webhook_url
from pushbutton.alerting.judge import NotConfigured


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict], list[int]]]:
    """``(base url, received [{path, auth, body}], statuses to answer)`` of a webhook receiver."""
    received: list[dict] = []
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            self.send_response(statuses.pop(0) if statuses else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", received, statuses
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _connection(monkeypatch: pytest.MonkeyPatch, **fields: object) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_PUSHBUTTON_NOTIFY", json.dumps({"conn_type": "http", **fields}))


def test_the_alert_reaches_the_webhook_with_its_token_and_links(receiver, monkeypatch) -> None:
    address, received, _ = receiver
    host, port = address.split(":")
    _connection(monkeypatch, host=f"{host}/hooks/pushbutton", port=int(port), password="s3cret")
    payload = {"text": "drift-retrain fired", "links": {"run": "http://airflow/dags/iris__monitor/runs/r1"}}
    AlertWebhookNotifier(payload=payload).notify({})
    assert received == [{"path": "/hooks/pushbutton", "auth": "Bearer s3cret", "body": payload}]


def test_a_webhook_that_answers_an_error_fails_the_notification(receiver, monkeypatch) -> None:
    import httpx

    address, received, statuses = receiver
    _connection(monkeypatch, host=f"http://{address}/x")
    statuses.append(500)
    with pytest.raises(httpx.HTTPStatusError, match="500"):
        AlertWebhookNotifier(payload={"text": "t"}).notify({})
    assert len(received) == 1 and received[0]["auth"] is None  # no password: no Authorization header


def test_no_connection_is_not_configured(monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_PUSHBUTTON_NOTIFY", raising=False)
    with pytest.raises(NotConfigured, match="pushbutton_notify"):
        AlertWebhookNotifier(payload={}, http_conn_id="pushbutton_notify").notify({})


@pytest.mark.parametrize(
    ("host", "schema", "port", "url"),
    [
        ("hooks.example.com/a/b", None, 8080, "http://hooks.example.com:8080/a/b"),  # old: .../a/b:8080
        ("hooks.example.com", "https", None, "https://hooks.example.com"),
        ("https://hooks.example.com:9443/p", None, 8080, "https://hooks.example.com:9443/p"),
        ("https://hooks.example.com/p?x=1", None, 8443, "https://hooks.example.com:8443/p?x=1"),
    ],
)
def test_the_url_puts_the_port_after_the_host(host, schema, port, url) -> None:
    assert webhook_url("pushbutton_notify", host, schema, port) == url


def test_a_connection_without_a_host_says_how_to_fix() -> None:
    with pytest.raises(NotConfigured, match="set host to the webhook URL"):
        webhook_url("pushbutton_notify", "", None, None)
