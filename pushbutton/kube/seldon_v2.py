"""A ServingSpec as Seldon Core v2 resources (``mlops.seldon.io/v1alpha1``).

- ``Model`` per graph node and version: ``<deployment>-v<version>`` for a single-node graph,
  ``<deployment>-v<version>-<node>`` otherwise; ``storageUri`` from ``storage_uris`` (keyed by
  predictor name; a multi-node graph takes ``<predictor>/<node>`` keys, else
  ``<storage uri of the predictor>/<node>``), ``requirements`` choosing the MLServer runtime
  (``mlflow`` for the built-in predict class, which serves the logged MLflow model as it is;
  ``python`` for a class of the model directory, whose storage must hold MLServer's
  ``model-settings.json``), the spec's memory and replicas, and ``logger.percent`` from the model's
  logging sample rate.
- ``Pipeline`` ``<deployment>-v<version>`` when the version's graph has more than one node (each
  version may declare its own graph; a single-model version beside a Pipeline gets a one-step one, its
  Model then named ``<deployment>-v<version>-<node>`` like a graph's: Seldon's scheduler refuses a
  step named like its pipeline, ``PipelineStepNameEqualsPipelineNameErr``):
  Seldon v1's graph semantics as steps (a TRANSFORMER/MODEL feeds its children; an OUTPUT_TRANSFORMER
  runs after its children; a COMBINER joins its children's outputs; a ROUTER's children are triggered by
  the router's output tensor named after the child, and the output joins ``any``).
- ``Experiment`` ``<deployment>`` when a candidate serves beside the champion: the answering
  versions as ``candidates`` weighted by traffic (``default``: the champion, so requests to the
  champion's name are split), a shadow as ``mirror`` at 100 percent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pushbutton.kube.graph import (
    MANAGED_BY,
    MODEL_LABEL,
    check_graph,
    deployment_annotations,
    graph_of,
    lookup,
    node_class,
    predictor_labels,
    walk,
)
from pushbutton.serving.spec import Predictor, ServingSpec
from pushbutton.spec.model import BUILTIN_PREDICT_MODULES, GraphNode

API_VERSION = "mlops.seldon.io/v1alpha1"


def render_seldon_v2(
    spec: ServingSpec,
    *,
    storage_uris: Mapping[str, str],
    run_id: str | None = None,
    graph: GraphNode | None = None,
    graphs: Mapping[str, GraphNode] | None = None,
) -> list[dict[str, Any]]:
    """Models (and Pipelines) of every serving version, then the Experiment splitting traffic.

    ``graphs`` (by predictor name) is a version's own graph, winning over ``graph`` for it. When one
    version is a Pipeline, a single-model version beside it gets a one-step Pipeline over its Model
    (``<deployment>-v<version>-<node>``: a step may not share its pipeline's name), so the Experiment
    splits Pipelines only (Seldon's candidates share one resourceType)."""
    where = f"Seldon v2 resources of {spec.key}"
    roots = {p.name: graph_of(p, graphs, graph) for p in spec.predictors}
    for root in roots.values():
        check_graph(root, where)
    any_pipeline = any(root.children for root in roots.values())
    docs: list[dict[str, Any]] = []
    for predictor in spec.predictors:
        root = roots[predictor.name]
        pipeline = bool(root.children)
        uri = lookup(storage_uris, predictor.name, where, "storage URI")
        for node in walk(root):
            node_uri = storage_uris.get(f"{predictor.name}/{node.name}") or f"{uri.rstrip('/')}/{node.name}"
            docs.append(_model(spec, predictor, node, uri if not pipeline else node_uri, any_pipeline, run_id,
                               where))  # fmt: skip
        if pipeline:
            docs.append(_pipeline(spec, predictor, root, run_id))
        elif any_pipeline:
            docs.append(_single_step_pipeline(spec, predictor, root, run_id))
    if len(spec.predictors) > 1:
        docs.append(_experiment(spec, "pipeline" if any_pipeline else "model", run_id))
    return docs


def resource_name(spec: ServingSpec, predictor: Predictor, node: GraphNode | None = None) -> str:
    """The Model (``node`` given, multi-node graph) or the Model/Pipeline serving ``predictor``."""
    base = f"{spec.deployment}-v{predictor.version}"
    return f"{base}-{node.name}" if node is not None else base


def _metadata(spec: ServingSpec, name: str, labels: dict[str, str], run_id: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": spec.namespace, "labels": labels}
    annotations = deployment_annotations(spec, run_id)
    if annotations:
        meta["annotations"] = annotations
    return meta


def _model(
    spec: ServingSpec,
    predictor: Predictor,
    node: GraphNode,
    storage_uri: str,
    in_pipeline: bool,
    run_id: str | None,
    where: str,
) -> dict[str, Any]:
    """The Model of ``node``: named after the version alone when the version is served as a Model,
    after the version and the node when a Pipeline serves it (its steps)."""
    class_ref = node_class(node, predictor, where)
    builtin = class_ref.partition(":")[0] in BUILTIN_PREDICT_MODULES
    body: dict[str, Any] = {
        "storageUri": storage_uri,
        "requirements": ["mlflow"] if builtin and node.type == "MODEL" else ["python"],
        "memory": predictor.resources.memory,
        "replicas": predictor.replicas,
    }
    logging = predictor.logging
    percent = round(logging.sample_rate * 100) if logging.enabled else 0
    if percent:
        body["logger"] = {"percent": percent}
    labels = {**predictor_labels(predictor), "pushbutton.io/node": node.name}
    name = resource_name(spec, predictor, node if in_pipeline else None)
    return {
        "apiVersion": API_VERSION,
        "kind": "Model",
        "metadata": _metadata(spec, name, labels, run_id),
        "spec": body,
    }


def _pipeline(spec: ServingSpec, predictor: Predictor, root: GraphNode, run_id: str | None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []

    def name(node: GraphNode) -> str:
        return resource_name(spec, predictor, node)

    def add(node: GraphNode, inputs: list[str], triggers: list[str]) -> tuple[list[str], bool]:
        """Steps of the subgraph at ``node``, fed ``inputs`` (none: the pipeline's inputs) and run
        only when ``triggers`` exist; its output steps, and whether a router inside it may leave some
        of them without output (so joins over them must be ``any``)."""
        step: dict[str, Any] = {"name": name(node)}
        if triggers:
            step["triggers"] = triggers
        if node.type in ("COMBINER", "OUTPUT_TRANSFORMER"):  # children first, on the same inputs
            joined, partial = [], False
            for child in node.children:
                out, maybe = add(child, inputs, triggers)
                joined, partial = joined + out, partial or maybe
            step["inputs"] = joined
            if partial:
                step["inputsJoinType"] = "any"
            steps.append(step)
            return [step["name"]], False
        if inputs:
            step["inputs"] = inputs
        steps.append(step)
        if not node.children:
            return [step["name"]], False
        router = node.type == "ROUTER"
        outputs, partial = [], router
        for child in node.children:
            if router:  # the router passes its input on to the child its output tensor names
                out, maybe = add(child, inputs, [f"{step['name']}.outputs.{child.name}"])
            else:
                out, maybe = add(child, [step["name"]], [])
            outputs, partial = outputs + out, partial or maybe
        return outputs, partial

    outputs, partial = add(root, [], [])
    labels = predictor_labels(predictor)
    return {
        "apiVersion": API_VERSION,
        "kind": "Pipeline",
        "metadata": _metadata(spec, resource_name(spec, predictor), labels, run_id),
        "spec": {"steps": steps, "output": {"steps": outputs, "stepsJoin": "any" if partial else "inner"}},
    }


def _single_step_pipeline(
    spec: ServingSpec, predictor: Predictor, node: GraphNode, run_id: str | None
) -> dict[str, Any]:
    """A Pipeline ``<deployment>-v<version>`` serving ``predictor``'s single Model (``node``'s) as it is."""
    step = resource_name(spec, predictor, node)
    return {
        "apiVersion": API_VERSION,
        "kind": "Pipeline",
        "metadata": _metadata(spec, resource_name(spec, predictor), predictor_labels(predictor), run_id),
        "spec": {"steps": [{"name": step}], "output": {"steps": [step]}},
    }


def _experiment(spec: ServingSpec, resource_type: str, run_id: str | None) -> dict[str, Any]:
    answering = [p for p in spec.predictors if not p.shadow]
    champion = spec.predictor("champion") or answering[0]
    body: dict[str, Any] = {
        "default": resource_name(spec, champion),
        "resourceType": resource_type,
        "candidates": [{"name": resource_name(spec, p), "weight": p.traffic} for p in answering],
    }
    shadow = next((p for p in spec.predictors if p.shadow), None)
    if shadow is not None:
        body["mirror"] = {"name": resource_name(spec, shadow), "percent": 100}
    labels = {MODEL_LABEL: spec.deployment, **MANAGED_BY}
    return {
        "apiVersion": API_VERSION,
        "kind": "Experiment",
        "metadata": _metadata(spec, spec.deployment, labels, run_id),
        "spec": body,
    }
