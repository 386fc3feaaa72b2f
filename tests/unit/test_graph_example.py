"""models/ensemble-iris: its graph, run by the in-process executor over its own node classes,
answers what its predict class answers, and renders to manifests the Seldon CRDs accept."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pushbutton.config import REPO_ROOT
from pushbutton.kube.render import render_model, serving_spec
from pushbutton.serving.graph import GraphExecutor, build_components
from pushbutton.spec import load_model_dir
from pushbutton.templates import LocalModel, train_local
from pushbutton.training import load_reference
from tests.prerequisites import missing

MODEL_DIR = REPO_ROOT / "models" / "ensemble-iris"
SCHEMAS = Path(os.environ.get("PUSHBUTTON_SCHEMAS_DIR", REPO_ROOT.parent / "shared" / "schemas"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> LocalModel:
    return train_local(MODEL_DIR, tmp_path_factory.mktemp("ensemble"))


def test_the_graph_answers_what_the_predict_class_answers(trained: LocalModel) -> None:
    graph = trained.spec.serving.graph
    assert [node.name for _, node in graph.walk()] == ["vote", "linear", "tree"]
    components = build_components(
        graph,
        default_class=trained.spec.predict.class_,
        model_uri=trained.model_uri,
        resolve=lambda ref: load_reference(MODEL_DIR, ref, "serving.graph"),
    )
    x = trained.split.x_holdout
    answer = GraphExecutor(graph, components).predict(x.to_numpy(), list(x.columns))
    expected = np.asarray(trained.predictor().predict(x.to_numpy(), list(x.columns)))
    assert answer.message.data.tolist() == expected.tolist()
    assert (answer.message.data == trained.split.y_holdout.to_numpy()).mean() >= 0.85  # its own gate
    # the members disagree somewhere, so the combiner's average is what decides those rows
    linear, tree = (components[n].predict(x.to_numpy(), list(x.columns)) for n in ("linear", "tree"))
    assert (linear.argmax(axis=1) != tree.argmax(axis=1)).any()


@pytest.mark.parametrize("runtime", ["seldon-v1", "seldon-v2"])
def test_the_graph_renders_one_node_per_class_and_the_crds_accept_it(runtime: str) -> None:
    if not (SCHEMAS / "seldon-v1").is_dir():
        missing(f"the Seldon CRD schemas under {SCHEMAS}", "set PUSHBUTTON_SCHEMAS_DIR to ../shared/schemas")
    model = load_model_dir(MODEL_DIR)
    docs = render_model(model, serving_spec(model, candidate_percent=20), runtime, schemas_dir=SCHEMAS)
    if runtime == "seldon-v1":
        [doc] = docs
        graph = doc["spec"]["predictors"][0]["graph"]
        assert (graph["name"], graph["type"]) == ("vote", "COMBINER")
        assert [(c["name"], c["type"]) for c in graph["children"]] == [("linear", "MODEL"), ("tree", "MODEL")]
        members = {p["value"] for c in graph["children"] for p in c["parameters"] if p["name"] == "member"}
        assert members == {"linear", "tree"}
    else:
        steps = {s["name"] for d in docs if d["kind"] == "Pipeline" for s in d["spec"]["steps"]}
        assert {"ensemble-iris-v1-vote", "ensemble-iris-v1-linear", "ensemble-iris-v1-tree"} <= steps


def test_a_combiner_entry_runs_its_own_class_and_its_members_run_behind_the_guard() -> None:
    """A COMBINER's aggregate reads its children's answers, not the request: it runs its own class
    unguarded (and gets no model_uri), while its MODEL children, which read the request, run behind the
    schema guard with their model_uri."""
    from pushbutton.config import REPO_ROOT
    from pushbutton.kube.graph import interface_and_parameters
    from pushbutton.serving.spec import Predictor
    from pushbutton.spec import load_model_dir

    spec = load_model_dir(REPO_ROOT / "models" / "ensemble-iris")
    predictor = Predictor(name="champion", model="ensemble-iris", version="1", model_uri="/m",
                          class_ref=spec.predict.class_, inputs=tuple(spec.schema_.inputs), traffic=100)  # fmt: skip
    root = spec.serving.graph
    interface, params = interface_and_parameters(root, predictor, root=root, where="t")
    assert interface != "pushbutton_guard.Guarded" and "model_uri" not in {p["name"] for p in params}
    child_interface, child_params = interface_and_parameters(
        root.children[0], predictor, root=root, where="t"
    )
    assert "model_uri" in {p["name"] for p in child_params} and child_interface == "pushbutton_guard.Guarded"
