"""Gateway limits, in process against stand-in backends: the request-size limit (413 before the
body is read) and the per-model timeout (504 naming the model; other models keep answering)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pushbutton.config import REPO_ROOT, settings
from pushbutton.errors import ConfigError
from pushbutton.serving.gateway import Gateway, gateway_argv, main

LIMIT = 1024
BODY = json.dumps({"data": {"names": ["a"], "ndarray": [[1.0]]}}).encode()


def path(deployment: str) -> str:
    return f"/seldon/models/{deployment}/api/v1.0/predictions"


class StandIn:
    """A seldon-like backend: records bodies; with ``held`` set, parks requests until it is set."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.arrived = asyncio.Event()
        self.held: asyncio.Event | None = None
        self.server: TestServer | None = None

    async def _predict(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.arrived.set()
        if self.held is not None:
            await self.held.wait()
        return web.json_response({"data": {"names": [], "ndarray": [0]}, "meta": {}})

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong")

    async def start(self) -> StandIn:
        app = web.Application()
        app.router.add_post("/api/v1.0/predictions", self._predict)
        app.router.add_get("/health/ping", self._ping)
        self.server = TestServer(app)
        await self.server.start_server()
        return self

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


Scenario = Callable[[TestClient, Gateway, StandIn, StandIn], Awaitable[None]]


def run(scenario: Scenario, **gateway_kw: Any) -> None:
    """``scenario(client, gateway, iris, slow)``: routes models/iris and models/slow (timeout 0.3 s)."""

    async def go() -> None:
        iris, slow = await StandIn().start(), await StandIn().start()
        gateway = Gateway(**{"max_request_bytes": LIMIT, **gateway_kw})
        client = TestClient(TestServer(gateway.app()))
        await client.start_server()
        try:
            for name, backend, extra in (("iris", iris, {}), ("slow", slow, {"timeout_seconds": 0.3})):
                champion = {"url": backend.url, "version": "1", **extra}
                body = {"backends": {"champion": champion}, "weights": {"champion": 100}}
                resp = await client.put(f"/admin/deployments/models/{name}", json=body)
                assert resp.status == 200, await resp.text()
            await scenario(client, gateway, iris, slow)
        finally:
            for backend in (iris, slow):
                if backend.held is not None:
                    backend.held.set()
            await client.close()
            for backend in (iris, slow):
                await backend.server.close()

    asyncio.run(go())


async def raw(client: TestClient, head: str, *chunks: bytes) -> str:
    """Send a request head (and the given body bytes, nothing more) on a raw connection; return the
    status line of the answer. The body is never completed, so only a gateway answering before it
    has read the whole body answers at all (``wait_for`` bounds the wait, the test does not sleep)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
        for chunk in chunks:
            writer.write(chunk)
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), timeout=10)).decode().strip()
    finally:
        writer.close()


HEAD = f"POST {path('iris')} HTTP/1.1\nHost: gateway\nContent-Type: application/json\n"


def test_a_declared_oversized_body_is_refused_before_it_is_sent() -> None:
    async def scenario(client: TestClient, gateway: Gateway, iris: StandIn, slow: StandIn) -> None:
        status = await raw(client, HEAD + f"Content-Length: {50 * 1024 * 1024}\n")  # no body follows
        assert status.startswith("HTTP/1.1 413")
        resp = await client.post(path("iris"), data=b"x" * (LIMIT + 1))
        assert resp.status == 413
        answer = await resp.json()
        assert answer["error"] == (
            f"request body of {LIMIT + 1} bytes exceeds the gateway's limit of {LIMIT} bytes (0.000977 MiB)"
        )
        assert "PUSHBUTTON_GATEWAY_MAX_REQUEST_BYTES (the gateway's --max-request-bytes)" in answer["fix"]
        assert answer["limit_bytes"] == LIMIT and iris.bodies == []  # nothing reached the model
        ok = await client.post(path("iris"), data=b"y" * LIMIT)  # at the limit: forwarded
        assert ok.status == 200 and iris.bodies == [b"y" * LIMIT]

    run(scenario)


def test_an_oversized_chunked_body_is_refused_while_it_streams() -> None:
    async def scenario(client: TestClient, gateway: Gateway, iris: StandIn, slow: StandIn) -> None:
        chunk = b"320\r\n" + b"z" * 800 + b"\r\n"  # 800 bytes; two pass the limit, no final chunk follows
        status = await raw(client, HEAD + "Transfer-Encoding: chunked\n", chunk, chunk)
        assert status.startswith("HTTP/1.1 413")

        async def chunks(count: int) -> AsyncIterator[bytes]:
            for _ in range(count):
                yield b"w" * 300

        resp = await client.post(path("iris"), data=chunks(4))  # 1200 bytes, no Content-Length
        assert resp.status == 413
        assert f"more than {LIMIT} bytes (chunked)" in (await resp.json())["error"]
        assert iris.bodies == []
        small = await client.post(path("iris"), data=chunks(3))  # 900 bytes: forwarded whole
        assert small.status == 200 and iris.bodies == [b"w" * 900]

    run(scenario)


def test_expect_continue_is_answered_413_instead_of_100() -> None:
    async def scenario(client: TestClient, gateway: Gateway, iris: StandIn, slow: StandIn) -> None:
        status = await raw(client, HEAD + f"Content-Length: {LIMIT * 4}\nExpect: 100-continue\n")
        assert status.startswith("HTTP/1.1 413")
        status = await raw(client, HEAD + f"Content-Length: {len(BODY)}\nExpect: 100-continue\n")
        assert status.startswith("HTTP/1.1 100")

    run(scenario)


def test_a_slow_model_times_out_alone_with_a_504_naming_it() -> None:
    async def scenario(client: TestClient, gateway: Gateway, iris: StandIn, slow: StandIn) -> None:
        slow.held = asyncio.Event()
        pending = asyncio.ensure_future(client.post(path("slow"), data=BODY))
        await asyncio.wait_for(slow.arrived.wait(), timeout=10)  # the slow model is busy with it
        for _ in range(5):  # meanwhile another model answers
            resp = await client.post(path("iris"), data=BODY)
            assert resp.status == 200
        assert not pending.done()
        resp = await pending
        assert resp.status == 504
        answer = await resp.json()
        assert (
            answer["error"].startswith("models/slow v1 (champion, http://")
            and "within 0.3 s" in answer["error"]
        )
        assert answer["timeout_seconds"] == 0.3
        assert answer["fix"] == (
            "make slow's predict() faster or send fewer rows per request; or raise "
            "serving.timeout_seconds in its model.yaml (then push a new version)"
        )
        stats = (await (await client.get("/admin/deployments")).json())["backends"][slow.url]
        assert stats["errors"] == 1 and stats["last_error"] == "timed out after 0.3 s"

    run(scenario)


def test_a_route_without_its_own_timeout_uses_the_gateways() -> None:
    async def scenario(client: TestClient, gateway: Gateway, iris: StandIn, slow: StandIn) -> None:
        iris.held = asyncio.Event()
        resp = await client.post(path("iris"), data=BODY)
        assert resp.status == 504
        answer = await resp.json()
        assert "within 0.2 s" in answer["error"] and "raise the gateway's --request-timeout" in answer["fix"]

    run(scenario, request_timeout=0.2)


def test_route_timeouts_are_validated_and_kept() -> None:
    async def scenario(client: TestClient, gateway: Gateway, iris: StandIn, slow: StandIn) -> None:
        for bad in (0, -1, "5", True, 4000):
            champion = {"url": iris.url, "version": "1", "timeout_seconds": bad}
            body = {"backends": {"champion": champion}, "weights": {"champion": 100}}
            resp = await client.put("/admin/deployments/models/other", json=body)
            assert resp.status == 400
            assert "timeout_seconds must be a number of seconds above 0 and at most 3600" in await resp.text()
        routes = (await (await client.get("/admin/deployments")).json())["deployments"]
        assert routes["models/slow"]["config"]["backends"]["champion"]["timeout_seconds"] == 0.3
        assert "timeout_seconds" not in routes["models/iris"]["config"]["backends"]["champion"]

    run(scenario)


def test_the_limit_is_a_setting_and_a_command_line_option(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PUSHBUTTON_GATEWAY_MAX_REQUEST_BYTES", "2048")
    settings.cache_clear()
    try:
        assert settings().gateway_max_request_bytes == 2048
        monkeypatch.setenv("PUSHBUTTON_GATEWAY_MAX_REQUEST_BYTES", "10")
        settings.cache_clear()
        expected = r"PUSHBUTTON_GATEWAY_MAX_REQUEST_BYTES='10' is invalid.*an integer from 1024 to 1073741824"
        with pytest.raises(ConfigError, match=expected):
            settings()
    finally:
        settings.cache_clear()
    argv = gateway_argv(
        "127.0.0.1", 8000, tmp_path / "routes.json", max_request_bytes=4096, request_timeout=9
    )
    assert argv[-4:] == ["--max-request-bytes", "4096", "--request-timeout", "9"]
    with pytest.raises(SystemExit):
        main(["--state", str(tmp_path / "r.json"), "--max-request-bytes", "0"])


def test_the_route_carries_each_versions_serving_timeout(tmp_path) -> None:
    from pushbutton.serving.local import route_config
    from pushbutton.serving.spec import Release, with_candidate
    from pushbutton.spec import load_spec

    text = (REPO_ROOT / "models" / "iris" / "model.yaml").read_text()
    (tmp_path / "model.yaml").write_text(
        text.replace("  replicas: 1\n", "  replicas: 1\n  timeout_seconds: 4\n")
    )
    candidate, champion = load_spec(tmp_path), load_spec(REPO_ROOT / "models" / "iris")
    v1, v2 = Release("1", "m1", "e", "c1"), Release("2", "m2", "e", "c2")
    spec = with_candidate(candidate, v2, v1, champion_model=champion)
    backends = route_config(spec, {"champion": "http://h:1", "candidate": "http://h:2"})["backends"]
    assert {role: b["timeout_seconds"] for role, b in backends.items()} == {
        "candidate": 4.0,
        "champion": 60.0,
    }
