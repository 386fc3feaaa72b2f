"""Model versions served as real seldon-core microservices, one process group each.

A microservice is seldon-core's ``seldon-core-microservice module.Class --service-type MODEL``
started in the model's code directory with ``model_uri`` passed as a Seldon constructor parameter,
through ``pushbutton_serve`` (``runtime/seldon``), which binds its servers to the platform's host
(seldon itself binds every interface). Given the
model's input schema, the interface is ``pushbutton_guard.Guarded`` (also ``runtime/seldon``), which
answers requests that do not fit the schema with a 400 before the model class sees them. A spec
without a predict class is served by a built-in one from ``runtime/seldon`` too
(``pushbutton_sklearn.SklearnModel``), found through the process's ``PYTHONPATH`` (spec checks refuse a
model module of the same name, which would shadow it from the working directory). Its
name is ``svc-<namespace>.<model>.v<version>`` (dots, because DNS-safe names hold dashes:
``team-a``/``iris`` and ``team``/``a-iris`` must not share one); pid files and logs live with the
platform's other processes (``<home>/run``, ``<home>/logs``) and a small metadata file (ports, model
URI, code directory, env) in ``<home>/run/services`` lets a later process find and reuse it.

seldon-core 1.18 exposes ``/health/ping`` (liveness: answers ``pong`` once gunicorn serves) and
``/health/status`` (runs the wrapper's health path against the loaded model object). Readiness
waits for ``/health/status``; the gateway probes ``/health/ping``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pushbutton.config import Settings
from pushbutton.errors import ServingError, StackError
from pushbutton.procs import (
    STACK_MARKER,
    ProcessGroup,
    ProcInfo,
    http_ok,
    listens_in_group,
    model_env,
    port_free,
    tail,
    wait_ready,
)
from pushbutton.serving.envs import ServingEnv

SERVICE_PREFIX = "svc-"
READY_PATH = "/health/status"
PING_PATH = "/health/ping"
PREDICT_PATH = "/api/v1.0/predictions"
WORKER_TIMEOUT_VARIABLE = "PUSHBUTTON_WORKER_TIMEOUT"  # read by the launcher, pushbutton_serve
WORKER_TIMEOUT_MARGIN = 10.0  # seconds past the gateway's timeout before gunicorn restarts a busy worker
RUNTIME_DIR = Path(__file__).resolve().parent / "runtime" / "seldon"  # on the microservice's PYTHONPATH
LAUNCHER = "pushbutton_serve"
GUARD_INTERFACE = "pushbutton_guard.Guarded"
READY_TIMEOUT = 180.0


def service_name(namespace: str, model: str, version: str) -> str:
    """Unique per (namespace, model, version): the spec's names are DNS labels, which never hold a dot."""
    return f"{SERVICE_PREFIX}{namespace}.{model}.v{version}"


def seldon_interface(class_ref: str) -> str:
    """``predict:IrisClassifier`` (spec form) -> ``predict.IrisClassifier`` (Seldon's CLI form)."""
    module, sep, cls = class_ref.partition(":")
    return f"{module}.{cls}" if sep else class_ref


def node_parameters(parameters: Mapping[str, Any]) -> list[dict[str, str]]:
    """A graph node's ``parameters`` as seldon-core's typed ``--parameters`` list (the constructor's kwargs)."""
    kinds = {bool: "BOOL", int: "INT", float: "DOUBLE"}
    return [
        {"name": str(name), "value": str(value).lower() if isinstance(value, bool) else str(value),
         "type": kinds.get(type(value), "STRING")}
        for name, value in parameters.items()
    ]  # fmt: skip


def microservice_argv(
    env: ServingEnv,
    class_ref: str,
    model_uri: str,
    *,
    host: str,
    http_port: int,
    metrics_port: int,
    grpc_port: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
    inputs: Sequence[tuple[str, str, bool]] = (),
    service_type: str = "MODEL",
    parameters: Sequence[Mapping[str, str]] = (),
) -> list[str]:
    """The seldon-core 1.18 command line behind the launcher that binds ``host``; gRPC is off
    unless ``grpc_port`` is given.

    ``workers``/``threads`` left at None fall back to seldon's own defaults, which read
    ``GUNICORN_WORKERS``/``GUNICORN_THREADS`` from the environment (1 and 1 when unset).
    With ``inputs`` (``(name, type, nullable)`` triples) the model class runs behind the schema guard.
    Both launcher and guard need ``RUNTIME_DIR`` on the process's ``PYTHONPATH``.
    A graph node (``graph_local``) passes its ``service_type`` and its typed ``parameters``
    (``node_parameters``); only MODEL nodes get a ``model_uri`` (empty: none is passed).
    """
    params = [{"name": "model_uri", "value": model_uri, "type": "STRING"}] if model_uri else []
    params += [dict(p) for p in parameters]
    interface = seldon_interface(class_ref)
    if inputs:
        interface = GUARD_INTERFACE
        params += [
            {"name": "model_class", "value": class_ref, "type": "STRING"},
            {"name": "inputs", "value": json.dumps([list(i) for i in inputs]), "type": "STRING"},
        ]
    argv = [
        str(env.bin("python")),
        "-m",
        LAUNCHER,
        "--bind-host",
        host,
        interface,
        "--service-type",
        service_type,
        "--parameters",
        json.dumps(params),
        "--http-port",
        str(http_port),
        "--metrics-port",
        str(metrics_port),
        "--log-level",
        "INFO",
    ]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    if grpc_port is None:
        argv += ["--grpc-workers", "0"]
    else:
        argv += ["--grpc-port", str(grpc_port)]
    return argv


@dataclass(frozen=True)
class Microservice:
    """A started microservice as recorded in its metadata file."""

    name: str
    namespace: str
    model: str
    version: str
    model_uri: str
    class_ref: str
    code_dir: str
    env: str
    host: str
    http_port: int
    metrics_port: int
    pid: int
    log: str
    inputs: tuple[tuple[str, str, bool], ...] = ()  # the schema guard's; empty: the class serves unguarded
    node: str = ""  # a graph node's service (``<version's name>.<node>``): part of its version, not listed
    graph: str = ""  # a graph version's orchestrator: the graph (JSON) it runs over ``nodes``
    nodes: tuple[str, ...] = ()  # the node services of a graph version

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def serves(self, model_uri: str, class_ref: str, code_dir: str, graph: str = "") -> bool:
        """Whether this process serves exactly that model build (artifacts, class, code).

        The environment is not compared: a version's requirements are immutable, so its env key
        changes only with the platform (an MLflow upgrade, another serving Python). A running version
        keeps the env it started in rather than becoming impossible to route to after an upgrade."""
        return (self.model_uri, self.class_ref, self.code_dir, self.graph) == (
            model_uri,
            class_ref,
            str(Path(code_dir).resolve()),
            graph,
        )


PORT_ATTEMPTS = 3
PORT_TAKEN = "Connection in use"  # gunicorn's log line when its port was taken (it retries 5 s, exits)


def _free_ports(count: int) -> list[int]:
    """Distinct ports free on all interfaces (so whichever host the service binds)."""
    import socket

    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("0.0.0.0", 0))
            port = sock.getsockname()[1]
        if port not in ports and port_free("0.0.0.0", port):
            ports.append(port)
    return ports


def _child_env(settings: Settings) -> dict[str, str]:
    env = model_env()
    env[STACK_MARKER] = str(settings.home)  # `pushbutton down` finds it even when started outside the stack
    env["PYTHONPATH"] = str(RUNTIME_DIR)
    env.setdefault("MLFLOW_TRACKING_URI", settings.mlflow_url)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONNOUSERSITE"] = "1"
    return env


class Microservices:
    """The ``svc-*`` processes of one platform home."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.group = ProcessGroup(settings.home / "run", settings.home / "logs")
        self.meta_dir = settings.home / "run" / "services"

    def _meta(self, name: str) -> Path:
        return self.meta_dir / f"{name}.json"

    def get(self, name: str) -> Microservice | None:
        """The microservice called ``name`` if its process is alive."""
        info = self.group.get(name)
        if info is None or not info.alive():
            return None
        svc = self._record(name)
        if svc is None or svc.pid != info.pid:
            return None
        # a graph version is up only with every node: a dead node makes the version start afresh
        return svc if all(self._alive(node) for node in svc.nodes) else None

    def _alive(self, name: str) -> bool:
        info = self.group.get(name)
        return info is not None and info.alive()

    def list(
        self, namespace: str | None = None, model: str | None = None, *, dead: bool = False
    ) -> list[Microservice]:
        """Running microservices (with ``dead=True`` also recorded ones whose process has died)."""
        found = []
        names = set(self.group.names())
        if dead:  # records of services stopped with the stack have no pid file any more
            names |= {path.stem for path in self.meta_dir.glob(f"{SERVICE_PREFIX}*.json")}
        for name in sorted(names):
            if not name.startswith(SERVICE_PREFIX):
                continue
            svc = self._record(name) if dead else self.get(name)
            if svc and not svc.node and namespace in (None, svc.namespace) and model in (None, svc.model):
                found.append(svc)
        return found

    def _record(self, name: str) -> Microservice | None:
        try:
            record = json.loads(self._meta(name).read_text())
            record["inputs"] = tuple(tuple(entry) for entry in record.get("inputs", ()))
            record["nodes"] = tuple(record.get("nodes", ()))
            return Microservice(**record)
        except (OSError, ValueError, TypeError, AttributeError):
            return None

    def healthy(self, svc: Microservice, timeout: float = 2.0) -> bool:
        return http_ok(svc.url + READY_PATH, timeout=timeout)()

    def wait_healthy(self, svc: Microservice, timeout: float = READY_TIMEOUT) -> None:
        """Return once ``svc`` answers its readiness check; ``ServingError`` if it dies or stays silent."""
        info = self.group.get(svc.name)
        if info is None:
            raise ServingError(f"microservice {svc.name} has no pid file; it is not running")
        try:
            wait_ready(info, http_ok(svc.url + READY_PATH), timeout, f"microservice {svc.name}")
        except StackError as exc:
            raise ServingError(f"{svc.name} (pid {svc.pid}) is not healthy: {exc}") from exc

    def start(
        self,
        env: ServingEnv,
        *,
        namespace: str,
        model: str,
        version: str,
        code_dir: str | Path,
        class_ref: str,
        model_uri: str,
        workers: int | None = None,
        threads: int | None = None,
        timeout: float = READY_TIMEOUT,
        inputs: Sequence[tuple[str, str, bool]] = (),
        request_timeout: float | None = None,
        node: str = "",
        service_type: str = "MODEL",
        parameters: Sequence[Mapping[str, str]] = (),
    ) -> Microservice:
        """Start (replacing any process of that name) and wait until ready.

        ``request_timeout`` (the version's ``serving.timeout_seconds``) sets gunicorn's worker timeout
        to that plus ``WORKER_TIMEOUT_MARGIN``: seldon's own default (5 s) killed a worker answering a
        request the gateway still waited for; unset, the launcher's default applies.

        ``inputs`` (the spec's ``(name, type, nullable)`` triples) put the model class behind the schema guard.

        ``workers``/``threads`` default to seldon's (``GUNICORN_WORKERS``/``GUNICORN_THREADS``,
        else 1 and 1: one sync worker, as measured best for small models at 200 req/s on 2 cores).

        ``node`` names a graph node: the service is ``<version's name>.<node>``, of type
        ``service_type`` with the node's seldon ``parameters`` (``graph_local`` starts them).

        On failure the process group is stopped and ``ServingError`` carries the log tail.
        """
        name = service_name(namespace, model, version) + (f".{node}" if node else "")
        code = Path(code_dir).resolve()
        if not code.is_dir():
            raise ServingError(
                f"code directory {code} of {name} does not exist; check the predictor's code_uri"
            )
        # a dead predecessor may have left its pid file or an orphaned child; its record stays until
        # this start succeeds, so a failed restart can be tried again by the next `pushbutton up`
        self.group.stop(name)
        child_env = _child_env(self.settings)
        if request_timeout:
            child_env[WORKER_TIMEOUT_VARIABLE] = str(int(request_timeout + WORKER_TIMEOUT_MARGIN))

        def argv(http_port: int, metrics_port: int) -> list[str]:
            return microservice_argv(
                env, class_ref, model_uri, host=self.settings.host, http_port=http_port,
                metrics_port=metrics_port, workers=workers, threads=threads, inputs=inputs,
                service_type=service_type, parameters=parameters,
            )  # fmt: skip

        what = f"{seldon_interface(class_ref)} from {code}" + (
            f", model_uri={model_uri}" if model_uri else ""
        )
        info, http_port, metrics_port = self.launch(
            name, argv, child_env, code, timeout, what, "fix the model class or its requirements"
        )
        svc = Microservice(
            name=name, namespace=namespace, model=model, version=version, model_uri=model_uri,
            class_ref=class_ref, code_dir=str(code), env=str(env.path), host=self.settings.host,
            http_port=http_port, metrics_port=metrics_port, pid=info.pid, log=info.log,
            inputs=tuple(tuple(entry) for entry in inputs), node=node,
        )  # fmt: skip
        self.save(svc)
        return svc

    def launch(
        self,
        name: str,
        argv: Callable[[int, int], list[str]],
        env: dict[str, str],
        cwd: Path,
        timeout: float,
        what: str,
        fix: str,
    ) -> tuple[ProcInfo, int, int]:
        """Start ``argv(http_port, metrics_port)`` as ``name`` on free ports and wait until its
        ``READY_PATH`` answers (new ports if another process took them first); ``ServingError``
        (``what`` says which service, ``fix`` what to do) with the group stopped if it does not come up."""
        for attempt in range(PORT_ATTEMPTS):
            http_port, metrics_port = _free_ports(2)
            info = self._spawn(name, argv(http_port, metrics_port), env, cwd)
            url = f"http://{self.settings.host}:{http_port}"
            try:
                wait_ready(info, http_ok(url + READY_PATH), timeout, f"microservice {name}")
                if listens_in_group(info.pgid, http_port) is False:
                    # the answer came from another server that took the port first; ours cannot bind
                    raise StackError(f"{PORT_TAKEN}: port {http_port} answers, but not from {name}")
                return info, http_port, metrics_port
            except StackError as exc:
                self.group.stop(name, timeout=10)
                taken = PORT_TAKEN in str(exc) or PORT_TAKEN in tail(info.log, 200)
                if taken and attempt + 1 < PORT_ATTEMPTS:
                    continue  # another process took a port between picking and binding: new ports
                raise ServingError(f"microservice {name} ({what}) failed to start; {fix}. {exc}") from exc
            except BaseException:  # e.g. the Airflow task was killed: leave no process behind
                self.group.stop(name, timeout=10)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def save(self, svc: Microservice) -> None:
        """Write ``svc``'s record (atomically: a reader sees the old one or the new one)."""
        self.meta_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._meta(svc.name).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(svc), indent=2))
        tmp.replace(self._meta(svc.name))

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], code: Path) -> ProcInfo:
        """Start one attempt, keeping the previous attempt's log as ``<name>.log.1``."""
        log = self.group.log_dir / f"{name}.log"
        if log.exists():  # the tail on failure then shows only this start
            log.replace(log.with_suffix(".log.1"))
        try:
            return self.group.start(name, argv, env=env, cwd=code)
        except (OSError, StackError) as exc:
            raise ServingError(f"cannot start {name}: {exc}") from exc

    def stop(self, name: str, timeout: float = 20.0) -> bool:
        """Stop the process group of ``name`` (a graph version: its node services too); True if it was running."""
        was_running = self.group.stop(name, timeout)
        self._meta(name).unlink(missing_ok=True)
        for node in self.node_names(name):
            self.group.stop(node, timeout)
            self._meta(node).unlink(missing_ok=True)
        return was_running

    def node_names(self, name: str) -> list[str]:
        """The node services of version ``name`` that are running or recorded (``<name>.<node>``)."""
        found = {n for n in self.group.names() if n.startswith(name + ".")}
        found |= {p.stem for p in self.meta_dir.glob(f"{name}.*.json")}
        return sorted(n for n in found if "." not in n[len(name) + 1 :])

    def stop_all(self) -> list[str]:
        return [n for n in self.group.names() if n.startswith(SERVICE_PREFIX) and self.stop(n)]

    def suspend_all(self) -> list[str]:
        """Stop every microservice but keep its record, so that it can be started again as it was."""
        names = [n for n in self.group.names() if n.startswith(SERVICE_PREFIX)]
        return [n for n in names if self.group.stop(n)]

    def log_tail(self, name: str, lines: int = 30) -> str:
        return tail(self.group.log_dir / f"{name}.log", lines)
