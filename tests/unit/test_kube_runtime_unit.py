"""The seldon-v1 runtime's logic without a server: merge patches, API error mapping, availability,
the bounded wait (injected clock), the Connection's extra, and the hook choosing the runtime."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pushbutton.errors import AlreadyExists, NotFound, ServingError, SpecError
from pushbutton.kube.client import api_error, merge_diff
from pushbutton.kube.rollout import undo_step
from pushbutton.kube.runtime import KubernetesRuntime, NotAvailable, availability, seldon_v1_config


class FakeApiError(Exception):
    def __init__(self, status: int | None, body: Any = None, reason: str = ""):
        self.status, self.body, self.reason = status, body, reason


WHAT = "SeldonDeployment models/iris"


def test_merge_diff_removes_missing_keys_replaces_lists_and_is_empty_when_equal() -> None:
    old = {"predictors": [{"name": "champion"}, {"name": "candidate"}], "replicas": 2, "x": {"a": 1, "b": 2}}
    new = {"predictors": [{"name": "champion"}], "x": {"a": 1, "c": 3}, "y": {"z": None, "w": 1}}
    assert merge_diff(old, new) == {
        "predictors": [{"name": "champion"}],
        "replicas": None,
        "x": {"b": None, "c": 3},
        "y": {"w": 1},
    }
    assert merge_diff(new, new) == {}
    assert merge_diff(None, {"a": 1}) == {"a": 1}


def test_api_errors_map_to_the_core_exceptions() -> None:
    status = {"kind": "Status", "message": 'SeldonDeployment "iris" is invalid', "details": {"causes": [
        {"field": "spec.predictors[0].traffic", "message": "Invalid value: 150"}]}}  # fmt: skip
    invalid = api_error(FakeApiError(422, json.dumps(status).encode()), WHAT, "patch")
    assert isinstance(invalid, SpecError)
    assert str(invalid).startswith(f"{WHAT}: spec.predictors[0].traffic: Invalid value: 150 (fix: ")
    bare = api_error(FakeApiError(422, "not json"), WHAT, "create")
    assert isinstance(bare, SpecError) and "HTTP 422" in str(bare)
    assert isinstance(api_error(FakeApiError(404, "{}"), WHAT, "read"), NotFound)
    assert "is Seldon Core v1 installed" in str(api_error(FakeApiError(404, "{}"), WHAT, "create"))
    conflict = api_error(FakeApiError(409, json.dumps({"message": "already exists"})), WHAT, "create")
    assert isinstance(conflict, AlreadyExists) and "already exists" in str(conflict)
    server = api_error(FakeApiError(503, json.dumps({"message": "etcd down"})), WHAT, "patch")
    assert type(server) is ServingError and "HTTP 503 etcd down" in str(server)
    forbidden = api_error(FakeApiError(403, "{}", "Forbidden"), WHAT, "patch")
    assert type(forbidden) is ServingError and "RBAC" in str(forbidden)
    unreachable = api_error(ConnectionRefusedError(111, "refused"), WHAT, "read")
    assert type(unreachable) is ServingError and "did not answer" in str(unreachable)


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        ({"state": "Available", "observedGeneration": 2}, 2, "Available"),
        ({"state": "Available", "observedGeneration": 1}, 2, "pending"),  # written for the old spec
        ({"state": "Failed", "description": "ImagePullBackOff", "observedGeneration": 3}, 3, "Failed"),
        ({"state": "Creating"}, None, "pending"),
        (None, 1, "pending"),
        ({"state": "Available"}, 5, "Available"),  # an operator that does not report observedGeneration
    ],
)
def test_availability(status: dict[str, Any] | None, generation: int | None, expected: str) -> None:
    obj = {"metadata": {"generation": generation}} | ({"status": status} if status else {})
    assert availability(obj, generation)[0] == expected


class FakeDeployments:
    """Answers ``get`` with a script of objects; records writes."""

    def __init__(self, *objects: dict[str, Any] | None):
        self.objects, self.writes = list(objects), []

    @staticmethod
    def what(namespace: str, name: str) -> str:
        return f"SeldonDeployment {namespace}/{name}"

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.pop(0) if len(self.objects) > 1 else self.objects[0]

    def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("patch", patch))
        return {"metadata": {"generation": 2}}


class Clock:
    def __init__(self) -> None:
        self.now, self.sleeps = 100.0, []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def runtime_with(deployments: FakeDeployments, clock: Clock, timeout: float = 30) -> KubernetesRuntime:
    runtime = KubernetesRuntime(None, image_registry="r", timeout=timeout, poll_interval=4, sleep=clock.sleep,
                                clock=lambda: clock.now)  # fmt: skip
    runtime.deployments = deployments  # type: ignore[assignment]
    return runtime


def state(name: str, generation: int = 1, description: str = "") -> dict[str, Any]:
    return {"metadata": {"generation": generation},
            "status": {"state": name, "description": description, "observedGeneration": generation}}  # fmt: skip


def test_wait_polls_until_available() -> None:
    clock = Clock()
    deployments = FakeDeployments(state("Creating"), state("Creating"), state("Available"))
    assert (
        runtime_with(deployments, clock).wait_available("models", "iris", 1)["status"]["state"] == "Available"
    )
    assert clock.sleeps == [4, 4]


def test_wait_is_bounded_by_the_timeout_on_the_injected_clock() -> None:
    clock = Clock()
    with pytest.raises(NotAvailable, match=r"did not become Available within 30 s \(last status: busy\)"):
        runtime_with(FakeDeployments(state("Creating", description="busy")), clock).wait_available(
            "models", "iris"
        )
    assert sum(clock.sleeps) == 30 and clock.sleeps[-1] == 2  # the last sleep ends at the deadline


def test_wait_stops_at_failed_and_names_the_operator_description() -> None:
    clock = Clock()
    deployments = FakeDeployments(state("Creating"), state("Failed", description="CrashLoopBackOff"))
    with pytest.raises(
        NotAvailable, match=r"SeldonDeployment models/iris failed: .*CrashLoopBackOff"
    ) as caught:
        runtime_with(deployments, clock).wait_available("models", "iris", 1)
    assert caught.value.description == "CrashLoopBackOff" and clock.sleeps == [4]


def test_restore_puts_back_the_previous_spec_labels_and_annotations_exactly() -> None:
    previous = {"metadata": {"labels": {"version": "1"}, "annotations": {"h": "a"}},
                "spec": {"predictors": [{"name": "champion", "traffic": 100}]}}  # fmt: skip
    now = {"metadata": {"labels": {"version": "2", "run": "x"}, "annotations": {"h": "b"}},
           "spec": {"predictors": [{"name": "champion", "traffic": 90}, {"name": "candidate"}], "replicas": 3}}  # fmt: skip
    deployments = FakeDeployments(now)
    done = runtime_with(deployments, Clock()).undo(
        [undo_step("SeldonDeployment", "models", "iris", previous)]
    )
    assert done == "restored the previous spec of SeldonDeployment models/iris"
    assert deployments.writes == [("patch", {
        "spec": {"predictors": [{"name": "champion", "traffic": 100}], "replicas": None},
        "metadata": {"labels": {"version": "1", "run": None}, "annotations": {"h": "a"}},
    })]  # fmt: skip


GOOD = {"runtime": "seldon-v1", "image_registry": "registry.example/models"}


def test_connection_extra_defaults_and_errors() -> None:
    config = seldon_v1_config(GOOD, "connection pushbutton_seldon")
    assert (config.kubernetes_conn_id, config.apply_timeout_seconds, config.image_template) == (
        "kubernetes_default", 600.0, "{registry}/{model}:{version}")  # fmt: skip
    with pytest.raises(SpecError) as missing:
        seldon_v1_config({"runtime": "seldon-v1", "imge_registry": "x"}, "connection pushbutton_seldon")
    text = str(missing.value)
    assert (
        "connection pushbutton_seldon: extra.image_registry: Field required (fix: set extra.image_registry"
        in text
    )
    assert "extra.imge_registry: Extra inputs are not permitted (fix: remove extra.imge_registry)" in text
    with pytest.raises(SpecError, match="never latest"):
        seldon_v1_config(GOOD | {"image_template": "{registry}/{model}:latest"}, "c")
    with pytest.raises(SpecError, match="apply_timeout_seconds"):
        seldon_v1_config(GOOD | {"apply_timeout_seconds": 0}, "c")


def _seldon_connection(monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any]) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_PUSHBUTTON_SELDON",
                       json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 8000, "extra": extra}))  # fmt: skip


@pytest.mark.parametrize(("runtime", "problem"), [("k8s", "is not a runtime")])
def test_hook_refuses_other_runtimes_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch, runtime: str, problem: str
) -> None:
    from operators.hooks import SeldonHook

    _seldon_connection(monkeypatch, {"runtime": runtime})
    with pytest.raises(SpecError, match=f"extra.runtime: runtime '{runtime}' {problem} "
                                        r"\(fix: set extra.runtime to 'local', 'seldon-v1' or 'seldon-v2'\)"):  # fmt: skip
        SeldonHook().get_conn()


def test_hook_builds_the_kubernetes_runtime_through_the_kubernetes_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from operators.hooks import SeldonHook

    seen: list[str | None] = []
    sentinel = object()

    def get_conn(self: KubernetesHook) -> Any:
        seen.append(self.conn_id)
        return sentinel

    monkeypatch.setattr(KubernetesHook, "get_conn", get_conn)
    monkeypatch.setattr("pushbutton.kube.client.SeldonDeployments.__init__",
                        lambda self, api: setattr(self, "api", api))  # fmt: skip
    _seldon_connection(
        monkeypatch, GOOD | {"kubernetes_conn_id": "prod_cluster", "apply_timeout_seconds": 120}
    )
    runtime = SeldonHook().get_conn()
    assert isinstance(runtime, KubernetesRuntime)
    assert seen == ["prod_cluster"] and runtime.deployments.api is sentinel
    assert (runtime.timeout, runtime.image_registry) == (120, "registry.example/models")
    assert runtime.tester is not None  # the gate's test microservices stay local

    _seldon_connection(monkeypatch, {"runtime": "seldon-v1"})
    with pytest.raises(SpecError, match=r"extra\.image_registry"):
        SeldonHook().get_conn()
