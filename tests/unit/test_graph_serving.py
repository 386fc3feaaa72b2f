"""The local runtime's graph orchestrator without processes: ``GraphServer`` over node microservices
emulated with ``httpx.MockTransport`` (seldon-core's wrapper endpoints and JSON messages), the answers
compared with the in-process ``GraphExecutor``; failures naming the node; the per-node request log."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from pushbutton.monitoring import records as R
from pushbutton.serving.graph import GraphExecutor
from pushbutton.serving.graph_log import NodeLog, Placement, placement
from pushbutton.serving.graph_server import GraphServer
from pushbutton.serving.routes import LoggingOptions
from pushbutton.spec.model import GraphNode


class Double:
    def transform_input(self, X, features_names=None):
        return np.asarray(X, dtype=float) * 2


class BySign:
    def route(self, X, features_names=None):
        return 0 if np.asarray(X)[0][0] >= 0 else 1


class Plus:
    def __init__(self, model_uri: str, add: float = 1.0):
        self.add = add

    def predict(self, X, features_names=None):
        return np.asarray(X, dtype=float) + self.add


class Neg:
    def __init__(self, model_uri: str):
        pass

    def predict(self, X, features_names=None):
        return -np.asarray(X, dtype=float)


class Mean:
    def aggregate(self, Xs, features_names=None):
        return np.mean([np.asarray(x) for x in Xs], axis=0)


class Halve:
    def transform_output(self, X, features_names=None):
        return np.asarray(X) / 2


GRAPH = GraphNode.model_validate({
    "name": "halve", "type": "OUTPUT_TRANSFORMER", "class": "m:Halve", "children": [
        {"name": "double", "type": "TRANSFORMER", "class": "m:Double", "children": [
            {"name": "sign", "type": "ROUTER", "class": "m:BySign", "children": [
                {"name": "plus", "type": "MODEL", "class": "m:Plus", "parameters": {"add": 1.0}},
                {"name": "mean", "type": "COMBINER", "class": "m:Mean", "children": [
                    {"name": "neg", "type": "MODEL", "class": "m:Neg"},
                    {"name": "plus3", "type": "MODEL", "class": "m:Plus", "parameters": {"add": 3.0}},
                ]},
            ]},
        ]},
    ],
})  # fmt: skip
COMPONENTS = {"halve": Halve(), "double": Double(), "sign": BySign(), "plus": Plus("/m", 1.0),
              "mean": Mean(), "neg": Neg("/m"), "plus3": Plus("/m", 3.0)}  # fmt: skip
URLS = {name: f"http://{name}.node" for name in COMPONENTS}
METHODS = {
    "/predict": "predict",
    "/transform-input": "transform_input",
    "/transform-output": "transform_output",
}


class Nodes:
    """The node microservices as seldon-core's wrapper answers (``fail``: node -> status; ``slow``:
    nodes that time out; ``down``: nodes that refuse connections); ``calls`` what each node got."""

    def __init__(self) -> None:
        self.fail: dict[str, int] = {}
        self.slow: set[str] = set()
        self.down: set[str] = set()
        self.calls: list[tuple[str, str, dict]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        node, path = request.url.host.split(".")[0], request.url.path
        if request.method == "GET":  # the readiness check
            return httpx.Response(503 if node in self.down else 200, json={"status": "ok"})
        body = json.loads(request.content)
        self.calls.append((node, path, body))
        if node in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if node in self.slow:
            raise httpx.ReadTimeout("timed out", request=request)
        if node in self.fail:
            code = self.fail[node]
            info = f"{node} broke (on purpose)"
            return httpx.Response(code, json={"status": {"code": code, "info": info, "status": "FAILURE"}})
        component = COMPONENTS[node]
        if path == "/aggregate":
            messages = body["seldonMessages"]
            out = component.aggregate(
                [m["data"]["ndarray"] for m in messages], [m["data"]["names"] for m in messages]
            )
        elif path == "/route":
            out = [[component.route(body["data"]["ndarray"], body["data"].get("names"))]]
        else:
            out = getattr(component, METHODS[path])(body["data"]["ndarray"], body["data"].get("names"))
        out = np.asarray(out).tolist()
        names = [f"t:{i}" for i in range(len(out[0]))] if out and isinstance(out[0], list) else []
        return httpx.Response(200, json={"data": {"names": names, "ndarray": out}, "meta": {}})


def server(nodes: Nodes, node_log: Any = None, timeout: float = 5.0) -> GraphServer:
    config = {"graph": GRAPH.model_dump(mode="json", by_alias=True), "nodes": URLS, "timeout_seconds": timeout,
              "classes": {n: f"m:{type(c).__name__}" for n, c in COMPONENTS.items()}}  # fmt: skip
    return GraphServer(config, node_log=node_log, client=httpx.Client(transport=httpx.MockTransport(nodes)))


def message(rows: list[list[float]]) -> dict:
    return {"data": {"names": ["a", "b"], "ndarray": rows}}


@pytest.mark.parametrize("rows", [[[1.0, 2.0], [3.0, -4.0]], [[-1.0, 2.0], [0.5, 0.25]]])
def test_the_graph_over_node_services_answers_as_in_process(rows: list[list[float]]) -> None:
    status, answer = server(Nodes()).execute(message(rows), "req-1")
    expected = GraphExecutor(GRAPH, COMPONENTS).predict(rows, ["a", "b"])
    assert status == 200
    assert np.allclose(answer["data"]["ndarray"], np.asarray(expected.message.data))
    assert answer["meta"]["routing"] == expected.routing == {"sign": 0 if rows[0][0] >= 0 else 1}
    assert answer["meta"]["puid"] == "req-1"
    assert answer["meta"]["requestPath"]["plus3"] == "m:Plus"


def test_each_node_gets_its_seldon_endpoint_and_the_request_id() -> None:
    nodes = Nodes()
    server(nodes).execute(message([[-1.0, 2.0]]), "req-2")
    assert [(n, p) for n, p, _ in nodes.calls] == [
        ("double", "/transform-input"), ("sign", "/route"), ("neg", "/predict"), ("plus3", "/predict"),
        ("mean", "/aggregate"), ("halve", "/transform-output"),
    ]  # fmt: skip
    aggregate = next(body for n, _, body in nodes.calls if n == "mean")
    assert [m["data"]["ndarray"] for m in aggregate["seldonMessages"]] == [[[2.0, -4.0]], [[1.0, 7.0]]]


@pytest.mark.parametrize(
    ("breakage", "status", "said"),
    [
        ({"fail": {"neg": 500}}, 500, r"graph node 'neg' \(MODEL, http://neg.node/predict\) answered HTTP 500: neg broke"),
        ({"fail": {"double": 400}}, 400, r"graph node 'double' \(TRANSFORMER, .*\) answered HTTP 400"),
        ({"slow": {"plus3"}}, 504, r"graph node 'plus3' \(MODEL, .*\) did not answer within 5 s"),
        ({"down": {"mean"}}, 502, r"graph node 'mean' \(COMBINER, .*\) is unreachable"),
    ],
)  # fmt: skip
def test_a_failing_node_fails_the_request_naming_it(breakage: dict, status: int, said: str) -> None:
    nodes = Nodes()
    for attribute, value in breakage.items():
        setattr(nodes, attribute, value)
    got, answer = server(nodes).execute(message([[-1.0, 2.0]]), "req-3")
    assert got == status == answer["status"]["code"]
    assert answer["status"]["status"] == "FAILURE"
    assert __import__("re").search(said, answer["status"]["info"]), answer["status"]["info"]


def test_the_http_api_the_gateway_and_runtime_use() -> None:
    nodes = Nodes()

    async def run() -> None:
        async with TestClient(TestServer(server(nodes).app())) as client:
            assert await (await client.get("/health/ping")).text() == "pong"
            assert (await client.get("/health/status")).status == 200  # every node is ready
            resp = await client.post("/api/v1.0/predictions", json=message([[1.0, 2.0]]),
                                     headers={"Seldon-Puid": "abc"})  # fmt: skip
            assert resp.status == 200 and resp.headers["Seldon-Puid"] == "abc"
            assert (await resp.json())["data"]["ndarray"] == [[1.5, 2.5]]  # ((x * 2) + 1) / 2
            bad = await client.post("/api/v1.0/predictions", data=b"not json")
            assert bad.status == 400 and "not a Seldon JSON message" in (await bad.json())["status"]["info"]
            nodes.down = {"neg"}
            unready = await client.get("/health/status")
            assert (
                unready.status == 503
                and "'neg' (http://neg.node)" in (await unready.json())["status"]["info"]
            )
            dead = await client.get("/health/ping")  # the gateway's probe: the version is down
            assert dead.status == 503 and "'neg'" in (await dead.json())["status"]["info"]

    asyncio.run(run())


# --- per-node request log ----------------------------------------------------------------------


class Captured:
    def __init__(self) -> None:
        self.events: list = []

    def emit(self, events) -> bool:
        self.events.extend(events)
        return True

    def close(self) -> None:
        pass


def node_log(where: Placement | None, **kw: Any) -> tuple[NodeLog, Captured]:
    captured = Captured()
    log = NodeLog(captured, namespace="models", deployment="shop", version="3", lookup=lambda: where, **kw)
    return log, captured


CHAMPION = Placement("champion", False, LoggingOptions())


def test_every_node_but_the_entry_is_logged_with_its_name_version_and_role() -> None:
    log, captured = node_log(CHAMPION)
    server(Nodes(), log).execute(message([[-1.0, 2.0]]), "req-4")
    pairs = {(e.model_id, e.type) for e in captured.events}
    assert {m for m, _ in pairs} == {"double", "sign", "neg", "plus3", "mean"}  # not the entry, not plus
    assert all((m, R.CE_REQUEST) in pairs and (m, R.CE_RESPONSE) in pairs for m, _ in pairs)
    for event in captured.events:
        assert (event.request_id, event.deployment, event.version, event.endpoint) == (
            "req-4",
            "shop",
            "3",
            "champion",
        )
        assert event.role == f"champion:{event.model_id}" and R.is_node_predictor(event.role)
        assert event.source == URLS[event.model_id]
    neg = {e.type: e for e in captured.events if e.model_id == "neg"}
    assert json.loads(neg[R.CE_REQUEST].body)["data"]["ndarray"] == [[-2.0, 4.0]]  # what it got: doubled
    assert json.loads(neg[R.CE_RESPONSE].body)["data"]["ndarray"] == [[2.0, -4.0]]
    assert neg[R.CE_RESPONSE].status == 200 and neg[R.CE_RESPONSE].latency_ms >= 0


def test_a_failing_node_is_logged_with_its_status_once() -> None:
    log, captured = node_log(CHAMPION)
    nodes = Nodes()
    nodes.fail = {"neg": 500}
    server(nodes, log).execute(message([[-1.0, 2.0]]), "req-5")
    responses = {e.model_id: e for e in captured.events if e.type == R.CE_RESPONSE}
    assert (
        responses["neg"].status == 500 and "neg broke" in json.loads(responses["neg"].body)["status"]["info"]
    )
    assert set(responses) == {"neg"}  # the failure is logged once, at the node that failed, not its parents


@pytest.mark.parametrize(
    "where",
    [None, Placement("champion", False, LoggingOptions(enabled=False)),
     Placement("champion", False, LoggingOptions(sample_rate=0.0))],
)  # fmt: skip
def test_unrouted_disabled_or_sampled_out_requests_log_no_node(where: Placement | None) -> None:
    log, captured = node_log(where)
    server(Nodes(), log).execute(message([[1.0, 2.0]]), "req-6")
    assert captured.events == []


def test_shadow_copies_and_excluded_features() -> None:
    options = LoggingOptions(exclude=("b",), features=("a", "b"))
    log, captured = node_log(Placement("candidate", True, options))
    server(Nodes(), log).execute(message([[1.0, 2.0]]), "req-7")
    double = next(e for e in captured.events if e.model_id == "double" and e.type == R.CE_REQUEST)
    assert double.role == "shadow:double" and double.endpoint == "candidate"
    assert json.loads(double.transform(double.body))["data"] == {"names": ["a"], "ndarray": [[1.0]]}


def test_the_route_is_looked_up_once_per_ttl() -> None:
    now = [0.0]
    lookups = []
    log = NodeLog(Captured(), namespace="models", deployment="shop", version="3", ttl=2.0,
                  lookup=lambda: lookups.append(1) or CHAMPION, monotonic=lambda: now[0])  # fmt: skip
    for at in (0.0, 1.9, 2.0, 3.0):
        now[0] = at
        assert log.placement() == CHAMPION
    assert len(lookups) == 2


def test_placement_reads_the_gateway_route() -> None:
    routes = {"models/shop": {"config": {
        "backends": {"champion": {"url": "http://h:1"}, "candidate": {"url": "http://h:2/",
                                                                      "logging": {"sample_rate": 0.5}}},
        "weights": {"champion": 100}, "shadows": ["candidate"]}}}  # fmt: skip
    assert placement(routes, "models", "shop", "http://h:1") == Placement("champion", False, LoggingOptions())
    assert placement(routes, "models", "shop", "http://h:2") == Placement(
        "candidate", True, LoggingOptions(sample_rate=0.5)
    )
    assert placement(routes, "models", "shop", "http://h:3") is None
    assert placement(routes, "models", "other", "http://h:1") is None
