"""Gateway routing against in-process fake backends (aiohttp test servers), no real models."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pushbutton.serving.gateway import Gateway, Route, pick

PATH = "/seldon/models/iris/api/v1.0/predictions"
BODY = json.dumps({"data": {"names": ["a"], "ndarray": [[1.0]]}}).encode()


class FakeBackend:
    """A seldon-like microservice answering a fixed label; counts what it receives."""

    def __init__(self, label: int, status: int = 200):
        self.label = label
        self.status = status
        self.bodies: list[bytes] = []
        self.server: TestServer | None = None
        self.hold: asyncio.Event | None = None  # when set: park requests, then drop their connection
        self.parked = 0
        self.busy: asyncio.Event | None = None  # when set: requests and pings wait for it (one worker)
        self.pings = 0

    async def _predict(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        if self.hold is not None:
            self.parked += 1
            await self.hold.wait()
            request.transport.close()  # the client sees the connection die mid-request
        if self.busy is not None:
            await self.busy.wait()
        return web.json_response(
            {"data": {"names": [], "ndarray": [self.label]}, "meta": {}}, status=self.status
        )

    async def _ping(self, request: web.Request) -> web.Response:
        self.pings += 1
        if self.busy is not None:
            await self.busy.wait()
        return web.Response(text="pong")

    async def start(self, port: int | None = None) -> FakeBackend:
        """Listen on a free port, or on ``port`` again (the same URL: a backend coming back)."""
        app = web.Application()
        app.router.add_post("/api/v1.0/predictions", self._predict)
        app.router.add_get("/health/ping", self._ping)
        self.server = TestServer(app, port=port)
        await self.server.start_server()
        return self

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def stop(self) -> None:
        await self.server.close()


def route_body(champion: FakeBackend, candidate: FakeBackend | None = None, **kw: Any) -> dict[str, Any]:
    backends = {"champion": {"url": champion.url, "version": "1"}}
    if candidate is not None:
        backends["candidate"] = {"url": candidate.url, "version": "2"}
    return {"backends": backends, **kw}


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def run(scenario: Callable[..., Awaitable[None]], **gateway_kw: Any) -> None:
    """Run ``scenario(client, gateway, a, b)`` with a gateway test client and two fake backends."""

    async def main() -> None:
        a, b = await FakeBackend(0).start(), await FakeBackend(2).start()
        gateway = Gateway(rng=random.Random(7), **gateway_kw)
        client = TestClient(TestServer(gateway.app()))
        await client.start_server()
        try:
            await scenario(client, gateway, a, b)
        finally:
            await client.close()
            for backend in (a, b):
                if backend.server is not None:
                    await backend.stop()

    asyncio.run(main())


async def predict(client: TestClient) -> tuple[int, str, Any]:
    resp = await client.post(PATH, data=BODY, headers={"Content-Type": "application/json"})
    return resp.status, resp.headers.get("X-Pushbutton-Predictor", ""), await resp.json()


def test_pick_follows_weights_with_seeded_rng():
    rng = random.Random(42)
    counts = Counter(pick({"champion": 90, "candidate": 10}, rng) for _ in range(20_000))
    assert abs(counts["candidate"] / 20_000 - 0.10) < 0.01
    assert pick({"champion": 100, "candidate": 0}, rng) == "champion"
    # an unhealthy backend gets nothing while another is healthy, and everything if none is
    assert {pick({"champion": 90, "candidate": 10}, rng, ["champion"]) for _ in range(200)} == {"champion"}
    assert {pick({"champion": 50, "candidate": 50}, rng, []) for _ in range(200)} == {"champion", "candidate"}


def test_route_validation_names_the_problem():
    ok = Route.from_config(
        "models",
        "iris",
        {"backends": {"champion": {"url": "http://h:1/", "version": 3}}, "weights": {"champion": 100}},
    )
    assert ok.config()["backends"]["champion"] == {"url": "http://h:1", "version": "3"}
    bad = [
        ({"backends": {}}, "backends"),
        ({"backends": {"champion": {"url": "h:1"}}, "weights": {"champion": 100}}, "http://"),
        ({"backends": {"champion": {"url": "http://h:1"}}, "weights": {"champion": 0}}, "weight > 0"),
        ({"backends": {"champion": {"url": "http://h:1"}}, "weights": {"other": 100}}, "unknown backend"),
        (
            {"backends": {"champion": {"url": "http://h:1"}}, "weights": {"champion": 100}, "shadows": ["x"]},
            "x",
        ),
        (
            {
                "backends": {"champion": {"url": "http://h:1"}},
                "weights": {"champion": 100},
                "shadows": ["champion"],
            },
            "both answers",
        ),
    ]
    for config, words in bad:
        with pytest.raises(ValueError, match=words):
            Route.from_config("models", "iris", config)


def test_canary_split_and_headers():
    async def scenario(client, gateway, a, b):
        resp = await client.put(
            "/admin/deployments/models/iris", json=route_body(a, b, weights={"champion": 80, "candidate": 20})
        )
        assert resp.status == 200, await resp.text()
        seen = Counter()
        for _ in range(1000):
            resp = await client.post(PATH, data=BODY, headers={"Content-Type": "application/json"})
            role = resp.headers["X-Pushbutton-Predictor"]
            body = await resp.json()
            assert resp.status == 200
            # the header names the backend that really answered, with its version
            assert body["data"]["ndarray"] == [0 if role == "champion" else 2]
            assert resp.headers["X-Pushbutton-Version"] == ("1" if role == "champion" else "2")
            seen[role] += 1
        assert abs(seen["candidate"] / 1000 - 0.20) < 0.04
        assert len(a.bodies) + len(b.bodies) == 1000
        assert a.bodies[0] == BODY  # bytes pass through untouched
        state = await (await client.get("/admin/deployments")).json()
        backends = state["deployments"]["models/iris"]["backends"]
        assert backends["champion"]["requests"] == seen["champion"]
        assert backends["candidate"]["requests"] == seen["candidate"]

    run(scenario)


def test_shadow_answer_is_never_returned():
    async def scenario(client, gateway, a, b):
        body = route_body(a, b, weights={"champion": 100}, shadows=["candidate"])
        assert (await client.put("/admin/deployments/models/iris", json=body)).status == 200
        for _ in range(200):
            status, role, answer = await predict(client)
            assert (status, role, answer["data"]["ndarray"]) == (200, "champion", [0])

        async def copies_arrived() -> bool:
            return len(b.bodies) == 200

        await wait_for(copies_arrived)
        state = await (await client.get("/admin/deployments")).json()
        candidate = state["deployments"]["models/iris"]["backends"]["candidate"]
        assert candidate["shadow_requests"] == 200 and candidate["requests"] == 0

    run(scenario)


def test_failing_shadow_never_affects_the_response():
    async def scenario(client, gateway, a, b):
        b.status = 500
        body = route_body(a, b, weights={"champion": 100}, shadows=["candidate"])
        assert (await client.put("/admin/deployments/models/iris", json=body)).status == 200
        for _ in range(50):
            assert (await predict(client))[:2] == (200, "champion")
        await b.stop()  # now the shadow refuses connections
        b.server = None
        for _ in range(50):
            assert (await predict(client))[:2] == (200, "champion")

        async def errors_counted() -> bool:
            state = await (await client.get("/admin/deployments")).json()
            return state["deployments"]["models/iris"]["backends"]["candidate"]["shadow_errors"] >= 51

        await wait_for(errors_counted)

    run(scenario)


def test_dead_backend_fails_over_and_is_marked_down():
    async def scenario(client, gateway, a, b):
        body = route_body(a, b, weights={"champion": 50, "candidate": 50})
        assert (await client.put("/admin/deployments/models/iris", json=body)).status == 200
        await b.stop()
        b.server = None
        results = [await predict(client) for _ in range(100)]
        assert all(status == 200 and role == "champion" for status, role, _ in results)
        state = await (await client.get("/admin/deployments")).json()
        candidate = state["deployments"]["models/iris"]["backends"]["candidate"]
        assert candidate["up"] is False
        assert candidate["errors"] == 1  # failed once, then no longer chosen
        assert "Connect" in candidate["last_error"]

    run(scenario, probe_interval=3600)


def test_probe_marks_a_dead_backend_down_and_up_again_once_it_answers():
    async def scenario(client, gateway, a, b):
        body = route_body(a, b, weights={"champion": 90, "candidate": 10})
        assert (await client.put("/admin/deployments/models/iris", json=body)).status == 200
        url, port = b.url, b.server.port
        await b.stop()
        b.server = None

        async def up() -> dict[str, bool]:
            state = await (await client.get("/admin/deployments")).json()
            return {r: x["up"] for r, x in state["deployments"]["models/iris"]["backends"].items()}

        async def candidate_is(wanted: bool) -> bool:
            return (await up())["candidate"] is wanted

        await wait_for(lambda: candidate_is(False))
        assert (await up())["champion"] is True
        assert {(await predict(client))[:2] for _ in range(50)} == {(200, "champion")}  # b gets nothing

        await b.start(port=port)  # the same backend answers again on its URL
        assert b.url == url
        await wait_for(lambda: candidate_is(True))
        assert await up() == {"champion": True, "candidate": True}
        answers = {(await predict(client))[:2] for _ in range(200)}
        assert answers == {(200, "champion"), (200, "candidate")}  # and it takes its share again

    run(scenario, probe_interval=0.05)


def test_a_backend_busy_with_a_long_request_is_not_marked_down_but_a_silent_idle_one_is():
    async def scenario(client, gateway, a, b):
        route = route_body(a, weights={"champion": 100})
        assert (await client.put("/admin/deployments/models/iris", json=route)).status == 200

        async def champion() -> dict:
            state = await (await client.get("/admin/deployments")).json()
            return state["deployments"]["models/iris"]["backends"]["champion"]

        a.busy = asyncio.Event()  # one sync worker: a long request blocks its health check too
        long_request = asyncio.create_task(predict(client))
        await wait_for(lambda: _at_least(a, "bodies", 1))  # the request is in flight
        pings = a.pings
        await wait_for(lambda: _at_least(a, "pings", pings + 4))  # several probes timed out meanwhile
        assert (await champion())["up"] is True
        a.busy.set()
        assert (await long_request)[:2] == (200, "champion")

        a.busy = asyncio.Event()  # nothing in flight and no answer: down

        async def down() -> bool:
            return (await champion())["up"] is False

        await wait_for(down)
        a.busy.set()

    run(scenario, probe_interval=0.02, probe_timeout=0.05)


async def _at_least(backend: FakeBackend, attr: str, value: int) -> bool:
    count = getattr(backend, attr)
    return (count if isinstance(count, int) else len(count)) >= value


def test_only_backend_down_gives_502_json():
    async def scenario(client, gateway, a, b):
        assert (
            await client.put("/admin/deployments/models/iris", json=route_body(a, weights={"champion": 100}))
        ).status == 200
        await a.stop()
        a.server = None
        resp = await client.post(PATH, data=BODY)
        assert resp.status == 502
        assert "champion" in (await resp.json())["error"]

    run(scenario, probe_interval=3600)


def test_switch_under_concurrent_load_fails_nothing():
    """Requests in flight at the old backend when the route switches finish there; every request
    after the switch goes to the new one; none fails."""

    async def scenario(client, gateway, a, b):
        path = "/admin/deployments/models/iris"
        assert (await client.put(path, json=route_body(a, b, weights={"champion": 100}))).status == 200
        a.busy = asyncio.Event()  # the champion holds its answers until the switch is done
        in_flight = [asyncio.create_task(predict(client)) for _ in range(20)]
        await wait_for(lambda: _at_least(a, "bodies", 20))

        switch = client.put(path, json=route_body(a, b, weights={"candidate": 100}))
        resp = await asyncio.wait_for(switch, 10)  # the switch never waits for requests in flight
        assert resp.status == 200
        after = await asyncio.gather(*(predict(client) for _ in range(50)))
        assert {(status, role, answer["data"]["ndarray"][0]) for status, role, answer in after} == {
            (200, "candidate", 2)
        }
        assert len(b.bodies) == 50 and len(a.bodies) == 20  # the switch happened between the two bursts

        a.busy.set()
        held = await asyncio.gather(*in_flight)
        assert {(status, role, answer["data"]["ndarray"][0]) for status, role, answer in held} == {
            (200, "champion", 0)
        }
        state = await (await client.get("/admin/deployments")).json()
        assert state["deployments"]["models/iris"]["weights"] == {"candidate": 100}

    run(scenario)


def test_request_whose_old_backend_dies_after_a_switch_is_retried_on_the_new_route():
    async def scenario(client, gateway, a, b):
        path = "/admin/deployments/models/iris"
        assert (await client.put(path, json=route_body(a, weights={"champion": 100}))).status == 200
        a.hold = asyncio.Event()
        in_flight = asyncio.create_task(predict(client))

        async def parked() -> bool:
            return a.parked == 1

        await wait_for(parked)
        new_route = {"backends": {"champion": {"url": b.url, "version": "2"}}, "weights": {"champion": 100}}
        assert (await client.put(path, json=new_route)).status == 200
        a.hold.set()  # the retired backend drops the request it was holding
        status, role, answer = await in_flight
        assert (status, role, answer["data"]["ndarray"]) == (200, "champion", [2])  # answered by b

    run(scenario, probe_interval=3600)


def test_unknown_deployment_is_a_404_naming_the_known_ones():
    async def scenario(client, gateway, a, b):
        assert (
            await client.put("/admin/deployments/models/iris", json=route_body(a, weights={"champion": 100}))
        ).status == 200
        resp = await client.post("/seldon/models/wine/api/v1.0/predictions", data=BODY)
        assert resp.status == 404
        body = await resp.json()
        assert "models/wine" in body["error"] and body["known"] == ["models/iris"]
        assert (await client.delete("/admin/deployments/models/iris")).status == 200
        assert (await client.post(PATH, data=BODY)).status == 404
        assert (await client.delete("/admin/deployments/models/iris")).status == 404

    run(scenario)


def test_bad_route_is_rejected_and_keeps_the_old_one():
    async def scenario(client, gateway, a, b):
        path = "/admin/deployments/models/iris"
        assert (await client.put(path, json=route_body(a, weights={"champion": 100}))).status == 200
        resp = await client.put(
            path, json={"backends": {"champion": {"url": "nope"}}, "weights": {"champion": 1}}
        )
        assert resp.status == 400 and "http://" in (await resp.json())["error"]
        resp = await client.put(path, data=b"{not json", headers={"Content-Type": "application/json"})
        assert resp.status == 400
        assert (await predict(client))[:2] == (200, "champion")

    run(scenario)


def test_routes_persist_in_the_state_file(tmp_path: Path):
    state = tmp_path / "gateway" / "routes.json"

    async def scenario(client, gateway, a, b):
        body = route_body(a, b, weights={"champion": 90, "candidate": 10}, shadows=[])
        assert (await client.put("/admin/deployments/models/iris", json=body)).status == 200

    run(scenario, state_path=state)
    saved = json.loads(state.read_text())
    assert saved["deployments"]["models/iris"]["weights"] == {"candidate": 10, "champion": 90}
    restarted = Gateway(state)
    route = restarted.routes[("models", "iris")]
    assert route.config() == saved["deployments"]["models/iris"]
    assert [p.name for p in state.parent.iterdir()] == ["routes.json"]  # no temp file left behind


def test_a_route_change_that_cannot_be_saved_leaves_the_old_route_serving(tmp_path: Path):
    """The caller gets an error (and stops what it started), so the gateway must not route to it."""
    state = tmp_path / "gateway" / "routes.json"

    async def scenario(client, gateway, a, b):
        only = route_body(a, weights={"champion": 100})
        assert (await client.put("/admin/deployments/models/iris", json=only)).status == 200
        state.parent.rename(tmp_path / "moved")
        state.parent.write_text("a file where the state directory was: every save fails")
        canary = route_body(a, b, weights={"champion": 50, "candidate": 50})
        resp = await client.put("/admin/deployments/models/iris", json=canary)
        assert resp.status == 500 and "left as it was" in (await resp.json())["error"]
        assert {(await predict(client))[1] for _ in range(40)} == {"champion"}
        resp = await client.delete("/admin/deployments/models/iris")
        assert resp.status == 500 and (await predict(client))[:2] == (200, "champion")

    run(scenario, state_path=state)
