"""A graph served node by node on the local runtime: models/ensemble-iris (two MODEL nodes under a
COMBINER) deployed through ``LocalRuntime`` behind a real gateway, one seldon-core microservice per node
plus the version's orchestrator, every request logged at the entry (gateway) and per node
(orchestrator) to a real logger and store. Answers must equal the in-process ``GraphExecutor`` and the
predict class; a dead node fails requests with an error naming it; removing the deployment leaves no
process behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from pushbutton.config import REPO_ROOT, Settings
from pushbutton.errors import ServingError
from pushbutton.monitoring.logger import logger_argv
from pushbutton.monitoring.store import open_store
from pushbutton.procs import http_ok, wait_ready
from pushbutton.serving.client import gateway_argv
from pushbutton.serving.envs import ensure_env, model_requirements
from pushbutton.serving.graph import GraphExecutor, build_components
from pushbutton.serving.microservice import service_name
from pushbutton.serving.spec import Release, champion_only, predictor
from pushbutton.templates import LocalModel, train_local
from pushbutton.training import load_reference
from tests.integration.conftest import home_with_shared_envs
from tests.integration.serving_fixtures import Serving, serving_home

pytestmark = pytest.mark.integration

MODEL_DIR = REPO_ROOT / "models" / "ensemble-iris"


@dataclass
class Deployed:
    serving: Serving
    trained: LocalModel
    code_dir: Path
    release: Release
    store_url: str


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, serving_envs: Path) -> Iterator[Deployed]:
    root = tmp_path_factory.mktemp("graph-serving")
    code_dir = root / "code"
    shutil.copytree(MODEL_DIR, code_dir, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    trained = train_local(code_dir, root / "trained")
    env = ensure_env(
        model_requirements(code_dir, trained.model_uri),
        python=Settings().serving_python,
        root=serving_envs,
    )
    release = Release("1", trained.model_uri, env.key, str(code_dir))
    store_url = f"sqlite:///{root / 'monitoring.db'}"
    (root / "no-models").mkdir()
    with serving_home(home_with_shared_envs(root, serving_envs)) as serving:
        cfg = serving.settings
        argv = logger_argv(cfg.host, cfg.logger_port, store_url, root / "no-models")
        info = serving.group.start("logger", [*argv, "--pair-timeout", "1"])
        wait_ready(info, http_ok(cfg.logger_url + "/health"), 60, "logger")
        serving.stop_gateway()  # again, logging the entries to this logger
        argv = gateway_argv(cfg.host, cfg.gateway_port, serving.state, logger_url=cfg.logger_url,
                            spool_dir=root / "gateway-spool")  # fmt: skip
        info = serving.group.start("gateway", argv)
        wait_ready(info, http_ok(cfg.gateway_url + "/health"), 60, "gateway")
        yield Deployed(serving, trained, code_dir, release, store_url)


def _spec(d: Deployed):
    return champion_only(d.trained.spec, d.release)


def _payload(d: Deployed) -> dict:
    x = d.trained.split.x_holdout
    return {"data": {"names": list(x.columns), "ndarray": x.to_numpy().tolist()}}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def test_graph_serves_node_by_node_logs_per_node_and_stops_everything(deployed: Deployed) -> None:
    d, spec = deployed, _spec(deployed)
    runtime = d.serving.runtime
    name = service_name(spec.namespace, spec.deployment, "1")

    # build time: the test step warms the version; what it calls is the graph, not the predict class
    warm_url = runtime.warm(spec.namespace, spec.predictors[0])
    nodes = runtime.services.node_names(name)
    assert nodes == [f"{name}.linear", f"{name}.tree", f"{name}.vote"]
    result = runtime.apply(spec)
    assert result["reused"] == [name] and result["started"] == []
    assert result["route"]["backends"]["champion"]["url"] == warm_url
    assert [s.name for s in runtime.services.list(spec.namespace, spec.deployment)] == [name]

    # answers: the graph over HTTP == the graph in-process == the predict class
    x = d.trained.split.x_holdout
    answer = runtime.predict(spec.namespace, spec.deployment, _payload(d))
    served = np.asarray(answer["response"]["data"]["ndarray"]).reshape(-1)
    components = build_components(
        d.trained.spec.serving.graph,
        default_class=d.trained.spec.predict.class_,
        model_uri=d.trained.model_uri,
        resolve=lambda ref: load_reference(d.code_dir, ref, "serving.graph"),
    )
    in_process = GraphExecutor(d.trained.spec.serving.graph, components).predict(
        x.to_numpy(), list(x.columns)
    )
    assert served.tolist() == np.asarray(in_process.message.data).tolist()
    assert (
        served.tolist() == np.asarray(d.trained.predictor().predict(x.to_numpy(), list(x.columns))).tolist()
    )
    meta = answer["response"]["meta"]
    assert meta["routing"] == {} and set(meta["requestPath"]) == {"vote", "linear", "tree"}
    puid = meta["puid"]

    # the entry once (gateway), each node below it once (orchestrator), all under the request's id
    store = open_store(d.store_url)
    now = datetime.now(UTC)
    deadline = time.monotonic() + 60
    while True:
        records = [r for r in store.records(spec.deployment, now - timedelta(hours=1), now + timedelta(hours=1))
                   if r["request_id"] == puid]  # fmt: skip
        found = {(r["predictor"], r["model_id"]): r for r in records if r["complete"]}
        if len(found) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # polling the store for the logger's writes: there is no event to wait on
    assert set(found) == {
        ("champion", "ensemble-iris-v1"),
        ("champion:linear", "linear"),
        ("champion:tree", "tree"),
    }
    assert all(r["version"] == "1" and r["status"] == 200 for r in found.values())
    assert [v for v in store.versions(spec.deployment, now - timedelta(hours=1), now + timedelta(hours=1))
            if ":" in v[0]] == []  # fmt: skip

    # a dead node: a quick, clear error naming it (no hang)
    tree = runtime.services.group.get(f"{name}.tree")
    os.killpg(tree.pgid, signal.SIGKILL)
    started = time.monotonic()
    resp = httpx.post(warm_url + "/api/v1.0/predictions", json=_payload(d), timeout=30)
    assert time.monotonic() - started < 10
    assert resp.status_code == 502
    assert "graph node 'tree'" in resp.json()["status"]["info"]
    assert runtime.services.get(name) is None  # the version is not up without all its nodes

    # remove: the orchestrator and every node are gone
    pids = [runtime.services.group.get(n).pid for n in (name, f"{name}.linear", f"{name}.vote")]
    runtime.remove(spec.namespace, spec.deployment)
    assert not any(_alive(pid) for pid in pids)
    assert runtime.services.node_names(name) == []
    assert runtime.services.list(spec.namespace, spec.deployment, dead=True) == []


def test_restore_starts_the_whole_graph_again(deployed: Deployed) -> None:
    d, spec = deployed, _spec(deployed)
    runtime = d.serving.runtime
    name = service_name(spec.namespace, spec.deployment, "1")
    runtime.apply(spec)
    before = runtime.services.get(name)
    assert before is not None and len(before.nodes) == 3
    runtime.stop_all()  # `pushbutton down`: processes stop, records stay
    assert runtime.services.get(name) is None
    assert not any(runtime.services._alive(n) for n in (name, *before.nodes))
    [restored] = [r for r in runtime.restore() if r["deployment"] == spec.key]
    assert restored["restarted"] == [name] and restored["errors"] == []
    after = runtime.services.get(name)
    assert after is not None and after.url != before.url and after.nodes == before.nodes
    answer = runtime.predict(spec.namespace, spec.deployment, _payload(d))
    assert len(answer["response"]["data"]["ndarray"]) == len(d.trained.split.x_holdout)
    runtime.remove(spec.namespace, spec.deployment)
    assert runtime.services.get(name) is None and runtime.services.node_names(name) == []


def test_a_node_that_cannot_start_fails_the_deploy_naming_it_and_leaves_nothing(deployed: Deployed) -> None:
    d = deployed
    runtime = d.serving.runtime
    broken_dir = d.code_dir.parent / "broken-code"
    shutil.copytree(d.code_dir, broken_dir)
    nodes = broken_dir / "nodes.py"
    nodes.write_text(nodes.read_text().replace(
        "        ensemble = mlflow.sklearn.load_model(model_uri)\n",
        "        ensemble = mlflow.sklearn.load_model(model_uri)\n"
        "        if member == 'tree':\n            raise RuntimeError('tree weights corrupted (on purpose)')\n",
    ))  # fmt: skip
    release = Release("2", d.trained.model_uri, d.release.env_key, str(broken_dir))
    candidate = predictor(d.trained.spec, "candidate", release)
    namespace = d.trained.spec.serving.namespace
    with pytest.raises(ServingError, match=r"(?s)graph node 'tree' \(MODEL\).*tree weights corrupted"):
        runtime.warm(namespace, candidate)
    name = service_name(namespace, candidate.model, "2")
    assert runtime.services.node_names(name) == []  # linear and vote came up, and were stopped again
    assert runtime.services.group.get(name) is None


def test_a_transformer_entry_answers_a_bad_row_with_a_400_naming_the_feature(deployed: Deployed) -> None:
    """The schema guard checks the rows where the graph reads them first, whatever the entry's type:
    here a TRANSFORMER over the ensemble, so a malformed row is a 400 from the entry, not a failure deep
    inside a member."""
    d = deployed
    runtime = d.serving.runtime
    code = d.code_dir.parent / "prep-code"
    shutil.copytree(d.code_dir, code)
    names = list(d.trained.split.x_holdout.columns)
    (code / "prep.py").write_text(  # seldon-core 1.18 names a transformer's answer by its class_names
        f"class Prep:\n    class_names = {names!r}\n\n"
        "    def transform_input(self, X, features_names=None):\n"
        "        return X.astype(float)\n"
    )
    spec_file = code / "model.yaml"
    doc = yaml.safe_load(spec_file.read_text())
    ensemble = doc["serving"]["graph"]
    doc["serving"]["graph"] = {
        "name": "prep",
        "type": "TRANSFORMER",
        "class": "prep:Prep",
        "children": [ensemble],
    }
    spec_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    release = Release("3", d.trained.model_uri, d.release.env_key, str(code))
    candidate = predictor(d.trained.spec, "candidate", release)
    namespace = d.trained.spec.serving.namespace
    name = service_name(namespace, candidate.model, "3")
    try:
        url = runtime.warm(namespace, candidate)
        good = _payload(d)
        resp = httpx.post(url + "/api/v1.0/predictions", json=good, timeout=30)
        assert resp.status_code == 200, resp.text
        assert len(resp.json()["data"]["ndarray"]) == len(good["data"]["ndarray"])
        bad = {"data": {"names": names, "ndarray": [["abc", *good["data"]["ndarray"][0][1:]]]}}
        resp = httpx.post(url + "/api/v1.0/predictions", json=bad, timeout=30)
        assert resp.status_code == 400, resp.text
        status = resp.json()["status"]
        assert status["reason"] == "MICROSERVICE_BAD_DATA"
        assert "graph node 'prep' (TRANSFORMER" in status["info"]
        assert f"feature '{names[0]}' (double) in row 0 is not a number ('abc')" in status["info"]
    finally:
        runtime.services.stop(name)
    assert runtime.services.node_names(name) == []
