"""The local runtime: ``kubectl apply`` of a ServingSpec without Kubernetes.

Each predictor runs as a seldon-core microservice keyed by model and version (so activating a
candidate only changes traffic), the gateway route is switched in one ``PUT`` once every
microservice is ready, and microservices the spec no longer references are stopped only after
the gateway reports no request in flight to them.

A version whose ``model.yaml`` declares a ``serving.graph`` runs as one microservice per node plus an
orchestrator executing the graph (``graph_local``, ``graph_server``); the orchestrator stands for the
version everywhere here (its URL is routed and warmed, stopping it stops its nodes).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pushbutton.config import Settings
from pushbutton.errors import ServingError
from pushbutton.locks import file_lock
from pushbutton.serving.envs import load_env
from pushbutton.serving.gateway import REQUEST_TIMEOUT, GatewayClient, Route
from pushbutton.serving.graph_local import graph_key, start_graph, version_graph
from pushbutton.serving.microservice import (
    READY_TIMEOUT,
    Microservice,
    Microservices,
    service_name,
)
from pushbutton.serving.routes import LoggingOptions
from pushbutton.serving.spec import Predictor, ServingSpec, traffic_plan
from pushbutton.spec.model import GraphNode


def route_config(spec: ServingSpec, urls: Mapping[str, str]) -> dict[str, Any]:
    """The gateway route (canonical form) serving ``spec`` from the microservice ``urls`` by role."""
    plan = traffic_plan(spec)
    backends = {
        p.name: {
            "url": urls[p.name],
            "version": p.version,
            "timeout_seconds": p.timeout_seconds,
            "logging": logging_options(p).config(),
        }
        for p in spec.predictors
    }
    config = {"backends": backends, "weights": plan.weights, "shadows": list(plan.shadows)}
    return Route.from_config(spec.namespace, spec.deployment, config).config()


def logging_options(predictor: Predictor) -> LoggingOptions:
    """What the gateway logs of ``predictor``'s traffic (its version's ``logging:``; ``retention_days``
    is the store's business, not the gateway's)."""
    spec = predictor.logging
    features = tuple(f.name for f in predictor.inputs) if spec.exclude else ()
    return LoggingOptions(spec.enabled, spec.sample_rate, tuple(spec.exclude), features)


def backend_urls(route: Mapping[str, Any] | None) -> set[str]:
    """The microservice URLs a gateway route (as ``GatewayClient.route`` returns it) points at."""
    return {b["url"] for b in route["backends"].values()} if route else set()


class LocalRuntime:
    """Serve ServingSpecs with local microservices behind the gateway at ``settings.gateway_url``."""

    def __init__(
        self,
        settings: Settings,
        *,
        ready_timeout: float = READY_TIMEOUT,
        drain_timeout: float = REQUEST_TIMEOUT + 5.0,
        workers: int | None = None,
        threads: int | None = None,
    ):
        self.settings = settings
        self.services = Microservices(settings)
        self.gateway = GatewayClient(settings.gateway_url)
        self.envs_root = settings.home / "envs"
        self.ready_timeout = ready_timeout
        self.drain_timeout = drain_timeout
        self.workers, self.threads = workers, threads  # None: seldon's GUNICORN_WORKERS/_THREADS

    def _lock(self, namespace: str, deployment: str) -> Any:
        return file_lock(self.services.meta_dir / f"{namespace}.{deployment}.lock")

    # apply ------------------------------------------------------------------------------------

    def apply(self, spec: ServingSpec) -> dict[str, Any]:
        """Make the deployment serve ``spec``; idempotent. Raises ``ServingError`` with the route untouched."""
        with self._lock(spec.namespace, spec.deployment):
            started_at = time.monotonic()
            current = self.gateway.route(spec.namespace, spec.deployment)  # fails fast if the gateway is down
            started: list[Microservice] = []
            reused: list[Microservice] = []
            urls: dict[str, str] = {}
            try:
                for predictor in spec.predictors:
                    svc, fresh = self._ensure(spec.namespace, predictor, current)
                    (started if fresh else reused).append(svc)
                    urls[predictor.name] = svc.url
                desired = route_config(spec, urls)
                changed = current is None or current["config"] != desired
                if changed:
                    self.gateway.put_route(spec.namespace, spec.deployment, **desired)
            except BaseException:  # also a task killed mid-start: no process outlives a failed apply
                routed_now = self._routed_urls(spec.namespace, spec.deployment)
                for svc in started:  # unless a PUT whose answer was lost did switch the route to it
                    if svc.url not in routed_now:
                        self.services.stop(svc.name)
                raise
            keep = {s.name for s in started + reused}
            stopped = self._retire(spec.namespace, spec.deployment, keep, routed=backend_urls(current))
            return {
                "deployment": spec.key,
                "path": spec.external_path,
                "changed": changed or bool(started) or bool(stopped),
                "route": desired,
                "started": [s.name for s in started],
                "reused": [s.name for s in reused],
                "stopped": stopped,
                "seconds": round(time.monotonic() - started_at, 2),
            }

    def _ensure(
        self, namespace: str, predictor: Predictor, current: dict[str, Any] | None
    ) -> tuple[Microservice, bool]:
        """The running microservice of ``predictor`` (reused if it serves the same build) and whether it is new."""
        name = service_name(namespace, predictor.model, predictor.version)
        if not predictor.code_uri:
            raise ServingError(
                f"predictor '{predictor.name}' ({name}) has no code_uri; the local runtime needs it"
            )
        env = load_env(self.envs_root, predictor.env_key)
        graph = version_graph(predictor.code_uri, predictor.class_ref)  # None: the predict class alone
        svc = self.services.get(name)
        build = (predictor.model_uri, predictor.class_ref, predictor.code_uri)
        if svc is not None and svc.serves(*build, *([graph_key(graph)] if graph is not None else [])):
            self.services.wait_healthy(svc, self.ready_timeout)
            return svc, False
        if svc is not None and svc.url in backend_urls(current):
            raise ServingError(
                f"{name} already serves model_uri={svc.model_uri} (code {svc.code_dir}, class {svc.class_ref}), "
                f"not {predictor.model_uri}; a version's artifacts are immutable: register a new version, "
                "or remove the deployment first"
            )
        inputs = tuple((f.name, f.type, f.nullable) for f in predictor.inputs)
        p = predictor
        return self._start(
            env,
            namespace,
            p.model,
            p.version,
            p.code_uri,
            p.class_ref,
            p.model_uri,
            inputs,
            p.timeout_seconds,
            graph,
        ), True

    def _start(
        self,
        env: Any,
        namespace: str,
        model: str,
        version: str,
        code_dir: str,
        class_ref: str,
        model_uri: str,
        inputs: tuple[tuple[str, str, bool], ...],
        request_timeout: float | None = None,
        graph: GraphNode | None = None,
    ) -> Microservice:
        """One version's service: its predict class, or its graph node by node (``graph_local``)."""
        if graph is not None:
            return start_graph(
                self.services, env, graph, namespace=namespace, model=model, version=version,
                code_dir=code_dir, class_ref=class_ref, model_uri=model_uri, inputs=inputs,
                request_timeout=request_timeout, workers=self.workers, threads=self.threads,
                timeout=self.ready_timeout,
            )  # fmt: skip
        return self.services.start(
            env,
            namespace=namespace,
            model=model,
            version=version,
            code_dir=code_dir,
            class_ref=class_ref,
            model_uri=model_uri,
            workers=self.workers,
            threads=self.threads,
            timeout=self.ready_timeout,
            inputs=inputs,
            request_timeout=request_timeout,
        )

    def _routed_urls(self, namespace: str, deployment: str) -> set[str]:
        """Backend URLs of the deployment's route as the gateway has it now (empty if it cannot say)."""
        try:
            return backend_urls(self.gateway.route(namespace, deployment))
        except ServingError:
            return set()

    def _retire(
        self, namespace: str, deployment: str, keep: set[str], routed: set[str] | None = None
    ) -> list[str]:
        """Stop the deployment's microservices not in ``keep`` once the gateway has drained them.

        With ``routed`` (the URLs of the route just replaced), only those and crashed ones go: a
        running service no route pointed at was warmed by a test step that still uses it, and its
        own run releases it (``release``). Crashed ones are cleaned up (pid file, leftover children)
        but not reported as stopped.
        """
        running = {s.name for s in self.services.list(namespace, deployment)}
        retired = [
            s
            for s in self.services.list(namespace, deployment, dead=True)
            if s.name not in keep and (routed is None or s.url in routed or s.name not in running)
        ]
        if not retired:
            return []
        self.gateway.wait_drained([s.url for s in retired], timeout=self.drain_timeout)
        return [s.name for s in retired if self.services.stop(s.name)]

    # the rest of the runtime API --------------------------------------------------------------

    def warm(self, namespace: str, predictor: Predictor) -> str:
        """Start (or reuse) one version's microservice without routing traffic to it; return its URL.

        The test stage checks a version through the very service the deployment will then reuse.
        """
        with self._lock(namespace, predictor.model):
            svc, _ = self._ensure(namespace, predictor, self.gateway.route(namespace, predictor.model))
            return svc.url

    def endpoint(self, namespace: str, model: str, version: str) -> str | None:
        """URL of a version's running, healthy microservice (None if it is not running)."""
        svc = self.services.get(service_name(namespace, model, version))
        return svc.url if svc is not None and self.services.healthy(svc) else None

    def release(self, namespace: str, model: str, version: str) -> bool:
        """Stop a version's microservice unless the gateway routes traffic to it."""
        with self._lock(namespace, model):
            svc = self.services.get(service_name(namespace, model, version))
            if svc is None:
                return False
            current = self.gateway.route(namespace, model)
            if svc.url in backend_urls(current):
                return False
            return self.services.stop(svc.name)

    def remove(self, namespace: str, deployment: str) -> dict[str, Any]:
        """Delete the route, then stop the deployment's microservices once drained."""
        with self._lock(namespace, deployment):
            deleted = self.gateway.delete_route(namespace, deployment)
            stopped = self._retire(namespace, deployment, keep=set())
        return {"deployment": f"{namespace}/{deployment}", "route_deleted": deleted, "stopped": stopped}

    def status(self, namespace: str, deployment: str) -> dict[str, Any]:
        """Route, backends (health, counters, pid) and microservices of one deployment."""
        services = self.services.list(namespace, deployment)
        by_url = {s.url: s for s in services}
        result: dict[str, Any] = {
            "deployment": f"{namespace}/{deployment}",
            "gateway": self.settings.gateway_url,
            "route": None,
            "backends": {},
            "services": [
                {"name": s.name, "version": s.version, "url": s.url, "pid": s.pid, "log": s.log}
                for s in services
            ],
        }
        try:
            route = self.gateway.route(namespace, deployment)
        except ServingError as exc:
            result["error"] = str(exc)
            return result
        if route is not None:
            result["path"] = route["path"]
            result["route"] = route["config"]
            for role, backend in route["backends"].items():
                svc = by_url.get(backend["url"])
                result["backends"][role] = {**backend, "service": svc.name if svc else None,
                                            "pid": svc.pid if svc else None}  # fmt: skip
        return result

    def predict(self, namespace: str, deployment: str, payload: Any) -> dict[str, Any]:
        """One prediction through the gateway: the response body plus who answered."""
        resp = self.gateway.predict(namespace, deployment, payload)
        if resp.status_code != 200:
            raise ServingError(
                f"prediction on {namespace}/{deployment} failed with HTTP {resp.status_code}: {resp.text[:500]}"
            )
        return {
            "predictor": resp.headers.get("X-Pushbutton-Predictor"),
            "version": resp.headers.get("X-Pushbutton-Version"),
            "response": resp.json(),
        }

    def stop_all(self) -> list[str]:
        """Stop every model microservice (stack shutdown). The gateway keeps its routes and each
        service its record, so ``restore`` brings back what served."""
        return self.services.suspend_all()

    def restore(self) -> list[dict[str, Any]]:
        """Start again every microservice a gateway route points at but which is not running (after
        ``down``/``up`` or a crash), then point the route at the new processes, weights unchanged.

        One result per routed deployment: the ``restarted`` service names and ``errors`` (with the fix).
        """
        from concurrent.futures import ThreadPoolExecutor

        routes = self.gateway.routes()
        with ThreadPoolExecutor(max_workers=max(1, min(4, len(routes)))) as pool:
            return list(pool.map(lambda r: self._restore(r["namespace"], r["deployment"]), routes.values()))

    def _restore(self, namespace: str, deployment: str) -> dict[str, Any]:
        result: dict[str, Any] = {"deployment": f"{namespace}/{deployment}", "restarted": [], "errors": []}
        try:
            with self._lock(namespace, deployment):
                route = self.gateway.route(namespace, deployment)
                if route is None:  # removed meanwhile
                    return result
                config = route["config"]
                backends = dict(config["backends"])
                records = {s.url: s for s in self.services.list(namespace, deployment, dead=True)}
                for role, backend in config["backends"].items():
                    try:
                        fresh = self._restart(
                            namespace, deployment, role, backend, records.get(backend["url"])
                        )
                    except ServingError as exc:  # the other backend may still come back
                        result["errors"].append(str(exc))
                        continue
                    if fresh is not None:
                        backends[role] = {**backend, "url": fresh.url}  # its version and timeout stay
                        result["restarted"].append(fresh.name)
                if result["restarted"]:
                    self.gateway.put_route(
                        namespace, deployment, backends, config["weights"], config["shadows"]
                    )
        except ServingError as exc:
            result["errors"].append(str(exc))
        return result

    def _restart(
        self, namespace: str, deployment: str, role: str, backend: Mapping[str, str], svc: Microservice | None
    ) -> Microservice | None:
        """Start ``svc``, the recorded microservice behind ``backend``, again; None if it is running."""
        if svc is not None and self.services.get(svc.name) is not None:
            return None  # running; the gateway's probe reports its health
        if svc is None:
            # a candidate is redeployed by its own run: promoting it would skip the approval
            redeploy = (
                f"`pushbutton promote {deployment} --version {backend['version']}`"
                if role == "champion"
                else f"clear the deploy_candidate task of its {deployment}__cicd run, or reject it with "
                f"`pushbutton approve {deployment} --reject`"
            )
            raise ServingError(
                f"the {role} v{backend['version']} of {namespace}/{deployment} ({backend['url']}) has no "
                f"service record under {self.services.meta_dir}; redeploy it: {redeploy}"
            )
        env = load_env(self.envs_root, Path(svc.env).name)
        timeout = backend.get("timeout_seconds")
        return self._start(
            env, namespace, svc.model, svc.version, svc.code_dir, svc.class_ref, svc.model_uri, svc.inputs,
            float(timeout) if timeout else None, version_graph(svc.code_dir, svc.class_ref),
        )  # fmt: skip

    def close(self) -> None:
        self.gateway.close()
