"""A ServingSpec as a Seldon Core v1 ``SeldonDeployment`` (``machinelearning.seldon.io/v1``).

One predictor per serving version (``champion``, ``candidate``) with its ``traffic`` share, or ``shadow:
true`` (Seldon copies every request to it and discards its answers). Each predictor's ``graph`` is its
version's inference graph (a single MODEL node unless ``model.yaml`` declares one): nodes without
``implementation`` (the model image runs seldon-core's python wrapper), ``endpoint: REST``, the node's
parameters (``model_uri``: the MLflow model baked into the image; the schema guard's
``model_class``/``inputs``/``guard_method`` on the nodes reading the graph's request), children.
``componentSpecs`` hold one container per node, named after it, running the version's image with
``MODEL_NAME``/``SERVICE_TYPE`` for that node, the spec's resources (CPU and memory requested, memory
also the limit) and ``replicas``. The entry node logs requests and responses to the platform's logger
service (``logger: {url, mode: all}``) when a logger URL is given and the model's logging is enabled.
The model's serving timeout becomes Seldon's ``seldon.io/rest-timeout``. Labels and annotations under
``pushbutton.io/`` name the model, each predictor's version and role, and the run.

The document is deterministic (no timestamps): the runtime hashes it to skip re-applying.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pushbutton.errors import SpecError, SpecIssue
from pushbutton.kube.graph import (
    MANAGED_BY,
    MODEL_LABEL,
    check_graph,
    deployment_annotations,
    graph_of,
    interface_and_parameters,
    lookup,
    predictor_labels,
    walk,
    worker_timeout,
)
from pushbutton.kube.image import image_problem
from pushbutton.serving.spec import Predictor, ServingSpec
from pushbutton.spec.model import GraphNode

API_VERSION = "machinelearning.seldon.io/v1"
KIND = "SeldonDeployment"


def render_seldon_deployment(
    spec: ServingSpec,
    *,
    images: Mapping[str, str],
    logger_url: str | None,
    run_id: str | None = None,
    graph: GraphNode | None = None,
    graphs: Mapping[str, GraphNode] | None = None,
) -> dict[str, Any]:
    """The SeldonDeployment serving ``spec``; ``images`` maps each predictor's name to its image.

    ``graph`` is the model's ``serving.graph`` (default: one MODEL node named ``model``); ``graphs``
    (by predictor name) a version's own graph, which wins over ``graph`` for that predictor."""
    where = f"{KIND} {spec.key}"
    roots = {p.name: graph_of(p, graphs, graph) for p in spec.predictors}
    for root in roots.values():
        check_graph(root, where)
    timeout_ms = int(max(p.timeout_seconds for p in spec.predictors) * 1000)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": spec.deployment,
            "namespace": spec.namespace,
            "labels": {MODEL_LABEL: spec.deployment, **MANAGED_BY},
            "annotations": deployment_annotations(spec, run_id),
        },
        "spec": {
            "name": spec.deployment,
            "protocol": "seldon",
            "annotations": {"seldon.io/rest-timeout": str(timeout_ms)},
            "predictors": [
                _predictor(p, lookup(images, p.name, where, "image"), logger_url, roots[p.name], where)
                for p in spec.predictors
            ],
        },
    }


def _predictor(
    predictor: Predictor, image: str, logger_url: str | None, root: GraphNode, where: str
) -> dict[str, Any]:
    problem = image_problem(image)
    if problem:
        raise SpecError([SpecIssue(where, f"images.{predictor.name}", *problem)])
    containers = [_container(node, predictor, image, root=root, where=where) for node in walk(root)]
    logger = {"url": logger_url, "mode": "all"} if logger_url and predictor.logging.enabled else None
    doc: dict[str, Any] = {
        "name": predictor.name,
        "traffic": predictor.traffic,
        "replicas": predictor.replicas,
        "labels": predictor_labels(predictor),
        "graph": _node(root, predictor, logger, root=root, where=where),
        "componentSpecs": [{"spec": {"containers": containers}}],
    }
    if predictor.shadow:
        doc["shadow"] = True
    return doc


def _node(
    node: GraphNode, predictor: Predictor, logger: dict[str, str] | None, *, root: GraphNode, where: str
) -> dict[str, Any]:
    _, parameters = interface_and_parameters(node, predictor, root=root, where=where)
    doc: dict[str, Any] = {
        "name": node.name,
        "type": node.type,
        "endpoint": {"type": "REST"},
        "parameters": parameters,
        "children": [_node(child, predictor, None, root=root, where=where) for child in node.children],
    }
    if logger:
        doc["logger"] = logger
    return doc


def _container(
    node: GraphNode, predictor: Predictor, image: str, *, root: GraphNode, where: str
) -> dict[str, Any]:
    interface, _ = interface_and_parameters(node, predictor, root=root, where=where)
    cpu, memory = predictor.resources.cpu, predictor.resources.memory
    return {
        "name": node.name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": "MODEL_NAME", "value": interface},
            {"name": "SERVICE_TYPE", "value": node.type},
            {"name": "PUSHBUTTON_WORKER_TIMEOUT", "value": worker_timeout(predictor)},
        ],
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
    }
