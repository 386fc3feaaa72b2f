"""Gateway → logger → store, all real processes: every request the gateway answered is in the store
once, with its response, although the logger was killed under load and the gateway itself was
restarted while the logger was away (the spool on disk carried the events across). The same path
also ends in a real PostgreSQL server, with the model's features as typed columns.

The model behind the gateway is a stand-in (a one-thread HTTP server answering like seldon-core's
wrapper): what is under test is the request log, not a model.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import httpx
import pytest
import sqlalchemy as sa

from bench.logging_common import BACKEND, BODY, MODEL, NAMES, NS  # the stand-in model the benches use
from pushbutton.config import REPO_ROOT
from pushbutton.monitoring.logger import logger_argv
from pushbutton.monitoring.store import open_store
from pushbutton.procs import ProcessGroup, free_port, http_ok, wait_ready
from pushbutton.serving.client import GatewayClient, gateway_argv
from pushbutton.serving.routes import external_path
from tests.integration.postgres import postgres_server

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    group: ProcessGroup
    root: Path
    gateway_url: str
    logger_url: str
    store_url: str
    backend_url: str
    gateway_port: int
    logger_port: int
    models_dir: Path | None = None  # the logger types the store's columns from these specs (None: untyped)

    def start_gateway(self) -> None:
        argv = gateway_argv("127.0.0.1", self.gateway_port, self.root / "routes.json", sys.executable,
                            logger_url=self.logger_url, spool_dir=self.root / "spool")  # fmt: skip
        info = self.group.start("gateway", argv)
        wait_ready(info, http_ok(self.gateway_url + "/health"), 60, "gateway")

    def start_logger(self) -> None:
        argv = logger_argv(
            "127.0.0.1", self.logger_port, self.store_url, self.models_dir or self.root / "no-models"
        )
        info = self.group.start("logger", [*argv, "--pair-timeout", "1"])
        wait_ready(info, http_ok(self.logger_url + "/health"), 60, "logger")

    def kill_logger(self) -> None:
        info = self.group.get("logger")
        assert info is not None and info.alive()
        os.killpg(info.pgid, signal.SIGKILL)  # no goodbye: whatever it had not answered is the gateway's
        self.group.stop("logger", timeout=5)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    group = ProcessGroup(tmp_path / "run", tmp_path / "logs")
    (tmp_path / "no-models").mkdir()
    backend_port, gateway_port, logger_port = free_port(), free_port(), free_port()
    s = Stack(group, tmp_path, f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{logger_port}",
              f"sqlite:///{tmp_path / 'monitoring.db'}", f"http://127.0.0.1:{backend_port}", gateway_port,
              logger_port)  # fmt: skip
    try:
        info = group.start("backend", [sys.executable, "-c", BACKEND, str(backend_port)])
        wait_ready(info, http_ok(s.backend_url + "/health/ping"), 30, "backend")
        yield s
    finally:
        group.stop_all(timeout=10)


async def load(url: str, seconds: float, rate: float, answers: list[tuple[int, str]]) -> None:
    """Open-loop POSTs at ``rate``/s for ``seconds``; (status, Seldon-Puid) of each appended."""

    async def one(session: aiohttp.ClientSession) -> None:
        try:
            async with session.post(url, data=BODY, headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
                answers.append((resp.status, resp.headers.get("Seldon-Puid", "")))
        except (aiohttp.ClientError, TimeoutError) as exc:
            answers.append((0, f"{type(exc).__name__}: {exc}"))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        t0, tasks = time.perf_counter(), []
        for i in range(int(seconds * rate)):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(session)))
        await asyncio.gather(*tasks)


def logged_records(store_url: str, since: datetime) -> list[dict]:
    store = open_store(store_url)
    try:
        return store.records(MODEL, since, datetime.now(UTC) + timedelta(minutes=1))
    finally:
        store.close()


def test_nothing_is_lost_or_doubled_when_the_logger_dies_and_the_gateway_restarts(stack: Stack) -> None:
    began = datetime.now(UTC) - timedelta(minutes=1)
    stack.start_logger()
    stack.start_gateway()
    url = stack.gateway_url + external_path(NS, MODEL)
    answers: list[tuple[int, str]] = []
    with GatewayClient(stack.gateway_url) as gateway:
        gateway.put_route(
            NS, MODEL, {"champion": {"url": stack.backend_url, "version": "1"}}, {"champion": 100}
        )

        async def logger_killed_under_load() -> None:
            traffic = asyncio.create_task(load(url, 6.0, 100, answers))
            await asyncio.sleep(2.0)
            await asyncio.to_thread(stack.kill_logger)
            await traffic

        asyncio.run(logger_killed_under_load())
        assert [a for a in answers if a[0] != 200] == []  # the logger's death failed no request
        spooled = gateway.status()["logging"]
        assert spooled["logger_up"] is False and spooled["spool_pending"] > 0

    stack.group.stop("gateway")  # a clean stop while the logger is away: memory goes to the spool
    stack.start_gateway()
    with GatewayClient(stack.gateway_url) as gateway:
        assert gateway.status()["logging"]["spool_pending"] >= spooled["spool_pending"]
        asyncio.run(load(url, 2.0, 100, answers))  # the route came back from the state file
        stack.start_logger()
        asyncio.run(load(url, 2.0, 100, answers))
        assert [a for a in answers if a[0] != 200] == []  # nor did its absence or its return
        deadline = time.monotonic() + 60
        answered = {puid for _, puid in answers}
        while True:  # the replay runs on: wait for the store to hold every request the client sent
            records = logged_records(stack.store_url, began)
            status = gateway.status()["logging"]
            complete = {r["request_id"] for r in records if r["complete"]}
            if complete >= answered and status["spool_pending"] == 0:
                break
            assert time.monotonic() < deadline, f"not replayed in time: {status}"
            time.sleep(0.5)
        final = gateway.status()["logging"]
    assert final["dropped_total"] == 0, final

    records = logged_records(stack.store_url, began)
    answered = Counter(puid for _, puid in answers)
    logged = Counter((r["request_id"], r["predictor"]) for r in records)
    assert len(answered) == len(answers) == 1000  # one id per request
    assert set(r["request_id"] for r in records) == set(answered)  # none lost, none invented
    assert max(logged.values()) == 1  # none stored twice
    incomplete = [r["request_id"] for r in records if not r["complete"]]
    assert incomplete == []  # each with its response
    assert {(r["predictor"], r["version"], r["status"]) for r in records} == {("champion", "1", 200)}


def test_feedback_and_rest_labels_join_the_logged_requests_by_request_id(stack: Stack) -> None:
    began = datetime.now(UTC) - timedelta(minutes=1)
    stack.start_logger()
    stack.start_gateway()
    with GatewayClient(stack.gateway_url) as gateway:
        gateway.put_route(
            NS, MODEL, {"champion": {"url": stack.backend_url, "version": "1"}}, {"champion": 100}
        )
    predict = stack.gateway_url + external_path(NS, MODEL)
    feedback_url = predict.replace("/predictions", "/feedback")
    with httpx.Client(timeout=30) as client:
        answers = [client.post(predict, content=BODY, headers={"Content-Type": "application/json"})
                   for _ in range(2)]  # fmt: skip
        assert [a.status_code for a in answers] == [200, 200]
        first, second = (a.json()["meta"]["puid"] for a in answers)
        # Seldon's client sends the answer back as `response`: its meta.puid names the request
        sent = client.post(feedback_url, json={"request": json.loads(BODY), "response": answers[0].json(),
                                               "truth": {"data": {"ndarray": ["setosa"]}}, "reward": 1})  # fmt: skip
        assert sent.status_code == 200, sent.text
        assert sent.json()["meta"]["puid"] == first
        deadline = time.monotonic() + 60
        while True:  # the feedback travels gateway → emitter → logger → store, never waited on by the client
            labels = read_labels(stack.store_url, began)
            if first in labels:
                break
            assert time.monotonic() < deadline, f"the feedback's label was not stored in time: {labels}"
            time.sleep(0.2)
        assert labels[first] == [(0, "setosa")]
        # the logger's REST endpoint: synchronous, unknown ids reported
        body = {
            "labels": [{"request_id": second, "label": "virginica"}, {"request_id": "ghost", "label": "x"}]
        }
        report = client.post(stack.logger_url + f"/labels/{MODEL}", json=body)
        assert report.status_code == 200, report.text
        assert (report.json()["matched"], report.json()["unknown_ids"]) == (1, ["ghost"])
    assert read_labels(stack.store_url, began)[second] == [(0, "virginica")]


def read_labels(store_url: str, since: datetime) -> dict[str, list[tuple[int, object]]]:
    store = open_store(store_url)
    try:
        frame = store.labels(MODEL, since, datetime.now(UTC) + timedelta(minutes=1))
    finally:
        store.close()
    out: dict[str, list[tuple[int, object]]] = {}
    for request_id, row, label in zip(frame["request_id"], frame["row"], frame["label"], strict=True):
        out.setdefault(request_id, []).append((int(row), label))
    return out


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_gateway_to_logger_to_postgres_stores_typed_rows_with_the_response(stack: Stack, pg_url: str) -> None:
    """The SQLite case above, ending in PostgreSQL: each answered request is one complete record under
    the request id the client got, its features in the iris spec's typed columns, its response kept."""
    engine = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE gateway_log")
    engine.dispose()
    stack.store_url = pg_url.rsplit("/", 1)[0] + "/gateway_log"
    stack.models_dir = REPO_ROOT / "models"  # iris's schema: typed feature columns
    began = datetime.now(UTC) - timedelta(minutes=1)
    stack.start_logger()
    stack.start_gateway()
    with GatewayClient(stack.gateway_url) as gateway:
        gateway.put_route(
            NS, MODEL, {"champion": {"url": stack.backend_url, "version": "1"}}, {"champion": 100}
        )
    url = stack.gateway_url + external_path(NS, MODEL)
    with httpx.Client(timeout=30) as client:
        answers = [
            client.post(url, content=BODY, headers={"Content-Type": "application/json"}) for _ in range(5)
        ]
    assert [a.status_code for a in answers] == [200] * 5
    puids = {a.headers["Seldon-Puid"] for a in answers}
    assert puids == {a.json()["meta"]["puid"] for a in answers} and len(puids) == 5
    deadline = time.monotonic() + 60
    while True:  # the client never waits on logging: wait for the store
        records = logged_records(stack.store_url, began)
        if {r["request_id"] for r in records if r["complete"]} >= puids:
            break
        assert time.monotonic() < deadline, f"not logged in time: {records}"
        time.sleep(0.2)
    assert sorted(r["request_id"] for r in records) == sorted(puids)  # once each, nothing invented
    assert {(r["predictor"], r["version"], r["status"], r["n_rows"]) for r in records} == {
        ("champion", "1", 200, 1)
    }
    for record in records:
        assert json.loads(record["response_body"])["data"]["ndarray"] == [0]  # what the model answered
        assert json.loads(record["request_body"])["data"]["names"] == NAMES
    store = open_store(stack.store_url)
    try:
        assert store.engine.dialect.name == "postgresql"
        frame = store.rows(MODEL, began, datetime.now(UTC) + timedelta(minutes=1))
    finally:
        store.close()
    assert sorted(frame["request_id"]) == sorted(puids) and frame["complete"].all()
    for name, value in zip(NAMES, json.loads(BODY)["data"]["ndarray"][0], strict=True):
        assert str(frame[name].dtype) == "float64" and frame[name].tolist() == [value] * 5
    assert str(frame["prediction"].dtype) == "Int64" and frame["prediction"].tolist() == [0] * 5
