"""Request logging through the gateway, in process: every exchange with every predictor becomes
Seldon's request/response CloudEvents (read back with the logger's own parser), the client gets the
request id, and the logger being away, stuck or refusing never fails or holds up a request."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pushbutton.monitoring.emitter import Emitter, LoggerUnavailable
from pushbutton.monitoring.events import Half, parse_http
from pushbutton.monitoring.spool import Spool
from pushbutton.serving.gateway import Gateway
from pushbutton.serving.requestlog import sampled

PATH = "/seldon/models/iris/api/v1.0/predictions"
SECRET = 987654.321  # the excluded feature's value: in no event, on no disk
ROW = {"data": {"names": ["a", "b", "c"], "ndarray": [[1.0, SECRET, 3.0]]}}
BODY = json.dumps(ROW).encode()
JSON = {"Content-Type": "application/json"}


class Backend:
    """A seldon-like model: answers its label; like seldon-core's wrapper it echoes ``meta.puid``."""

    def __init__(self, label: int) -> None:
        self.label = label
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.hold: asyncio.Event | None = None
        self.server: TestServer | None = None

    async def _predict(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body))
        if self.hold is not None:
            await self.hold.wait()
        answer: dict[str, Any] = {"data": {"names": [], "ndarray": [self.label]}, "meta": {}}
        puid = json.loads(body).get("meta", {}).get("puid")
        if puid:
            answer["meta"]["puid"] = puid
        return web.json_response(answer)

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong")

    async def start(self) -> Backend:
        app = web.Application()
        app.router.add_post("/api/v1.0/predictions", self._predict)
        app.router.add_get("/health/ping", self._ping)
        self.server = TestServer(app)
        await self.server.start_server()
        return self

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


class Logger:
    """The logger as the emitter's transport (called on the emitter's thread)."""

    def __init__(self) -> None:
        self.halves: list[Half] = []
        self.down = False
        self.stuck: threading.Event | None = None  # set: calls wait for it (a logger that hangs)
        self.lock = threading.Lock()

    def __call__(self, body: bytes, headers: dict[str, str]) -> int:
        if self.stuck is not None:
            self.stuck.wait(30)
        if self.down:
            raise LoggerUnavailable("ConnectError: connection refused")
        halves = parse_http(headers, body)
        with self.lock:
            self.halves += halves
        return 200

    def by_request(self) -> dict[str, list[Half]]:
        out: dict[str, list[Half]] = {}
        with self.lock:
            for half in self.halves:
                out.setdefault(half.request_id, []).append(half)
        return out


Scenario = Callable[[TestClient, Gateway, Logger, Backend, Backend], Awaitable[None]]


def run(scenario: Scenario, tmp_path: Path, **gateway_kw: Any) -> None:
    """``scenario(client, gateway, logger, champion, candidate)`` with the emitter's thread running."""

    async def go() -> None:
        champion, candidate = await Backend(0).start(), await Backend(2).start()
        logger = Logger()
        emitter = Emitter(logger, Spool(tmp_path / "spool"), linger=0.01, retry_initial=0.05, retry_max=0.05)
        gateway = Gateway(rng=random.Random(3), emitter=emitter, **gateway_kw)
        client = TestClient(TestServer(gateway.app()))
        await client.start_server()
        try:
            await scenario(client, gateway, logger, champion, candidate)
        finally:
            if logger.stuck is not None:
                logger.stuck.set()
            await client.close()  # stops the emitter (what is in memory goes to the spool)
            for backend in (champion, candidate):
                await backend.server.close()

    asyncio.run(go())


async def route(client: TestClient, champion: Backend, candidate: Backend | None = None, **kw: Any) -> None:
    backends = {"champion": {"url": champion.url, "version": "1", **kw.pop("champion_extra", {})}}
    if candidate is not None:
        backends["candidate"] = {"url": candidate.url, "version": "2", **kw.pop("candidate_extra", {})}
    body = {"backends": backends, "weights": kw.pop("weights", {"champion": 100}), **kw}
    resp = await client.put("/admin/deployments/models/iris", json=body)
    assert resp.status == 200, await resp.text()


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def logging_status(client: TestClient) -> dict[str, Any]:
    resp = await client.get("/status")
    assert resp.status == 200
    return (await resp.json())["logging"]


def test_each_exchange_is_logged_with_the_request_id_the_client_gets(tmp_path: Path) -> None:
    async def scenario(client, gateway, logger, champion, candidate) -> None:
        await route(client, champion)
        resp = await client.post(PATH, data=BODY, headers=JSON)
        assert resp.status == 200
        answer = await resp.read()
        puid = resp.headers["Seldon-Puid"]
        assert json.loads(answer)["meta"]["puid"] == puid  # in the body too, where Seldon puts it
        assert champion.requests[0][0]["Seldon-Puid"] == puid and champion.requests[0][1] == BODY
        await until(lambda: len(logger.halves) == 2)
        request, response = logger.by_request()[puid]
        assert (request.kind, response.kind) == ("request", "response")
        for half in (request, response):
            assert (half.model, half.predictor, half.version, half.namespace, half.model_id) == (
                "iris", "champion", "1", "models", "iris-v1",
            )  # fmt: skip
        assert request.body == ROW and response.body == json.loads(answer)  # as sent, as answered
        assert response.status == 200 and response.latency_ms >= 0
        assert request.time <= response.time

    run(scenario, tmp_path)


def test_a_clients_own_request_id_is_kept(tmp_path: Path) -> None:
    async def scenario(client, gateway, logger, champion, candidate) -> None:
        await route(client, champion)
        resp = await client.post(PATH, data=BODY, headers={**JSON, "Seldon-Puid": "client-42"})
        assert resp.headers["Seldon-Puid"] == "client-42"
        assert (await resp.json())["meta"]["puid"] == "client-42"
        body = json.dumps({**ROW, "meta": {"puid": "from-the-body"}}).encode()
        resp = await client.post(PATH, data=body, headers=JSON)
        assert resp.headers["Seldon-Puid"] == "from-the-body"
        assert (await resp.json())["meta"]["puid"] == "from-the-body"
        bad = await client.post(PATH, data=BODY, headers={**JSON, "Seldon-Puid": "x" * 500})
        assert len(bad.headers["Seldon-Puid"]) == 36  # unusable: replaced by a fresh UUID
        await until(lambda: len(logger.halves) == 6)
        assert {"client-42", "from-the-body", bad.headers["Seldon-Puid"]} == set(logger.by_request())

    run(scenario, tmp_path)


def test_shadow_and_canary_predictors_are_logged_under_their_role_and_version(tmp_path: Path) -> None:
    async def scenario(client, gateway, logger, champion, candidate) -> None:
        await route(client, champion, candidate, shadows=["candidate"])
        resp = await client.post(PATH, data=BODY, headers=JSON)
        puid = resp.headers["Seldon-Puid"]
        await until(lambda: len(logger.halves) == 4)
        assert candidate.requests[0][0]["Seldon-Puid"] == puid  # the copy carries the same id
        halves = logger.by_request()[puid]
        seen = {(h.kind, h.predictor, h.version, h.model_id) for h in halves}
        assert seen == {
            ("request", "champion", "1", "iris-v1"), ("response", "champion", "1", "iris-v1"),
            ("request", "shadow", "2", "iris-v2"), ("response", "shadow", "2", "iris-v2"),
        }  # fmt: skip
        shadow_answer = next(h for h in halves if h.predictor == "shadow" and h.kind == "response")
        assert shadow_answer.body["data"]["ndarray"] == [2]  # the shadow's own answer, never the client's

        logger.halves.clear()
        await route(client, champion, candidate, weights={"champion": 50, "candidate": 50})
        answered = {}
        for _ in range(40):
            resp = await client.post(PATH, data=BODY, headers=JSON)
            answered[resp.headers["Seldon-Puid"]] = resp.headers["X-Pushbutton-Predictor"]
        await until(lambda: len(logger.halves) == 80)
        logged = {puid: {h.predictor for h in halves} for puid, halves in logger.by_request().items()}
        assert logged == {puid: {role} for puid, role in answered.items()}
        assert set(answered.values()) == {"champion", "candidate"}

    run(scenario, tmp_path)


def test_a_logger_that_is_down_or_stuck_fails_and_delays_nothing(tmp_path: Path) -> None:
    async def scenario(client, gateway, logger, champion, candidate) -> None:
        await route(client, champion)
        logger.down = True
        for _ in range(20):
            assert (await client.post(PATH, data=BODY, headers=JSON)).status == 200
        await until(lambda: gateway.request_log.status()["spooled"] == 40)
        status = await logging_status(client)
        assert status["logger_up"] is False and status["spool_pending"] == 40
        logger.stuck = threading.Event()  # the logger accepts connections but never answers
        logger.down = False
        for _ in range(20):
            resp = await asyncio.wait_for(client.post(PATH, data=BODY, headers=JSON), timeout=5)
            assert resp.status == 200
        logger.stuck.set()
        counters = gateway.request_log.status
        await until(
            lambda: counters()["replayed"] + counters()["sent"] == 80
        )  # counted once the logger answered
        status = await logging_status(client)
        assert (len(logger.halves), status["dropped_total"], status["spool_pending"]) == (80, 0, 0)

    run(scenario, tmp_path)


def test_sampling_follows_the_request_id_and_keeps_pairs_and_copies_together(tmp_path: Path) -> None:
    async def scenario(client, gateway, logger, champion, candidate) -> None:
        half_rate = {"logging": {"sample_rate": 0.5}}
        await route(client, champion, candidate, shadows=["candidate"], champion_extra=half_rate,
                    candidate_extra=half_rate)  # fmt: skip
        puids = [f"req-{i}" for i in range(60)]
        for puid in puids:
            await client.post(PATH, data=BODY, headers={**JSON, "Seldon-Puid": puid})
        chosen = {p for p in puids if sampled(p, 0.5)}
        assert 15 < len(chosen) < 45
        skipped = 2 * (len(puids) - len(chosen))  # the answering and the shadow exchange of each
        await until(lambda: gateway.request_log.status()["sampled_out"] == skipped)
        await until(lambda: len(logger.halves) == 4 * len(chosen))
        logged = logger.by_request()
        assert set(logged) == chosen
        assert all(len(h) == 4 for h in logged.values())  # both halves, champion and shadow

    run(scenario, tmp_path)


def test_a_model_with_logging_off_still_gets_request_ids(tmp_path: Path) -> None:
    async def scenario(client, gateway, logger, champion, candidate) -> None:
        await route(client, champion, champion_extra={"logging": {"enabled": False}})
        resp = await client.post(PATH, data=BODY, headers=JSON)
        assert resp.headers["Seldon-Puid"] and (await resp.json())["meta"]["puid"]
        await until(lambda: gateway.request_log.status()["disabled"] == 1)
        assert logger.halves == [] and gateway.request_log.status()["queued"] == 0

    run(scenario, tmp_path)


def test_excluded_features_never_leave_the_gateway(tmp_path: Path) -> None:
    async def scenario(client, gateway, logger, champion, candidate) -> None:
        exclude = {"logging": {"exclude": ["b"], "features": ["a", "b", "c"]}}
        await route(client, champion, champion_extra=exclude)
        logger.down = True  # so the events go to the spool on disk first
        bodies = [
            BODY,
            json.dumps({"data": {"ndarray": [[1.0, SECRET, 3.0], [4.0, SECRET, 6.0]]}}).encode(),
            json.dumps({"data": {"names": ["c", "b", "a"], "tensor": {"shape": [1, 3], "values": [3, SECRET, 1]}}}).encode(),
            json.dumps({"data": {"ndarray": [[1.0, SECRET]]}}).encode(),  # no names, wrong width: withheld
        ]  # fmt: skip
        for body in bodies:
            assert (await client.post(PATH, data=body, headers=JSON)).status == 200
        assert [b for _, b in champion.requests] == bodies  # the model gets the full request
        await until(lambda: gateway.request_log.status()["spooled"] == 8)
        spooled = b"".join(f.read_bytes() for f in (tmp_path / "spool").glob("*.spool"))
        assert str(SECRET).encode() not in spooled  # not even on the gateway's own disk
        logger.down = False
        await until(lambda: len(logger.halves) == 8)
        requests = [h.body for h in logger.halves if h.kind == "request"]
        assert requests[0]["data"] == {"names": ["a", "c"], "ndarray": [[1.0, 3.0]]}
        assert requests[1]["data"] == {"names": ["a", "c"], "ndarray": [[1.0, 3.0], [4.0, 6.0]]}
        assert requests[2]["data"] == {"names": ["c", "a"], "tensor": {"shape": [1, 2], "values": [3, 1]}}
        assert "data" not in requests[3] and "withheld" in requests[3]["meta"]["pushbutton"]
        assert (await logging_status(client))["withheld"] == 1

    run(scenario, tmp_path)


def test_gateway_errors_are_logged_with_their_status(tmp_path: Path) -> None:
    async def scenario(client, gateway, logger, champion, candidate) -> None:
        champion.hold = asyncio.Event()
        await route(client, champion, champion_extra={"timeout_seconds": 0.2})
        resp = await client.post(PATH, data=BODY, headers=JSON)
        assert resp.status == 504 and resp.headers["Seldon-Puid"]
        champion.hold.set()
        await until(lambda: len(logger.halves) == 2)
        response = next(h for h in logger.halves if h.kind == "response")
        assert response.status == 504 and "did not answer within 0.2 s" in response.body["error"]
        assert response.request_id == resp.headers["Seldon-Puid"]

    run(scenario, tmp_path)


def test_status_shows_every_counter_pushbutton_status_needs(tmp_path: Path) -> None:
    async def scenario(client, gateway, logger, champion, candidate) -> None:
        status = await logging_status(client)
        assert {"enabled", "logger_up", "queued", "sent", "spooled", "replayed", "dropped", "dropped_total",
                "spool_pending", "spool_bytes", "spool_max_bytes", "in_memory", "sampled_out", "withheld",
                "last_error"} <= set(status)  # fmt: skip
        assert set(status["dropped"]) == {"oversize", "queue_full", "spool_full", "spool_error", "rejected",
                                          "corrupt", "error"}  # fmt: skip

    run(scenario, tmp_path)


def test_without_an_emitter_logging_is_off_and_status_says_so() -> None:
    async def go() -> None:
        client = TestClient(TestServer(Gateway().app()))
        await client.start_server()
        try:
            assert (await (await client.get("/status")).json())["logging"]["enabled"] is False
        finally:
            await client.close()

    asyncio.run(go())
