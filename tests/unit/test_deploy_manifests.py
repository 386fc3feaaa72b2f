"""deploy/: the Kubernetes manifests of the parts we own, the Elasticsearch ILM wiring and the Kibana
saved objects. Documents only: no cluster, Elasticsearch or Kibana runs here. The Kubernetes documents
are checked field by field against the official ``kubernetes`` client's models (unknown or missing
required fields fail), the probes against the routes the services really serve.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pushbutton import deploycheck as dc
from pushbutton.config import REPO_ROOT
from pushbutton.monitoring.store import es_layout as L

DEPLOY = REPO_ROOT / "deploy"
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
NDJSON = DEPLOY / "kibana" / "pushbutton-indicators.ndjson"
MODELS = {"Deployment": "V1Deployment", "Service": "V1Service", "Secret": "V1Secret",
          "PersistentVolumeClaim": "V1PersistentVolumeClaim"}  # fmt: skip


def _documents() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, doc) for path in K8S for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _documents() if doc["kind"] == kind]


def unknown_fields(data: Any, type_name: str, path: str) -> list[str]:
    """Fields of ``data`` that the kubernetes client's model ``type_name`` does not have (recursively)."""
    import kubernetes.client.models as models

    if type_name.startswith("list["):
        return [
            p
            for i, item in enumerate(data or [])
            for p in unknown_fields(item, type_name[5:-1], f"{path}[{i}]")
        ]
    if type_name.startswith("dict("):
        inner = type_name[type_name.index(",") + 1 : -1].strip()
        return [p for key, item in (data or {}).items() for p in unknown_fields(item, inner, f"{path}.{key}")]
    klass = getattr(models, type_name, None)
    if klass is None:  # str, int, object (int-or-string), datetime ...
        return []
    if not isinstance(data, dict):
        return [f"{path}: not an object ({type_name})"]
    attributes = {json_name: attr for attr, json_name in klass.attribute_map.items()}
    problems = []
    for key, value in data.items():
        if key not in attributes:
            problems.append(f"{path}.{key}: not a field of {type_name}")
        else:
            problems += unknown_fields(value, klass.openapi_types[attributes[key]], f"{path}.{key}")
    return problems


def k8s_problems(doc: dict[str, Any], where: str) -> list[str]:
    """Unknown fields, then the client's own required-field checks (deserialising into its model)."""
    from kubernetes.client import ApiClient

    model = MODELS.get(doc.get("kind", ""))
    if model is None:
        return [f"{where}: kind {doc.get('kind')!r} is not one these tests know (fix: add it to MODELS)"]
    problems = unknown_fields(doc, model, where)

    class Response:
        data = json.dumps(doc)

    try:
        ApiClient().deserialize(Response(), model)
    except (ValueError, TypeError) as exc:
        problems.append(f"{where}: {exc}")
    return problems


# -- Kubernetes ------------------------------------------------------------------------------


def test_there_are_manifests_for_gateway_logger_and_connections() -> None:
    names = {(doc["kind"], doc["metadata"]["name"]) for _, doc in _documents()}
    assert {("Deployment", "pushbutton-gateway"), ("Service", "pushbutton-gateway"),
            ("Deployment", "pushbutton-logger"), ("Service", "pushbutton-logger"),
            ("Secret", "pushbutton-airflow-connections")} <= names  # fmt: skip


@pytest.mark.parametrize(("name", "doc"), _documents(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_every_manifest_is_a_valid_kubernetes_object(name: str, doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
    assert k8s_problems(doc, name) == []


def test_the_model_check_fails_on_a_broken_manifest() -> None:
    deployment = copy.deepcopy(_kind("Deployment")[0])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")  # a typo
    del container["name"]  # required
    problems = k8s_problems(deployment, "x.yaml")
    assert any("containers[0].readinesProbe: not a field of V1Container" in p for p in problems)
    assert any("name" in p and "must not be `None`" in p for p in problems)


def _routes(command: list[str], tmp: Path) -> set[str]:
    """The GET paths of the service the container runs, from its real aiohttp application."""
    if command[:3] == ["python", "-m", "pushbutton.serving.gateway"]:
        from pushbutton.serving.gateway import Gateway

        app = Gateway(tmp / "routes.json").app()
    elif command[:2] == ["pushbutton", "logger"]:
        from pushbutton.monitoring.logger import RequestLogger
        from pushbutton.monitoring.store import open_store

        app = RequestLogger(open_store(f"sqlite:///{tmp / 'monitoring.db'}")).app()
    else:
        raise AssertionError(f"unknown service command {command}")
    return {r.canonical for r in app.router.resources() if any(x.method == "GET" for x in r)}


@pytest.mark.parametrize("deployment", _kind("Deployment"), ids=lambda d: d["metadata"]["name"])
def test_deployments_pin_images_request_resources_and_probe_the_real_health_path(
    deployment: dict[str, Any], tmp_path: Path
) -> None:
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        assert dc.image_problem(container["image"]) is None
        requests = container["resources"]["requests"]
        assert requests.get("cpu") and requests.get("memory")
        probe = container["readinessProbe"]["httpGet"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        command = container["command"]
        assert ports[probe["port"]] == int(command[command.index("--port") + 1])
        assert probe["path"] == "/health" and probe["path"] in _routes(command, tmp_path)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_services_select_their_deployment_and_the_gateway_logs_to_the_logger_service() -> None:
    deployments = {d["metadata"]["name"]: d for d in _kind("Deployment")}
    for service in _kind("Service"):
        pods = deployments[service["metadata"]["name"]]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pods.items()
    gateway = deployments["pushbutton-gateway"]["spec"]["template"]["spec"]["containers"][0]["command"]
    logger = next(s for s in _kind("Service") if s["metadata"]["name"] == "pushbutton-logger")
    assert (
        gateway[gateway.index("--logger-url") + 1]
        == f"http://pushbutton-logger:{logger['spec']['ports'][0]['port']}"
    )


def test_image_pinning_fails_on_latest() -> None:
    assert "not pinned" in (dc.image_problem("pushbutton/platform:latest") or "")
    assert "no tag" in (dc.image_problem("pushbutton/platform") or "")


def test_the_connection_secret_holds_placeholders_only() -> None:
    secrets = _kind("Secret")
    assert secrets
    for secret in secrets:
        assert "data" not in secret  # stringData only: readable placeholders, no base64 blobs
        for key, value in secret["stringData"].items():
            assert dc.literal_secrets(value) == [], key
            if dc.SECRET_KEY.search(key):
                assert dc.INTERPOLATION.match(value), key
    broken = '{"conn_type": "http", "password": "hunter2"}'
    assert dc.literal_secrets(broken) == ["password is a literal secret"]
    assert dc.literal_secrets("elasticsearch+https://u:hunter2@es:9200") == ["a URL with a literal password"]


def test_the_connections_are_the_ones_the_hooks_read() -> None:
    from airflow.sdk import Connection

    from operators.monitoring import connection_url

    data = next(s for s in _kind("Secret") if s["metadata"]["name"] == "pushbutton-airflow-connections")
    values = {k: re.sub(r"\$\{[A-Z_]+\}", "placeholder", v) for k, v in data["stringData"].items()}
    monitoring = Connection.from_json(
        values["AIRFLOW_CONN_PUSHBUTTON_MONITORING"], conn_id="pushbutton_monitoring"
    )
    assert (connection_url(monitoring) or "").startswith(
        "elasticsearch+https://pushbutton-writer:placeholder@"
    )
    from pushbutton.kube.runtime import seldon_v1_config

    seldon = json.loads(values["AIRFLOW_CONN_PUSHBUTTON_SELDON"])["extra"]
    config = seldon_v1_config(seldon, "AIRFLOW_CONN_PUSHBUTTON_SELDON")
    assert config.logger_url == "http://pushbutton-logger.pushbutton:8002/"


# -- Elasticsearch ILM ------------------------------------------------------------------------


def test_the_raw_log_ilm_policy_keeps_the_default_retention_and_the_templates_use_it() -> None:
    from pushbutton.monitoring.store.es_connection import EsSettings
    from pushbutton.spec.model import RETENTION_DAYS

    es = DEPLOY / "elasticsearch"
    policy = json.loads((es / "ilm" / f"{L.POLICY}.json").read_text())["policy"]["phases"]
    assert (
        policy["delete"]["min_age"]
        == f"{RETENTION_DAYS}d"
        == f"{EsSettings.model_fields['retention_days'].default}d"
    )
    assert "delete" in policy["delete"]["actions"] and "rollover" in policy["hot"]["actions"]
    components = {p.stem: json.loads(p.read_text()) for p in (es / "component_templates").glob("*.json")}
    for name in ("pushbutton-requests", "pushbutton-rows"):
        template = json.loads((es / "index_templates" / f"{name}.json").read_text())
        settings = [components[c]["template"].get("settings", {}) for c in template["composed_of"]]
        assert any(s.get("index.lifecycle.name") == L.POLICY for s in settings), name
        assert all(
            p.startswith(("logs-pushbutton.requests-", "logs-pushbutton.rows-"))
            for p in template["index_patterns"]
        )


# -- Kibana saved objects ---------------------------------------------------------------------


def _objects(text: str) -> list[dict[str, Any]]:
    objects = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        obj = json.loads(line)
        assert isinstance(obj, dict) and {"type", "id", "attributes"} <= obj.keys(), f"line {number}"
        objects.append(obj)
    return objects


def _fields(obj: dict[str, Any]) -> set[str]:
    """Index fields a saved object reads (time field, Lens columns, search columns and sort)."""
    attributes, used = obj["attributes"], set()
    if obj["type"] == "index-pattern":
        used.add(attributes["timeFieldName"])
    if obj["type"] == "lens":
        for layer in attributes["state"]["datasourceStates"]["formBased"]["layers"].values():
            used |= {
                c["sourceField"] for c in layer["columns"].values() if c["sourceField"] != "___records___"
            }
    if obj["type"] == "search":
        used |= set(attributes["columns"]) | {field for field, _ in attributes["sort"]}
    return used


def ndjson_problems(text: str) -> list[str]:
    objects = _objects(text)
    ids = {(o["type"], o["id"]) for o in objects}
    mapped = set(json.loads((DEPLOY / "elasticsearch" / "indices" / f"{L.INDICATORS}.json").read_text())
                 ["mappings"]["properties"])  # fmt: skip
    problems = [f"{o['type']} {o['id']}: field {f!r} is not in the {L.INDICATORS} mapping"
                for o in objects for f in sorted(_fields(o) - mapped)]  # fmt: skip
    for obj in objects:
        refs = {r["name"] for r in obj.get("references", [])}
        problems += [f"{obj['id']}: reference to missing {r['type']} {r['id']}" for r in obj.get("references", [])
                     if (r["type"], r["id"]) not in ids]  # fmt: skip
        if obj["type"] == "dashboard":
            problems += [f"{obj['id']}: panel {p['panelIndex']} has no reference {p['panelRefName']}"
                         for p in json.loads(obj["attributes"]["panelsJSON"]) if p["panelRefName"] not in refs]  # fmt: skip
    return problems


def test_the_kibana_objects_parse_and_hold_an_indicators_dashboard() -> None:
    objects = _objects(NDJSON.read_text())
    views = [o for o in objects if o["type"] == "index-pattern"]
    assert [v["attributes"]["title"] for v in views] == [L.INDICATORS]  # the index the ES store writes
    assert sum(o["type"] == "lens" for o in objects) >= 2
    dashboard = next(o for o in objects if o["type"] == "dashboard")
    assert len(json.loads(dashboard["attributes"]["panelsJSON"])) >= 3
    assert ndjson_problems(NDJSON.read_text()) == []


def test_the_kibana_check_fails_on_broken_objects() -> None:
    text = NDJSON.read_text()
    assert any(
        "'indicator'" in p
        for p in ndjson_problems(text.replace('"sourceField":"indicator_id"', '"sourceField":"indicator"'))
    )
    assert any(
        "reference to missing lens" in p
        for p in ndjson_problems(text.replace('"id":"pushbutton-flagged-by-model"', '"id":"other"', 1))
    )
    with pytest.raises(AssertionError, match="line 1"):
        _objects('{"type": "index-pattern", "id": "x"}\n')
    with pytest.raises(json.JSONDecodeError):
        _objects("{not json}\n")
