"""``pushbutton status`` shows request-logging health: the logger's counters and the gateway emitter's
(spooled, pending in the spool, dropped). No servers: the processes are faked in the stack's process
group and the HTTP answers at ``httpx.get``; the answers themselves come from the real producers
(``RequestLogger.describe`` and ``Emitter.status``), so a renamed counter on either side shows here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from pushbutton import cli, stack
from pushbutton.config import settings
from pushbutton.monitoring import records as R
from pushbutton.monitoring.emitter import Emitter, LoggerUnavailable
from pushbutton.monitoring.logger import RequestLogger
from pushbutton.monitoring.wire import Event


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("PUSHBUTTON_HOME", str(tmp_path / "home"))
    settings.cache_clear()
    yield settings()
    settings.cache_clear()


class FakeGroup:
    """The stack's process group with these components alive (the rest never started)."""

    def __init__(self, alive: set[str]):
        self.alive = alive

    def get(self, name: str) -> Any:
        if name not in self.alive:
            return None
        return SimpleNamespace(pid=4000 + len(name), alive=lambda: True)


def serve(monkeypatch: pytest.MonkeyPatch, answers: dict[str, tuple[int, Any]]) -> list[str]:
    """``httpx.get`` answers ``answers[url]`` (status, JSON); anything else is a refused connection."""
    asked: list[str] = []

    def get(url: str, **kwargs: Any) -> httpx.Response:
        asked.append(url)
        if url not in answers:
            raise httpx.ConnectError("connection refused", request=httpx.Request("GET", url))
        status, body = answers[url]
        return httpx.Response(status, json=body, request=httpx.Request("GET", url))

    monkeypatch.setattr(httpx, "get", get)
    return asked


def logger_answer(store_up: bool = True) -> dict[str, Any]:
    """What the logger's ``GET /status`` answers after 41 events, 18 records written, 1 refused delivery."""
    logger = RequestLogger(SimpleNamespace(url="sqlite:///monitoring.db"))
    logger.counters.received, logger.counters.written, logger.counters.rejected = 41, 18, 1
    logger.pairer.counters.incomplete = 2
    logger.store_up = store_up
    logger.last_error = "" if store_up else "database is locked"
    return logger.describe()


def gateway_answer(tmp_path: Path) -> dict[str, Any]:
    """What the gateway's ``GET /status`` answers after one oversize event (dropped) and one exchange
    spooled while the logger was away."""
    state = {"up": True}

    def transport(body: bytes, headers: dict[str, str]) -> int:
        if not state["up"]:
            raise LoggerUnavailable("ConnectError: connection refused")
        return 200

    emitter = Emitter(transport, tmp_path / "spool", url="http://127.0.0.1:8002", max_event_bytes=2000,
                      retry_initial=60.0)  # fmt: skip
    common = dict(request_id="r1", deployment="iris", namespace="models", endpoint="champion", role="champion",
                  version="1", model_id="iris-v1", source="http://127.0.0.1:9001")  # fmt: skip
    body = json.dumps({"data": {"ndarray": [[1.0, 2.0]]}}).encode()
    emitter.emit([Event(R.CE_REQUEST, time=1.0, body=b"x" * 5000, **{**common, "request_id": "big"})])
    state["up"] = False
    emitter.emit([Event(R.CE_REQUEST, time=1.0, body=body, **common),
                  Event(R.CE_RESPONSE, time=1.5, body=body, status=200, latency_ms=5.0, **common)])  # fmt: skip
    emitter.pump()
    try:
        return {"deployments": 1, "logging": emitter.status()}
    finally:
        emitter.close(timeout=1)


def run_status(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = cli.main(["status"])
    return code, json.loads(capsys.readouterr().out)


def health(url: str, status: int = 200) -> tuple[str, tuple[int, Any]]:
    return f"{url}/health", (status, {"status": "ok" if status == 200 else "store unavailable"})


def test_status_prints_the_logger_and_emitter_counters(
    cfg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway = gateway_answer(tmp_path)
    assert gateway["logging"]["dropped"]["oversize"] == 1 and gateway["logging"]["spool_pending"] == 2
    monkeypatch.setattr(stack, "process_group", lambda settings: FakeGroup({"mlflow", "logger", "gateway"}))
    serve(monkeypatch, dict([health(cfg.mlflow_url), health(cfg.logger_url), health(cfg.gateway_url),
                             (f"{cfg.logger_url}/status", (200, logger_answer())),
                             (f"{cfg.gateway_url}/status", (200, gateway))]))  # fmt: skip
    code, report = run_status(capsys)
    assert code == 1  # airflow is not running
    assert report["components"]["logger"] == {**report["components"]["logger"], "running": True,
                                              "healthy": True, "url": cfg.logger_url}  # fmt: skip
    logging = report["logging"]
    assert {k: logging[k] for k in ("received", "written", "incomplete", "rejected", "store_up")} == {
        "received": 41, "written": 18, "incomplete": 2, "rejected": 1, "store_up": True,
    }  # fmt: skip
    assert (logging["spooled"], logging["spool_pending"], logging["dropped"]) == (2, 2, 1)
    assert logging["emitter"]["dropped"]["oversize"] == 1  # the reason is there too
    assert logging["emitter"]["logger_up"] is False
    assert logging["logger"]["store"] == "sqlite:///monitoring.db"


def test_a_logger_whose_store_is_down_still_shows_its_counters(
    cfg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The logger answers ``/health`` 503 while its store is down; that is when its counters matter."""
    monkeypatch.setattr(stack, "process_group", lambda settings: FakeGroup({"mlflow", "logger", "gateway"}))
    serve(monkeypatch, dict([health(cfg.mlflow_url), health(cfg.logger_url, 503), health(cfg.gateway_url),
                             (f"{cfg.logger_url}/status", (200, logger_answer(store_up=False))),
                             (f"{cfg.gateway_url}/status", (200, gateway_answer(tmp_path)))]))  # fmt: skip
    _, report = run_status(capsys)
    assert report["components"]["logger"]["healthy"] is False
    logging = report["logging"]
    assert (logging["store_up"], logging["received"], logging["logger"]["last_error"]) == (
        False, 41, "database is locked",
    )  # fmt: skip
    assert logging["dropped"] == 1


def test_components_that_are_down_show_none_not_zero(
    cfg: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(stack, "process_group", lambda settings: FakeGroup({"mlflow"}))
    asked = serve(monkeypatch, dict([health(cfg.mlflow_url)]))
    code, report = run_status(capsys)
    assert code == 1
    assert report["components"]["logger"] == {**report["components"]["logger"], "running": False,
                                              "healthy": False, "pid": None}  # fmt: skip
    assert set(report["logging"].values()) == {None}  # unknown, never a reassuring 0
    assert not [url for url in asked if url.endswith("/status")]  # nothing asked of a stopped process


def test_a_status_answer_that_fails_shows_none(
    cfg: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(stack, "process_group", lambda settings: FakeGroup({"mlflow", "logger", "gateway"}))
    serve(monkeypatch, dict([health(cfg.mlflow_url), health(cfg.logger_url), health(cfg.gateway_url),
                             (f"{cfg.logger_url}/status", (500, {"error": "boom"}))]))  # fmt: skip
    _, report = run_status(capsys)
    assert report["components"]["gateway"]["healthy"] is True
    assert set(report["logging"].values()) == {None}
