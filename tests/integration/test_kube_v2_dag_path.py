"""The release path on the seldon-v2 runtime, chosen by the Seldon Connection alone (``extra.runtime:
seldon-v2``), against a STAND-IN Kubernetes API server (kmock's KubernetesEmulator,
``tests/kube_standin.py``), not a cluster and not Seldon; the stand-in also plays Seldon Core v2's
controller (each new generation of a Model or Experiment reports ``Ready: False`` progressing, then,
once a client has read that, ``Ready: True`` — or the failure the test scripts).

As ``test_kube_dag_path.py`` does for seldon-v1: deploy candidate → activate → reject run through the
lifecycle with the runtime ``SeldonHook`` builds from the Connection; rollback and promote run as the
unchanged ``pushbutton__rollback`` / ``pushbutton__promote`` DAGs with ``dag.test()``. After each step
the Models and the Experiment in the stand-in, the registry aliases and the serving history are checked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pushbutton import registry as reg
from pushbutton.config import Settings
from tests.kube_paths import history, kube_connections, run_promotion_dags, trained_versions
from tests.kube_standin import V2Standin

pytestmark = [pytest.mark.integration, pytest.mark.standin]

MODEL, NS = "kube2-iris", "kube-v2-dag"
STORAGE = "s3://mlflow/models/{model}/{version}"
MODEL_FAILED = "ModelFailed: ScheduleFailed no matching server for requirements [mlflow]"
EXPERIMENT_FAILED = f"ExperimentFailed: mirror {MODEL}-v3 not routable"
SHADOW = {"  mode: canary\n  candidate_percent: 10\n": "  mode: shadow\n"}  # v3's model.yaml


@pytest.fixture(scope="module")
def standin() -> Iterator[V2Standin]:
    server = V2Standin().start()
    try:
        yield server
    finally:
        server.stop()


def connections(url: str) -> dict[str, str]:
    """The Seldon Connection choosing seldon-v2 over a Kubernetes Connection pointing at the stand-in."""
    return kube_connections(url, {"runtime": "seldon-v2", "storage_template": STORAGE,
                                  "apply_timeout_seconds": 30, "poll_seconds": 0.05})  # fmt: skip


def name(version: str) -> str:
    return f"{MODEL}-v{version}"


def serving(standin: V2Standin) -> dict[str, Any]:
    """What the stand-in holds, every object Ready: ``Model/NAME`` → (role, version, storageUri), and
    ``Experiment/NAME`` → its spec."""
    found: dict[str, Any] = {}
    for key, obj in standin.objects(NS).items():
        ready = [c["status"] for c in obj["status"]["conditions"] if c["type"] == "Ready"]
        assert ready == ["True"], (key, obj["status"])
        labels = obj["metadata"]["labels"]
        found[key] = (
            obj["spec"] if obj["kind"] == "Experiment"
            else (labels["pushbutton.io/role"], labels["pushbutton.io/version"], obj["spec"]["storageUri"])
        )  # fmt: skip
    return found


def model(role: str, version: str) -> tuple[str, str, str]:
    return role, version, STORAGE.format(model=MODEL, version=version)


def canary(champion: str, candidate: str) -> dict[str, Any]:
    """The Experiment of a 10 % canary (the iris spec's traffic): the champion's name is split."""
    weights = [{"name": name(champion), "weight": 90}, {"name": name(candidate), "weight": 10}]
    return {"default": name(champion), "resourceType": "model", "candidates": weights}


def mirror(champion: str, shadow: str) -> dict[str, Any]:
    """The Experiment of a shadow: the champion answers everything, the candidate gets a copy."""
    answering = [{"name": name(champion), "weight": 100}]
    return {"default": name(champion), "resourceType": "model", "candidates": answering,
            "mirror": {"name": name(shadow), "percent": 100}}  # fmt: skip


def applied(standin: V2Standin) -> dict[str, Any]:
    """Spec, labels and annotations of every object: what a restore must bring back exactly."""
    return {key: (obj["spec"], obj["metadata"].get("labels"), obj["metadata"].get("annotations"))
            for key, obj in standin.objects(NS).items()}  # fmt: skip


def test_release_path_on_the_seldon_v2_runtime(
    shared_stack: Settings, standin: V2Standin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from operators.hooks import SeldonHook
    from pushbutton.history import HistoryStore
    from pushbutton.kube.runtime import RolloutFailed
    from pushbutton.kube.runtime_v2 import SeldonV2Runtime
    from pushbutton.lifecycle import Platform, deploy_candidate, make_champion, register_candidate, reject

    cfg = shared_stack
    registry = reg.Registry(cfg.mlflow_url)
    v1, v2 = trained_versions(cfg, tmp_path / MODEL, name=MODEL, namespace=NS, count=2)
    (v3,) = trained_versions(cfg, tmp_path / "shadow", name=MODEL, namespace=NS, count=1, edits=SHADOW)
    for key, value in connections(standin.url).items():
        monkeypatch.setenv(key, value)
    runtime = SeldonHook().get_conn()
    assert isinstance(runtime, SeldonV2Runtime)  # the Connection chose it; no code names it
    p = Platform(settings=cfg, registry=registry, runtime=runtime, history=HistoryStore(cfg.store))

    def alias(which: str) -> str | None:
        found = registry.by_alias(MODEL, which)
        return found.version if found else None

    # first release: the candidate's Model alone, then activated (the same Model, now the champion)
    register_candidate(p, MODEL, v1)
    first = deploy_candidate(p, MODEL, v1, actor="pipeline")["serving"]
    assert (first["action"], first["resources"]) == ("created", {f"Model/{name(v1)}": "created"})
    assert serving(standin) == {f"Model/{name(v1)}": model("candidate", v1)}
    make_champion(p, MODEL, v1, action="activate", actor="alice")
    assert serving(standin) == {f"Model/{name(v1)}": model("champion", v1)}
    assert (alias("champion"), alias("candidate")) == (v1, None)

    # a canary of v2 beside v1: an Experiment splitting the champion's name 90/10; then activated
    register_candidate(p, MODEL, v2)
    deploy_candidate(p, MODEL, v2, actor="pipeline")
    assert serving(standin) == {f"Model/{name(v1)}": model("champion", v1),
                                f"Model/{name(v2)}": model("candidate", v2),
                                f"Experiment/{MODEL}": canary(v1, v2)}  # fmt: skip
    assert runtime.route(NS, MODEL)["weights"] == {"champion": 90, "candidate": 10}
    make_champion(p, MODEL, v2, action="activate", actor="alice")
    assert serving(standin) == {f"Model/{name(v2)}": model("champion", v2)}  # the Experiment and v1 went
    assert (alias("champion"), alias("previous"), registry.get(MODEL, v1).status) == (v2, v1, "retired")

    # v3 (traffic mode shadow) whose Experiment Seldon reports Failed: everything is as before, v2 alone
    register_candidate(p, MODEL, v3)
    before = applied(standin)
    standin.script(MODEL, (False, EXPERIMENT_FAILED))
    with pytest.raises(RolloutFailed, match="ExperimentFailed") as failed:
        deploy_candidate(p, MODEL, v3, actor="pipeline")
    assert f"restored the previous spec of Model {NS}/{name(v2)}" in str(
        failed.value
    )  # patched for the canary
    assert applied(standin) == before
    assert (alias("champion"), alias("candidate")) == (v2, v3)

    # the shadow again (Ready this time), rejected: the champion answers alone, nothing of v3 is left
    deploy_candidate(p, MODEL, v3, actor="pipeline")
    assert serving(standin) == {f"Model/{name(v2)}": model("champion", v2),
                                f"Model/{name(v3)}": model("candidate", v3),
                                f"Experiment/{MODEL}": mirror(v2, v3)}  # fmt: skip
    assert runtime.route(NS, MODEL)["shadows"] == ["candidate"]
    reject(p, MODEL, v3, actor="bob")
    assert serving(standin) == {f"Model/{name(v2)}": model("champion", v2)}
    annotations = standin.objects(NS)[f"Model/{name(v2)}"]["metadata"]["annotations"]
    assert "pushbutton.io/candidate-version" not in annotations
    assert annotations["pushbutton.io/champion-version"] == v2
    assert (alias("champion"), alias("candidate"), registry.get(MODEL, v3).status) == (v2, None, "rejected")
    assert all(ready for kind, *_, ready in standin.server.rollouts if kind == "Model")
    before_dags = len(standin.server.rollouts)

    # the unchanged promotion DAGs; v1's Model fails to schedule on the second promotion to it
    standin.script(name(v1), (True, "ModelAvailable"), (False, MODEL_FAILED))
    steps = [["pushbutton__rollback", "previous"], ["pushbutton__promote", v2], ["pushbutton__promote", v1]]
    (rollback, promote, failed_run), logs = run_promotion_dags(cfg, connections(standin.url), MODEL, steps)
    assert rollback == {"state": "success", "aliases": {"champion": v1, "previous": v2},
                        "tasks": {"rollback": ["success", 1]}}  # fmt: skip
    assert promote == {"state": "success", "aliases": {"champion": v2, "previous": v1},
                       "tasks": {"promote": ["success", 1]}}  # fmt: skip
    # Failed: the task fails at once (no retry re-applying a failing spec), the champion is untouched
    assert failed_run == {"state": "failed", "aliases": {"champion": v2, "previous": v1},
                          "tasks": {"promote": ["failed", 1]}}  # fmt: skip
    assert "ScheduleFailed" in logs and f"deleted Model {NS}/{name(v1)} again (it was new)" in logs
    # each DAG's step handed its wait to the trigger (run in line by dag.test()) and resumed after it
    assert logs.count("the task waits in the triggerer") == 3
    assert logs.count("ready; the step goes on") == 2  # the third: ModelFailed, undone in the resumed task
    assert [r[1:] for r in standin.server.rollouts[before_dags:]] == [
        (name(v1), 1, True),  # rollback: v1's Model again (v2's removed after the switch)
        (name(v2), 1, True),  # promote v2
        (name(v1), 1, False),  # promote v1: Seldon reports ModelFailed; the new Model is deleted again
    ]
    assert serving(standin) == {f"Model/{name(v2)}": model("champion", v2)}
    assert registry.get(MODEL, v2).status == "champion"

    assert history(p.history.events(MODEL)) == [
        ("deploy_candidate", v1, None, "pipeline"),
        ("activate", v1, None, "alice"),
        ("deploy_candidate", v2, v1, "pipeline"),
        ("activate", v2, v1, "alice"),
        ("deploy_candidate", v3, v2, "pipeline"),  # once: the failed canary recorded nothing
        ("reject", v3, v2, "bob"),
        ("rollback", v1, v2, "dag_test"),
        ("promote", v2, v1, "dag_test"),
    ]  # the failed promotion recorded nothing
