"""The local gateway: Seldon's external prediction path in front of the model microservices.

``POST /seldon/<namespace>/<deployment>/api/v1.0/predictions`` goes to one answering predictor
picked by weight (canary) and is copied, fire-and-forget, to shadow predictors; the client gets the
answering backend's bytes unchanged plus ``X-Pushbutton-Predictor``/``X-Pushbutton-Version``.

Request bodies above ``--max-request-bytes`` (``PUSHBUTTON_GATEWAY_MAX_REQUEST_BYTES``, 10 MiB by
default) are answered 413 before they are read (``Content-Length``) or as soon as a chunked body
passes the limit; nothing of them reaches a model. Each backend has its own timeout (its version's
``serving.timeout_seconds``, carried in the route; else ``--request-timeout``): a backend slower
than that is answered 504 naming the model, the timeout and the fix. Each request is a task on one
event loop that awaits its body and its backend without blocking, so a large or slow request to one
model holds up no other model's requests (a model's own microservice, one sync worker, still
answers its requests one at a time).

Routes change through the admin API (``PUT``/``DELETE /admin/deployments/{ns}/{deployment}``,
``GET /admin/deployments``); a ``PUT`` swaps the whole route in one assignment, so requests
already in flight finish on the old route and new ones use the new one. Routes persist in the
``--state`` file. A background probe marks backends up/down; a connection error on the chosen
backend is retried once on another healthy answering backend.

Run: ``python -m pushbutton.serving.gateway --host 127.0.0.1 --port 8000 --state routes.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import sys
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import (
    ClientConnectionError,
    ClientConnectorError,
    ClientPayloadError,
    ClientSession,
    ClientTimeout,
    ConnectionTimeoutError,
    ServerTimeoutError,
    TCPConnector,
    web,
)

from pushbutton.config import Settings, settings
from pushbutton.errors import ConfigError, ServingError

log = logging.getLogger("pushbutton.gateway")

PREDICT_PATH = "/api/v1.0/predictions"
HEALTH_PATH = "/health/ping"
MAX_REQUEST_BYTES: int = Settings.model_fields["gateway_max_request_bytes"].default
ADMIN_MAX_BODY = 1024 * 1024  # a route is a few hundred bytes
REQUEST_TIMEOUT = 60.0  # seconds a backend may take to answer unless its route says otherwise
TIMEOUT_MAX = 3600.0
MAX_SHADOW_INFLIGHT = 256  # copies beyond this are dropped: a slow shadow must not eat the gateway
BACKEND_KEEPALIVE = 1.5  # seconds; below seldon's gunicorn --keepalive of 2 (threaded workers)
# connections per backend: under overload requests wait in the gateway instead of flooding
# gunicorn's accept queue (its single sync worker serves one request at a time anyway)
BACKEND_CONNECTIONS = 32
PROBE_FAILURES_TO_DOWN = 2  # timeouts/5xx in a row before a backend counts as down


def external_path(namespace: str, deployment: str) -> str:
    return f"/seldon/{namespace}/{deployment}{PREDICT_PATH}"


# --- routes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    role: str
    url: str
    version: str
    predict_url: str
    timeout: float | None = None  # seconds; None: the gateway's --request-timeout


@dataclass(frozen=True)
class Route:
    """One deployment's routing table (immutable; replaced whole on every change)."""

    namespace: str
    deployment: str
    backends: Mapping[str, Backend]
    weights: Mapping[str, int]
    shadows: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.deployment}"

    @property
    def live(self) -> tuple[str, ...]:
        """Roles that answer requests (weight > 0)."""
        return tuple(r for r, w in self.weights.items() if w > 0)

    def config(self) -> dict[str, Any]:
        """Canonical JSON form (what ``PUT`` takes and the state file stores)."""
        return {
            "backends": {r: _backend_config(b) for r, b in sorted(self.backends.items())},
            "weights": dict(sorted(self.weights.items())),
            "shadows": sorted(self.shadows),
        }

    @classmethod
    def from_config(cls, namespace: str, deployment: str, config: Mapping[str, Any]) -> Route:
        """Validate a route body; ``ValueError`` says what is wrong and how to write it."""
        example = (
            '{"backends": {"champion": {"url": "http://127.0.0.1:9001", "version": "1"}}, '
            '"weights": {"champion": 100}, "shadows": []}'
        )
        if not isinstance(config, Mapping):
            raise ValueError(f"route must be a JSON object like {example}")
        unknown = set(config) - {"backends", "weights", "shadows"}
        if unknown:
            raise ValueError(f"unknown route fields {sorted(unknown)}; allowed: backends, weights, shadows")
        raw_backends = config.get("backends")
        if not isinstance(raw_backends, Mapping) or not raw_backends:
            raise ValueError(f"'backends' must map role -> {{url, version}}, e.g. {example}")
        backends = {}
        for role, spec in raw_backends.items():
            if not isinstance(spec, Mapping) or not isinstance(spec.get("url"), str):
                raise ValueError(f"backend '{role}' needs a 'url' string and a 'version'")
            url = spec["url"].rstrip("/")
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"backend '{role}' url '{url}' must start with http:// or https://")
            version = str(spec.get("version", ""))
            timeout = _route_timeout(role, spec.get("timeout_seconds"))
            backends[str(role)] = Backend(str(role), url, version, url + PREDICT_PATH, timeout)
        weights = config.get("weights") or {}
        if not isinstance(weights, Mapping):
            raise ValueError(
                '\'weights\' must map role -> integer percent, e.g. {"champion": 90, "candidate": 10}'
            )
        clean: dict[str, int] = {}
        for role, weight in weights.items():
            if role not in backends:
                raise ValueError(f"weight for unknown backend '{role}'; backends are {sorted(backends)}")
            if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
                raise ValueError(f"weight of '{role}' must be an integer >= 0, got {weight!r}")
            clean[str(role)] = weight
        if sum(clean.values()) <= 0:
            raise ValueError("no backend has a weight > 0; at least one must answer requests")
        shadows = config.get("shadows") or []
        if isinstance(shadows, str) or not isinstance(shadows, Iterable):
            raise ValueError("'shadows' must be a list of backend roles")
        for role in shadows:
            if role not in backends:
                raise ValueError(f"shadow '{role}' is not a backend; backends are {sorted(backends)}")
            if clean.get(role, 0) > 0:
                raise ValueError(f"'{role}' both answers (weight {clean[role]}) and is a shadow; pick one")
        return cls(namespace, deployment, backends, clean, tuple(sorted(set(shadows))))


def _backend_config(backend: Backend) -> dict[str, Any]:
    config: dict[str, Any] = {"url": backend.url, "version": backend.version}
    if backend.timeout is not None:
        config["timeout_seconds"] = backend.timeout
    return config


def _route_timeout(role: Any, value: Any) -> float | None:
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not 0 < value <= TIMEOUT_MAX:
        raise ValueError(
            f"backend '{role}' timeout_seconds must be a number of seconds above 0 and at most "
            f"{TIMEOUT_MAX:g}, got {value!r}"
        )
    return float(value)


def pick(weights: Mapping[str, int], rng: random.Random, healthy: Collection[str] | None = None) -> str:
    """Weighted random choice among answering roles that are healthy (all of them if none is)."""
    choices = [(r, w) for r, w in weights.items() if w > 0 and (healthy is None or r in healthy)]
    if not choices:
        choices = [(r, w) for r, w in weights.items() if w > 0]
    if len(choices) == 1:
        return choices[0][0]
    x = rng.random() * sum(w for _, w in choices)
    for role, weight in choices:
        x -= weight
        if x < 0:
            return role
    return choices[-1][0]


# --- backend health and counters ----------------------------------------------------------------


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


# --- the server ---------------------------------------------------------------------------------


class Gateway:
    """Routes, counters, health probe and the aiohttp application serving them."""

    def __init__(
        self,
        state_path: str | Path | None = None,
        *,
        rng: random.Random | None = None,
        probe_interval: float = 1.0,
        probe_timeout: float = 2.0,
        request_timeout: float = REQUEST_TIMEOUT,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ):
        self.state_path = Path(state_path) if state_path else None
        self.rng = rng or random.Random()
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.default_timeout = request_timeout
        self.request_timeout = ClientTimeout(total=request_timeout, sock_connect=5.0)
        self.max_request_bytes = max_request_bytes
        self.routes: dict[tuple[str, str], Route] = {}
        self.stats: dict[str, BackendStats] = {}
        self.session: ClientSession | None = None
        self.fresh: ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._shadow_inflight = 0
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
        return _json(
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

    # application ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=ADMIN_MAX_BODY)  # predictions read their body themselves
        app.router.add_post(
            "/seldon/{namespace}/{deployment}" + PREDICT_PATH, self.predict, expect_handler=self._expect
        )
        app.router.add_get("/health", self.health)
        app.router.add_get("/admin/deployments", self.list_routes)
        app.router.add_put("/admin/deployments/{namespace}/{deployment}", self.put_route)
        app.router.add_delete("/admin/deployments/{namespace}/{deployment}", self.delete_route)
        app.cleanup_ctx.append(self._lifecycle)
        return app

    async def _lifecycle(self, app: web.Application) -> Any:
        # idle pooled connections are dropped before gunicorn's 2 s keep-alive closes them from
        # its side (sync workers close after every response anyway)
        connector = TCPConnector(
            limit=0, limit_per_host=BACKEND_CONNECTIONS, keepalive_timeout=BACKEND_KEEPALIVE
        )
        self.session = ClientSession(connector=connector, auto_decompress=False, timeout=self.request_timeout)
        # retries go out on a new connection: the pooled one that just failed may have siblings
        # the backend is closing as well
        self.fresh = ClientSession(
            connector=TCPConnector(limit=0, force_close=True),
            auto_decompress=False,
            timeout=self.request_timeout,
        )
        prober = asyncio.create_task(self._probe_loop())
        yield
        prober.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await prober
        for task in list(self._tasks):
            task.cancel()
        await self.session.close()
        await self.fresh.close()

    # prediction path --------------------------------------------------------------------------

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: refuse an oversized body before the client sends it."""
        if (request.content_length or 0) > self.max_request_bytes:
            return self._too_large(request.content_length)
        expect = request.headers.get("Expect", "")
        if expect.lower() != "100-continue":
            raise web.HTTPExpectationFailed(
                text=f"unknown Expect: {expect}; send 'Expect: 100-continue' or none"
            )
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the interim line is not part of the response
        return None

    async def _read_body(self, request: web.Request) -> bytes | None:
        """The body, or None as soon as it is known to exceed the limit (from ``Content-Length``
        before reading anything, or by counting a chunked body while it streams in)."""
        limit = self.max_request_bytes
        if request.content_length is not None and request.content_length > limit:
            return None
        chunks, size = [], 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, declared: int | None) -> web.Response:
        limit = self.max_request_bytes
        size = f"{declared} bytes" if declared is not None else f"more than {limit} bytes (chunked)"
        response = _json(
            413,
            {
                "error": f"request body of {size} exceeds the gateway's limit of {limit} bytes "
                f"({limit / 1024**2:.3g} MiB)",
                "limit_bytes": limit,
                "fix": "send fewer rows per request (split the batch), or raise the limit: set "
                "PUSHBUTTON_GATEWAY_MAX_REQUEST_BYTES (the gateway's --max-request-bytes) and restart "
                "the stack (`pushbutton down && pushbutton up`)",
            },
        )
        response.force_close()  # the rest of the body is never read: this connection cannot be reused
        return response

    async def predict(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        body = await self._read_body(request)
        if body is None:
            return self._too_large(request.content_length)
        # no await from here until _forward counts the request in flight: once a PUT has returned,
        # an old backend's in-flight count of 0 means no request can still reach it
        route = self.routes.get((info["namespace"], info["deployment"]))
        if route is None:
            return self._unknown(info["namespace"], info["deployment"])
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        stats = self.stats
        for role in route.shadows:
            self._shadow(route.backends[role], body, headers)
        healthy = [r for r in route.live if stats[route.backends[r].url].up]
        role = pick(route.weights, self.rng, healthy)
        chosen = route.backends[role]
        try:
            return await self._forward(route, chosen, body, headers)
        except _Retryable as exc:
            # retry once on the route as it is now: it may have switched away from a retired backend
            now = self.routes.get((route.namespace, route.deployment)) or route
            others = {
                r: now.weights[r]
                for r in now.live
                if now.backends[r].url != chosen.url and stats[now.backends[r].url].up
            }
            if others:
                retry = now.backends[pick(others, self.rng)]
            elif not exc.refused:
                retry = chosen  # e.g. a dropped keep-alive connection: a fresh one may well work
            else:
                return self._bad_gateway(route, role, exc)
            try:
                return await self._forward(route, retry, body, headers, self.fresh)
            except _Retryable as again:
                return self._bad_gateway(route, retry.role, again)

    def _timeout(self, backend: Backend) -> ClientTimeout:
        if backend.timeout is None:
            return self.request_timeout
        return ClientTimeout(total=backend.timeout, sock_connect=min(5.0, backend.timeout))

    async def _forward(
        self,
        route: Route,
        backend: Backend,
        body: bytes,
        headers: dict[str, str],
        session: ClientSession | None = None,
    ) -> web.Response:
        stats = self.stats[backend.url]
        stats.requests += 1
        stats.inflight += 1
        try:
            async with (session or self.session).post(
                backend.predict_url, data=body, headers=headers, timeout=self._timeout(backend)
            ) as resp:
                payload = await resp.read()
                status = resp.status
                content_type = resp.headers.get("Content-Type", "application/json")
        except (ClientConnectionError, ClientPayloadError) as exc:
            if isinstance(exc, ServerTimeoutError) and not isinstance(exc, ConnectionTimeoutError):
                return self._timed_out(route, backend, stats)
            stats.errors += 1
            refused = isinstance(exc, (ClientConnectorError, ConnectionTimeoutError))
            reason = f"{type(exc).__name__}: {exc}"
            if refused:
                stats.set_up(False, reason)
            else:
                stats.last_error = reason
                self._spawn(self._probe(backend.url))
            raise _Retryable(reason, refused) from exc
        except TimeoutError:
            return self._timed_out(route, backend, stats)
        finally:
            stats.inflight -= 1
        if status >= 500:
            stats.errors += 1
        return web.Response(
            body=payload,
            status=status,
            headers={
                "Content-Type": content_type,
                "X-Pushbutton-Predictor": backend.role,
                "X-Pushbutton-Version": backend.version,
            },
        )

    def _timed_out(self, route: Route, backend: Backend, stats: BackendStats) -> web.Response:
        seconds = backend.timeout if backend.timeout is not None else self.default_timeout
        stats.errors += 1
        stats.last_error = f"timed out after {seconds:g} s"
        where = (
            "serving.timeout_seconds in its model.yaml (then push a new version)"
            if backend.timeout is not None
            else "the gateway's --request-timeout"
        )
        return _json(
            504,
            {
                "error": f"{route.key} v{backend.version} ({backend.role}, {backend.url}) did not answer "
                f"within {seconds:g} s",
                "timeout_seconds": seconds,
                "fix": f"make {route.deployment}'s predict() faster or send fewer rows per request; "
                f"or raise {where}",
            },
        )

    def _shadow(self, backend: Backend, body: bytes, headers: dict[str, str]) -> None:
        stats = self.stats[backend.url]
        if not stats.up or self._shadow_inflight >= MAX_SHADOW_INFLIGHT:
            stats.shadow_dropped += 1
            return
        self._spawn(self._send_shadow(backend, stats, body, headers))

    async def _send_shadow(self, backend: Backend, stats: BackendStats, body: bytes, headers: dict) -> None:
        stats.shadow_requests += 1
        stats.inflight += 1
        self._shadow_inflight += 1
        try:
            async with self.session.post(
                backend.predict_url, data=body, headers=headers, timeout=self._timeout(backend)
            ) as resp:
                await resp.read()
                if resp.status >= 500:
                    stats.shadow_errors += 1
        except Exception as exc:  # a shadow never affects anything but its own counters
            stats.shadow_errors += 1
            stats.last_error = f"shadow: {type(exc).__name__}: {exc}"
            if isinstance(exc, ClientConnectorError):
                stats.set_up(False, stats.last_error)
        finally:
            stats.inflight -= 1
            self._shadow_inflight -= 1

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _unknown(self, namespace: str, deployment: str) -> web.Response:
        known = sorted(r.key for r in self.routes.values())
        return _json(
            404,
            {
                "error": f"no deployment '{namespace}/{deployment}' on this gateway",
                "known": known,
                "fix": "deploy it first (or check the namespace/deployment in the URL)",
            },
        )

    def _bad_gateway(self, route: Route, role: str, exc: Exception) -> web.Response:
        return _json(
            502,
            {
                "error": f"backend '{role}' of {route.key} is unreachable ({exc}) and no other "
                "healthy answering backend exists",
                "fix": f"see `pushbutton status {route.deployment}` and the microservice log; "
                "`pushbutton up` starts a routed microservice that stopped",
            },
        )

    # health -----------------------------------------------------------------------------------

    async def _probe_loop(self) -> None:
        while True:
            urls = {b.url for r in self.routes.values() for b in r.backends.values()}
            await asyncio.gather(*(self._probe(u) for u in urls), return_exceptions=True)
            await asyncio.sleep(self.probe_interval)

    async def _probe(self, url: str) -> None:
        stats = self.stats.get(url)
        if stats is None or self.session is None:
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

    async def health(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "ok", "deployments": len(self.routes)})

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
        return _json(200, self.describe())

    async def put_route(self, request: web.Request) -> web.Response:
        info = request.match_info
        try:
            config = await request.json()
            route = Route.from_config(info["namespace"], info["deployment"], config)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return _json(400, {"error": f"invalid route for {info['namespace']}/{info['deployment']}: {exc}"})
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
        return _json(200, body)

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
        return _json(200, {"deleted": route.key, "config": route.config()})


class _Retryable(Exception):
    def __init__(self, reason: str, refused: bool):
        super().__init__(reason)
        self.refused = refused


def _json(status: int, data: Any) -> web.Response:
    return web.Response(status=status, body=json.dumps(data).encode(), content_type="application/json")


# --- client -------------------------------------------------------------------------------------


class GatewayClient:
    """Small synchronous client of the gateway (admin API and predictions)."""

    def __init__(self, base_url: str, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServingError(
                f"gateway at {self.base_url} is not reachable ({exc}); start the stack with `pushbutton up`"
            ) from exc

    def health(self) -> bool:
        try:
            return self._http.get("/health").is_success
        except httpx.HTTPError:
            return False

    def put_route(
        self,
        namespace: str,
        deployment: str,
        backends: Mapping[str, Mapping[str, Any]],
        weights: Mapping[str, int],
        shadows: Iterable[str] = (),
    ) -> dict[str, Any]:
        body = {"backends": dict(backends), "weights": dict(weights), "shadows": list(shadows)}
        resp = self._call("PUT", f"/admin/deployments/{namespace}/{deployment}", json=body)
        if resp.status_code != 200:
            raise ServingError(f"gateway refused route {namespace}/{deployment}: {resp.text}")
        return resp.json()

    def delete_route(self, namespace: str, deployment: str) -> bool:
        """True if a route was removed, False if there was none."""
        resp = self._call("DELETE", f"/admin/deployments/{namespace}/{deployment}")
        if resp.status_code not in (200, 404):
            raise ServingError(f"gateway could not delete route {namespace}/{deployment}: {resp.text}")
        return resp.status_code == 200

    def describe(self) -> dict[str, Any]:
        resp = self._call("GET", "/admin/deployments")
        if resp.status_code != 200:
            raise ServingError(f"gateway at {self.base_url} answered {resp.status_code}: {resp.text[:300]}")
        return resp.json()

    def routes(self) -> dict[str, Any]:
        """``namespace/deployment`` -> route with per-backend health and counters."""
        return self.describe()["deployments"]

    def route(self, namespace: str, deployment: str) -> dict[str, Any] | None:
        return self.routes().get(f"{namespace}/{deployment}")

    def wait_drained(self, urls: Iterable[str], timeout: float = 30.0) -> bool:
        """Wait until no request is in flight to ``urls``; False on timeout."""
        urls = {u.rstrip("/") for u in urls}
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            backends = self.describe()["backends"]
            if all(backends.get(u, {}).get("inflight", 0) == 0 for u in urls):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def predict(self, namespace: str, deployment: str, payload: Any) -> httpx.Response:
        """POST ``payload`` (JSON-able, or ``bytes`` sent as is) to the deployment's external path."""
        path = external_path(namespace, deployment)
        if isinstance(payload, bytes):
            return self._call("POST", path, content=payload, headers={"Content-Type": "application/json"})
        return self._call("POST", path, json=payload)


def gateway_argv(
    host: str,
    port: int,
    state: str | Path,
    python: str | None = None,
    *,
    max_request_bytes: int | None = None,
    request_timeout: float | None = None,
) -> list[str]:
    """Command line that runs the gateway (for ``ProcessGroup.start``); limits left at None come
    from ``PUSHBUTTON_GATEWAY_MAX_REQUEST_BYTES`` and the defaults."""
    argv = [python or sys.executable, "-m", "pushbutton.serving.gateway", "--host", host, "--port", str(port),
            "--state", str(state)]  # fmt: skip
    if max_request_bytes is not None:
        argv += ["--max-request-bytes", str(max_request_bytes)]
    if request_timeout is not None:
        argv += ["--request-timeout", str(request_timeout)]
    return argv


def _positive(kind: type, what: str) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


# --- entry point --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pushbutton.serving.gateway", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--state", required=True, help="JSON file the routes persist in")
    parser.add_argument("--probe-interval", type=float, default=1.0, help="seconds between health probes")
    parser.add_argument(
        "--max-request-bytes",
        type=_positive(int, "a positive number of bytes"),
        help="prediction bodies above this are answered 413 "
        f"(default: PUSHBUTTON_GATEWAY_MAX_REQUEST_BYTES, else {MAX_REQUEST_BYTES})",
    )
    parser.add_argument(
        "--request-timeout",
        type=_positive(float, "a positive number of seconds"),
        default=REQUEST_TIMEOUT,
        help="seconds a backend may take when its route sets no timeout_seconds (504 after)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        limit = args.max_request_bytes or settings().gateway_max_request_bytes
        gateway = Gateway(
            args.state,
            probe_interval=args.probe_interval,
            request_timeout=args.request_timeout,
            max_request_bytes=limit,
        )
    except (ServingError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    loop = None
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        pass
    log.info("gateway on http://%s:%d (state %s, %s, max request %d bytes, timeout %g s)", args.host,
             args.port, args.state, "uvloop" if loop else "asyncio", limit, args.request_timeout)  # fmt: skip
    web.run_app(
        gateway.app(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        shutdown_timeout=5.0,
        backlog=1024,
        reuse_address=True,
        loop=loop,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
