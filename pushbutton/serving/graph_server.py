"""One graph version's orchestrator on the local runtime: Seldon v1's executor in front of the version's
node microservices.

The local runtime (``graph_local``) starts one seldon-core microservice per graph node and this small
aiohttp server per version; the gateway routes to it as it would to a single microservice. It answers
the microservice API the gateway and the runtime use (``POST /api/v1.0/predictions``, ``GET
/health/ping``, ``GET /health/status``: ready once every node is) and runs each request through
``graph.GraphExecutor`` with ``RemoteNodes``: each node's method is a call to its microservice on
Seldon's internal endpoints (``/predict``, ``/transform-input``, ``/transform-output``, ``/route``,
``/aggregate`` with ``{"seldonMessages": [...]}``), Seldon v1 JSON messages in and out, the request id
(``Seldon-Puid``) passed on. The answer carries ``meta.routing`` (each ROUTER's choice) and
``meta.requestPath`` (node to class) as Seldon's does. A node that fails, answers an error or does not
answer within the version's ``serving.timeout_seconds`` fails the request with a Seldon ``FAILURE``
body naming the node (its own 4xx status and reason stay, e.g. the schema guard's 400
``MICROSERVICE_BAD_DATA`` naming the feature, at the nodes that read the request; else 500; 504 on a
timeout).

Request logging (``graph_log``): the gateway logs the graph's entry as for any version; this server
logs each other node's request and response, as Seldon's executor does for nodes with a logger.

Run: ``python -m pushbutton.serving.graph_server --config <version>.graph.json --host H --port P``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from aiohttp import web

from pushbutton.serving.graph import GraphError, GraphExecutor
from pushbutton.serving.requestlog import PUID_HEADER, request_id
from pushbutton.spec.model import GraphNode

log = logging.getLogger("pushbutton.graph")

ENDPOINTS = {
    "predict": "/predict",
    "transform_input": "/transform-input",
    "transform_output": "/transform-output",
}
PREDICT_PATHS = ("/api/v1.0/predictions", "/api/v0.1/predictions", "/predict")
READY_PATH = "/health/status"
INTERNAL = "MICROSERVICE_INTERNAL_ERROR"
PING_PATH = "/health/ping"


class NodeError(GraphError):
    """A node's microservice failed a call: ``status`` and ``reason`` are what the graph answers."""

    def __init__(self, message: str, status: int, reason: str = INTERNAL):
        super().__init__(message)
        self.status, self.reason = status, reason


class RemoteNodes:
    """``graph.NodeCalls`` over the nodes' microservices (``urls`` by node name), Seldon JSON messages."""

    def __init__(
        self, urls: Mapping[str, str], client: httpx.Client, timeout: float, headers: Mapping[str, str]
    ):
        self.urls, self.client, self.timeout, self.headers = dict(urls), client, timeout, dict(headers)

    def call(self, node: GraphNode, method: str, message: Any) -> Any:
        return self._post(node, ENDPOINTS[method], message)

    def route(self, node: GraphNode, message: Any) -> Any:
        answer = self._post(node, "/route", message)
        data = answer.get("data") if isinstance(answer, dict) else None
        data = data if isinstance(data, dict) else {}
        value = data.get("ndarray", (data.get("tensor") or {}).get("values"))
        if value is None:
            raise NodeError(
                f"graph node '{node.name}' (ROUTER) answered no route in data: {answer!r}"[:500], 500
            )
        return np.asarray(value)

    def aggregate(self, node: GraphNode, messages: list[Any]) -> Any:
        return self._post(node, "/aggregate", {"seldonMessages": messages})

    def _post(self, node: GraphNode, path: str, message: Any) -> Any:
        url = self.urls[node.name] + path
        where = f"graph node '{node.name}' ({node.type}, {url})"
        try:
            resp = self.client.post(url, json=message, headers=self.headers, timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise NodeError(
                f"{where} did not answer within {self.timeout:g} s; make its class faster or raise "
                "serving.timeout_seconds in model.yaml", 504,
            ) from exc  # fmt: skip
        except httpx.HTTPError as exc:
            raise NodeError(
                f"{where} is unreachable ({type(exc).__name__}: {exc}); see its log under <home>/logs "
                "and redeploy the version", 502,
            ) from exc  # fmt: skip
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        if resp.status_code >= 400 or not isinstance(answer, dict):
            info = _failure_info(answer) or resp.text[:500]
            status = resp.status_code if 400 <= resp.status_code < 500 else 500
            reason = _failure_reason(answer) if status < 500 else INTERNAL
            raise NodeError(f"{where} answered HTTP {resp.status_code}: {info}", status, reason)
        return answer


def _failure_info(answer: Any) -> str:
    status = answer.get("status") if isinstance(answer, dict) else None
    return str(status.get("info") or status.get("reason") or "") if isinstance(status, dict) else ""


def _failure_reason(answer: Any) -> str:
    """The node's own ``status.reason`` (e.g. ``MICROSERVICE_BAD_DATA``), else ``INTERNAL``."""
    status = answer.get("status") if isinstance(answer, dict) else None
    reason = status.get("reason") if isinstance(status, dict) else None
    return reason if isinstance(reason, str) and reason else INTERNAL


def failure(status: int, info: str, reason: str = INTERNAL) -> dict[str, Any]:
    """A Seldon ``FAILURE`` message."""
    return {"status": {"code": status, "info": info, "reason": reason, "status": "FAILURE"}}


class GraphServer:
    """The orchestrator's application (see the module docstring). ``config``: what ``graph_local`` writes."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        node_log: Any | None = None,
        clock: Callable[[], float] = time.time,
        client: httpx.Client | None = None,
    ):
        self.root = GraphNode.model_validate(config["graph"])
        self.urls: dict[str, str] = dict(config["nodes"])
        self.classes: dict[str, str] = dict(config.get("classes", {}))
        self.timeout = float(config.get("timeout_seconds") or 60.0)
        self.node_log = node_log
        self.clock = clock
        self.client = client or httpx.Client(
            timeout=self.timeout, limits=httpx.Limits(max_keepalive_connections=32)
        )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3)  # the gateway limits request sizes
        for path in PREDICT_PATHS:
            app.router.add_post(path, self.predict)
        app.router.add_get(PING_PATH, self.ping)
        app.router.add_get(READY_PATH, self.ready)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, app: web.Application) -> None:
        if self.node_log is not None:
            await asyncio.to_thread(self.node_log.close)
        self.client.close()

    async def ping(self, request: web.Request) -> web.Response:
        """Liveness as the gateway probes it: ``pong`` while every node's microservice answers its own
        ping (a dead node takes the version out of the gateway's healthy backends); else 503."""
        down = await asyncio.to_thread(self.unready, PING_PATH)
        if down:
            return web.json_response(failure(503, f"graph nodes not alive: {'; '.join(down)}"), status=503)
        return web.Response(text="pong")

    async def ready(self, request: web.Request) -> web.Response:
        """200 once every node's microservice answers its own readiness check; else 503 naming them."""
        down = await asyncio.to_thread(self.unready, READY_PATH)
        if down:
            return web.json_response(failure(503, f"graph nodes not ready: {'; '.join(down)}"), status=503)
        return web.json_response({"status": "ok", "nodes": sorted(self.urls)})

    def unready(self, path: str) -> list[str]:
        """The nodes whose microservice does not answer ``path`` with 2xx (within 2 s)."""
        down = []
        for name, url in self.urls.items():
            try:
                ok = self.client.get(url + path, timeout=2.0).is_success
            except httpx.HTTPError as exc:
                ok, url = False, f"{url}: {type(exc).__name__}"
            if not ok:
                down.append(f"'{name}' ({url})")
        return down

    async def predict(self, request: web.Request) -> web.Response:
        body = await request.read()
        puid = request_id(request.headers, body)
        headers = {PUID_HEADER: puid}
        try:
            message = json.loads(body)
            if not isinstance(message, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            info = f'the request is not a Seldon JSON message ({exc}); send e.g. {{"data": {{"ndarray": [[...]]}}}}'
            return web.json_response(failure(400, info, "MICROSERVICE_BAD_DATA"), status=400, headers=headers)
        status, answer = await asyncio.to_thread(self.execute, message, puid)
        return web.json_response(answer, status=status, headers=headers)

    def execute(self, message: dict[str, Any], puid: str) -> tuple[int, dict[str, Any]]:
        """Run the graph on ``message``: the HTTP status and the answer (a Seldon ``FAILURE`` on error)."""
        calls = RemoteNodes(self.urls, self.client, self.timeout, {PUID_HEADER: puid})
        executor = GraphExecutor(self.root, calls=calls, clock=self.clock)
        observer = self.node_log.observer(puid, self.root, self.urls) if self.node_log is not None else None
        try:
            answer, routing = executor.run(message, observer)
        except NodeError as exc:
            log.warning("request %s: %s", puid, exc)
            return exc.status, failure(exc.status, str(exc), exc.reason)
        except GraphError as exc:  # e.g. a ROUTER answered an index out of range
            log.warning("request %s: %s", puid, exc)
            return 500, failure(500, str(exc))
        meta = answer.get("meta") if isinstance(answer.get("meta"), dict) else {}
        path = {name: self.classes.get(name, "") for name in self.urls}
        answer = {**answer, "meta": {**meta, "puid": puid, "routing": routing, "requestPath": path}}
        return 200, answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pushbutton.serving.graph_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", type=Path, required=True, help="the version's graph JSON (graph_local)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = json.loads(args.config.read_text())
        from pushbutton.serving.graph_log import node_log

        server = GraphServer(config, node_log=node_log(config, f"http://{args.host}:{args.port}"))
    except Exception as exc:
        print(f"error: cannot start the graph orchestrator from {args.config}: {exc}", file=sys.stderr)
        return 2
    log.info(
        "graph %s on http://%s:%d over nodes %s", config.get("service"), args.host, args.port, server.urls
    )
    web.run_app(
        server.app(), host=args.host, port=args.port, access_log=None, print=None, shutdown_timeout=5.0
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
