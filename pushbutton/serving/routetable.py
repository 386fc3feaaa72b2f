"""The gateway's routing table as a service: routes and their state file, per-backend health and
counters, the health probe and the admin API (``GET``/``PUT``/``DELETE /admin/deployments``).

``RouteTable`` is the part of ``Gateway`` that knows which backends exist and how they are doing;
``gateway.py`` adds the prediction path, the request log and the HTTP application.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientConnectionError, ClientConnectorError, ClientSession, ClientTimeout, web

from pushbutton.errors import ServingError
from pushbutton.serving.routes import Route, external_path

log = logging.getLogger("pushbutton.gateway")

HEALTH_PATH = "/health/ping"
PROBE_FAILURES_TO_DOWN = 2  # timeouts/5xx in a row before a backend counts as down


@dataclass
class BackendStats:
    url: str
    up: bool = True
    requests: int = 0
    errors: int = 0
    shadow_requests: int = 0
    shadow_errors: int = 0
    shadow_dropped: int = 0
    inflight: int = 0
    last_error: str = ""
    changed: float = field(default_factory=time.time)
    failures: int = 0  # consecutive failed probes

    def set_up(self, up: bool, reason: str = "") -> None:
        if up != self.up:
            self.up, self.changed = up, time.time()
            log.warning(
                "backend %s is %s%s", self.url, "up" if up else "down", f": {reason}" if reason else ""
            )
        if not up and reason:
            self.last_error = reason

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("failures")
        return data


class RouteTable:
    """Routes by ``(namespace, deployment)``, counters by backend URL, the probe and the admin API."""

    def __init__(self, state_path: str | Path | None, *, probe_interval: float, probe_timeout: float):
        self.state_path = Path(state_path) if state_path else None
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.routes: dict[tuple[str, str], Route] = {}
        self.stats: dict[str, BackendStats] = {}
        self.session: ClientSession | None = None  # the gateway's, once its application runs
        self._load_state()

    # state ------------------------------------------------------------------------------------

    def _load_state(self) -> None:
        if self.state_path is None or not self.state_path.is_file():
            return
        try:
            data = json.loads(self.state_path.read_text())
            for key, config in data.get("deployments", {}).items():
                namespace, _, deployment = key.partition("/")
                self._install(Route.from_config(namespace, deployment, config))
        except (OSError, ValueError, AttributeError) as exc:
            raise ServingError(
                f"gateway state file {self.state_path} is unreadable ({exc}); fix or delete it "
                "(routes are re-created by the next deploy)"
            ) from exc
        log.info("loaded %d routes from %s", len(self.routes), self.state_path)

    def _save_state(self) -> None:
        if self.state_path is None:
            return
        data = {"deployments": {r.key: r.config() for r in self.routes.values()}}
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        tmp.replace(self.state_path)

    def _install(self, route: Route) -> None:
        for backend in route.backends.values():
            self.stats.setdefault(backend.url, BackendStats(backend.url))
        self.routes[(route.namespace, route.deployment)] = route  # the atomic switch

    def _restore_route(self, namespace: str, deployment: str, route: Route | None) -> None:
        if route is None:
            self.routes.pop((namespace, deployment), None)
        else:
            self.routes[(namespace, deployment)] = route

    def _state_error(self, key: str, exc: OSError) -> web.Response:
        log.error("cannot save the routes to %s: %s; %s left as it was", self.state_path, exc, key)
        return json_response(
            500,
            {
                "error": f"cannot save the routes to {self.state_path} ({exc}); {key} is left as it was — "
                "free disk space or fix the permissions of the gateway's state directory, then apply again"
            },
        )

    def _prune(self) -> None:
        """Forget counters of backends no route uses once their last request has finished."""
        used = {b.url for r in self.routes.values() for b in r.backends.values()}
        for url in [u for u, s in self.stats.items() if u not in used and s.inflight == 0]:
            del self.stats[url]

    # health -----------------------------------------------------------------------------------

    async def _probe_loop(self) -> None:
        while True:
            urls = {b.url for r in self.routes.values() for b in r.backends.values()}
            await asyncio.gather(*(self._probe(u) for u in urls), return_exceptions=True)
            await asyncio.sleep(self.probe_interval)

    async def _probe(self, url: str) -> None:
        stats = self.stats.get(url)
        if stats is None or self.session is None or self.session.closed:  # closed: the gateway is stopping
            return
        try:
            async with self.session.get(
                url + HEALTH_PATH, timeout=ClientTimeout(total=self.probe_timeout)
            ) as r:
                await r.read()
                ok, reason = r.status == 200, f"health check answered {r.status}"
        except ClientConnectorError as exc:
            stats.failures = PROBE_FAILURES_TO_DOWN
            stats.set_up(False, f"health check: {exc}")
            return
        except (ClientConnectionError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError) and stats.inflight > 0:
                return  # busy with a request (one sync worker answers one at a time), not down
            ok, reason = False, f"health check: {type(exc).__name__}: {exc}"
        if ok:
            stats.failures = 0
            stats.set_up(True)
        else:
            stats.failures += 1
            if stats.failures >= PROBE_FAILURES_TO_DOWN:
                stats.set_up(False, reason)

    # admin ------------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        self._prune()
        deployments = {}
        for route in sorted(self.routes.values(), key=lambda r: r.key):
            backends = {
                role: {"url": b.url, "version": b.version, **self.stats[b.url].public()}
                for role, b in sorted(route.backends.items())
            }
            deployments[route.key] = {
                "namespace": route.namespace,
                "deployment": route.deployment,
                "path": external_path(route.namespace, route.deployment),
                "backends": backends,
                "weights": dict(route.weights),
                "shadows": list(route.shadows),
                "config": route.config(),
            }
        return {
            "deployments": deployments,
            "backends": {u: s.public() for u, s in sorted(self.stats.items())},
        }

    async def list_routes(self, request: web.Request) -> web.Response:
        return json_response(200, self.describe())

    async def put_route(self, request: web.Request) -> web.Response:
        info = request.match_info
        try:
            config = await request.json()
            route = Route.from_config(info["namespace"], info["deployment"], config)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return json_response(
                400, {"error": f"invalid route for {info['namespace']}/{info['deployment']}: {exc}"}
            )
        previous = self.routes.get((route.namespace, route.deployment))
        new_urls = {b.url for b in route.backends.values()} - {
            b.url for r in self.routes.values() for b in r.backends.values()
        }
        for url in new_urls:  # a fresh backend starts healthy; the probe below corrects that
            self.stats.setdefault(url, BackendStats(url)).set_up(True)
        self._install(route)
        try:
            self._save_state()
        except OSError as exc:  # the caller sees a failure, so the route it replaced must stay
            self._restore_route(route.namespace, route.deployment, previous)
            return self._state_error(route.key, exc)
        await asyncio.gather(*(self._probe(u) for u in new_urls), return_exceptions=True)
        log.info("route %s -> %s", route.key, json.dumps(route.config()))
        body = self.describe()["deployments"][route.key]
        body["changed"] = previous is None or previous.config() != route.config()
        return json_response(200, body)

    async def delete_route(self, request: web.Request) -> web.Response:
        info = request.match_info
        route = self.routes.pop((info["namespace"], info["deployment"]), None)
        if route is None:
            return self._unknown(info["namespace"], info["deployment"])
        try:
            self._save_state()
        except OSError as exc:
            self._restore_route(route.namespace, route.deployment, route)
            return self._state_error(route.key, exc)
        log.info("route %s removed", route.key)
        return json_response(200, {"deleted": route.key, "config": route.config()})

    def _unknown(self, namespace: str, deployment: str) -> web.Response:
        known = sorted(r.key for r in self.routes.values())
        return json_response(
            404,
            {
                "error": f"no deployment '{namespace}/{deployment}' on this gateway",
                "known": known,
                "fix": "deploy it first (or check the namespace/deployment in the URL)",
            },
        )


def json_response(status: int, data: Any) -> web.Response:
    return web.Response(status=status, body=json.dumps(data).encode(), content_type="application/json")
