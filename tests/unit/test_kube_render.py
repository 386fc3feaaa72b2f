"""Seldon v1/v2 rendering of serving specs, and the schema check every rendered document passes.

The CRDs' ``openAPIV3Schema`` come from ``../shared/schemas`` (``PUSHBUTTON_SCHEMAS_DIR``); tests
that need them skip when absent (fail under ``PUSHBUTTON_TEST_REQUIRE_ALL``). No cluster is involved.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from pushbutton.cli import main
from pushbutton.config import REPO_ROOT
from pushbutton.errors import SpecError
from pushbutton.kube import schemas
from pushbutton.kube.render import RUNTIMES, render_model, serving_spec
from pushbutton.kube.schemas import json_schema, validate_manifest
from pushbutton.kube.seldon_v1 import render_seldon_deployment
from pushbutton.kube.seldon_v2 import render_seldon_v2
from pushbutton.spec import discover, load_model_dir
from pushbutton.spec.model import ModelSpec
from pushbutton.templates import init_model, list_templates
from tests.prerequisites import missing

SCHEMAS = Path(os.environ.get("PUSHBUTTON_SCHEMAS_DIR", REPO_ROOT.parent / "shared" / "schemas"))
IMAGES = {"champion": "registry.example/models/iris:3", "candidate": "registry.example/models/iris:4"}
URIS = {"champion": "s3://mlflow/iris/3", "candidate": "s3://mlflow/iris/4"}
LOGGER = "http://logger.pushbutton:8002/"


@pytest.fixture(scope="module")
def schemas_dir() -> Path:
    if not (SCHEMAS / "seldon-v1").is_dir() or not (SCHEMAS / "seldon-v2").is_dir():
        missing(f"the Seldon CRD schemas under {SCHEMAS}", "set PUSHBUTTON_SCHEMAS_DIR to ../shared/schemas")
    return SCHEMAS


@pytest.fixture(scope="module")
def iris() -> ModelSpec:
    return load_model_dir(REPO_ROOT / "models" / "iris")


def release_spec(model: ModelSpec, percent: int | None = None, shadow: bool = False):
    return serving_spec(model, champion_version=3, candidate_percent=percent, shadow=shadow)


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in doc["spec"]["predictors"]}


# Seldon v1 ------------------------------------------------------------------------------------


def test_champion_only_is_one_predictor_with_the_whole_model(iris: ModelSpec, schemas_dir: Path) -> None:
    doc = render_seldon_deployment(release_spec(iris), images=IMAGES, logger_url=LOGGER, run_id="manual__1")
    validate_manifest(doc, schemas_dir=schemas_dir)
    assert (doc["apiVersion"], doc["kind"]) == ("machinelearning.seldon.io/v1", "SeldonDeployment")
    assert doc["metadata"]["name"] == "iris" and doc["metadata"]["namespace"] == "models"
    assert doc["metadata"]["labels"]["pushbutton.io/model"] == "iris"
    assert doc["metadata"]["annotations"]["pushbutton.io/run-id"] == "manual__1"
    assert doc["metadata"]["annotations"]["pushbutton.io/champion-version"] == "3"
    [champion] = doc["spec"]["predictors"]
    assert champion["name"] == "champion" and champion["traffic"] == 100 and "shadow" not in champion
    assert champion["replicas"] == iris.serving.replicas
    assert champion["labels"]["pushbutton.io/version"] == "3"
    graph = champion["graph"]
    assert graph["name"] == "model" and graph["type"] == "MODEL" and "implementation" not in graph
    assert graph["endpoint"] == {"type": "REST"} and graph["children"] == []
    assert graph["logger"] == {"url": LOGGER, "mode": "all"}
    params = {p["name"]: p["value"] for p in graph["parameters"]}
    assert (
        params["model_uri"] == "/opt/pushbutton/model" and params["model_class"] == "predict:IrisClassifier"
    )
    [container] = champion["componentSpecs"][0]["spec"]["containers"]
    assert container["name"] == "model" and container["image"] == IMAGES["champion"]
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}  # models/iris/model.yaml
    assert container["resources"]["limits"] == {"memory": "256Mi"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODEL_NAME"] == "pushbutton_guard.Guarded" and env["SERVICE_TYPE"] == "MODEL"


@pytest.mark.parametrize("percent", [1, 10, 50, 99])
def test_canary_splits_traffic_by_the_candidate_percent(
    iris: ModelSpec, schemas_dir: Path, percent: int
) -> None:
    doc = render_seldon_deployment(release_spec(iris, percent), images=IMAGES, logger_url=None)
    validate_manifest(doc, schemas_dir=schemas_dir)
    predictors = by_name(doc)
    assert predictors["champion"]["traffic"] == 100 - percent
    assert predictors["candidate"]["traffic"] == percent
    assert "shadow" not in predictors["candidate"]
    assert (
        predictors["candidate"]["componentSpecs"][0]["spec"]["containers"][0]["image"] == IMAGES["candidate"]
    )
    assert predictors["candidate"]["labels"]["pushbutton.io/version"] == "4"
    assert "logger" not in predictors["champion"]["graph"]  # no logger URL given


def test_shadow_candidate_takes_a_copy_and_no_traffic(iris: ModelSpec, schemas_dir: Path) -> None:
    doc = render_seldon_deployment(release_spec(iris, shadow=True), images=IMAGES, logger_url=LOGGER)
    validate_manifest(doc, schemas_dir=schemas_dir)
    predictors = by_name(doc)
    assert predictors["champion"]["traffic"] == 100 and "shadow" not in predictors["champion"]
    assert predictors["candidate"]["shadow"] is True and predictors["candidate"]["traffic"] == 0


def test_no_logger_when_the_model_turns_logging_off(iris: ModelSpec) -> None:
    quiet = iris.model_copy(update={"logging": iris.logging.model_copy(update={"enabled": False})})
    doc = render_seldon_deployment(serving_spec(quiet), images=IMAGES, logger_url=LOGGER)
    assert "logger" not in doc["spec"]["predictors"][0]["graph"]


def test_a_spec_without_input_schema_guard_runs_the_class_itself(iris: ModelSpec) -> None:
    spec = serving_spec(iris)
    bare = spec.model_copy(update={"predictors": [spec.predictors[0].model_copy(update={"inputs": ()})]})
    doc = render_seldon_deployment(bare, images=IMAGES, logger_url=None)
    container = doc["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]
    assert {"name": "MODEL_NAME", "value": "predict.IrisClassifier"} in container["env"]


# graphs of several nodes (the graph spec will declare them; a stand-in node type here) -----------


@dataclass(frozen=True)
class Node:
    name: str
    type: str = "MODEL"
    children: list[Node] = field(default_factory=list)
    class_: str | None = None


ENSEMBLE = Node(
    "prep", "TRANSFORMER", [Node("vote", "COMBINER", [Node("a"), Node("b")], "vote:Vote")], "prep:Prep"
)
ROUTED = Node("route", "ROUTER", [Node("a"), Node("b")], "route:Route")


def test_a_graph_renders_nested_nodes_each_with_its_container(iris: ModelSpec, schemas_dir: Path) -> None:
    doc = render_seldon_deployment(release_spec(iris, 20), images=IMAGES, logger_url=LOGGER, graph=ENSEMBLE)
    validate_manifest(doc, schemas_dir=schemas_dir)
    champion = by_name(doc)["champion"]
    graph = champion["graph"]
    assert (graph["name"], graph["type"], graph["logger"]["url"]) == ("prep", "TRANSFORMER", LOGGER)
    [vote] = graph["children"]
    assert vote["type"] == "COMBINER" and [c["name"] for c in vote["children"]] == ["a", "b"]
    assert "logger" not in vote  # the graph's entry logs, as the gateway does locally
    containers = {c["name"]: c for c in champion["componentSpecs"][0]["spec"]["containers"]}
    assert set(containers) == {"prep", "vote", "a", "b"}
    env = {e["name"]: e["value"] for e in containers["vote"]["env"]}
    assert env == env | {"MODEL_NAME": "vote.Vote", "SERVICE_TYPE": "COMBINER"}
    # the transformer entry reads the request: the guard checks its transform_input; the models it feeds
    # get transformed rows and run their own class
    assert {"name": "MODEL_NAME", "value": "pushbutton_guard.Guarded"} in containers["prep"]["env"]
    assert {p["name"]: p["value"] for p in graph["parameters"]}["guard_method"] == "transform_input"
    assert {"name": "MODEL_NAME", "value": "predict.IrisClassifier"} in containers["a"]["env"]


def test_v2_graph_is_a_pipeline_of_one_model_per_node(iris: ModelSpec, schemas_dir: Path) -> None:
    docs = render_seldon_v2(release_spec(iris, 20), storage_uris=URIS, graph=ENSEMBLE)
    for doc in docs:
        validate_manifest(doc, schemas_dir=schemas_dir)
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Model") == 8 and kinds.count("Pipeline") == 2 and kinds[-1] == "Experiment"
    pipeline = next(d for d in docs if d["kind"] == "Pipeline" and d["metadata"]["name"] == "iris-v3")
    steps = {s["name"]: s for s in pipeline["spec"]["steps"]}
    assert "inputs" not in steps["iris-v3-prep"]  # the pipeline's inputs
    assert steps["iris-v3-a"]["inputs"] == ["iris-v3-prep"] and steps["iris-v3-b"]["inputs"] == [
        "iris-v3-prep"
    ]
    assert steps["iris-v3-vote"]["inputs"] == ["iris-v3-a", "iris-v3-b"]
    assert pipeline["spec"]["output"] == {"steps": ["iris-v3-vote"], "stepsJoin": "inner"}
    model_a = next(d for d in docs if d["metadata"]["name"] == "iris-v4-a")
    assert model_a["spec"]["storageUri"] == "s3://mlflow/iris/4/a"
    experiment = docs[-1]
    assert experiment["spec"]["resourceType"] == "pipeline"
    assert experiment["spec"]["candidates"] == [
        {"name": "iris-v3", "weight": 80},
        {"name": "iris-v4", "weight": 20},
    ]


def test_v2_router_children_are_triggered_by_its_output(iris: ModelSpec, schemas_dir: Path) -> None:
    docs = render_seldon_v2(release_spec(iris), storage_uris=URIS, graph=ROUTED)
    [pipeline] = [d for d in docs if d["kind"] == "Pipeline"]
    validate_manifest(pipeline, schemas_dir=schemas_dir)
    steps = {s["name"]: s for s in pipeline["spec"]["steps"]}
    assert steps["iris-v3-a"]["triggers"] == ["iris-v3-route.outputs.a"]
    assert "inputs" not in steps["iris-v3-a"]  # the router's own inputs: the pipeline's
    assert pipeline["spec"]["output"] == {"steps": ["iris-v3-a", "iris-v3-b"], "stepsJoin": "any"}


def test_duplicate_node_names_are_refused(iris: ModelSpec) -> None:
    twice = Node("vote", "COMBINER", [Node("a"), Node("a")], "vote:Vote")
    with pytest.raises(SpecError, match="graph node name 'a' is used twice"):
        render_seldon_deployment(release_spec(iris), images=IMAGES, logger_url=None, graph=twice)


def test_a_non_model_node_without_class_is_refused(iris: ModelSpec) -> None:
    with pytest.raises(SpecError, match="a COMBINER node names no class"):
        render_seldon_v2(release_spec(iris), storage_uris=URIS, graph=Node("vote", "COMBINER", [Node("a")]))


# Seldon v2 ------------------------------------------------------------------------------------


def test_v2_champion_only_is_one_model_and_no_experiment(iris: ModelSpec, schemas_dir: Path) -> None:
    [model] = render_seldon_v2(release_spec(iris), storage_uris=URIS, run_id="r1")
    validate_manifest(model, schemas_dir=schemas_dir)
    assert (model["apiVersion"], model["kind"]) == ("mlops.seldon.io/v1alpha1", "Model")
    assert (
        model["metadata"]["name"] == "iris-v3"
        and model["metadata"]["annotations"]["pushbutton.io/run-id"] == "r1"
    )
    assert model["spec"] == {
        "storageUri": URIS["champion"],
        "requirements": ["python"],  # iris has its own predict class
        "memory": "256Mi",
        "replicas": 1,
        "logger": {"percent": 100},
    }


@pytest.mark.parametrize("percent", [5, 30, 90])
def test_v2_experiment_weights_follow_traffic(iris: ModelSpec, schemas_dir: Path, percent: int) -> None:
    docs = render_seldon_v2(release_spec(iris, percent), storage_uris=URIS)
    for doc in docs:
        validate_manifest(doc, schemas_dir=schemas_dir)
    assert [d["metadata"]["name"] for d in docs] == ["iris-v3", "iris-v4", "iris"]
    spec = docs[-1]["spec"]
    assert spec["default"] == "iris-v3" and "mirror" not in spec
    assert spec["candidates"] == [
        {"name": "iris-v3", "weight": 100 - percent},
        {"name": "iris-v4", "weight": percent},
    ]


def test_v2_shadow_is_a_mirror(iris: ModelSpec, schemas_dir: Path) -> None:
    docs = render_seldon_v2(release_spec(iris, shadow=True), storage_uris=URIS)
    validate_manifest(docs[-1], schemas_dir=schemas_dir)
    assert docs[-1]["spec"]["candidates"] == [{"name": "iris-v3", "weight": 100}]
    assert docs[-1]["spec"]["mirror"] == {"name": "iris-v4", "percent": 100}


# every shipped model and template, every runtime and traffic shape --------------------------------


def _shipped(tmp: Path) -> list[tuple[str, ModelSpec]]:
    found = [(str(d.model_dir.name), d.spec) for d in discover(REPO_ROOT / "models") if d.spec]
    for name in list_templates():
        found.append((f"template/{name}", load_model_dir(init_model(f"{name}-render", name, tmp))))
    return found


def test_every_example_and_template_renders_valid_manifests(tmp_path: Path, schemas_dir: Path) -> None:
    shipped = _shipped(tmp_path)
    assert {"iris", "diabetes"} <= {name for name, _ in shipped} and len(shipped) >= 4
    for name, model in shipped:
        for runtime in RUNTIMES:
            for shape in ({}, {"candidate_percent": 15}, {"shadow": True}):
                docs = render_model(model, serving_spec(model, **shape), runtime, schemas_dir=schemas_dir)
                assert docs and all(d["metadata"]["name"].startswith(model.name) for d in docs), (
                    name,
                    runtime,
                )


# bad input: each a clear error before anything is applied ---------------------------------------


@pytest.fixture
def rendered(iris: ModelSpec) -> dict[str, Any]:
    return render_seldon_deployment(release_spec(iris, 10), images=IMAGES, logger_url=LOGGER)


def test_traffic_not_summing_to_100_is_refused(rendered: dict[str, Any], schemas_dir: Path) -> None:
    rendered["spec"]["predictors"][1]["traffic"] = 20
    with pytest.raises(SpecError) as caught:
        validate_manifest(rendered, schemas_dir=schemas_dir)
    [issue] = caught.value.issues
    assert issue.field == "$.spec.predictors[*].traffic" and "sums to 110" in issue.message
    assert "sum to 100" in issue.fix and issue.file == "SeldonDeployment models/iris"


def test_experiment_weights_not_summing_to_100_are_refused(iris: ModelSpec, schemas_dir: Path) -> None:
    experiment = render_seldon_v2(release_spec(iris, 10), storage_uris=URIS)[-1]
    experiment["spec"]["candidates"][0]["weight"] = 50
    with pytest.raises(
        SpecError, match=r"\$\.spec\.candidates\[\*\]\.weight: the candidates' weights sum to 60"
    ):
        validate_manifest(experiment, schemas_dir=schemas_dir)


@pytest.mark.parametrize(
    "image", ["registry.example/models/iris:latest", "registry.example:5000/models/iris"]
)
def test_an_unpinned_image_is_refused_when_rendering(iris: ModelSpec, image: str) -> None:
    with pytest.raises(SpecError) as caught:
        render_seldon_deployment(release_spec(iris), images={"champion": image}, logger_url=None)
    [issue] = caught.value.issues
    assert issue.field == "images.champion" and image in issue.message and "exact tag" in issue.fix


def test_an_unpinned_image_in_a_manifest_is_refused(rendered: dict[str, Any], schemas_dir: Path) -> None:
    rendered["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["image"] = "r/iris:latest"
    with pytest.raises(
        SpecError,
        match=r"predictors\[0\]\.componentSpecs\[0\]\.spec\.containers\[0\]\.image: "
        r"image 'r/iris:latest' is tagged 'latest'",
    ):
        validate_manifest(rendered, schemas_dir=schemas_dir)


def test_a_missing_image_is_refused(iris: ModelSpec) -> None:
    with pytest.raises(SpecError, match="no image for predictor 'candidate'"):
        render_seldon_deployment(
            release_spec(iris, 10), images={"champion": IMAGES["champion"]}, logger_url=None
        )


def test_the_crd_schema_rejects_a_wrong_type_naming_the_path(
    rendered: dict[str, Any], schemas_dir: Path
) -> None:
    rendered["spec"]["predictors"][0]["replicas"] = "two"
    with pytest.raises(SpecError) as caught:
        validate_manifest(rendered, schemas_dir=schemas_dir)
    [issue] = caught.value.issues
    assert issue.field == "$.spec.predictors[0].replicas"
    assert "'two' is not of type 'integer'" in issue.message and "integer" in issue.fix


def test_the_crd_schema_rejects_an_unknown_field(rendered: dict[str, Any], schemas_dir: Path) -> None:
    rendered["spec"]["predictors"][1]["trafic"] = 10
    with pytest.raises(SpecError, match=r"\$\.spec\.predictors\[1\]: .*'trafic' was unexpected"):
        validate_manifest(rendered, schemas_dir=schemas_dir)


def test_graph_children_are_checked_against_the_node_schema(
    rendered: dict[str, Any], schemas_dir: Path
) -> None:
    """The CRD leaves ``children`` as ``items: {}``; each child is checked as a graph node anyway."""
    child = copy.deepcopy(rendered["spec"]["predictors"][0]["graph"])
    child["type"] = 7
    rendered["spec"]["predictors"][0]["graph"]["children"] = [child]
    with pytest.raises(
        SpecError, match=r"\$\.spec\.predictors\[0\]\.graph\.children\[0\]\.type: .*7 is not of type"
    ):
        validate_manifest(rendered, schemas_dir=schemas_dir)


def test_a_v2_model_without_storage_uri_is_rejected(iris: ModelSpec, schemas_dir: Path) -> None:
    [model] = render_seldon_v2(release_spec(iris), storage_uris=URIS)
    del model["spec"]["storageUri"]
    with pytest.raises(SpecError, match=r"\$\.spec: .*'storageUri' is a required property"):
        validate_manifest(model, schemas_dir=schemas_dir)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(SpecError, match=r"\$\.kind: no schema for apps/v1 Deployment"):
        validate_manifest(
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {}}
        )


def test_a_configured_schemas_dir_that_is_missing_is_an_error(
    rendered: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(SpecError, match="the schemas directory does not exist"):
        validate_manifest(rendered, schemas_dir=tmp_path / "nowhere")


def test_without_the_default_schemas_pushbutton_rules_still_apply(
    rendered: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv(schemas.SCHEMAS_VARIABLE, raising=False)
    monkeypatch.setattr(schemas, "default_schemas_dir", lambda: tmp_path / "absent")
    rendered["spec"]["predictors"][0]["replicas"] = "two"  # only the CRD schema would see this
    with caplog.at_level(logging.WARNING, logger=schemas.__name__):
        validate_manifest(rendered)
    assert "no CRD schemas at" in caplog.text
    rendered["spec"]["predictors"][0]["traffic"] = 50
    with pytest.raises(SpecError, match="sums to 60"):
        validate_manifest(rendered)


def test_openapi_nullable_and_int_or_string_translate_to_json_schema() -> None:
    import jsonschema

    schema = json_schema(
        {
            "type": "object",
            "properties": {
                "at": {"type": "string", "nullable": True},
                "port": {"x-kubernetes-int-or-string": True},
                "free": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {"a": {}},
                },
            },
        }
    )
    valid = jsonschema.Draft4Validator(schema)
    assert valid.is_valid({"at": None, "port": 8080, "free": {"b": 1}}) and valid.is_valid({"port": "http"})
    assert (
        not valid.is_valid({"at": 3}) and not valid.is_valid({"port": 1.5}) and not valid.is_valid({"x": 1})
    )


# the CLI --------------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    assert main(["render", str(REPO_ROOT / "models" / "iris"), *argv]) == 0
    return list(yaml.safe_load_all(capsys.readouterr().out))


def test_cli_renders_the_champion_only_unless_asked(
    capsys: pytest.CaptureFixture[str], schemas_dir: Path
) -> None:
    [doc] = _cli(capsys, "--runtime", "seldon-v1", "--image-registry", "reg.example/ml")
    assert [p["name"] for p in doc["spec"]["predictors"]] == ["champion"]
    container = doc["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]
    assert container["image"] == "reg.example/ml/iris:1"


def test_cli_renders_a_canary_and_a_v2_shadow(capsys: pytest.CaptureFixture[str], schemas_dir: Path) -> None:
    [doc] = _cli(capsys, "--runtime", "seldon-v1", "--candidate-percent", "30", "--champion-version", "7")
    assert {p["name"]: p["traffic"] for p in doc["spec"]["predictors"]} == {"champion": 70, "candidate": 30}
    assert doc["spec"]["predictors"][1]["labels"]["pushbutton.io/version"] == "8"
    docs = _cli(capsys, "--runtime", "seldon-v2", "--shadow")
    assert [d["kind"] for d in docs] == ["Model", "Model", "Experiment"]
    assert docs[-1]["spec"]["mirror"] == {"name": "iris-v2", "percent": 100}


def test_cli_refuses_a_percent_outside_1_to_99(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(
            [
                "render",
                str(REPO_ROOT / "models" / "iris"),
                "--runtime",
                "seldon-v1",
                "--candidate-percent",
                "100",
            ]
        )
    assert exited.value.code == 2 and "not a candidate share from 1 to 99" in capsys.readouterr().err
