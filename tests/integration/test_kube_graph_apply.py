"""The Kubernetes runtimes applying a version's inference graph (``models/ensemble-iris``: ``vote`` over
``linear`` and ``tree``) over HTTP with the real ``kubernetes`` client, against a STAND-IN API server
(kmock's KubernetesEmulator, ``tests/kube_standin.py``), not a cluster and not Seldon. Each version's
graph is read from the ``model.yaml`` of its code directory, as the lifecycle hands it over; documents
are rendered and validated against the CRD schemas as in production."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pushbutton.config import REPO_ROOT
from pushbutton.kube.runtime import KubernetesRuntime
from pushbutton.kube.runtime_v2 import SeldonV2Runtime
from pushbutton.serving.spec import Predictor, ServingSpec
from tests.kube_standin import Standin, V2Standin, running_standin

pytestmark = [pytest.mark.integration, pytest.mark.standin]

NS, NAME = "models", "ensemble-iris"
ENSEMBLE = REPO_ROOT / "models" / "ensemble-iris"


@pytest.fixture()
def code(tmp_path: Path) -> dict[int, Path]:
    """Each version's downloaded code directory (the lifecycle's ``code_uri``)."""
    dirs = {}
    for version in (1, 2):
        dirs[version] = tmp_path / f"v{version}" / "code"
        shutil.copytree(ENSEMBLE, dirs[version])
    return dirs


def predictor(role: str, version: int, traffic: int, code: dict[int, Path]) -> Predictor:
    return Predictor(name=role, model=NAME, version=str(version), model_uri=f"models:/{NAME}/{version}",
                     class_ref="predict:EnsembleClassifier", code_uri=str(code[version]),
                     traffic=traffic)  # fmt: skip


def champion_only(version: int, code: dict[int, Path]) -> ServingSpec:
    return ServingSpec(namespace=NS, deployment=NAME, predictors=[predictor("champion", version, 100, code)])


def with_candidate(champion: int, candidate: int, percent: int, code: dict[int, Path]) -> ServingSpec:
    predictors = [predictor("champion", champion, 100 - percent, code),
                  predictor("candidate", candidate, percent, code)]  # fmt: skip
    return ServingSpec(namespace=NS, deployment=NAME, predictors=predictors)


def shape(node: dict[str, Any]) -> tuple[str, str, list[Any]]:
    return node["name"], node["type"], [shape(c) for c in node.get("children") or []]


GRAPH = ("vote", "COMBINER", [("linear", "MODEL", []), ("tree", "MODEL", [])])


class Operator:
    """Plays Seldon v1's operator and the clock: each poll's sleep reports the next scripted state."""

    def __init__(self, standin: Standin):
        self.standin, self.now, self.script = standin, 0.0, []

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.script:
            self.standin.set_status(NS, NAME, self.script.pop(0))

    def clock(self) -> float:
        return self.now


def test_v1_applies_the_graph_of_each_predictor(code: dict[int, Path]) -> None:
    with running_standin() as standin:
        operator = Operator(standin)
        runtime = KubernetesRuntime(standin.api_client(), image_registry="registry.example/models", timeout=60,
                                    poll_interval=5, sleep=operator.sleep, clock=operator.clock)  # fmt: skip
        operator.script = ["Creating", "Available"]
        assert runtime.apply(champion_only(1, code))["action"] == "created"
        (champion,) = standin.get(NS, NAME)["spec"]["predictors"]
        assert shape(champion["graph"]) == GRAPH
        containers = champion["componentSpecs"][0]["spec"]["containers"]
        assert [c["name"] for c in containers] == ["vote", "linear", "tree"]  # one container per node

        operator.script = ["Creating", "Available"]
        assert runtime.apply(with_candidate(1, 2, 10, code))["action"] == "patched"
        predictors = {p["name"]: p for p in standin.get(NS, NAME)["spec"]["predictors"]}
        candidate = predictors["candidate"]
        assert (candidate["traffic"], shape(candidate["graph"])) == (10, GRAPH)  # its own graph
        images = {c["name"]: c["image"] for c in candidate["componentSpecs"][0]["spec"]["containers"]}
        assert images == {node: f"registry.example/models/{NAME}:2" for node in ("vote", "linear", "tree")}
        assert shape(predictors["champion"]["graph"]) == GRAPH

        writes = len(standin.requests("PATCH"))
        assert runtime.apply(with_candidate(1, 2, 10, code))["changed"] is False  # idempotent re-apply
        assert len(standin.requests("PATCH")) == writes
        runtime.remove(NS, NAME)


@pytest.fixture()
def v2() -> Iterator[tuple[SeldonV2Runtime, V2Standin]]:
    server = V2Standin().start()
    now = [0.0]
    runtime = SeldonV2Runtime(server.api_client(), timeout=60, poll_interval=5,
                              sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])  # fmt: skip
    try:
        yield runtime, server
    finally:
        server.stop()


def test_v2_applies_models_per_node_pipelines_and_an_experiment_over_pipelines(
    v2: tuple[SeldonV2Runtime, V2Standin], code: dict[int, Path]
) -> None:
    runtime, standin = v2
    runtime.apply(champion_only(1, code))
    nodes = ("vote", "linear", "tree")
    assert sorted(standin.objects(NS)) == sorted(
        [f"Model/{NAME}-v1-{n}" for n in nodes] + [f"Pipeline/{NAME}-v1"]
    )
    pipeline = standin.objects(NS)[f"Pipeline/{NAME}-v1"]
    assert [c["status"] for c in pipeline["status"]["conditions"] if c["type"] == "Ready"] == ["True"]

    result = runtime.apply(with_candidate(1, 2, 10, code))
    objects = standin.objects(NS)
    assert f"Pipeline/{NAME}-v2" in objects and all(f"Model/{NAME}-v2-{n}" in objects for n in nodes)
    assert objects[f"Experiment/{NAME}"]["spec"] == {
        "default": f"{NAME}-v1", "resourceType": "pipeline",
        "candidates": [{"name": f"{NAME}-v1", "weight": 90}, {"name": f"{NAME}-v2", "weight": 10}],
    }  # fmt: skip
    assert result["route"]["weights"] == {"champion": 90, "candidate": 10}
    # Seldon reported the new Pipeline Ready before the Experiment was written
    rollouts = [(kind, name) for kind, name, _, _ in standin.server.rollouts]
    assert rollouts.index(("Pipeline", f"{NAME}-v2")) < rollouts.index(("Experiment", NAME))

    runtime.apply(champion_only(2, code))  # promote: v2's Pipeline and Models alone
    assert sorted(standin.objects(NS)) == sorted(
        [f"Model/{NAME}-v2-{n}" for n in nodes] + [f"Pipeline/{NAME}-v2"]
    )
    assert runtime.route(NS, NAME) == {"backends": {"champion": {"version": "2"}},
                                       "weights": {"champion": 100}, "shadows": []}  # fmt: skip
    runtime.remove(NS, NAME)
    assert standin.objects(NS) == {}


def test_v2_a_single_model_champion_beside_a_graph_candidate_and_back(
    v2: tuple[SeldonV2Runtime, V2Standin], code: dict[int, Path]
) -> None:
    """The champion serves its predict class alone (v1: iris's code); a graph candidate (v2) makes the
    Experiment split Pipelines, so the champion gets a one-step Pipeline whose step is not named like
    it (Seldon's scheduler refuses that); rejecting the candidate serves the champion as a Model again."""
    iris = code[1].parent / "iris-code"
    shutil.copytree(REPO_ROOT / "models" / "iris", iris)
    code = {1: iris, 2: code[2]}
    runtime, standin = v2
    runtime.apply(champion_only(1, code))
    assert sorted(standin.objects(NS)) == [f"Model/{NAME}-v1"]

    runtime.apply(with_candidate(1, 2, 10, code))
    objects = standin.objects(NS)
    assert f"Model/{NAME}-v1" not in objects and f"Model/{NAME}-v1-model" in objects
    assert objects[f"Pipeline/{NAME}-v1"]["spec"]["steps"] == [{"name": f"{NAME}-v1-model"}]
    for name, obj in objects.items():
        if name.startswith("Pipeline/"):
            assert obj["metadata"]["name"] not in {s["name"] for s in obj["spec"]["steps"]}
    assert objects[f"Experiment/{NAME}"]["spec"]["resourceType"] == "pipeline"
    assert runtime.route(NS, NAME)["weights"] == {"champion": 90, "candidate": 10}

    runtime.apply(champion_only(1, code))  # reject: the champion alone, as a Model again
    assert sorted(standin.objects(NS)) == [f"Model/{NAME}-v1"]
    assert runtime.route(NS, NAME)["weights"] == {"champion": 100}
