"""A graph version's bookkeeping on the local runtime (no model processes): which versions are graphs,
how a node's microservice is started, how its records belong to the version, and the monitoring store
keeping node records out of the indicators' rows."""

from __future__ import annotations

import json
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pushbutton.config import REPO_ROOT, Settings
from pushbutton.errors import ServingError, SpecError
from pushbutton.monitoring.records import InferenceRecord, node_predictor
from pushbutton.monitoring.store import open_store
from pushbutton.serving.envs import ServingEnv
from pushbutton.serving.graph_local import graph_key, is_graph, version_graph
from pushbutton.serving.microservice import (
    Microservice,
    Microservices,
    microservice_argv,
    node_parameters,
    service_name,
)
from pushbutton.spec.model import GraphNode

MODELS = REPO_ROOT / "models"


def test_only_a_declared_graph_is_served_node_by_node() -> None:
    assert not is_graph(GraphNode(), "predict:Cls")  # the default: the predict class alone
    assert not is_graph(GraphNode(name="m", **{"class": "predict:Cls"}), "predict:Cls")
    assert is_graph(GraphNode(name="m", **{"class": "other:Cls"}), "predict:Cls")
    assert is_graph(GraphNode(name="m", parameters={"k": 1}), "predict:Cls")
    root = version_graph(MODELS / "ensemble-iris", "predict:EnsembleClassifier")
    assert root is not None and [n.name for _, n in root.walk()] == ["vote", "linear", "tree"]
    assert version_graph(MODELS / "iris", "predict:IrisClassifier") is None


def test_a_code_directory_without_or_with_a_broken_model_yaml(tmp_path: Path) -> None:
    assert version_graph(tmp_path, "predict:Cls") is None  # a hand-made code directory: no graph
    shutil.copytree(MODELS / "ensemble-iris", tmp_path / "code")
    spec = tmp_path / "code" / "model.yaml"
    spec.write_text(spec.read_text().replace("type: COMBINER", "type: COMBINE"))
    # a SpecError (no retry) with the loader's file:line: field (fix), still a ServingError for restore
    with pytest.raises(
        SpecError,
        match=r"cannot read the serving graph of .*model.yaml.*\n.*model\.yaml:\d+: serving\.graph\.type",
    ) as caught:
        version_graph(tmp_path / "code", "predict:EnsembleClassifier")
    assert isinstance(caught.value, ServingError)


def test_the_graph_key_changes_with_the_graph() -> None:
    root = version_graph(MODELS / "ensemble-iris", "predict:EnsembleClassifier")
    assert graph_key(None) == "" and graph_key(root) == graph_key(root.model_copy())
    other = root.model_copy(update={"children": list(reversed(root.children))})
    assert graph_key(other) != graph_key(root)


def _params(argv: list[str]) -> list[dict]:
    return json.loads(argv[argv.index("--parameters") + 1])


def test_a_node_microservice_gets_its_type_and_typed_parameters() -> None:
    env = ServingEnv("abc", Path("/envs/abc"), Path("/envs/abc/bin/python"))
    params = node_parameters({"member": "tree", "depth": 3, "weight": 0.5, "strict": True})
    combiner = microservice_argv(env, "nodes:Vote", "", host="127.0.0.1", http_port=1, metrics_port=2,
                                 service_type="COMBINER", parameters=params)  # fmt: skip
    assert combiner[combiner.index("--service-type") + 1] == "COMBINER"
    assert "nodes.Vote" in combiner
    assert _params(combiner) == [
        {"name": "member", "value": "tree", "type": "STRING"},
        {"name": "depth", "value": "3", "type": "INT"},
        {"name": "weight", "value": "0.5", "type": "DOUBLE"},
        {"name": "strict", "value": "true", "type": "BOOL"},
    ]  # no model_uri: only MODEL nodes load the artifacts
    model = microservice_argv(env, "nodes:Member", "/art", host="h", http_port=1, metrics_port=2,
                              service_type="MODEL", parameters=params[:1])  # fmt: skip
    assert _params(model)[0] == {"name": "model_uri", "value": "/art", "type": "STRING"}
    assert _params(model)[1]["name"] == "member"


def _svc(name: str, pid: int, **kw) -> Microservice:
    return Microservice(name=name, namespace="models", model="shop", version="1", model_uri="/art",
                        class_ref="predict:Cls", code_dir="/code", env="/envs/x", host="127.0.0.1",
                        http_port=1, metrics_port=0, pid=pid, log="", **kw)  # fmt: skip


def test_node_services_belong_to_their_version(tmp_path: Path) -> None:
    services = Microservices(Settings(home=tmp_path))
    name = service_name("models", "shop", "1")
    nodes = [f"{name}.linear", f"{name}.vote"]
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    try:
        infos = {n: services.group.start(n, sleep) for n in [name, *nodes]}
        services.save(_svc(name, infos[name].pid, graph="{}", nodes=tuple(nodes)))
        for n in nodes:
            services.save(_svc(n, infos[n].pid, node=n.rsplit(".", 1)[1]))
        services.save(_svc(service_name("models", "shop", "11"), 1))  # v11 is not v1's node
        assert services.node_names(name) == nodes
        assert [s.name for s in services.list("models", "shop")] == [name]  # nodes are not versions
        assert services.get(name) is not None
        services.group.stop(nodes[0])  # a dead node: the version is not up
        assert services.get(name) is None
        assert services.stop(name) is True
        assert services.node_names(name) == [] and not any(services._alive(n) for n in [name, *nodes])
        assert [s.name for s in services.list(dead=True)] == [service_name("models", "shop", "11")]
    finally:
        for n in [name, *nodes]:
            services.group.stop(n)


def test_a_record_serves_only_the_graph_it_was_started_with() -> None:
    svc = _svc("svc-models.shop.v1", 1, graph='{"name": "vote"}')
    assert svc.serves("/art", "predict:Cls", "/code", '{"name": "vote"}')
    assert not svc.serves("/art", "predict:Cls", "/code", "")  # the version is no graph (any more)
    assert not _svc("svc-models.shop.v1", 1).serves("/art", "predict:Cls", "/code", '{"name": "vote"}')


T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _record(predictor: str, model_id: str, prediction: int) -> InferenceRecord:
    return InferenceRecord(
        request_id="r1", model="shop", predictor=predictor, version="1", model_id=model_id,
        request_event_id=f"{model_id}-q", response_event_id=f"{model_id}-p", request_time=T0,
        response_time=T0 + timedelta(milliseconds=5), latency_ms=5.0, status=200, names=("x",),
        inputs=[[1.5]], predictions=[prediction], request_body="{}", response_body="{}",
    )  # fmt: skip


def test_node_records_stay_in_the_request_log_not_the_indicators_rows(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'monitoring.db'}")
    try:
        store.ensure_model("shop", [("x", "double")], ("label", "long"))
        result = store.write_records(
            [_record("champion", "shop-v1", 1), _record(node_predictor("champion", "tree"), "tree", 7)]
        )
        assert (result.records, result.rows) == (2, 1)
        window = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
        frame = store.rows("shop", *window)
        assert frame["predictor"].tolist() == ["champion"] and frame["prediction"].tolist() == [1]
        assert store.versions("shop", *window) == [("champion", "1", 1)]
        assert {(r["predictor"], r["model_id"]) for r in store.records("shop", *window)} == {
            ("champion", "shop-v1"),
            ("champion:tree", "tree"),
        }
        summary = store.aggregate("shop", *window).requests
        assert summary[["predictor", "requests"]].values.tolist() == [["champion", 1]]
    finally:
        store.close()
