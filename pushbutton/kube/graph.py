"""What the Seldon v1 and v2 renderers share: the inference graph walked node by node, each node's
class and seldon-core parameters, and pushbutton's labels and annotations.

The graph comes from ``model.yaml``'s ``serving.graph`` (``GraphNode``: ``name``, ``type``,
``children``). A node's class is its own ``class_`` when the node declares one, else (a MODEL node)
the predictor's predict class. The model image holds the version's MLflow artifacts at
``ARTIFACTS_DIR`` (``pushbutton.kube.image``); MODEL nodes get it as their ``model_uri``. When the
predictor has an input schema, the nodes that read the graph's request as it was sent
(``graph_local.request_entries``: the root, or a COMBINER root's children, ...) run behind pushbutton's
schema guard, which checks the rows of the method their type reads them with (``predict``,
``transform_input``, ``route``, ``transform_output``), exactly as on the local runtime.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from pushbutton.errors import SpecError, SpecIssue
from pushbutton.kube.image import ARTIFACTS_DIR
from pushbutton.serving.graph_local import guard_parameters, request_entries
from pushbutton.serving.microservice import GUARD_INTERFACE, WORKER_TIMEOUT_MARGIN, seldon_interface
from pushbutton.serving.spec import Predictor, ServingSpec
from pushbutton.spec.model import GraphNode

PREFIX = "pushbutton.io"
MODEL_LABEL, VERSION_LABEL, ROLE_LABEL = f"{PREFIX}/model", f"{PREFIX}/version", f"{PREFIX}/role"
RUN_ANNOTATION = f"{PREFIX}/run-id"
MANAGED_BY = {"app.kubernetes.io/managed-by": "pushbutton"}


def walk(node: GraphNode) -> Iterator[GraphNode]:
    """``node`` and its descendants, depth first, parents before children."""
    yield node
    for child in node.children:
        yield from walk(child)


def check_graph(root: GraphNode, where: str) -> None:
    """Node names must be unique: Seldon matches nodes to containers (v1) and models (v2) by name."""
    seen: set[str] = set()
    for node in walk(root):
        if node.name in seen:
            raise SpecError(
                [
                    SpecIssue(
                        where,
                        "serving.graph",
                        f"graph node name '{node.name}' is used twice",
                        "give every graph node its own name",
                    )
                ]
            )
        seen.add(node.name)


def node_class(node: GraphNode, predictor: Predictor, where: str) -> str:
    """The node's ``module:Class``."""
    declared = getattr(node, "class_", None)
    if declared:
        return str(declared)
    if node.type == "MODEL":
        return predictor.class_ref
    raise SpecError(
        [
            SpecIssue(
                where,
                f"serving.graph node '{node.name}'",
                f"a {node.type} node names no class",
                "name its Python class (module:Class) in the model directory",
            )
        ]
    )


def interface_and_parameters(
    node: GraphNode, predictor: Predictor, *, where: str, root: GraphNode | None = None, entry: bool = False
) -> tuple[str, list[dict[str, str]]]:
    """Seldon's interface name (``module.Class``) and the node's parameters (Seldon's
    ``[{name, value, type}]``, passed to the class's constructor), as the local runtime starts it.

    ``root`` is the graph ``node`` belongs to (``entry=True`` without it: ``node`` is the root); a node
    reading its request (``request_entries``) runs behind the schema guard when the predictor has an
    input schema. Without either, the node runs its class alone."""
    class_ref = node_class(node, predictor, where)
    params: list[dict[str, str]] = []
    if node.type == "MODEL":
        params.append({"name": "model_uri", "value": ARTIFACTS_DIR, "type": "STRING"})
    for name, value in (getattr(node, "parameters", None) or {}).items():
        params.append(_parameter(name, value))
    interface = seldon_interface(class_ref)
    graph = root if root is not None else node if entry else None
    if graph is not None and predictor.inputs and node.name in request_entries(graph):
        interface = GUARD_INTERFACE
        inputs = [[f.name, f.type, f.nullable] for f in predictor.inputs]
        params += [
            {"name": "model_class", "value": class_ref, "type": "STRING"},
            {"name": "inputs", "value": json.dumps(inputs), "type": "STRING"},
            *guard_parameters(node, graph),
        ]
    return interface, params


def _parameter(name: str, value: Any) -> dict[str, str]:
    kind = {bool: "BOOL", int: "INT", float: "DOUBLE"}.get(type(value), "STRING")
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return {"name": str(name), "value": text, "type": kind}


def worker_timeout(predictor: Predictor) -> str:
    """``PUSHBUTTON_WORKER_TIMEOUT``: gunicorn's worker timeout past the version's serving timeout."""
    return str(int(predictor.timeout_seconds + WORKER_TIMEOUT_MARGIN))


def predictor_labels(predictor: Predictor) -> dict[str, str]:
    return {
        MODEL_LABEL: predictor.model,
        VERSION_LABEL: predictor.version,
        ROLE_LABEL: predictor.name,
        **MANAGED_BY,
    }


def deployment_annotations(spec: ServingSpec, run_id: str | None) -> dict[str, str]:
    """Which version plays which role, and the Airflow run that rendered the documents."""
    notes = {f"{PREFIX}/{p.name}-version": p.version for p in spec.predictors}
    if run_id:
        notes[RUN_ANNOTATION] = run_id
    return notes


def lookup(mapping: Mapping[str, str], key: str, where: str, what: str) -> str:
    value = mapping.get(key)
    if not value:
        raise SpecError(
            [
                SpecIssue(
                    where,
                    key,
                    f"no {what} for predictor '{key}'",
                    f"pass {what}s for {key} (got: {', '.join(mapping) or 'none'})",
                )
            ]
        )
    return value


def version_graphs(spec: ServingSpec) -> dict[str, GraphNode]:
    """The graph each predictor's version declares in its own ``model.yaml`` (in ``code_uri``, the
    version's downloaded code directory), decided as the local runtime decides it
    (``pushbutton.serving.graph_local.version_graph``); predictors serving their predict class alone
    (or without a code directory) are left out, so their documents stay single-model.

    A ``model.yaml`` that cannot be read raises ``GraphSpecError`` (a ``SpecError``: no retry) naming
    the version, with the loader's issues (file, line, field, fix), before anything is rendered."""
    from pushbutton.serving.graph_local import GraphSpecError, version_graph

    found: dict[str, GraphNode] = {}
    for predictor in spec.predictors:
        try:
            root = version_graph(predictor.code_uri, predictor.class_ref) if predictor.code_uri else None
        except GraphSpecError as exc:
            raise GraphSpecError(
                exc.issues,
                f"{predictor.model} version {predictor.version} ({predictor.name}): cannot read the serving "
                f"graph of its model.yaml in {predictor.code_uri} (fix it in the model directory and register "
                "a new version; nothing was applied, the deployment serves as before)",
            ) from exc
        if root is not None:
            found[predictor.name] = root
    return found


def graph_of(
    predictor: Predictor, graphs: Mapping[str, GraphNode] | None, default: GraphNode | None
) -> GraphNode:
    """The graph ``predictor`` serves: its own (``graphs``), else the shared one, else a lone MODEL node."""
    return (graphs or {}).get(predictor.name) or default or GraphNode()
