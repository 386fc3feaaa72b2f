"""The local gateway: Seldon's external prediction path in front of the model microservices.

``POST /seldon/<namespace>/<deployment>/api/v1.0/predictions`` goes to one answering predictor
picked by weight (canary) and is copied, fire-and-forget, to shadow predictors; the client gets the
answering backend's answer plus ``X-Pushbutton-Predictor``/``X-Pushbutton-Version`` and the request
id (``Seldon-Puid`` header and ``meta.puid`` in the body; ``requestlog.py``). ``POST
.../api/v1.0/feedback`` takes Seldon's feedback (a late label for such an id) into the request log
(``feedback.py``).

Every exchange with every predictor (answering and shadow) is handed to the request-log emitter
(``pushbutton.monitoring.emitter``: Seldon's request-logger CloudEvents to ``--logger-url``, a
memory queue and a spool on disk under ``--spool-dir`` when the logger is away) per the backend's
logging options (enabled, sample rate, excluded features: ``routes.LoggingOptions``). Logging never
fails, delays or blocks a request; ``GET /status`` shows its counters.

Request bodies above ``--max-request-bytes`` (``PUSHBUTTON_GATEWAY_MAX_REQUEST_BYTES``, 10 MiB by
default) are answered 413 before they are read (``Content-Length``) or as soon as a chunked body
passes the limit; nothing of them reaches a model. Each backend has its own timeout (its version's
``serving.timeout_seconds``, carried in the route; else ``--request-timeout``): a backend slower
than that is answered 504 naming the model, the timeout and the fix. Each request is a task on one
event loop that awaits its body and its backend without blocking, so a large or slow request to one
model holds up no other model's requests (a model's own microservice, one sync worker, still
answers its requests one at a time).

Routes (``routes.py``) change through the admin API (``PUT``/``DELETE
/admin/deployments/{ns}/{deployment}``, ``GET /admin/deployments``); a ``PUT`` swaps the whole route
in one assignment, so requests already in flight finish on the old route and new ones use the new
one. Routes persist in the ``--state`` file. A background probe marks backends up/down; a connection
error on the chosen backend is retried once on another healthy answering backend.

Run: ``python -m pushbutton.serving.gateway --host 127.0.0.1 --port 8000 --state routes.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from pushbutton.monitoring.emitter import Emitter, HttpTransport
from pushbutton.monitoring.spool import Spool
from pushbutton.serving.client import GatewayClient, gateway_argv
from pushbutton.serving.feedback import FEEDBACK_PATH, handle_feedback
from pushbutton.serving.requestlog import PUID_HEADER, RequestLog, request_id, with_puid
from pushbutton.serving.routes import (
    PREDICT_PATH,
    TIMEOUT_MAX,
    Backend,
    LoggingOptions,
    Route,
    external_path,
    pick,
)
from pushbutton.serving.routetable import BackendStats, RouteTable, json_response

__all__ = [  # the routes and the client lived here; their importers keep working
    "PREDICT_PATH",
    "REQUEST_TIMEOUT",
    "TIMEOUT_MAX",
    "Backend",
    "Gateway",
    "GatewayClient",
    "LoggingOptions",
    "Route",
    "external_path",
    "gateway_argv",
    "main",
    "pick",
]

log = logging.getLogger("pushbutton.gateway")

MAX_REQUEST_BYTES: int = Settings.model_fields["gateway_max_request_bytes"].default
ADMIN_MAX_BODY = 1024 * 1024  # a route is a few hundred bytes
REQUEST_TIMEOUT = 60.0  # seconds a backend may take to answer unless its route says otherwise
MAX_SHADOW_INFLIGHT = 256  # copies beyond this are dropped: a slow shadow must not eat the gateway
BACKEND_KEEPALIVE = 1.5  # seconds; below seldon's gunicorn --keepalive of 2 (threaded workers)
# connections per backend: under overload requests wait in the gateway instead of flooding
# gunicorn's accept queue (its single sync worker serves one request at a time anyway)
BACKEND_CONNECTIONS = 32
LOG_MAX_EVENT_BYTES = 1024 * 1024  # a request or response body above this is not logged (counted)
LOG_SPOOL_MAX_BYTES = 1024**3  # the spool's disk quota; events beyond it are dropped (counted)


# --- the server ---------------------------------------------------------------------------------


class Gateway(RouteTable):
    """Routes, counters and health probe (``RouteTable``), the prediction path, the request log and
    the aiohttp application serving them."""

    def __init__(
        self,
        state_path: str | Path | None = None,
        *,
        rng: random.Random | None = None,
        probe_interval: float = 1.0,
        probe_timeout: float = 2.0,
        request_timeout: float = REQUEST_TIMEOUT,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        emitter: Emitter | None = None,
        clock: Callable[[], float] = time.time,
    ):
        """``emitter``: where the request log goes (None: logging off); ``clock``: the events' time."""
        self.rng = rng or random.Random()
        self.default_timeout = request_timeout
        self.request_timeout = ClientTimeout(total=request_timeout, sock_connect=5.0)
        self.max_request_bytes = max_request_bytes
        self.fresh: ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._shadow_inflight = 0
        self.emitter = emitter
        self.request_log = RequestLog(emitter)
        self.clock = clock
        super().__init__(state_path, probe_interval=probe_interval, probe_timeout=probe_timeout)

    # application ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=ADMIN_MAX_BODY)  # predictions read their body themselves
        app.router.add_post(
            "/seldon/{namespace}/{deployment}" + PREDICT_PATH, self.predict, expect_handler=self._expect
        )
        app.router.add_post(
            "/seldon/{namespace}/{deployment}" + FEEDBACK_PATH, self.feedback, expect_handler=self._expect
        )
        app.router.add_get("/health", self.health)
        app.router.add_get("/status", self.status)
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
        if self.emitter is not None:
            self.emitter.start()
        yield
        prober.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await prober
        for task in list(self._tasks):
            task.cancel()
        await self.session.close()
        await self.fresh.close()
        if self.emitter is not None:  # what is still in memory goes to the spool
            await asyncio.to_thread(self.emitter.close)

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
        response = json_response(
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
        started = self.clock()
        puid = request_id(request.headers, body)
        content_type = request.headers.get("Content-Type", "application/json")
        headers = {"Content-Type": content_type, PUID_HEADER: puid}
        for role in route.shadows:
            self._shadow(route, route.backends[role], body, headers, started)
        answer = await self._answer(route, body, headers)
        return self._respond(route, answer, started, body)

    async def feedback(self, request: web.Request) -> web.Response:
        """Seldon's feedback API: a late label, handed to the request log (``feedback.py``)."""
        info = request.match_info
        body = await self._read_body(request)
        if body is None:
            return self._too_large(request.content_length)
        route = self.routes.get((info["namespace"], info["deployment"]))
        if route is None:
            return self._unknown(info["namespace"], info["deployment"])
        status, answer, headers = handle_feedback(
            self.request_log, route, request.headers, body, self.clock()
        )
        response = json_response(status, answer)
        response.headers.update(headers)
        return response

    async def _answer(self, route: Route, body: bytes, headers: dict[str, str]) -> Answer:
        stats = self.stats
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
                return self._bad_gateway(route, chosen, exc, headers)
            try:
                return await self._forward(route, retry, body, headers, self.fresh)
            except _Retryable as again:
                return self._bad_gateway(route, retry, again, headers)

    def _respond(self, route: Route, answer: Answer, started: float, body: bytes) -> web.Response:
        """The client's response: the answer with the request id in it; the exchange is logged."""
        puid = answer.request_headers[PUID_HEADER]
        payload = answer.body
        try:
            payload = with_puid(payload, answer.content_type, puid)
        except Exception:  # e.g. nesting too deep for json: the header still carries the id
            log.exception("could not set meta.puid in %s's answer", route.key)
        self.request_log.exchange(
            route,
            answer.backend,
            puid,
            started,
            answer.answered,
            (body, answer.request_headers["Content-Type"]),
            (answer.status, payload, answer.content_type),
        )
        headers = {"Content-Type": answer.content_type, PUID_HEADER: puid}
        if not answer.own:
            headers["X-Pushbutton-Predictor"] = answer.backend.role
            headers["X-Pushbutton-Version"] = answer.backend.version
        return web.Response(body=payload, status=answer.status, headers=headers)

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
    ) -> Answer:
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
                return self._timed_out(route, backend, stats, headers)
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
            return self._timed_out(route, backend, stats, headers)
        finally:
            stats.inflight -= 1
        if status >= 500:
            stats.errors += 1
        return Answer(backend, headers, status, payload, content_type, self.clock())

    def _timed_out(
        self, route: Route, backend: Backend, stats: BackendStats, headers: dict[str, str]
    ) -> Answer:
        seconds = backend.timeout if backend.timeout is not None else self.default_timeout
        stats.errors += 1
        stats.last_error = f"timed out after {seconds:g} s"
        where = (
            "serving.timeout_seconds in its model.yaml (then push a new version)"
            if backend.timeout is not None
            else "the gateway's --request-timeout"
        )
        error = {
            "error": f"{route.key} v{backend.version} ({backend.role}, {backend.url}) did not answer "
            f"within {seconds:g} s",
            "timeout_seconds": seconds,
            "fix": f"make {route.deployment}'s predict() faster or send fewer rows per request; "
            f"or raise {where}",
        }
        return Answer.own_error(backend, headers, 504, error, self.clock())

    def _shadow(
        self, route: Route, backend: Backend, body: bytes, headers: dict[str, str], started: float
    ) -> None:
        stats = self.stats[backend.url]
        if not stats.up or self._shadow_inflight >= MAX_SHADOW_INFLIGHT:
            stats.shadow_dropped += 1
            return
        self._spawn(self._send_shadow(route, backend, stats, body, headers, started))

    async def _send_shadow(
        self,
        route: Route,
        backend: Backend,
        stats: BackendStats,
        body: bytes,
        headers: dict[str, str],
        started: float,
    ) -> None:
        stats.shadow_requests += 1
        stats.inflight += 1
        self._shadow_inflight += 1
        try:
            async with self.session.post(
                backend.predict_url, data=body, headers=headers, timeout=self._timeout(backend)
            ) as resp:
                answer = Answer(backend, headers, resp.status, await resp.read(),
                                resp.headers.get("Content-Type", "application/json"), self.clock())  # fmt: skip
                if resp.status >= 500:
                    stats.shadow_errors += 1
        except Exception as exc:  # a shadow never affects anything but its own counters
            stats.shadow_errors += 1
            stats.last_error = f"shadow: {type(exc).__name__}: {exc}"
            if isinstance(exc, ClientConnectorError):
                stats.set_up(False, stats.last_error)
            timed_out = isinstance(exc, TimeoutError | ServerTimeoutError) and not isinstance(
                exc, ConnectionTimeoutError
            )
            error = {"error": f"shadow {backend.role} of {route.key}: {stats.last_error}"}
            answer = Answer.own_error(backend, headers, 504 if timed_out else 502, error, self.clock())
        finally:
            stats.inflight -= 1
            self._shadow_inflight -= 1
        self.request_log.exchange(
            route,
            backend,
            headers[PUID_HEADER],
            started,
            answer.answered,
            (body, headers["Content-Type"]),
            (answer.status, answer.body, answer.content_type),
            shadow=True,
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _bad_gateway(self, route: Route, backend: Backend, exc: Exception, headers: dict[str, str]) -> Answer:
        error = {
            "error": f"backend '{backend.role}' of {route.key} is unreachable ({exc}) and no other "
            "healthy answering backend exists",
            "fix": f"see `pushbutton status {route.deployment}` and the microservice log; "
            "`pushbutton up` starts a routed microservice that stopped",
        }
        return Answer.own_error(backend, headers, 502, error, self.clock())

    async def health(self, request: web.Request) -> web.Response:
        return json_response(200, {"status": "ok", "deployments": len(self.routes)})

    async def status(self, request: web.Request) -> web.Response:
        """Route count and the request log's counters (what ``pushbutton status`` shows)."""
        return json_response(200, {"deployments": len(self.routes), "logging": self.request_log.status()})


@dataclass(frozen=True)
class Answer:
    """What one backend answered one request (or the gateway for it: ``own``, a 502 or 504)."""

    backend: Backend
    request_headers: dict[str, str]  # as sent to the backend: Content-Type and Seldon-Puid
    status: int
    body: bytes
    content_type: str
    answered: float  # the gateway's clock when the answer was complete
    own: bool = False

    @classmethod
    def own_error(
        cls, backend: Backend, headers: dict[str, str], status: int, error: dict[str, Any], answered: float
    ) -> Answer:
        return cls(backend, headers, status, json.dumps(error).encode(), "application/json", answered, True)


class _Retryable(Exception):
    def __init__(self, reason: str, refused: bool):
        super().__init__(reason)
        self.refused = refused


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


def _emitter(logger_url: str, spool_dir: Path, max_event_bytes: int, spool_max_bytes: int) -> Emitter | None:
    if not logger_url:
        return None
    if not logger_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"--logger-url {logger_url!r} must start with http:// or https:// (or be '' for no logging)"
        )
    try:
        spool = Spool(spool_dir, max_bytes=spool_max_bytes)
    except OSError as exc:
        raise ServingError(
            f"cannot open the request-log spool {spool_dir} ({exc}); free disk space or fix the permissions "
            "of the gateway's state directory, or pass --spool-dir"
        ) from exc
    return Emitter(HttpTransport(logger_url), spool, max_event_bytes=max_event_bytes)


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
    parser.add_argument(
        "--logger-url",
        help="the request logger's URL (default: http://PUSHBUTTON_HOST:PUSHBUTTON_LOGGER_PORT); "
        "an empty string turns request logging off",
    )
    parser.add_argument(
        "--spool-dir",
        type=Path,
        help="where events wait while the logger is away (default: <state dir>/spool)",
    )
    parser.add_argument(
        "--log-max-event-bytes",
        type=_positive(int, "a positive number of bytes"),
        default=LOG_MAX_EVENT_BYTES,
        help="a request or response body above this is not logged (counted as dropped: oversize)",
    )
    parser.add_argument(
        "--log-spool-max-bytes",
        type=_positive(int, "a positive number of bytes"),
        default=LOG_SPOOL_MAX_BYTES,
        help="disk quota of the spool; events beyond it are dropped (counted: spool_full)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        limit = args.max_request_bytes or settings().gateway_max_request_bytes
        logger_url = settings().logger_url if args.logger_url is None else args.logger_url
        spool_dir = args.spool_dir or Path(args.state).resolve().parent / "spool"
        emitter = _emitter(logger_url, spool_dir, args.log_max_event_bytes, args.log_spool_max_bytes)
        gateway = Gateway(
            args.state,
            probe_interval=args.probe_interval,
            request_timeout=args.request_timeout,
            max_request_bytes=limit,
            emitter=emitter,
        )
    except (ServingError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    where = f"logging to {logger_url} (spool {spool_dir})" if emitter else "request logging off"
    loop = None
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        pass
    log.info("gateway on http://%s:%d (state %s, %s, max request %d bytes, timeout %g s, %s)", args.host,
             args.port, args.state, "uvloop" if loop else "asyncio", limit, args.request_timeout, where)  # fmt: skip
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
