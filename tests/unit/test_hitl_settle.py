"""The plugin's root middleware that holds a Human-in-the-loop answer until the parked task has
settled (Airflow 3.3 fails a task resumed before the scheduler saw its parking worker exit).

Driven here as a plain ASGI app with the task-state lookup and the sleep replaced; the real API
server path (an answer sent the instant the request appears) is in ``tests/e2e/test_demo.py``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

import plugins.pushbutton_plugin as plugin
from plugins.pushbutton_plugin import HitlSettleMiddleware

ANSWER = (
    "/api/v2/dags/iris__cicd/dagRuns/manual__2026-11-22T09:00:00+00:00/taskInstances/approve/-1/hitlDetails"
)


class Recorder:
    """The wrapped app, the lookups the middleware made and the waits it asked for."""

    def __init__(self, parked_ago: float | Exception | None) -> None:
        self.parked_ago = parked_ago
        self.lookups: list[tuple] = []
        self.waits: list[float] = []
        self.served: list[str] = []

    async def app(self, scope, receive, send) -> None:
        self.served.append(scope["path"])

    def parked_since(self, *key) -> datetime | None:
        self.lookups.append(key)
        if isinstance(self.parked_ago, Exception):
            raise self.parked_ago
        return None if self.parked_ago is None else datetime.now(UTC) - timedelta(seconds=self.parked_ago)

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    def call(self, method: str, path: str, settle: float | None = 5.0) -> None:
        middleware = HitlSettleMiddleware(self.app, settle, self.parked_since, self.sleep)
        asyncio.run(middleware({"type": "http", "method": method, "path": path}, None, None))


def test_an_answer_to_a_task_parked_a_moment_ago_waits_for_the_rest_of_the_settle_time() -> None:
    rec = Recorder(parked_ago=1.0)
    rec.call("PATCH", ANSWER)
    assert rec.lookups == [("iris__cicd", "manual__2026-11-22T09:00:00+00:00", "approve", -1)]
    assert len(rec.waits) == 1 and 3.5 < rec.waits[0] <= 4.0
    assert rec.served == [ANSWER]  # held, then passed on


@pytest.mark.parametrize("parked_ago", [5.0, 600.0, None], ids=["just-settled", "long-ago", "not-waiting"])
def test_an_answer_to_a_settled_or_not_waiting_task_passes_at_once(parked_ago) -> None:
    rec = Recorder(parked_ago)
    rec.call("PATCH", ANSWER)
    assert rec.waits == [] and rec.served == [ANSWER] and len(rec.lookups) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ANSWER),
        ("PATCH", "/api/v2/dags/iris__cicd/dagRuns/r1/taskInstances/approve/-1"),
        ("POST", "/pushbutton/webhooks/mlflow"),
    ],
)
def test_other_requests_are_not_looked_at(method, path) -> None:
    rec = Recorder(parked_ago=0.0)
    rec.call(method, path)
    assert rec.lookups == [] and rec.waits == [] and rec.served == [path]


def test_a_failing_lookup_never_blocks_the_answer() -> None:
    rec = Recorder(parked_ago=RuntimeError("database is locked"))
    rec.call("PATCH", ANSWER)
    assert rec.waits == [] and rec.served == [ANSWER]


def test_the_settle_time_comes_from_the_environment_and_zero_turns_it_off(monkeypatch) -> None:
    monkeypatch.setenv("PUSHBUTTON_HITL_SETTLE_SECONDS", "0")
    rec = Recorder(parked_ago=0.0)
    rec.call("PATCH", ANSWER, settle=None)
    assert rec.lookups == [] and rec.served == [ANSWER]
    monkeypatch.setenv("PUSHBUTTON_HITL_SETTLE_SECONDS", "12")
    assert HitlSettleMiddleware(rec.app).settle_seconds == 12.0


def test_the_plugin_installs_the_middleware_on_the_api_server() -> None:
    assert {"middleware": HitlSettleMiddleware, "name": "pushbutton-hitl-settle"} in (
        plugin.PushbuttonPlugin.fastapi_root_middlewares
    )
