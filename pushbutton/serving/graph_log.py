"""Per-node request logging of a graph version on the local runtime, where Seldon's executor logs it.

Seldon v1's executor sends a request and a response CloudEvent for every graph node that has a
logger, ``Ce-Modelid`` the node's name. The local runtime's orchestrator (``graph_server``) does the
same for every node but the root: the root's request and answer are the graph's entry, which the
gateway logs as for any version (one record per gateway request, as the indicators expect). The
events go through the gateway's machinery (``pushbutton.monitoring.emitter``: memory queue, spool on
disk while the logger is away) to the same logger, with the same request id, the version, the
predictor (``Ce-Endpoint``) and ``Ce-Pushbuttonrole`` ``<role>:<node>`` (``records.node_predictor``):
the monitoring store keeps them as request records of that node, never as the version's feature rows.

What is logged follows the version's route in the gateway (``GET /admin/deployments``, cached for
``ROUTE_TTL`` seconds): its role (``shadow`` for a shadow copy) and its logging options (enabled,
sample rate: the same decision as the entry's for the same request id, excluded features removed
from every node's request). Traffic to a version no route points at (the build-time test step
calling the warmed version directly) is not logged, as the gateway does not log it either.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pushbutton.monitoring import records as R
from pushbutton.monitoring.emitter import Emitter
from pushbutton.monitoring.wire import Event
from pushbutton.serving.requestlog import Redactor, sampled
from pushbutton.serving.routes import LoggingOptions
from pushbutton.spec.model import GraphNode

log = logging.getLogger("pushbutton.graph")

ROUTE_TTL = 2.0  # seconds a route lookup is reused: a promotion shows in node events this late at most


@dataclass(frozen=True)
class Placement:
    """Where the version sits in its deployment's route now."""

    role: str  # champion | candidate
    shadow: bool
    options: LoggingOptions


def placement(routes: Mapping[str, Any], namespace: str, deployment: str, url: str) -> Placement | None:
    """The role and logging options of the backend at ``url`` in ``GatewayClient.routes()``; None
    if the deployment's route does not point at it."""
    route = routes.get(f"{namespace}/{deployment}")
    if not route:
        return None
    config = route.get("config") or {}
    for role, backend in (config.get("backends") or {}).items():
        if str(backend.get("url", "")).rstrip("/") == url.rstrip("/"):
            options = LoggingOptions.from_config(role, backend.get("logging"))
            return Placement(role, role in (config.get("shadows") or ()), options)
    return None


class NodeLog:
    """Hands each non-root node's request/response events to ``emitter`` (see the module docstring).

    ``lookup`` answers the version's ``Placement`` (None: not routed); it is called at most once per
    ``ttl`` seconds of ``monotonic``. ``clock`` is the events' time source (the executor's).
    """

    def __init__(
        self,
        emitter: Emitter,
        *,
        namespace: str,
        deployment: str,
        version: str,
        lookup: Callable[[], Placement | None],
        ttl: float = ROUTE_TTL,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.emitter = emitter
        self.namespace, self.deployment, self.version = namespace, deployment, version
        self.lookup, self.ttl, self.monotonic = lookup, ttl, monotonic
        self._cached: tuple[float, Placement | None] | None = None
        self._lock = threading.Lock()
        self._redactors: dict[tuple[tuple[str, ...], tuple[str, ...]], Redactor] = {}
        self.errors = 0

    def placement(self) -> Placement | None:
        with self._lock:
            now = self.monotonic()
            if self._cached is None or now - self._cached[0] >= self.ttl:
                try:
                    found = self.lookup()
                except Exception as exc:  # the gateway is away: log nothing rather than fail requests
                    log.warning("cannot read the route of %s/%s: %s", self.namespace, self.deployment, exc)
                    found = None
                self._cached = (now, found)
            return self._cached[1]

    def observer(self, puid: str, root: GraphNode, urls: Mapping[str, str]) -> Any:
        """The executor's ``NodeObserver`` for one request; None when this request is not logged."""
        where = self.placement()
        if where is None or not where.options.enabled or not sampled(puid, where.options.sample_rate):
            return None
        redactor = self._redactor(where.options)

        def observe(
            node: GraphNode, request: Any, response: Any, started: float, answered: float, error: Any
        ) -> None:
            if node.name == root.name:
                return  # the graph's entry: the gateway logs it
            try:
                status = 200 if error is None else int(getattr(error, "status", 500))
                answer = response if error is None else {"status": {"code": status, "info": str(error),
                                                                    "status": "FAILURE"}}  # fmt: skip
                common = {
                    "request_id": puid,
                    "deployment": self.deployment,
                    "namespace": self.namespace,
                    "endpoint": where.role,
                    "role": R.node_predictor("shadow" if where.shadow else where.role, node.name),
                    "version": self.version,
                    "model_id": node.name,
                    "source": urls.get(node.name, ""),
                }
                self.emitter.emit(
                    (
                        Event(R.CE_REQUEST, time=started, body=_json(request), transform=redactor, **common),
                        Event(R.CE_RESPONSE, time=answered, body=_json(answer), status=status,
                              latency_ms=max(0.0, (answered - started) * 1000.0), **common),
                    )
                )  # fmt: skip
            except Exception:  # logging never fails a request
                self.errors += 1
                log.exception("could not log graph node %s of request %s", node.name, puid)

        return observe

    def _redactor(self, options: LoggingOptions) -> Redactor | None:
        if not options.exclude:
            return None
        key = (options.exclude, options.features)
        return self._redactors.setdefault(key, Redactor(*key))

    def close(self) -> None:
        self.emitter.close()


def _json(message: Any) -> bytes:
    return json.dumps(message).encode()


def node_log(config: Mapping[str, Any], url: str) -> NodeLog | None:
    """The ``NodeLog`` of the orchestrator serving at ``url``, from its config (``graph_local``); None
    without a logger URL (request logging off)."""
    logging_config = config.get("logging") or {}
    logger_url = logging_config.get("logger_url") or ""
    if not logger_url:
        return None
    from pushbutton.monitoring.emitter import HttpTransport
    from pushbutton.monitoring.spool import Spool
    from pushbutton.serving.client import GatewayClient

    emitter = Emitter(HttpTransport(logger_url), Spool(Path(logging_config["spool_dir"])))
    emitter.start()
    gateway = GatewayClient(logging_config["gateway_url"])
    namespace, deployment = config["namespace"], config["deployment"]
    return NodeLog(
        emitter,
        namespace=namespace,
        deployment=deployment,
        version=str(config["version"]),
        lookup=lambda: placement(gateway.routes(), namespace, deployment, url),
    )
