"""What the Kubernetes runtimes apply for a version that declares an inference graph, without a server:
each version's graph read from its own ``model.yaml`` (its code directory, as the local runtime reads
it), rendered per predictor and checked against the CRD schemas."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from pushbutton.config import REPO_ROOT
from pushbutton.errors import SpecError
from pushbutton.kube.graph import version_graphs
from pushbutton.kube.runtime import KubernetesRuntime
from pushbutton.kube.runtime_v2 import SeldonV2Runtime
from pushbutton.serving.microservice import GUARD_INTERFACE
from pushbutton.serving.spec import Predictor, ServingSpec
from pushbutton.spec.model import Feature

ENSEMBLE, IRIS = REPO_ROOT / "models" / "ensemble-iris", REPO_ROOT / "models" / "iris"
NAME = "ensemble-iris"


INPUTS = (Feature(name="sepal_length_cm", type="double"),)


def predictor(role: str, version: int, traffic: int, code: Path | str) -> Predictor:
    return Predictor(name=role, model=NAME, version=str(version), model_uri=f"models:/{NAME}/{version}",
                     class_ref="predict:EnsembleClassifier", inputs=INPUTS, code_uri=str(code),
                     traffic=traffic)  # fmt: skip


def spec(*predictors: Predictor) -> ServingSpec:
    return ServingSpec(namespace="models", deployment=NAME, predictors=list(predictors))


def canary(champion_code: Path | str = ENSEMBLE, candidate_code: Path | str = ENSEMBLE) -> ServingSpec:
    return spec(predictor("champion", 1, 90, champion_code), predictor("candidate", 2, 10, candidate_code))


def shape(node: dict[str, Any]) -> tuple[str, str, list[Any]]:
    return node["name"], node["type"], [shape(c) for c in node["children"]]


def containers(pred: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        c["name"]: {e["name"]: e["value"] for e in c["env"]}
        for c in pred["componentSpecs"][0]["spec"]["containers"]
    }


def v1_runtime() -> KubernetesRuntime:
    return KubernetesRuntime(None, image_registry="registry.example/models")


def v2_runtime() -> SeldonV2Runtime:
    return SeldonV2Runtime(None)


def test_version_graphs_reads_each_versions_own_model_yaml() -> None:
    graphs = version_graphs(canary(champion_code=IRIS))
    assert list(graphs) == ["candidate"]  # iris serves its predict class alone
    assert [n.name for n in graphs["candidate"].children] == ["linear", "tree"]
    assert version_graphs(spec(predictor("champion", 1, 100, ""))) == {}  # no code directory: no graph


def test_v1_manifest_serves_each_versions_graph_one_container_per_node() -> None:
    doc = v1_runtime().manifest(canary())  # validated against the SeldonDeployment CRD schema
    predictors = {p["name"]: p for p in doc["spec"]["predictors"]}
    for role, version in (("champion", "1"), ("candidate", "2")):
        pred = predictors[role]
        assert shape(pred["graph"]) == ("vote", "COMBINER", [("linear", "MODEL", []), ("tree", "MODEL", [])])
        envs = containers(pred)
        assert list(envs) == ["vote", "linear", "tree"]
        # the members read the request the COMBINER passes on unread: they run behind the schema guard
        assert {n: e["MODEL_NAME"] for n, e in envs.items()} == {
            "vote": "nodes.AverageProbabilities", "linear": GUARD_INTERFACE, "tree": GUARD_INTERFACE}  # fmt: skip
        images = {c["image"] for c in pred["componentSpecs"][0]["spec"]["containers"]}
        assert images == {f"registry.example/models/{NAME}:{version}"}
    # the COMBINER reads its children's answers, not the request: it runs its own class unguarded
    params = {p["name"] for p in predictors["champion"]["graph"]["parameters"]}
    assert "model_class" not in params and "inputs" not in params
    members = [
        {p["name"]: p["value"] for p in c["parameters"]} for c in predictors["champion"]["graph"]["children"]
    ]
    assert [m["member"] for m in members] == ["linear", "tree"]
    assert [m["model_class"] for m in members] == ["nodes:Member", "nodes:Member"]
    assert {m["guard_probabilities"] for m in members} == {"false"}  # a member's are not the ensemble's


def test_v1_single_model_champion_beside_a_graph_candidate_keeps_its_one_guarded_container() -> None:
    doc = v1_runtime().manifest(canary(champion_code=IRIS))
    champion, candidate = doc["spec"]["predictors"]
    assert shape(champion["graph"]) == ("model", "MODEL", [])
    assert list(containers(champion)) == ["model"]
    assert containers(champion)["model"]["MODEL_NAME"] == GUARD_INTERFACE  # a MODEL entry is guarded
    assert list(containers(candidate)) == ["vote", "linear", "tree"]


def test_v2_manifests_a_model_per_node_a_pipeline_per_version_and_an_experiment_over_pipelines() -> None:
    docs = v2_runtime().manifests(canary())  # validated against the Model/Pipeline/Experiment schemas
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert names == [
        ("Model", f"{NAME}-v1-vote"), ("Model", f"{NAME}-v1-linear"), ("Model", f"{NAME}-v1-tree"),
        ("Pipeline", f"{NAME}-v1"),
        ("Model", f"{NAME}-v2-vote"), ("Model", f"{NAME}-v2-linear"), ("Model", f"{NAME}-v2-tree"),
        ("Pipeline", f"{NAME}-v2"),
        ("Experiment", NAME),
    ]  # fmt: skip
    experiment = docs[-1]["spec"]
    assert experiment["resourceType"] == "pipeline"
    assert experiment["candidates"] == [
        {"name": f"{NAME}-v1", "weight": 90},
        {"name": f"{NAME}-v2", "weight": 10},
    ]
    pipeline = docs[3]["spec"]
    assert pipeline["output"] == {"steps": [f"{NAME}-v1-vote"], "stepsJoin": "inner"}


def test_v2_single_model_champion_beside_a_graph_candidate_gets_a_one_step_pipeline() -> None:
    docs = v2_runtime().manifests(canary(champion_code=IRIS))
    by_key = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    # Seldon's scheduler refuses a step named like its pipeline (PipelineStepNameEqualsPipelineNameErr,
    # scheduler/pkg/store/pipeline/validate.go): the champion's Model is named per node, as a graph's are
    assert ("Model", f"{NAME}-v1") not in by_key
    champion = next(p for p in canary(champion_code=IRIS).predictors if p.name == "champion")
    # the version's own model, not a per-node subdirectory (it has no nodes)
    assert by_key["Model", f"{NAME}-v1-model"]["spec"]["storageUri"] == v2_runtime().storage_uri(champion)
    pipeline = by_key["Pipeline", f"{NAME}-v1"]
    assert pipeline["spec"] == {
        "steps": [{"name": f"{NAME}-v1-model"}],
        "output": {"steps": [f"{NAME}-v1-model"]},
    }
    for p in (d for d in docs if d["kind"] == "Pipeline"):
        assert p["metadata"]["name"] not in {step["name"] for step in p["spec"]["steps"]}
    experiment = by_key["Experiment", NAME]["spec"]
    assert experiment["resourceType"] == "pipeline"
    assert {c["name"] for c in experiment["candidates"]} == {f"{NAME}-v1", f"{NAME}-v2"}  # the Pipelines


def test_single_model_versions_render_as_before() -> None:
    docs = v2_runtime().manifests(canary(IRIS, IRIS))
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("Model", f"{NAME}-v1"), ("Model", f"{NAME}-v2"), ("Experiment", NAME)]  # fmt: skip
    assert docs[-1]["spec"]["resourceType"] == "model"


def test_a_broken_model_yaml_in_the_code_directory_fails_before_anything_is_sent(tmp_path: Path) -> None:
    code = tmp_path / "code"
    shutil.copytree(ENSEMBLE, code)
    text = (code / "model.yaml").read_text().replace("type: COMBINER", "type: COMBINATOR")
    (code / "model.yaml").write_text(text)
    bad = canary(candidate_code=code)
    # no API client: reaching the cluster would fail otherwise; a SpecError: the task fails without retry
    said = r"version 2 \(candidate\): cannot read the serving graph .*\n.*code/model\.yaml:\d+: serving\.graph\.type"
    with pytest.raises(SpecError, match=said):
        v1_runtime().manifest(bad)
    with pytest.raises(SpecError, match=said):
        v2_runtime().manifests(bad)
