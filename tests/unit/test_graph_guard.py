"""The schema guard at a graph's entry, whatever the entry node's type: which nodes read the graph's
request (``request_entries``), how the Seldon v1 renderer and the local runtime put them behind the
guard the same way, the guard class wrapping ``transform_input``/``route``/``transform_output``, and
the orchestrator passing the guard's 400 on. Also: a version's broken ``model.yaml`` is a
``SpecError`` (no retry) before anything reaches a cluster."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest

from pushbutton.errors import ServingError, SpecError
from pushbutton.kube.graph import interface_and_parameters
from pushbutton.kube.schemas import validate_manifest
from pushbutton.kube.seldon_v1 import render_seldon_deployment
from pushbutton.serving.graph_local import (
    GraphSpecError,
    guard_parameters,
    request_entries,
    start_graph,
    version_graph,
)
from pushbutton.serving.graph_server import GraphServer
from pushbutton.serving.microservice import GUARD_INTERFACE, Microservice, microservice_argv
from pushbutton.serving.spec import Predictor
from pushbutton.spec.model import Feature, GraphNode
from tests.unit import test_kube_render, test_schema_guard
from tests.unit.test_kube_graph_apply import ENSEMBLE, canary, v1_runtime, v2_runtime
from tests.unit.test_kube_render import IMAGES, release_spec
from tests.unit.test_schema_guard import BadRequest, NotImplementedHere

# fixtures shared with those tests: the iris spec, the CRD schemas, the guard module over stubbed seldon-core
iris, schemas_dir, guard = test_kube_render.iris, test_kube_render.schemas_dir, test_schema_guard.guard


def node(spec: dict[str, Any]) -> GraphNode:
    return GraphNode.model_validate(spec)


MODEL_A, MODEL_B = {"name": "a", "type": "MODEL"}, {"name": "b", "type": "MODEL", "class": "b:B"}
PREP = {"name": "prep", "type": "TRANSFORMER", "class": "prep:Prep"}
SHAPES = {
    "model": (MODEL_A, {"a": "predict"}),
    "transformer": ({**PREP, "children": [MODEL_A]}, {"prep": "transform_input"}),
    "router": ({"name": "pick", "type": "ROUTER", "class": "pick:Pick", "children": [MODEL_A, MODEL_B]},
               {"pick": "route"}),
    "combiner": ({"name": "vote", "type": "COMBINER", "class": "vote:Vote", "children": [MODEL_A, MODEL_B]},
                 {"a": "predict", "b": "predict"}),
    # a COMBINER's first child transforms: the transformer reads the request, its model does not
    "combiner-over-transformer": (
        {"name": "vote", "type": "COMBINER", "class": "vote:Vote",
         "children": [{**PREP, "children": [MODEL_A]}, MODEL_B]},
        {"prep": "transform_input", "b": "predict"}),
    # an OUTPUT_TRANSFORMER only sees its child's answer; alone, it reads the request itself
    "output-over-combiner": (
        {"name": "post", "type": "OUTPUT_TRANSFORMER", "class": "post:Post", "children": [
            {"name": "vote", "type": "COMBINER", "class": "vote:Vote", "children": [MODEL_A, MODEL_B]}]},
        {"a": "predict", "b": "predict"}),
    "output-alone": ({"name": "post", "type": "OUTPUT_TRANSFORMER", "class": "post:Post"},
                     {"post": "transform_output"}),
}  # fmt: skip


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_nodes_that_read_the_graphs_request(shape: str) -> None:
    spec, expected = SHAPES[shape]
    assert request_entries(node(spec)) == expected


def test_guard_parameters_name_the_method_and_leave_probabilities_to_the_root() -> None:
    root = node(SHAPES["combiner"][0])
    member = {"name": "guard_probabilities", "value": "false", "type": "BOOL"}
    assert guard_parameters(root.children[0], root) == [
        member
    ]  # one member's probabilities are not the vote's
    lone = node(MODEL_A)
    assert guard_parameters(lone, lone) == []  # the defaults: predict, with probabilities
    prep = node(SHAPES["transformer"][0])
    assert guard_parameters(prep, prep) == [
        {"name": "guard_method", "value": "transform_input", "type": "STRING"}
    ]
    with pytest.raises(ValueError, match="does not read the graph's request"):
        guard_parameters(prep.children[0], prep)


# Seldon v1 rendering ---------------------------------------------------------------------------


def _containers(pred: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: {e["name"]: e["value"] for e in c["env"]} for c in pred["componentSpecs"][0]["spec"]["containers"]}  # fmt: skip


def _graph_params(graph: dict[str, Any]) -> dict[str, dict[str, str]]:
    found = {graph["name"]: {p["name"]: p["value"] for p in graph["parameters"]}}
    for child in graph["children"]:
        found.update(_graph_params(child))
    return found


@pytest.mark.parametrize("shape", list(SHAPES))
def test_v1_guards_exactly_the_nodes_that_read_the_request(shape: str, iris, schemas_dir: Path) -> None:
    spec, expected = SHAPES[shape]
    doc = render_seldon_deployment(release_spec(iris, 20), images=IMAGES, logger_url=None, graph=node(spec))
    validate_manifest(doc, schemas_dir=schemas_dir)
    champion = doc["spec"]["predictors"][0]
    envs, params = _containers(champion), _graph_params(champion["graph"])
    guarded = {name for name, env in envs.items() if env["MODEL_NAME"] == GUARD_INTERFACE}
    assert guarded == set(expected)
    features = [f.name for f in iris.schema_.inputs]
    for name, method in expected.items():
        assert [entry[0] for entry in json.loads(params[name]["inputs"])] == features
        assert params[name].get("guard_method", "predict") == method
        assert ("model_uri" in params[name]) == (method == "predict")  # only MODEL nodes load artifacts
        is_root = name == champion["graph"]["name"]
        assert params[name].get("guard_probabilities", "true") == (
            "true" if is_root or method != "predict" else "false"
        )
    for name in set(envs) - guarded:  # the other nodes run their own class, as under Seldon
        assert "model_class" not in params[name] and "inputs" not in params[name]


def test_a_transformer_entry_is_guarded_with_its_own_class_and_no_model_uri() -> None:
    predictor = Predictor(name="champion", model="m", version="1", model_uri="/m", class_ref="predict:P",
                          inputs=(Feature(name="x", type="double"),), traffic=100)  # fmt: skip
    root = node(SHAPES["transformer"][0])
    interface, params = interface_and_parameters(root, predictor, root=root, where="t")
    assert interface == GUARD_INTERFACE
    assert params == [
        {"name": "model_class", "value": "prep:Prep", "type": "STRING"},
        {"name": "inputs", "value": '[["x", "double", false]]', "type": "STRING"},
        {"name": "guard_method", "value": "transform_input", "type": "STRING"},
    ]
    child_interface, _ = interface_and_parameters(root.children[0], predictor, root=root, where="t")
    assert child_interface == "predict.P"  # the model under the transformer gets transformed rows
    bare = predictor.model_copy(update={"inputs": ()})  # no schema: nothing to guard
    assert interface_and_parameters(root, bare, root=root, where="t")[0] == "prep.Prep"


# the local runtime -------------------------------------------------------------------------------


class FakeServices:
    """``Microservices`` as ``start_graph`` uses it, recording each node's start."""

    def __init__(self, home: Path):
        self.settings = SimpleNamespace(home=home, host="127.0.0.1", logger_url=None, gateway_url=None)
        self.group = SimpleNamespace(stop=lambda name: None)
        self.starts: dict[str, dict[str, Any]] = {}

    def node_names(self, name: str) -> list[str]:
        return []

    def start(self, env: Any, **kw: Any) -> Microservice:
        self.starts[kw["node"]] = kw
        return Microservice(name=f"svc.{kw['node']}", namespace=kw["namespace"], model=kw["model"],
                            version=kw["version"], model_uri=kw["model_uri"], class_ref=kw["class_ref"],
                            code_dir="/code", env="/env", host="127.0.0.1", http_port=1, metrics_port=0,
                            pid=1, log="", node=kw["node"])  # fmt: skip

    def launch(self, *args: Any) -> tuple[Any, int, int]:
        return SimpleNamespace(pid=2, log=""), 9000, 0

    def save(self, svc: Microservice) -> None:
        pass

    def stop(self, name: str) -> bool:
        return True


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_local_runtime_guards_the_same_nodes_as_the_renderer(shape: str, tmp_path: Path) -> None:
    spec, expected = SHAPES[shape]
    services, env = FakeServices(tmp_path), SimpleNamespace(path=tmp_path, bin=lambda n: Path("/env/bin") / n)
    inputs = (("x", "double", False),)
    start_graph(services, env, node(spec), namespace="models", model="m", version="1", code_dir=tmp_path,
                class_ref="predict:P", model_uri="/art", inputs=inputs)  # type: ignore[arg-type]  # fmt: skip
    argvs = {
        name: microservice_argv(env, kw["class_ref"], kw["model_uri"], host="h", http_port=1, metrics_port=2,
                                inputs=kw["inputs"], service_type=kw["service_type"], parameters=kw["parameters"])
        for name, kw in services.starts.items()
    }  # type: ignore[arg-type]  # fmt: skip
    guarded = {name for name, argv in argvs.items() if GUARD_INTERFACE in argv}
    assert guarded == set(expected)
    for name, method in expected.items():
        params = {
            p["name"]: p["value"] for p in json.loads(argvs[name][argvs[name].index("--parameters") + 1])
        }
        assert params.get("guard_method", "predict") == method and ("model_uri" in params) == (
            method == "predict"
        )


# the guard class in the serving environment ---------------------------------------------------------


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))


INPUTS = json.dumps([["a", "double", False], ["b", "double", False]])


def test_a_guarded_transformer_checks_its_input_and_has_no_model_uri(guard, tmp_path, monkeypatch) -> None:
    _module(tmp_path, monkeypatch, "guardprep", (
        "class Prep:\n"
        "    def __init__(self, scale=1):\n"
        "        self.scale = scale\n"
        "    def transform_input(self, X, features_names=None):\n"
        "        return X * self.scale\n"
        "    def class_names(self):\n"
        "        return ['a2', 'b2']\n"
    ))  # fmt: skip
    prep = guard.Guarded(model_class="guardprep:Prep", inputs=INPUTS, guard_method="transform_input", scale=2)
    assert prep.transform_input(np.array([[1.0, 2.0]]), ["a", "b"], meta={}).tolist() == [[2.0, 4.0]]
    assert prep.class_names() == ["a2", "b2"]  # the class's own: seldon-core names every answer by it
    with pytest.raises(BadRequest, match=r"feature 'b' \(double\) in row 0 is not a number \('x'\)"):
        prep.transform_input(np.array([[1, "x"]], dtype=object), ["a", "b"])
    with pytest.raises(NotImplementedHere):  # a well-formed payload: seldon-core decodes it
        prep.transform_input_raw({"data": {"ndarray": [[1.0, 2.0]]}})
    with pytest.raises(BadRequest, match="rows differ"):
        prep.transform_input_raw({"data": {"ndarray": [[1.0, 2.0], [1.0]]}})
    # what the class lacks stays missing: seldon-core checks hasattr to pick its default
    assert not hasattr(prep, "predict") and not hasattr(prep, "predict_raw") and not hasattr(prep, "route")
    assert prep.tags() == {}


def test_a_guarded_router_checks_the_rows_before_it_routes(guard, tmp_path, monkeypatch) -> None:
    _module(tmp_path, monkeypatch, "guardpick", (
        "class Pick:\n"
        "    def route(self, X, features_names=None):\n"
        "        return 0 if X[0][0] >= 0 else 1\n"
        "    def route_raw(self, request):\n"
        "        return {'data': {'ndarray': [[1]]}}\n"
    ))  # fmt: skip
    pick = guard.Guarded(None, "guardpick:Pick", INPUTS, "route")
    assert pick.route(np.array([[-1.0, 0.0]]), None) == 1
    with pytest.raises(BadRequest, match=r"rows have 3 values, the model takes 2"):
        pick.route(np.array([[1.0, 2.0, 3.0]]), None)
    assert pick.route_raw({"data": "x"}) == {"data": {"ndarray": [[1]]}}  # its own raw hook, unchecked


def test_a_member_model_adds_no_probabilities_and_bad_settings_fail_at_start(
    guard, tmp_path, monkeypatch
) -> None:
    _module(tmp_path, monkeypatch, "guardmember", (
        "import numpy as np\n"
        "class Member:\n"
        "    classes_ = ['x', 'y']\n"
        "    def __init__(self, model_uri):\n"
        "        self.uri = model_uri\n"
        "    def predict(self, X, features_names=None):\n"
        "        return np.zeros(len(X))\n"
        "    def predict_proba(self, X, features_names=None):\n"
        "        return np.tile([0.25, 0.75], (len(X), 1))\n"
    ))  # fmt: skip
    rows = np.array([[1.0, 2.0]])
    member = guard.Guarded("/art", "guardmember:Member", INPUTS, guard_probabilities=False)
    assert member.predict(rows).tolist() == [0.0] and member.tags() == {}
    root = guard.Guarded("/art", "guardmember:Member", INPUTS)  # the graph's answer is this model's
    root.predict(rows)
    assert root.tags() == {"classes": ["x", "y"], "probabilities": [[0.25, 0.75]]}
    with pytest.raises(ValueError, match="guard_method 'aggregate' is not one of"):
        guard.Guarded("/art", "guardmember:Member", INPUTS, guard_method="aggregate")


# the orchestrator ------------------------------------------------------------------------------------


def test_the_entrys_400_reaches_the_client_with_its_reason_and_the_feature() -> None:
    info = "feature 'b' (double) in row 0 is not a number ('x'); send a number"

    def prep(request: httpx.Request) -> httpx.Response:
        body = {"status": {"code": -1, "info": info, "reason": "MICROSERVICE_BAD_DATA", "status": 1}}
        return httpx.Response(400, json=body)

    graph = node(SHAPES["transformer"][0])
    config = {"graph": graph.model_dump(mode="json", by_alias=True),
              "nodes": {"prep": "http://prep.node", "a": "http://a.node"}}  # fmt: skip
    server = GraphServer(config, client=httpx.Client(transport=httpx.MockTransport(prep)))
    status, answer = server.execute({"data": {"names": ["a", "b"], "ndarray": [[1, "x"]]}}, "req-1")
    assert status == 400 == answer["status"]["code"]
    assert answer["status"]["reason"] == "MICROSERVICE_BAD_DATA"
    assert "graph node 'prep' (TRANSFORMER" in answer["status"]["info"] and info in answer["status"]["info"]


# a broken model.yaml -------------------------------------------------------------------------------


def _broken(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    shutil.copytree(ENSEMBLE, code)
    (code / "model.yaml").write_text(
        (code / "model.yaml").read_text().replace("type: COMBINER", "type: COMBINATOR")
    )
    return code


def test_a_broken_model_yaml_is_a_spec_error_naming_file_line_field_and_fix(tmp_path: Path) -> None:
    code = _broken(tmp_path)
    with pytest.raises(SpecError) as caught:
        version_graph(code, "predict:EnsembleClassifier")
    [issue] = caught.value.issues  # the loader's own
    assert (issue.file, issue.field) == (str(code / "model.yaml"), "serving.graph.type") and issue.line
    assert "did you mean 'COMBINER'" in issue.fix
    assert isinstance(caught.value, ServingError)  # the local runtime's restore still collects it
    text = str(caught.value)
    assert "register a new version" in text and f"model.yaml:{issue.line}: serving.graph.type:" in text


@pytest.mark.parametrize("runtime", ["v1", "v2"])
def test_a_broken_graph_fails_the_airflow_task_without_retry_before_anything_is_applied(
    runtime: str, tmp_path: Path
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from operators.lifecycle import _final

    bad = canary(candidate_code=_broken(tmp_path))
    apply = (v1_runtime() if runtime == "v1" else v2_runtime()).apply  # no API client: any call would fail
    with pytest.raises(
        AirflowFailException, match=r"ensemble-iris version 2 \(candidate\).*\n.*serving\.graph\.type"
    ):
        _final(lambda: apply(bad))
    with pytest.raises(GraphSpecError) as caught:
        apply(bad)
    assert caught.value.issues[0].field == "serving.graph.type"
