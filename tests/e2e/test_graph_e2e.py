"""An inference graph through the whole CI/CD path on the shared demo stack: ``models/ensemble-iris``
(a COMBINER over two MODEL nodes) is pushed, built, tested through its graph, registered, deployed as
the candidate and approved; then it serves node by node through the gateway (one microservice per
node behind the version's orchestrator) and the request log holds the graph's entry once plus a
record per node below it, under the request's id."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

pytestmark = pytest.mark.e2e
MODEL = "ensemble-iris"
LOG_TIMEOUT = 60.0


def test_an_ensemble_graph_goes_through_ci_cd_and_serves_node_by_node(demo) -> None:
    from sklearn.datasets import load_iris

    from pushbutton.actions import model_status, push, respond_approval
    from pushbutton.airflow_client import AirflowClient
    from pushbutton.monitoring.records import is_node_predictor
    from pushbutton.monitoring.store import open_store
    from pushbutton.spec import load_model_dir

    cfg, _, _ = demo
    spec = load_model_dir(cfg.models_dir / MODEL)
    pushed = push(cfg, cfg.models_dir / MODEL, trigger=True)
    version, dag_id, run_id = pushed["version"], pushed["pipeline"]["dag_id"], pushed["pipeline"]["run_id"]
    with AirflowClient.from_settings(cfg) as client:
        client.wait_hitl(dag_id, run_id, timeout=900, poll=0.5)
        assert respond_approval(cfg, MODEL, approve=True)["answer"] == "Approve"
        assert client.wait_run(dag_id, run_id, timeout=300)["state"] == "success"
        states = {t["task_id"]: t["state"] for t in client.task_instances(dag_id, run_id)}
    assert {states[t] for t in ("build", "test", "register", "deploy_candidate", "approve", "activate")} == {
        "success"
    }
    status = model_status(cfg, MODEL)
    assert status["aliases"]["champion"] == version

    iris = load_iris()
    picked = list(range(0, 150, 10))  # 15 rows, every class
    url = f"{cfg.gateway_url}/seldon/{spec.serving.namespace}/{MODEL}/api/v1.0/predictions"
    body = {"data": {"names": spec.feature_names, "ndarray": iris.data[picked].tolist()}}
    started = datetime.now(UTC) - timedelta(seconds=1)
    answer = httpx.post(url, json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Pushbutton-Version"] == version
    meta = answer.json()["meta"]
    assert set(meta["requestPath"]) == {"vote", "linear", "tree"}  # every node answered
    labels = answer.json()["data"]["ndarray"]
    correct = sum(int(label == truth) for label, truth in zip(labels, iris.target[picked], strict=True))
    assert correct >= 13  # the trained ensemble (gate: accuracy >= 0.85), not an untrained node

    puid = meta["puid"]
    deadline = time.monotonic() + LOG_TIMEOUT
    with open_store(cfg=cfg) as store:
        while True:  # the logger writes in batches: poll the store until the three records are in
            mine = [
                r
                for r in store.records(MODEL, started, datetime.now(UTC) + timedelta(minutes=1))
                if r["request_id"] == puid
            ]
            if len(mine) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
    entry = [r for r in mine if not is_node_predictor(r["predictor"])]
    nodes = sorted(r["predictor"] for r in mine if is_node_predictor(r["predictor"]))
    assert [(r["predictor"], r["version"], r["status"]) for r in entry] == [("champion", version, 200)]
    assert nodes == ["champion:linear", "champion:tree"]
    assert all(r["complete"] for r in mine)
