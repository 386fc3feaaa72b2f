"""A graph version on the local runtime: one seldon-core microservice per node plus its orchestrator.

A version whose ``model.yaml`` (in its code directory) declares ``serving.graph`` beyond the default
single MODEL node of the predict class is served node by node, as a SeldonDeployment serves it: each
node is a microservice (``Microservices.start`` with ``node=``: ``svc-<ns>.<model>.v<version>.<node>``,
the version's serving environment, the node's class from the model directory constructed with the
node's ``parameters``; a MODEL node also gets ``model_uri``, a MODEL node without ``class`` is the
predict class; the schema guard wraps each node that reads the graph's request, ``request_entries``,
as the Kubernetes renderer does),
and ``graph_server`` runs the graph over them under the version's own name
(``svc-<ns>.<model>.v<version>``). Its URL is what the gateway routes to and what the build-time test
step calls, so the graph is tested exactly as it serves. Its record lists its node services:
``Microservices.get`` sees the version only while all of them live, ``Microservices.stop`` stops
them with it, and a restart (``restore``) starts the whole graph again.

A version whose ``model.yaml`` cannot be read raises ``GraphSpecError``: a ``SpecError`` (the task
fails without retry, nothing is applied) with the loader's issues (file, line, field, fix).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pushbutton.config import REPO_ROOT
from pushbutton.errors import ServingError, SpecError, SpecIssue
from pushbutton.procs import STACK_MARKER, model_env
from pushbutton.serving.envs import ServingEnv
from pushbutton.serving.microservice import Microservice, Microservices, node_parameters, service_name
from pushbutton.spec.model import GraphNode

SPEC_FILE = "model.yaml"
# the seldon-core method through which a node type reads the message it gets (what the guard checks);
# a COMBINER's aggregate reads its children's answers, never the request, so it has none
READS_REQUEST = {
    "MODEL": "predict",
    "TRANSFORMER": "transform_input",
    "ROUTER": "route",
    "OUTPUT_TRANSFORMER": "transform_output",
}


class GraphSpecError(SpecError, ServingError):
    """A version's ``model.yaml`` declares no servable graph: a ``SpecError`` (Airflow fails the task
    without retry; the issues name file, line, field and fix) that is also a ``ServingError``, so the
    callers that collect serving errors per deployment (``LocalRuntime.restore``) keep doing so.
    ``context`` (which version, what to do) leads the message; ``issues`` stay the loader's."""

    def __init__(self, issues: list[SpecIssue], context: str = ""):
        super().__init__(issues)
        self.context = context
        if context:
            self.args = (f"{context}:\n{self.args[0]}",)


def request_entries(root: GraphNode) -> dict[str, str]:
    """The nodes that read the graph's request as it was sent, by name, each with the method that
    reads it: the schema guard checks the rows there (Seldon's executor order, ``graph.GraphExecutor``).
    The root reads it, unless it passes it on unread (a COMBINER; an OUTPUT_TRANSFORMER with children,
    which only sees their answer): then each child's entries do. A ROUTER's ``route`` reads the request
    before its chosen child gets the same rows, so the router alone is checked."""
    if root.type == "COMBINER" or (root.type == "OUTPUT_TRANSFORMER" and root.children):
        found: dict[str, str] = {}
        for child in root.children:
            found.update(request_entries(child))
        return found
    return {root.name: READS_REQUEST[root.type]}


def guard_parameters(node: GraphNode, root: GraphNode) -> list[dict[str, str]]:
    """The schema guard's parameters for ``node`` past ``model_class``/``inputs`` (seldon-core's typed
    list), none for its defaults (a MODEL root: ``predict``, probabilities in its tags). A MODEL that
    is not the root adds no probabilities: under a COMBINER its tags would pass for the ensemble's."""
    method = request_entries(root).get(node.name)
    if method is None:
        raise ValueError(f"graph node '{node.name}' does not read the graph's request; it is not guarded")
    params = [] if method == "predict" else [{"name": "guard_method", "value": method, "type": "STRING"}]
    if method == "predict" and node.name != root.name:
        params.append({"name": "guard_probabilities", "value": "false", "type": "BOOL"})
    return params


def is_graph(root: GraphNode, predict_class: str) -> bool:
    """Whether ``root`` is more than the predict class served alone (the default graph)."""
    return bool(root.children or root.type != "MODEL" or root.parameters) or root.class_ not in (
        None,
        predict_class,
    )


def version_graph(code_dir: str | Path, predict_class: str) -> GraphNode | None:
    """The graph the version in ``code_dir`` declares in its ``model.yaml``; None if it serves its
    predict class alone (or has no ``model.yaml``, as in hand-made code directories)."""
    from pushbutton.spec.loader import load_spec

    spec_file = Path(code_dir) / SPEC_FILE
    if not spec_file.is_file():
        return None
    try:
        root = load_spec(spec_file).serving.graph
    except SpecError as exc:  # the loader's issues already say file:line: field: problem (fix: ...)
        fix = "fix it in the model directory and register a new version; nothing was applied"
        raise GraphSpecError(exc.issues, f"cannot read the serving graph of {spec_file} ({fix})") from exc
    return root if is_graph(root, predict_class) else None


def graph_key(root: GraphNode | None) -> str:
    """What a record keeps of the graph it serves (compared by ``Microservice.serves``); '' for none."""
    return "" if root is None else json.dumps(root.model_dump(mode="json", by_alias=True), sort_keys=True)


def orchestrator_argv(config: Path, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "pushbutton.serving.graph_server", "--config", str(config),
            "--host", host, "--port", str(port)]  # fmt: skip


def start_graph(
    services: Microservices,
    env: ServingEnv,
    graph: GraphNode,
    *,
    namespace: str,
    model: str,
    version: str,
    code_dir: str | Path,
    class_ref: str,
    model_uri: str,
    inputs: Sequence[tuple[str, str, bool]] = (),
    request_timeout: float | None = None,
    workers: int | None = None,
    threads: int | None = None,
    timeout: float = 180.0,
) -> Microservice:
    """Start the version's node microservices (concurrently), then its orchestrator, each ready
    before this returns; on any failure nothing of the version is left running (``ServingError``
    names the node)."""
    name = service_name(namespace, model, version)
    # a previous orchestrator and its nodes (crashed, or stopped with the stack); their records stay
    # until this start succeeds, so a failed restart can be tried again by the next `pushbutton up`
    for previous in (name, *services.node_names(name)):
        services.group.stop(previous)
    nodes = [node for _, node in graph.walk()]
    entries = request_entries(graph) if inputs else {}  # the nodes behind the schema guard
    started: list[Microservice] = []
    try:
        with ThreadPoolExecutor(max_workers=min(4, len(nodes)), thread_name_prefix="graph-node") as pool:
            futures = [
                (node, pool.submit(
                    services.start, env, namespace=namespace, model=model, version=version, code_dir=code_dir,
                    class_ref=node.class_ or class_ref, model_uri=model_uri if node.type == "MODEL" else "",
                    inputs=inputs if node.name in entries else (),
                    request_timeout=request_timeout, workers=workers, threads=threads, timeout=timeout,
                    node=node.name, service_type=node.type, parameters=node_parameters(node.parameters)
                    + (guard_parameters(node, graph) if node.name in entries else []),
                ))
                for node in nodes
            ]  # fmt: skip
            errors = []
            for node, future in futures:
                try:
                    started.append(future.result())
                except ServingError as exc:
                    errors.append(f"graph node '{node.name}' ({node.type}): {exc}")
        if errors:
            raise ServingError(f"{name}: {len(errors)} graph node(s) failed to start: " + " | ".join(errors))
        config = graph_config(services, graph, started, namespace=namespace, model=model, version=version,
                              class_ref=class_ref, request_timeout=request_timeout)  # fmt: skip
        path = services.settings.home / "run" / "graphs" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2))
        child_env = model_env()
        child_env.update({STACK_MARKER: str(services.settings.home), "PYTHONPATH": str(REPO_ROOT),
                          "PYTHONUNBUFFERED": "1"})  # fmt: skip
        host = services.settings.host
        info, port, _ = services.launch(
            name, lambda http, _metrics: orchestrator_argv(path, host, http), child_env,
            services.settings.home, timeout, f"graph orchestrator over {[n.name for n in nodes]}",
            "see the log of the orchestrator and of the node it names",
        )  # fmt: skip
    except BaseException:
        for svc in started:
            services.stop(svc.name)
        raise
    svc = Microservice(
        name=name, namespace=namespace, model=model, version=version, model_uri=model_uri,
        class_ref=class_ref, code_dir=str(Path(code_dir).resolve()), env=str(env.path), host=host,
        http_port=port, metrics_port=0, pid=info.pid, log=info.log,
        inputs=tuple(tuple(entry) for entry in inputs), graph=graph_key(graph),
        nodes=tuple(s.name for s in started),
    )  # fmt: skip
    services.save(svc)
    return svc


def graph_config(
    services: Microservices,
    graph: GraphNode,
    started: Sequence[Microservice],
    *,
    namespace: str,
    model: str,
    version: str,
    class_ref: str,
    request_timeout: float | None,
) -> dict[str, Any]:
    """What the orchestrator reads (``graph_server.GraphServer`` and ``graph_log.node_log``)."""
    settings = services.settings
    by_node = {svc.node: svc for svc in started}
    name = service_name(namespace, model, version)
    return {
        "service": name,
        "namespace": namespace,
        "deployment": model,
        "version": version,
        "graph": graph.model_dump(mode="json", by_alias=True),
        "nodes": {node: svc.url for node, svc in by_node.items()},
        "classes": {node.name: node.class_ or class_ref for _, node in graph.walk()},
        "timeout_seconds": request_timeout,
        "logging": {
            "logger_url": settings.logger_url,
            "gateway_url": settings.gateway_url,
            "spool_dir": str(settings.home / "run" / "spool" / name),
        },
    }
