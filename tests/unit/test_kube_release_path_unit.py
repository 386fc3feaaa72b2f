"""What the release and monitoring paths need of the seldon-v1 runtime, without a server: what a
SeldonDeployment serves as a route (monitoring's targets), the fleet's route lookup on a runtime
without a gateway, pushbutton's stale annotations removed, and a Failed rollout failing without retry."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pushbutton.config import REPO_ROOT
from pushbutton.errors import ServingError
from pushbutton.kube.runtime import KubernetesRuntime, RolloutFailed, _apply_patch, predictor_route
from pushbutton.monitoring.runtime import Target, route_targets
from pushbutton.serving.spec import Release, champion_only, with_candidate
from pushbutton.spec import load_model_dir

SPEC = load_model_dir(REPO_ROOT / "models" / "iris")  # canary, 10 %; namespace models


def release(version: str) -> Release:
    return Release(version, f"models:/iris/{version}", "k")


def kube_runtime(deployments: Any) -> KubernetesRuntime:
    runtime = KubernetesRuntime(None, image_registry="registry.example/models", timeout=10, poll_interval=1,
                                sleep=lambda s: None, clock=lambda: 0.0)  # fmt: skip
    runtime.deployments = deployments
    return runtime


def rendered(spec: Any) -> dict[str, Any]:
    return kube_runtime(None).manifest(spec)


def test_a_seldon_deployment_reads_as_the_route_monitoring_targets() -> None:
    canary = rendered(with_candidate(SPEC, release("2"), release("1")))
    route = predictor_route(canary)
    assert route == {"backends": {"champion": {"version": "1"}, "candidate": {"version": "2"}},
                     "weights": {"champion": 90, "candidate": 10}, "shadows": []}  # fmt: skip
    assert route_targets(route) == [Target("champion", "1"), Target("candidate", "2")]

    shadow = SPEC.model_copy(update={"traffic": SPEC.traffic.model_copy(update={"mode": "shadow"})})
    route = predictor_route(rendered(with_candidate(shadow, release("3"), release("1"))))
    assert (route["weights"], route["shadows"]) == ({"champion": 100}, ["candidate"])
    assert Target("shadow", "3") in route_targets(route)

    by_hand = {"spec": {"predictors": [{"name": "main", "graph": {}}]}}  # kubectl-made: no labels, no traffic
    assert predictor_route(by_hand) == {"backends": {"main": {"version": ""}}, "weights": {"main": 100},
                                        "shadows": []}  # fmt: skip
    assert route_targets(predictor_route(by_hand)) == []  # no version: nothing to attribute results to


class Deployments:
    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]]):
        self.objects, self.reads = objects, []

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append((namespace, name))
        return self.objects.get((namespace, name))


def test_the_fleet_reads_routes_from_seldon_deployments_on_a_runtime_without_a_gateway() -> None:
    from operators.monitoring import serving_routes

    champion = rendered(champion_only(SPEC, release("4")))
    deployments = Deployments({("models", "iris"): champion})
    runtime = kube_runtime(deployments)
    assert not hasattr(runtime, "gateway")  # what the fleet used to ask for (AttributeError)
    routes = serving_routes(runtime, [("models", "iris"), ("models", "gone"), ("models", "iris")])
    assert routes == {"models/iris": {"config": {"backends": {"champion": {"version": "4"}},
                                                 "weights": {"champion": 100}, "shadows": []}}}  # fmt: skip
    assert deployments.reads == [("models", "iris"), ("models", "gone")]  # one read per deployment

    local = SimpleNamespace(gateway=SimpleNamespace(routes=lambda: {"models/iris": {"config": {"x": 1}}}))
    assert serving_routes(local, [("models", "iris")]) == {"models/iris": {"config": {"x": 1}}}


def test_reject_and_activate_drop_the_candidates_annotation() -> None:
    canary = rendered(with_candidate(SPEC, release("2"), release("1")))
    back = rendered(champion_only(SPEC, release("1")))
    canary["metadata"]["annotations"]["team.example/owner"] = "ds"  # someone else's: left alone
    patch = _apply_patch(canary, back)
    annotations = patch["metadata"]["annotations"]
    assert annotations["pushbutton.io/candidate-version"] is None
    assert "team.example/owner" not in annotations  # not ours: never removed
    assert "pushbutton.io/champion-version" not in annotations  # unchanged (v1 in both)


class Rollout:
    """A deployment that exists (generation 1, Available) and answers the patched generation with
    ``state``; records writes."""

    def __init__(self, current: dict[str, Any], state: str):
        self.current, self.state, self.writes = current, state, []

    @staticmethod
    def what(namespace: str, name: str) -> str:
        return f"SeldonDeployment {namespace}/{name}"

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        generation = 1 + len(self.writes)
        status = {"state": self.state if self.writes else "Available", "observedGeneration": generation,
                  "description": "ImagePullBackOff" if self.state == "Failed" else "rolling out"}  # fmt: skip
        return {**self.current, "metadata": {**self.current["metadata"], "generation": generation},
                "status": status}  # fmt: skip

    def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(patch)
        return {"metadata": {"generation": 1 + len(self.writes)}}


@pytest.mark.parametrize(("state", "error"), [("Failed", RolloutFailed), ("Creating", ServingError)])
def test_a_failed_rollout_is_final_a_timeout_is_not(state: str, error: type[Exception]) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from operators.lifecycle import _final

    current = rendered(champion_only(SPEC, release("1")))
    current["metadata"]["generation"] = 1
    runtime = kube_runtime(Rollout(current, state))
    clock = iter(range(0, 1000, 5))
    runtime.clock = lambda: float(next(clock))
    with pytest.raises(ServingError, match="restored the previous spec") as caught:
        runtime.apply(champion_only(SPEC, release("2")))
    assert type(caught.value) is error
    assert len(runtime.deployments.writes) == 2  # the new spec, then the previous one back
    if error is RolloutFailed:
        with pytest.raises(AirflowFailException, match="ImagePullBackOff"):
            _final(lambda: runtime.apply(champion_only(SPEC, release("2"))))
    else:  # may be retried: the task's retries apply
        with pytest.raises(ServingError):
            _final(lambda: runtime.apply(champion_only(SPEC, release("2"))))
