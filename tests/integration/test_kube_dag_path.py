"""The release path on the seldon-v1 runtime, chosen by the Seldon Connection alone, against a STAND-IN
Kubernetes API server (kmock's KubernetesEmulator, ``tests/kube_standin.py``), not a cluster and not
Seldon; the stand-in also plays Seldon's operator (each new generation reports ``Creating``, then,
once a client has read that, ``Available`` — or ``Failed`` when the test scripts it).

Deploy candidate → activate → reject run through the lifecycle (``pushbutton.lifecycle``) with the
runtime ``SeldonHook`` builds from the Connection: the CI/CD DAG's build and test steps need local
microservices, so that DAG is not run here. Rollback and promote run as the unchanged
``pushbutton__rollback`` / ``pushbutton__promote`` DAGs with ``dag.test()`` in an Airflow process with
the stack's environment. Versions, aliases and the serving history live in the tier's shared MLflow
and store."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import kmock
import pytest

from pushbutton import registry as reg
from pushbutton.config import Settings
from tests.kube_paths import history, kube_connections, run_promotion_dags, trained_versions
from tests.kube_standin import RESOURCE, SeldonApiStandin, Standin

pytestmark = [pytest.mark.integration, pytest.mark.standin]

MODEL, NS = "kube-iris", "kube-dag"
REGISTRY = "registry.example/models"
FAILURE = f"predictor champion: container model: ImagePullBackOff {REGISTRY}/{MODEL}:1"


@attrs.define(kw_only=True)
class SeldonOperatorStandin(SeldonApiStandin):
    """The API server stand-in, also playing Seldon's operator: a write that makes a new generation
    sets ``Creating`` for it; the first read that returns ``Creating`` then moves the status on to the
    next scripted outcome (``outcomes``, default ``Available``). ``served`` keeps each generation's
    spec and outcome, in order."""

    outcomes: list[tuple[str, str]] = attrs.field(factory=list)
    served: list[dict[str, Any]] = attrs.field(factory=list)
    pending: dict[tuple[str, str], tuple[str, str]] = attrs.field(factory=dict)

    async def _serve_create(self, request: Any) -> Any:
        payload = await super()._serve_create(request)
        self._roll_out(request)
        return payload

    async def _serve_update(self, request: Any) -> Any:
        payload = await super()._serve_update(request)
        self._roll_out(request)
        return payload

    def _roll_out(self, request: Any) -> None:
        obj = self._stored(request)
        meta = obj.raw["metadata"]
        generation = meta.get("generation", 1)
        if (obj.raw.get("status") or {}).get("observedGeneration") == generation:
            return  # labels or annotations only: nothing new to roll out
        outcome = self.outcomes.pop(0) if self.outcomes else ("Available", "")
        self.pending[meta["namespace"], meta["name"]] = outcome
        self.served.append({"generation": generation, "spec": copy.deepcopy(obj.raw["spec"]),
                            "outcome": outcome[0]})  # fmt: skip
        obj.patch({"status": {"state": "Creating", "description": "", "observedGeneration": generation}})

    async def _serve_fetch(self, request: Any) -> Any:
        payload = copy.deepcopy(await super()._serve_fetch(request))
        if (payload.get("status") or {}).get("state") == "Creating":
            outcome = self.pending.pop((request.namespace, request.name), None)
            if outcome is not None:
                status = {"state": outcome[0], "description": outcome[1],
                          "observedGeneration": payload["metadata"]["generation"]}  # fmt: skip
                self._stored(request).patch({"status": status})
        return payload


class OperatorStandin(Standin):
    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with SeldonOperatorStandin() as server, kmock.Server(server) as http:
            server.resources[RESOURCE] = {}
            self.server, self.url = server, str(http.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()


@pytest.fixture(scope="module")
def standin() -> Iterator[OperatorStandin]:
    server = OperatorStandin().start()
    try:
        yield server
    finally:
        server.stop()


def connections(url: str) -> dict[str, str]:
    """The Seldon Connection choosing seldon-v1 over a Kubernetes Connection pointing at the stand-in."""
    return kube_connections(url, {"runtime": "seldon-v1", "image_registry": REGISTRY,
                                  "apply_timeout_seconds": 30, "poll_seconds": 0.05})  # fmt: skip


def image(version: str) -> str:
    return f"{REGISTRY}/{MODEL}:{version}"


def predictors(spec: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """traffic and image of each predictor of a SeldonDeployment spec."""
    return {
        p["name"]: (p["traffic"], p["componentSpecs"][0]["spec"]["containers"][0]["image"])
        for p in spec["predictors"]
    }


def test_release_path_on_the_kubernetes_runtime(
    shared_stack: Settings, standin: OperatorStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from operators.hooks import SeldonHook
    from pushbutton.history import HistoryStore
    from pushbutton.kube.runtime import KubernetesRuntime
    from pushbutton.lifecycle import Platform, deploy_candidate, make_champion, register_candidate, reject

    cfg = shared_stack
    registry = reg.Registry(cfg.mlflow_url)
    v1, v2, v3 = trained_versions(cfg, tmp_path / MODEL, name=MODEL, namespace=NS)
    for key, value in connections(standin.url).items():
        monkeypatch.setenv(key, value)
    runtime = SeldonHook().get_conn()
    assert isinstance(runtime, KubernetesRuntime)  # the Connection chose it; no code names it
    p = Platform(settings=cfg, registry=registry, runtime=runtime, history=HistoryStore(cfg.store))

    def serving() -> dict[str, tuple[int, str]]:
        obj = standin.get(NS, MODEL)
        assert obj is not None and obj["status"]["state"] == "Available"
        return predictors(obj["spec"])

    def alias(name: str) -> str | None:
        found = registry.by_alias(MODEL, name)
        return found.version if found else None

    # first release: the candidate alone, then activated
    register_candidate(p, MODEL, v1)
    assert deploy_candidate(p, MODEL, v1, actor="pipeline")["serving"]["action"] == "created"
    assert serving() == {"candidate": (100, image(v1))}
    make_champion(p, MODEL, v1, action="activate", actor="alice")
    assert serving() == {"champion": (100, image(v1))}
    assert (alias("champion"), alias("candidate")) == (v1, None)

    # a canary of v2 beside v1 (the spec's 10 %), then activated
    register_candidate(p, MODEL, v2)
    deploy_candidate(p, MODEL, v2, actor="pipeline")
    assert serving() == {"champion": (90, image(v1)), "candidate": (10, image(v2))}
    make_champion(p, MODEL, v2, action="activate", actor="alice")
    assert serving() == {"champion": (100, image(v2))}
    assert (alias("champion"), alias("previous"), registry.get(MODEL, v1).status) == (v2, v1, "retired")

    # a canary of v3, rejected: the champion takes all traffic back, nothing of v3 is left
    register_candidate(p, MODEL, v3)
    deploy_candidate(p, MODEL, v3, actor="pipeline")
    assert serving() == {"champion": (90, image(v2)), "candidate": (10, image(v3))}
    reject(p, MODEL, v3, actor="bob")
    assert serving() == {"champion": (100, image(v2))}
    annotations = standin.get(NS, MODEL)["metadata"]["annotations"]
    assert "pushbutton.io/candidate-version" not in annotations
    assert annotations["pushbutton.io/champion-version"] == v2
    assert (alias("champion"), alias("candidate"), registry.get(MODEL, v3).status) == (v2, None, "rejected")
    assert all(s["outcome"] == "Available" for s in standin.server.served)  # 6 rollouts, each waited for
    assert [s["generation"] for s in standin.server.served] == list(range(1, 7))
    before_dags = len(standin.server.served)

    # the unchanged promotion DAGs; the third rollout is reported Failed by the operator
    standin.call(
        lambda: standin.server.outcomes.extend([("Available", ""), ("Available", ""), ("Failed", FAILURE)])
    )
    steps = [["pushbutton__rollback", "previous"], ["pushbutton__promote", v2], ["pushbutton__promote", v1]]
    (rollback, promote, failed), logs = run_promotion_dags(cfg, connections(standin.url), MODEL, steps)
    assert rollback == {"state": "success", "aliases": {"champion": v1, "previous": v2},
                        "tasks": {"rollback": ["success", 1]}}  # fmt: skip
    assert promote == {"state": "success", "aliases": {"champion": v2, "previous": v1},
                       "tasks": {"promote": ["success", 1]}}  # fmt: skip
    # Failed: the task fails at once (no retry re-applying a failing spec), the champion is untouched
    assert failed == {"state": "failed", "aliases": {"champion": v2, "previous": v1},
                      "tasks": {"promote": ["failed", 1]}}  # fmt: skip
    assert "ImagePullBackOff" in logs and "restored the previous spec" in logs
    # each DAG's step handed its wait to the trigger (run in line by dag.test()) and resumed after it
    assert logs.count("the task waits in the triggerer") == 3
    assert logs.count("ready; the step goes on") == 2  # the third: Failed, undone in the resumed task

    rollouts = standin.server.served[before_dags:]
    assert [(predictors(s["spec"]), s["outcome"]) for s in rollouts] == [
        ({"champion": (100, image(v1))}, "Available"),  # rollback
        ({"champion": (100, image(v2))}, "Available"),  # promote v2
        ({"champion": (100, image(v1))}, "Failed"),  # promote v1: the operator reports Failed
        ({"champion": (100, image(v2))}, "Available"),  # the previous spec, put back
    ]
    assert standin.get(NS, MODEL)["spec"] == rollouts[1]["spec"]
    assert registry.get(MODEL, v2).status == "champion"

    assert history(p.history.events(MODEL)) == [
        ("deploy_candidate", v1, None, "pipeline"),
        ("activate", v1, None, "alice"),
        ("deploy_candidate", v2, v1, "pipeline"),
        ("activate", v2, v1, "alice"),
        ("deploy_candidate", v3, v2, "pipeline"),
        ("reject", v3, v2, "bob"),
        ("rollback", v1, v2, "dag_test"),
        ("promote", v2, v1, "dag_test"),
    ]  # the failed promotion recorded nothing
