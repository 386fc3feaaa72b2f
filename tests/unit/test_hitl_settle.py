"""The plugin's root middleware that holds a Human-in-the-loop answer until the parked task has
settled (Airflow 3.3 fails a task resumed before the scheduler saw its parking worker exit).

Driven here as a plain ASGI app on an injected clock: the task-state lookup answers relative to the
clock, and the sleep advances it, so every hold is exact. The real API server path (an answer sent
the instant the request appears) is in ``tests/e2e/test_demo.py``."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

import plugins.pushbutton_plugin as plugin
from plugins.pushbutton_plugin import HitlSettleMiddleware
from pushbutton.cli import main
from pushbutton.config import settings

ANSWER = (
    "/api/v2/dags/iris__cicd/dagRuns/manual__2026-11-22T09:00:00+00:00/taskInstances/approve/-1/hitlDetails"
)


START = datetime(2026, 11, 22, 9, 0, 5, tzinfo=UTC)  # when the answer arrives


class Recorder:
    """The wrapped app, the lookups the middleware made, the waits it asked for, and a clock that
    only the waits advance; ``served_at`` is the clock when the answer was passed on."""

    def __init__(self, parked_ago: float | Exception | None) -> None:
        self.parked_ago = parked_ago
        self.clock = START
        self.lookups: list[tuple] = []
        self.waits: list[float] = []
        self.served: list[str] = []
        self.served_at: list[datetime] = []

    async def app(self, scope, receive, send) -> None:
        self.served.append(scope["path"])
        self.served_at.append(self.clock)

    def now(self) -> datetime:
        return self.clock

    def parked_since(self, *key) -> datetime | None:
        self.lookups.append(key)
        if isinstance(self.parked_ago, Exception):
            raise self.parked_ago
        return None if self.parked_ago is None else START - timedelta(seconds=self.parked_ago)

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock += timedelta(seconds=seconds)

    def middleware(self, settle: float | None = 5.0) -> HitlSettleMiddleware:
        return HitlSettleMiddleware(self.app, settle, self.parked_since, self.sleep, self.now)

    def call(self, method: str, path: str, settle: float | None = 5.0) -> None:
        asyncio.run(self.middleware(settle)({"type": "http", "method": method, "path": path}, None, None))


def test_an_answer_to_a_task_parked_a_moment_ago_waits_for_the_rest_of_the_settle_time() -> None:
    rec = Recorder(parked_ago=1.0)
    rec.call("PATCH", ANSWER)
    assert rec.lookups == [("iris__cicd", "manual__2026-11-22T09:00:00+00:00", "approve", -1)]
    assert rec.waits == [4.0]  # 5 s settle time, parked 1 s ago
    assert rec.served == [ANSWER]  # held, then passed on
    assert rec.served_at == [START - timedelta(seconds=1.0) + timedelta(seconds=5.0)]  # parked + settle


@pytest.mark.parametrize(("parked_ago", "wait"), [(0.0, 5.0), (4.999, 0.001), (2.5, 2.5)])
def test_the_answer_passes_exactly_the_settle_time_after_the_task_parked(parked_ago, wait) -> None:
    rec = Recorder(parked_ago)
    rec.call("PATCH", ANSWER)
    assert rec.waits == [pytest.approx(wait)]
    assert rec.served_at[0] - (START - timedelta(seconds=parked_ago)) == timedelta(seconds=5)


@pytest.mark.parametrize("parked_ago", [5.0, 600.0, None], ids=["just-settled", "long-ago", "not-waiting"])
def test_an_answer_to_a_settled_or_not_waiting_task_passes_at_once(parked_ago) -> None:
    rec = Recorder(parked_ago)
    rec.call("PATCH", ANSWER)
    assert rec.waits == [] and rec.served == [ANSWER] and len(rec.lookups) == 1
    assert rec.served_at == [START]  # not held at all


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


BAD_SETTLE_VALUES = ["5s", "", "-1", "nan", "inf", "1e400"]


@pytest.mark.parametrize("value", BAD_SETTLE_VALUES)
def test_a_bad_settle_time_falls_back_to_the_default_with_one_warning(monkeypatch, caplog, value) -> None:
    """A root middleware must never fail: it would fail every request of the API server."""
    monkeypatch.setenv("PUSHBUTTON_HITL_SETTLE_SECONDS", value)
    rec = Recorder(parked_ago=1.0)
    with caplog.at_level(logging.WARNING, logger="pushbutton.hitl"):
        middleware = rec.middleware(settle=None)
    assert middleware.settle_seconds == plugin.DEFAULT_HITL_SETTLE_SECONDS == 5.0
    [warning] = [r.getMessage() for r in caplog.records if r.name == "pushbutton.hitl"]
    assert warning.startswith(f"environment variable PUSHBUTTON_HITL_SETTLE_SECONDS={value!r} is invalid")
    assert "using the default 5s (fix: set it to a number of seconds, 0 or more" in warning
    asyncio.run(middleware({"type": "http", "method": "PATCH", "path": ANSWER}, None, None))
    assert rec.served == [ANSWER] and rec.waits == [4.0]  # still holds, for the default time


@pytest.fixture
def fresh_settings():
    settings.cache_clear()
    yield
    settings.cache_clear()


@pytest.mark.parametrize("value", BAD_SETTLE_VALUES)
def test_the_cli_refuses_a_bad_settle_time_up_front(capsys, monkeypatch, fresh_settings, value) -> None:
    monkeypatch.setenv("PUSHBUTTON_HITL_SETTLE_SECONDS", value)
    code = main(["status"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.startswith(
        f"error: environment variable PUSHBUTTON_HITL_SETTLE_SECONDS={value!r} is invalid: "
    )
    assert err.endswith(
        "(fix: set it to a number of seconds, 0 or more (0 turns the hold off), e.g. 5, "
        "or unset it for the default)\n"
    )


@pytest.mark.parametrize(("value", "seconds"), [("0", 0.0), ("2.5", 2.5), ("12", 12.0)])
def test_the_cli_and_the_plugin_read_a_good_settle_time_alike(
    monkeypatch, fresh_settings, value, seconds
) -> None:
    monkeypatch.setenv("PUSHBUTTON_HITL_SETTLE_SECONDS", value)
    assert (
        settings().hitl_settle_seconds == HitlSettleMiddleware(Recorder(None).app).settle_seconds == seconds
    )


def test_the_plugin_installs_the_middleware_on_the_api_server() -> None:
    assert {"middleware": HitlSettleMiddleware, "name": "pushbutton-hitl-settle"} in (
        plugin.PushbuttonPlugin.fastapi_root_middlewares
    )
