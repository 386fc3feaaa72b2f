"""Checks every document pushbutton renders for Kubernetes before anything is applied.

Two layers, both raising ``SpecError`` (``where``: the document's kind and name; ``field``: the JSON
path; a fix):

- the CRD's schema: the ``spec.versions[*].schema.openAPIV3Schema`` of the CRD file matching the
  document's ``apiVersion``/``kind`` (``seldon-v1/`` and ``seldon-v2/`` of the schemas directory),
  checked with ``jsonschema``'s draft 4 validator (OpenAPI v3.0 schemas are close to it):
  ``nullable: true`` admits null, ``x-kubernetes-int-or-string`` admits an integer or a string, and
  an object with ``properties`` admits no other keys unless it says
  ``x-kubernetes-preserve-unknown-fields`` (what the API server's strict field validation, kubectl's
  default, does). A ``v1`` ``Pod`` (the Kaniko build pod) is checked against the PodSpec schema the
  SeldonDeployment CRD embeds in ``componentSpecs``.
- what a schema cannot say: a SeldonDeployment's answering predictors' traffic sums to 100, predictor
  names are unique, every graph node without ``implementation`` has its container, every image names
  a pinned tag or digest (never ``latest``); an Experiment's weights sum to 100 and its default is
  one of its candidates.

The schemas directory is ``PUSHBUTTON_SCHEMAS_DIR``, else ``<repository>/../shared/schemas``. A
directory given (argument or variable) that does not hold the CRD is an error; when the default
location is absent (a deployed platform, which does not ship Seldon's CRDs) the schema layer is
skipped with a warning: the API server checks the installed CRD anyway (its 422 becomes a
``SpecError`` in the runtime), and the second layer always runs.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from pushbutton.config import REPO_ROOT
from pushbutton.errors import SpecError, SpecIssue
from pushbutton.kube.image import image_problem

log = logging.getLogger(__name__)

SCHEMAS_VARIABLE = "PUSHBUTTON_SCHEMAS_DIR"
SCHEMAS_FIX = f"set {SCHEMAS_VARIABLE} to the directory holding seldon-v1/ and seldon-v2/ CRD files"
CRD_FILES = {
    (
        "machinelearning.seldon.io",
        "SeldonDeployment",
    ): "seldon-v1/seldondeployments.machinelearning.seldon.io.yaml",
    ("mlops.seldon.io", "Model"): "seldon-v2/models.mlops.seldon.io.yaml",
    ("mlops.seldon.io", "Pipeline"): "seldon-v2/pipelines.mlops.seldon.io.yaml",
    ("mlops.seldon.io", "Experiment"): "seldon-v2/experiments.mlops.seldon.io.yaml",
}
SELDON_V1 = ("machinelearning.seldon.io", "SeldonDeployment")
POD_SOURCE = (*SELDON_V1, "v1")  # its componentSpecs hold a PodSpec
MAX_ISSUES = 20


def default_schemas_dir() -> Path:
    return REPO_ROOT.parent / "shared" / "schemas"


def validate_manifest(doc: Mapping[str, Any], *, schemas_dir: Path | None = None) -> None:
    """``SpecError`` naming every problem of ``doc`` (JSON path, the schema's message, a fix)."""
    where = _where(doc)
    api_version, kind = str(doc.get("apiVersion") or ""), str(doc.get("kind") or "")
    group, _, version = api_version.rpartition("/")
    if kind == "Pod" and api_version == "v1":
        key: tuple[str, str, str] | None = POD_SOURCE
    elif (group, kind) in CRD_FILES:
        key = (group, kind, version)
    else:
        known = ", ".join(f"{g}/{k}" for g, k in CRD_FILES)
        raise SpecError(
            [
                SpecIssue(
                    where,
                    "$.kind",
                    f"no schema for {api_version or '?'} {kind or '?'}",
                    f"render one of {known}, or a v1 Pod",
                )
            ]
        )
    directory = _schemas_dir(schemas_dir)
    issues = []
    if directory is not None:
        issues += _schema_issues(doc, where, directory, key)
    issues += _pushbutton_issues(doc, where)
    if issues:
        raise SpecError(issues[:MAX_ISSUES])


def validate_all(docs: Iterable[Mapping[str, Any]], *, schemas_dir: Path | None = None) -> None:
    """``validate_manifest`` of each document, all problems in one ``SpecError``."""
    issues: list[SpecIssue] = []
    for doc in docs:
        try:
            validate_manifest(doc, schemas_dir=schemas_dir)
        except SpecError as exc:
            issues += exc.issues
    if issues:
        raise SpecError(issues)


# the CRD's schema -----------------------------------------------------------------------------


def _schemas_dir(given: Path | None) -> Path | None:
    configured = given if given is not None else os.environ.get(SCHEMAS_VARIABLE) or None
    directory = Path(configured) if configured else default_schemas_dir()
    if directory.is_dir():
        return directory
    if configured:
        raise SpecError([SpecIssue(str(directory), "", "the schemas directory does not exist", SCHEMAS_FIX)])
    log.warning("no CRD schemas at %s (%s); checking pushbutton's own rules only", directory, SCHEMAS_FIX)
    return None


def _schema_issues(doc: Mapping[str, Any], where: str, directory: Path, key: tuple[str, str, str]) -> list:
    if doc.get("kind") == "Pod":
        validator = _pod_validator(str(directory))
    else:
        validator = _validator(str(directory), *key)
    errors = [(list(error.absolute_path), error) for error in validator.iter_errors(doc)]
    if doc.get("kind") == "SeldonDeployment":
        node_validator = _graph_node_validator(str(directory), key[2])
        spec = doc.get("spec")
        predictors = spec.get("predictors") if isinstance(spec, Mapping) else None
        for index, predictor in enumerate(predictors if isinstance(predictors, list) else []):
            graph = predictor.get("graph") if isinstance(predictor, Mapping) else None
            for path, node in list(_graph_nodes(graph, ["spec", "predictors", index, "graph"]))[1:]:
                errors += [(path + list(e.absolute_path), e) for e in node_validator.iter_errors(node)]
    errors.sort(key=lambda item: list(map(str, item[0])))
    return [SpecIssue(where, _json_path(path), _message(error), _fix(error)) for path, error in errors]


@functools.lru_cache(maxsize=16)
def _crd(directory: str, group: str, kind: str) -> tuple[str, dict[str, Any]]:
    path = Path(directory) / CRD_FILES[(group, kind)]
    if not path.is_file():
        raise SpecError([SpecIssue(str(path), "", f"the CRD of {group} {kind} is missing", SCHEMAS_FIX)])
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the v1 CRD is 2.5 MB
    with path.open(encoding="utf-8") as handle:
        return str(path), yaml.load(handle, Loader=loader)


@functools.lru_cache(maxsize=16)
def _validator(directory: str, group: str, kind: str, version: str) -> Any:
    import jsonschema

    path, crd = _crd(directory, group, kind)
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    if version not in versions:
        raise SpecError(
            [
                SpecIssue(
                    f"{kind} document",
                    "$.apiVersion",
                    f"{path} defines no version '{version}'",
                    f"use apiVersion {group}/<one of {', '.join(versions)}>",
                )
            ]
        )
    schema = json_schema(versions[version]["schema"]["openAPIV3Schema"])
    return jsonschema.Draft4Validator(schema)


@functools.lru_cache(maxsize=4)
def _graph_node_validator(directory: str, version: str) -> Any:
    """The CRD checks a graph's root node only (``children`` is ``items: {}``): this checks the others."""
    import jsonschema

    root = _validator(directory, *SELDON_V1, version).schema
    node = root["properties"]["spec"]["properties"]["predictors"]["items"]["properties"]["graph"]
    return jsonschema.Draft4Validator(node)


@functools.lru_cache(maxsize=4)
def _pod_validator(directory: str) -> Any:
    import jsonschema

    _, crd = _crd(directory, POD_SOURCE[0], POD_SOURCE[1])
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == POD_SOURCE[2])["schema"]
    component = schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["predictors"]["items"]
    template = component["properties"]["componentSpecs"]["items"]["properties"]
    pod = {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"type": "string", "enum": ["v1"]},
            "kind": {"type": "string", "enum": ["Pod"]},
            "metadata": template["metadata"],
            "spec": template["spec"],
        },
    }
    return jsonschema.Draft4Validator(json_schema(pod))


def json_schema(openapi: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3.0 (Kubernetes structural) schema as a JSON schema draft 4 document."""
    node = {k: v for k, v in openapi.items() if k not in ("description", "nullable")}
    for key in ("properties", "patternProperties", "definitions"):
        if key in node:
            node[key] = {name: json_schema(sub) for name, sub in node[key].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), Mapping):
            node[key] = json_schema(node[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            node[key] = [json_schema(sub) for sub in node[key]]
    if node.get("x-kubernetes-int-or-string") and "type" not in node and "anyOf" not in node:
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    open_ended = "additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in node and not open_ended:
        node["additionalProperties"] = False  # the API server's strict field validation
    if openapi.get("nullable"):
        return {"anyOf": [{"type": "null"}, node]}
    return node


def _json_path(path: Iterable[Any]) -> str:
    text = "$"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _message(error: Any) -> str:
    if error.validator == "additionalProperties" and error.validator_value is False:
        return f"the CRD schema rejects it: {error.message}"
    return f"the CRD schema rejects {error.instance!r:.80}: {error.message}"


def _fix(error: Any) -> str:
    kind, value = error.validator, error.validator_value
    if kind == "type":
        return f"give a value of type {value}"
    if kind == "required":
        return "add the missing field"
    if kind == "additionalProperties":
        return "remove the field or correct its spelling (the CRD does not define it)"
    if kind == "enum":
        return f"use one of {', '.join(map(str, value))}"
    if kind == "pattern":
        return f"write a value matching {value}"
    return f"make it satisfy the schema's '{kind}: {value!r:.60}'"


# what the schema cannot say -------------------------------------------------------------------


def _where(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
    name = f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else meta.get("name")
    return f"{doc.get('kind') or 'document'} {name or '(unnamed)'}"


def _pushbutton_issues(doc: Mapping[str, Any], where: str) -> list[SpecIssue]:
    kind, spec = doc.get("kind"), doc.get("spec")
    if not isinstance(spec, Mapping):
        return [SpecIssue(where, "$.spec", "the document has no spec (an object)", "render it again")]
    if kind == "SeldonDeployment":
        return _seldon_deployment_issues(spec, where)
    if kind == "Experiment":
        return _experiment_issues(spec, where)
    if kind == "Pod":
        return _image_issues(where, "$.spec", spec.get("initContainers"), spec.get("containers"))
    return []


def _seldon_deployment_issues(spec: Mapping[str, Any], where: str) -> list[SpecIssue]:
    issues = []
    predictors = _dicts(spec.get("predictors"))
    names = [p.get("name") for p in predictors]
    for name in sorted({n for n in names if names.count(n) > 1}, key=str):
        issues.append(
            SpecIssue(
                where,
                "$.spec.predictors",
                f"predictor name '{name}' is used twice",
                "give each predictor its own name (champion, candidate)",
            )
        )
    answering = [p for p in predictors if not p.get("shadow")]
    total = sum(p.get("traffic") or 0 for p in answering if isinstance(p.get("traffic") or 0, int))
    if not answering:
        issues.append(
            SpecIssue(
                where,
                "$.spec.predictors",
                "every predictor is a shadow",
                "let one predictor answer requests (shadow: false, traffic 100)",
            )
        )
    elif total != 100:
        shares = ", ".join(f"{p.get('name')}: {p.get('traffic', 0)}" for p in answering)
        issues.append(
            SpecIssue(
                where,
                "$.spec.predictors[*].traffic",
                f"traffic of the answering predictors sums to {total} ({shares})",
                "make the non-shadow predictors' traffic sum to 100",
            )
        )
    for index, predictor in enumerate(predictors):
        at = f"$.spec.predictors[{index}]"
        containers: list[Any] = []
        for c_index, component in enumerate(_dicts(predictor.get("componentSpecs"))):
            pod = component.get("spec") if isinstance(component.get("spec"), Mapping) else {}
            containers += _dicts(pod.get("containers"))
            issues += _image_issues(
                where,
                f"{at}.componentSpecs[{c_index}].spec",
                pod.get("initContainers"),
                pod.get("containers"),
            )
        names_ = {c.get("name") for c in containers}
        for path, node in _graph_nodes(predictor.get("graph"), ["spec", "predictors", index, "graph"]):
            if not node.get("implementation") and node.get("name") not in names_:
                issues.append(
                    SpecIssue(
                        where,
                        _json_path([*path, "name"]),
                        f"graph node '{node.get('name')}' has no container of that name",
                        "add a container named after the node to componentSpecs",
                    )
                )
    return issues


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    """The objects of a list (the schema layer reports anything else)."""
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _graph_nodes(node: Any, path: list[Any]) -> Iterable[tuple[list[Any], Mapping[str, Any]]]:
    """Each node of a graph (a dict) with its path, parents first."""
    if isinstance(node, Mapping):
        yield path, node
        for index, child in enumerate(node.get("children") if isinstance(node.get("children"), list) else []):
            yield from _graph_nodes(child, [*path, "children", index])


def _image_issues(where: str, at: str, *groups: Any) -> list[SpecIssue]:
    issues = []
    for group, containers in zip(("initContainers", "containers"), groups, strict=True):
        for index, container in enumerate(_dicts(containers)):
            image = container.get("image")
            problem = image_problem(image) if isinstance(image, str) else "the container names no image"
            if problem:
                issues.append(SpecIssue(where, f"{at}.{group}[{index}].image", problem[0], problem[1]))
    return issues


def _experiment_issues(spec: Mapping[str, Any], where: str) -> list[SpecIssue]:
    issues = []
    candidates = _dicts(spec.get("candidates"))
    total = sum(c.get("weight") or 0 for c in candidates if isinstance(c.get("weight") or 0, int))
    if total != 100:
        issues.append(
            SpecIssue(
                where,
                "$.spec.candidates[*].weight",
                f"the candidates' weights sum to {total}",
                "make the weights percentages that sum to 100",
            )
        )
    default = spec.get("default")
    if default is not None and default not in {c.get("name") for c in candidates}:
        issues.append(
            SpecIssue(
                where,
                "$.spec.default",
                f"default '{default}' is not one of the candidates",
                "name the champion as default and list it among the candidates",
            )
        )
    return issues
