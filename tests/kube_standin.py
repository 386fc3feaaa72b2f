"""A stand-in Kubernetes API server for SeldonDeployments: kmock's ``KubernetesEmulator`` (an in-memory
object store over HTTP), NOT a cluster and NOT Seldon. Tests using it are marked ``standin``.

What it adds to the emulator, as a real API server does: ``metadata.generation`` (1 on create, +1 when a
write changes ``spec``), a 201 answer to a create, and errors injected on the next matching request
(before anything is stored, as a real server rejecting a request stores nothing). The Seldon operator
is played by the test through ``set_status``. It runs on its own event loop in a thread, so the
synchronous ``kubernetes`` client (urllib3) can talk to it from the test.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal.k8s import KubernetesError

RESOURCE = "machinelearning.seldon.io/v1/seldondeployments"


@attrs.define(kw_only=True)
class SeldonApiStandin(kmock.KubernetesEmulator):
    """The emulator plus generations, 201 on create and injected failures."""

    failures: list[tuple[str, int, dict[str, Any]]] = attrs.field(factory=list)

    def fail_next(
        self, action: str, status: int, message: str, causes: list[dict[str, str]] | None = None
    ) -> None:
        """Answer the next ``action`` (create, update, fetch, delete) with ``status`` and a Status body."""
        details = {"causes": causes} if causes else {"name": "standin"}
        self.failures.append((action, status, {"message": message, "details": details}))

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        if request.resource is not None and request.action is not None:
            for failure in list(self.failures):
                action, status, body = failure
                if request.action.value.lower() == action:
                    self.failures.remove(failure)
                    raise KubernetesError(status=status, reason="Injected", **body)
        response = await super()._handle(request)
        if request.action is not None and request.action.value == "CREATE" and response.status == 200:
            response.set_status(201)  # the real API server's answer to a create
        return response

    def _stored(self, request: Any) -> Any:
        name = request.name or (request.data or {}).get("metadata", {}).get("name")
        namespace = request.namespace or (request.data or {}).get("metadata", {}).get("namespace")
        return self.objects[request.resource, namespace, name]

    async def _serve_create(self, request: Any) -> Any:
        self._stored(request).patch({"metadata": {"generation": 1}})
        return await super()._serve_create(request)

    async def _serve_update(self, request: Any) -> Any:
        obj = self._stored(request)
        versions = [v for v in obj.history if v is not None]
        if len(versions) >= 2 and versions[-1].raw.get("spec") != versions[-2].raw.get("spec"):
            obj.patch(
                {"metadata": {"generation": int(versions[-2].raw["metadata"].get("generation", 1)) + 1}}
            )
        return await super()._serve_update(request)


class Standin:
    """The running stand-in: ``url`` for the client, thread-safe access to the stored objects."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),),
                                        name="kube-standin", daemon=True)  # fmt: skip
        self.url = ""

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with SeldonApiStandin() as server, kmock.Server(server) as http:
            server.resources[RESOURCE] = {}
            self.server, self.url = server, str(http.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def start(self) -> Standin:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the kmock stand-in did not start within 10 s")
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop (no request is half-way through a change meanwhile)."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        def read() -> dict[str, Any] | None:
            try:
                obj = self.server.objects[RESOURCE, namespace, name]
            except KeyError:
                return None
            return None if obj.deleted else copy.deepcopy(obj.raw)

        return self.call(read)

    def set_status(self, namespace: str, name: str, state: str, description: str = "") -> None:
        """Play the Seldon operator: report ``state`` for the object's current generation."""

        def write() -> None:
            obj = self.server.objects[RESOURCE, namespace, name]
            generation = obj.raw.get("metadata", {}).get("generation", 1)
            status = {"state": state, "description": description or None, "observedGeneration": generation}
            obj.patch({"status": status})

        self.call(write)

    def requests(self, method: str | None = None) -> list[str]:
        """``METHOD path`` of the requests served so far (optionally one method only)."""
        found = self.call(lambda: [(str(r.method.value).upper(), r.url.path) for r in self.server._requests])
        return [f"{m} {p}" for m, p in found if method is None or m == method.upper()]

    def api_client(self) -> Any:
        from kubernetes import client

        config = client.Configuration()
        config.host = self.url
        return client.ApiClient(config)


@contextmanager
def running_standin() -> Iterator[Standin]:
    standin = Standin().start()
    try:
        yield standin
    finally:
        standin.stop()


# Seldon Core v2 ---------------------------------------------------------------------------------

V2_RESOURCES = {
    "Model": "mlops.seldon.io/v1alpha1/models",
    "Pipeline": "mlops.seldon.io/v1alpha1/pipelines",
    "Experiment": "mlops.seldon.io/v1alpha1/experiments",
}
V2_PROGRESSING = {
    "Model": "ModelProgressing",
    "Pipeline": "PipelineCreating",
    "Experiment": "ExperimentProgressing",
}


def v2_conditions(kind: str, ready: bool, message: str) -> list[dict[str, str]]:
    """Status conditions as Seldon v2 writes them: its own condition (ModelReady, PipelineReady, ...)
    and ``Ready``, ``True`` or ``False`` with the reason."""
    status = "True" if ready else "False"
    own = {"type": f"{kind}Ready", "status": status, "message": message}
    return [own, {"type": "Ready", "status": status, **({} if ready else {"reason": message})}]


@attrs.define(kw_only=True)
class SeldonV2Standin(SeldonApiStandin):
    """The API server stand-in, also playing Seldon Core v2's controller: a write that makes a new
    generation reports ``Ready: False`` (progressing) for it; the first read that returns that moves it
    on to the next outcome scripted for the object's name (``outcomes``: ``(ready, message)``; default
    ready). ``rollouts`` lists every (kind, name, generation, ready) in order."""

    outcomes: dict[str, list[tuple[bool, str]]] = attrs.field(factory=dict)
    rollouts: list[tuple[str, str, int, bool]] = attrs.field(factory=list)
    pending: dict[tuple[str, str], tuple[bool, str]] = attrs.field(factory=dict)

    async def _serve_create(self, request: Any) -> Any:
        payload = await super()._serve_create(request)
        self._roll_out(request)
        return payload

    async def _serve_update(self, request: Any) -> Any:
        payload = await super()._serve_update(request)
        self._roll_out(request)
        return payload

    def _roll_out(self, request: Any) -> None:
        obj = self._stored(request)
        meta, kind = obj.raw["metadata"], obj.raw.get("kind", "")
        generation = meta.get("generation", 1)
        if (obj.raw.get("status") or {}).get("observedGeneration") == generation:
            return  # labels or annotations only: nothing new to roll out
        script = self.outcomes.get(meta["name"]) or []
        outcome = script.pop(0) if script else (True, f"{kind}Available")
        self.pending[meta["namespace"], meta["name"]] = outcome
        self.rollouts.append((kind, meta["name"], generation, outcome[0]))
        conditions = v2_conditions(kind, False, V2_PROGRESSING.get(kind, "Progressing"))
        obj.patch({"status": {"conditions": conditions, "observedGeneration": generation}})

    async def _serve_fetch(self, request: Any) -> Any:
        payload = copy.deepcopy(await super()._serve_fetch(request))
        outcome = self.pending.pop((request.namespace, request.name), None)
        if outcome is not None:
            status = {"conditions": v2_conditions(payload.get("kind", ""), *outcome),
                      "observedGeneration": payload["metadata"]["generation"]}  # fmt: skip
            self._stored(request).patch({"status": status})
        return payload


class V2Standin(Standin):
    """The running Seldon v2 stand-in (Models, Pipelines, Experiments)."""

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with SeldonV2Standin() as server, kmock.Server(server) as http:
            for resource in V2_RESOURCES.values():
                server.resources[resource] = {}
            self.server, self.url = server, str(http.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def objects(self, namespace: str) -> dict[str, dict[str, Any]]:
        """``Kind/name`` → the stored object, of every live v2 resource in ``namespace``."""

        def read() -> dict[str, dict[str, Any]]:
            found = {}
            for (_, ns, name), obj in self.server.objects.items():
                if ns == namespace and not obj.deleted and obj.raw.get("kind") in V2_RESOURCES:
                    found[f"{obj.raw['kind']}/{name}"] = copy.deepcopy(obj.raw)
            return found

        return self.call(read)

    def script(self, name: str, *outcomes: tuple[bool, str]) -> None:
        """The next rollouts of ``name`` end so (``(False, "ModelFailed ...")``: Seldon reports a failure)."""
        self.call(lambda: self.server.outcomes.setdefault(name, []).extend(outcomes))


# Pods (the Kaniko image build) ------------------------------------------------------------------

POD_RESOURCE = "v1/pods"


def pod_status(phase: str, *, reason: str = "", message: str = "", exit_code: int = 0) -> dict[str, Any]:
    """A pod status as the kubelet writes it for the one ``kaniko`` container: ``Pending`` (scheduled,
    waiting for its image), ``Running``, or ``Succeeded``/``Failed`` with the terminated state. The
    container's ``startedAt``/``finishedAt`` are stamped by ``KubeletStandin`` when it applies the status."""
    if phase == "Pending":
        state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
    elif phase == "Running":
        state = {"running": {}}
    else:
        terminated = {"exitCode": exit_code, "reason": reason or "Completed", "message": message or None}
        state = {"terminated": terminated}
    return {
        "phase": phase,
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{"name": "kaniko", "image": "kaniko", "imageID": "", "ready": phase == "Running",
                               "restartCount": 0, "state": state}],
    }  # fmt: skip


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


def _rfc3339(moment: datetime.datetime, nano: bool = False) -> str:
    """``2026-01-01T00:00:00Z`` (status times), ``2026-01-01T00:00:00.000123000Z`` (log lines: RFC3339Nano)."""
    moment = moment.astimezone(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{moment.microsecond:06d}000Z" if nano else "Z")


@attrs.define(kw_only=True)
class KubeletStandin(SeldonApiStandin):
    """The API server stand-in for pods, also playing the kubelet: each read of one pod
    (``GET …/pods/NAME``) first moves it to the next status scripted for its namespace (``phases``);
    the last status stays. Lists, writes and log reads move nothing. Applying a status, it stamps the
    container's ``startedAt``/``finishedAt`` with its clock (``now``) as the kubelet does; the provider
    reads a terminated container's logs only within ``post_termination_timeout`` of ``finishedAt``.

    ``GET …/pods/NAME/log`` serves the lines scripted for the pod's namespace and container (``logs``),
    whole (``follow`` ends when the script does), each prefixed with its RFC3339Nano time and a space when
    ``timestamps=true`` (times count from the container's ``startedAt``, 1 ms apart). As the API server:
    404 for a pod that does not exist, 400 for a container that is not the pod's or still waiting, or no
    ``container`` when the pod has several. ``sinceSeconds``/``tailLines``/``limitBytes`` are ignored."""

    phases: dict[str, list[dict[str, Any]]] = attrs.field(factory=dict)
    logs: dict[tuple[str, str], list[str]] = attrs.field(factory=dict)
    now: Callable[[], datetime.datetime] = attrs.field(default=_utcnow)
    started: dict[tuple[str, str, str], datetime.datetime] = attrs.field(factory=dict)

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        if (
            request.resource is not None
            and request.resource.plural == "pods"
            and request.subresource == "log"
        ):
            return await self._serve_log(request)
        return await super()._handle(request)

    async def _serve_fetch(self, request: Any) -> Any:
        script = self.phases.get(request.namespace) if request.resource.plural == "pods" else None
        if script and request.name and (request.resource, request.namespace, request.name) in self.objects:
            self._stored(request).patch(
                {"status": self._stamp(request.namespace, request.name, script.pop(0))}
            )
        return await super()._serve_fetch(request)

    def _stamp(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """``status`` with the times the kubelet writes: when each container started and finished."""
        status = copy.deepcopy(status)
        for container in status.get("containerStatuses") or []:
            state = container.get("state") or {}
            key = (namespace, name, container["name"])
            if "running" in state or "terminated" in state:
                started = self.started.setdefault(key, self.now())
                found = state.get("running") if "running" in state else state["terminated"]
                found.setdefault("startedAt", _rfc3339(started))
            if "terminated" in state:
                state["terminated"].setdefault("finishedAt", _rfc3339(self.now()))
        return status

    async def _serve_log(self, request: Any) -> aiohttp.web.StreamResponse:
        key = (request.resource, request.namespace, request.name)
        try:
            obj = self.objects[key]
        except KeyError:
            obj = None
        if obj is None or obj.deleted:
            raise KubernetesError(status=404, reason="NotFound", message=f'pods "{request.name}" not found')
        spec, status = obj.raw.get("spec") or {}, obj.raw.get("status") or {}
        names = [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
        container = request.params.get("container")
        if container is None and len(spec.get("containers") or []) == 1:
            container = spec["containers"][0]["name"]
        if container is None:
            raise KubernetesError(status=400, reason="BadRequest",
                                  message=f"a container name must be specified for pod {request.name}, "
                                          f"choose one of: {names}")  # fmt: skip
        if container not in names:
            raise KubernetesError(status=400, reason="BadRequest",
                                  message=f"container {container} is not valid for pod {request.name}")  # fmt: skip
        states = {c["name"]: c.get("state") or {} for c in (status.get("initContainerStatuses") or [])
                  + (status.get("containerStatuses") or [])}  # fmt: skip
        waiting = states.get(container, {"waiting": {"reason": "PodInitializing"}}).get("waiting")
        if waiting is not None:
            raise KubernetesError(status=400, reason="BadRequest",
                                  message=f'container "{container}" in pod "{request.name}" is waiting to start: '
                                          f"{waiting.get('reason', 'ContainerCreating')}")  # fmt: skip
        lines = self.logs.get((request.namespace, container), [])
        if str(request.params.get("timestamps", "")).lower() == "true":
            start = self.started.get((request.namespace, request.name, container)) or self.now()
            lines = [f"{_rfc3339(start + datetime.timedelta(milliseconds=i), nano=True)} {line}"
                     for i, line in enumerate(lines)]  # fmt: skip
        return aiohttp.web.Response(body="".join(f"{line}\n" for line in lines).encode(),
                                    content_type="text/plain", charset="utf-8")  # fmt: skip


class PodStandin(Standin):
    """The running pod stand-in: ``script`` the phases and the logs, read the pods and the requests."""

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with KubeletStandin() as server, kmock.Server(server) as http:
            server.resources[POD_RESOURCE] = {}
            self.server, self.url = server, str(http.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def script(self, namespace: str, *statuses: dict[str, Any]) -> None:
        """The statuses the next reads of a pod in ``namespace`` find, in order (see ``pod_status``)."""
        self.call(lambda: self.server.phases.setdefault(namespace, []).extend(statuses))

    def script_logs(self, namespace: str, *lines: str, container: str = "kaniko") -> None:
        """What ``container`` of a pod in ``namespace`` wrote, one line each (without the time)."""
        self.call(lambda: self.server.logs.setdefault((namespace, container), []).extend(lines))

    def log_reads(self, namespace: str) -> list[dict[str, str]]:
        """The query parameters of each ``GET …/pods/NAME/log`` in ``namespace`` served so far."""
        prefix = f"/api/v1/namespaces/{namespace}/pods/"
        return self.call(lambda: [dict(r.params) for r in self.server._requests
                                  if r.url.path.startswith(prefix) and r.url.path.endswith("/log")])  # fmt: skip

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        """The live (not deleted) pods in ``namespace``."""

        def read() -> list[dict[str, Any]]:
            return [copy.deepcopy(obj.raw) for (resource, ns, _), obj in self.server.objects.items()
                    if resource.plural == "pods" and ns == namespace and not obj.deleted]  # fmt: skip

        return self.call(read)
