"""The seldon-v1 runtime over HTTP with the real ``kubernetes`` client, against a STAND-IN API server
(kmock's KubernetesEmulator, ``tests/kube_standin.py``), not a cluster: the test plays Seldon's
operator (status Creating → Available, or Failed) and the stand-in plays the API server's
generations and its error answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from pushbutton.errors import AlreadyExists, NotFound, ServingError, SpecError
from pushbutton.kube.runtime import HASH_ANNOTATION, KubernetesRuntime
from pushbutton.serving.spec import Predictor, ServingSpec
from tests.kube_standin import Standin, running_standin

pytestmark = [pytest.mark.integration, pytest.mark.standin]

NS, NAME = "models", "iris"


def predictor(role: str, version: int, traffic: int, shadow: bool = False) -> Predictor:
    return Predictor(name=role, model=NAME, version=str(version), model_uri=f"models:/{NAME}/{version}",
                     class_ref="predict:IrisClassifier", traffic=traffic, shadow=shadow)  # fmt: skip


def champion_only(version: int) -> ServingSpec:
    return ServingSpec(namespace=NS, deployment=NAME, predictors=[predictor("champion", version, 100)])


def with_candidate(champion: int, candidate: int, percent: int = 10) -> ServingSpec:
    predictors = [predictor("champion", champion, 100 - percent), predictor("candidate", candidate, percent)]
    return ServingSpec(namespace=NS, deployment=NAME, predictors=predictors)


def by_hand(spec: ServingSpec, *, images: dict[str, str], logger_url: str | None, run_id: str | None = None):
    """A minimal SeldonDeployment, so these tests exercise the runtime whatever the renderer renders."""
    return {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {
            "name": spec.deployment,
            "namespace": spec.namespace,
            "labels": {"app": spec.deployment},
        },
        "spec": {
            "predictors": [
                {
                    "name": p.name,
                    "traffic": p.traffic,
                    "replicas": p.replicas,
                    "graph": {"name": "model", "type": "MODEL"},
                    "componentSpecs": [
                        {"spec": {"containers": [{"name": "model", "image": images[p.name]}]}}
                    ],
                    **({"shadow": True} if p.shadow else {}),
                }
                for p in spec.predictors
            ]
        },
    }


class Operator:
    """Plays Seldon's operator and the clock: each poll's sleep advances time and applies the next
    scripted status to the object."""

    def __init__(self, standin: Standin):
        self.standin, self.now, self.script, self.sleeps = standin, 0.0, [], []

    def will(self, *states: str | tuple[str, str]) -> None:
        self.script = [s if isinstance(s, tuple) else (s, "") for s in states]

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.script:
            state, description = self.script.pop(0)
            self.standin.set_status(NS, NAME, state, description)

    def clock(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def standin() -> Iterator[Standin]:
    with running_standin() as server:
        yield server


@pytest.fixture()
def kube(standin: Standin) -> Iterator[tuple[KubernetesRuntime, Operator, Standin]]:
    operator = Operator(standin)
    runtime = KubernetesRuntime(
        standin.api_client(), image_registry="registry.example/models", logger_url="http://logger:8002/",
        timeout=60, poll_interval=5, sleep=operator.sleep, clock=operator.clock, render=by_hand,
        validate=lambda doc: None,
    )  # fmt: skip
    yield runtime, operator, standin
    runtime.remove(NS, NAME)
    standin.server.failures.clear()


def served(standin: Standin) -> dict[str, tuple[int, str]]:
    """traffic and image per predictor of the stored object."""
    obj = standin.get(NS, NAME)
    assert obj is not None
    return {
        p["name"]: (p["traffic"], p["componentSpecs"][0]["spec"]["containers"][0]["image"])
        for p in obj["spec"]["predictors"]
    }


def image(version: int) -> str:
    return f"registry.example/models/iris:{version}"


def test_candidate_activate_rollback_and_reject(kube: Any) -> None:
    runtime, operator, standin = kube
    operator.will("Creating", "Available")
    first = runtime.apply(champion_only(1))
    assert (first["action"], first["changed"], first["state"]) == ("created", True, "Available")
    assert served(standin) == {"champion": (100, image(1))}
    v1_spec = standin.get(NS, NAME)["spec"]

    operator.will("Creating", "Available")  # the status still says Available for generation 1 until then
    deployed = runtime.apply(with_candidate(1, 2, 10))
    assert (deployed["action"], deployed["generation"]) == ("patched", 2)
    assert len(operator.sleeps) == 4  # it waited for the operator, not for the stale Available
    assert served(standin) == {"champion": (90, image(1)), "candidate": (10, image(2))}
    assert runtime.status(NS, NAME)["route"]["weights"] == {"champion": 90, "candidate": 10}

    operator.will("Available")
    runtime.apply(champion_only(2))  # activate
    assert served(standin) == {"champion": (100, image(2))}

    operator.will("Available")
    runtime.apply(champion_only(1))  # rollback: exactly the first spec again
    assert standin.get(NS, NAME)["spec"] == v1_spec

    operator.will("Available")
    runtime.apply(with_candidate(1, 3, 25))
    operator.will("Available")
    runtime.apply(champion_only(1))  # reject v3: the champion takes all traffic back
    assert served(standin) == {"champion": (100, image(1))}
    status = runtime.status(NS, NAME)
    assert (status["state"], status["route"]["backends"]["champion"]["version"]) == ("Available", "1")

    assert runtime.remove(NS, NAME) == {
        "deployment": f"{NS}/{NAME}",
        "deleted": True,
    }  # reject a first release
    assert standin.get(NS, NAME) is None
    assert runtime.remove(NS, NAME)["deleted"] is False  # idempotent
    with pytest.raises(NotFound, match="SeldonDeployment models/iris does not exist"):
        runtime.status(NS, NAME)


def test_applying_the_same_spec_again_sends_no_write(kube: Any) -> None:
    runtime, operator, standin = kube
    operator.will("Available")
    runtime.apply(with_candidate(1, 2))
    writes = standin.requests("PATCH") + standin.requests("POST")
    again = runtime.apply(with_candidate(1, 2))
    assert (again["changed"], again["action"]) == (False, "unchanged")
    assert standin.requests("PATCH") + standin.requests("POST") == writes
    assert standin.get(NS, NAME)["metadata"]["generation"] == 1


def test_failed_rollout_restores_the_previous_spec(kube: Any) -> None:
    runtime, operator, standin = kube
    operator.will("Available")
    runtime.apply(champion_only(1))
    before = standin.get(NS, NAME)
    operator.will("Creating", ("Failed", "container model: ImagePullBackOff registry.example/models/iris:2"))
    with pytest.raises(ServingError) as caught:
        runtime.apply(with_candidate(1, 2))
    message = str(caught.value)
    assert "SeldonDeployment models/iris failed" in message
    assert "ImagePullBackOff" in message and "restored the previous spec" in message
    after = standin.get(NS, NAME)
    assert after["spec"] == before["spec"]
    assert (
        after["metadata"]["annotations"][HASH_ANNOTATION]
        == before["metadata"]["annotations"][HASH_ANNOTATION]
    )
    assert after["metadata"]["generation"] == 3  # patched, then patched back


def _deferred_canary(kube: Any) -> tuple[Any, dict[str, Any]]:
    """v1 serving, then a canary of v2 applied by a runtime told to defer: the hand-off, and v1's object."""
    from pushbutton.kube.rollout import Deferral, RolloutPending

    runtime, operator, standin = kube
    operator.will("Available")
    runtime.apply(champion_only(1))
    before = standin.get(NS, NAME)
    runtime.deferral, sleeps = Deferral(), len(operator.sleeps)
    with pytest.raises(RolloutPending) as pending:  # the status still speaks of generation 1
        runtime.apply(with_candidate(1, 2))
    assert len(operator.sleeps) == sleeps  # nothing waited in the task
    return pending.value, before


def test_a_deferring_apply_writes_once_hands_the_wait_over_and_finishes_when_resumed(kube: Any) -> None:
    import time

    from pushbutton.kube.rollout import Deferral

    runtime, _, standin = kube
    pending, before = _deferred_canary(kube)
    assert pending.waits == [{"kind": "SeldonDeployment", "namespace": NS, "name": NAME, "generation": 2}]
    [undo] = pending.undo
    assert (undo["kind"], undo["name"], undo["previous"]["spec"]) == (
        "SeldonDeployment",
        NAME,
        before["spec"],
    )
    assert time.time() < pending.deadline <= time.time() + 60  # the runtime's timeout, on the wall clock
    carry = json.loads(json.dumps(pending.carry()))  # what travels through the deferral: JSON
    writes = len(standin.requests("PATCH")) + len(standin.requests("POST"))
    standin.set_status(NS, NAME, "Available")  # what the trigger waited for

    runtime.deferral = Deferral(**carry)
    resumed = runtime.apply(with_candidate(1, 2))
    assert (resumed["action"], resumed["state"], resumed["generation"]) == ("unchanged", "Available", 2)
    assert len(standin.requests("PATCH")) + len(standin.requests("POST")) == writes  # written once
    assert served(standin) == {"champion": (90, image(1)), "candidate": (10, image(2))}


def test_a_resumed_rollout_reported_failed_puts_back_what_the_first_run_replaced(kube: Any) -> None:
    from pushbutton.kube.rollout import Deferral
    from pushbutton.kube.runtime import RolloutFailed

    runtime, _, standin = kube
    pending, before = _deferred_canary(kube)
    standin.set_status(NS, NAME, "Failed", "container model: ImagePullBackOff registry.example/models/iris:2")
    runtime.deferral = Deferral(**pending.carry())
    with pytest.raises(
        RolloutFailed, match=r"ImagePullBackOff.*restored the previous spec of SeldonDeployment"
    ):
        runtime.apply(with_candidate(1, 2))  # the resumed step: nothing new written, the old spec back
    assert standin.get(NS, NAME)["spec"] == before["spec"]
    assert runtime.deferral.undo == []  # done: the task's own clean-up finds nothing left to put back


def test_timeout_restores_the_previous_spec_after_a_bounded_wait(kube: Any) -> None:
    runtime, operator, standin = kube
    operator.will("Available")
    runtime.apply(champion_only(1))
    before = standin.get(NS, NAME)["spec"]
    operator.will(*["Creating"] * 100)  # the operator never gets there
    with pytest.raises(
        ServingError, match=r"did not become Available within 60 s \(last status: state Creating\)"
    ):
        runtime.apply(champion_only(2))
    assert sum(operator.sleeps[1:]) == 60  # bounded by the timeout, on the injected clock
    assert standin.get(NS, NAME)["spec"] == before


def test_a_failed_first_release_is_deleted_again(kube: Any) -> None:
    runtime, operator, standin = kube
    operator.will(("Failed", "predictor champion: Back-off pulling image"))
    with pytest.raises(
        ServingError, match=r"Back-off pulling image.*deleted SeldonDeployment \S+ again \(it was new\)"
    ):
        runtime.apply(champion_only(1))
    assert standin.get(NS, NAME) is None


def test_api_errors_become_the_core_exceptions(kube: Any) -> None:
    runtime, operator, standin = kube
    operator.will("Available")
    runtime.apply(champion_only(1))
    before = standin.get(NS, NAME)

    cause = {"field": "spec.predictors[1].traffic", "message": "Invalid value: 150: must be <= 100",
             "reason": "FieldValueInvalid"}  # fmt: skip
    standin.server.fail_next("update", 422, "SeldonDeployment.machinelearning.seldon.io \"iris\" is invalid",
                             [cause])  # fmt: skip
    with pytest.raises(SpecError) as invalid:
        runtime.apply(with_candidate(1, 2))
    assert "SeldonDeployment models/iris: spec.predictors[1].traffic: Invalid value: 150" in str(
        invalid.value
    )
    assert isinstance(invalid.value.__cause__, ApiException) and invalid.value.__cause__.status == 422
    assert standin.get(NS, NAME) == before  # the server stored nothing; the champion serves

    standin.server.fail_next("update", 500, "etcdserver: request timed out")
    with pytest.raises(ServingError, match="cannot patch SeldonDeployment models/iris: HTTP 500 etcdserver"):
        runtime.apply(with_candidate(1, 2))

    runtime.remove(NS, NAME)
    standin.server.fail_next("create", 409, 'seldondeployments "iris" already exists')
    with pytest.raises(AlreadyExists, match="already exists"):
        runtime.apply(champion_only(1))

    standin.server.fail_next("create", 404, "the server could not find the requested resource")
    with pytest.raises(NotFound, match="is Seldon Core v1 installed"):
        runtime.apply(champion_only(1))


def test_unreachable_api_server_is_a_serving_error(standin: Standin) -> None:
    from kubernetes import client

    config = client.Configuration()
    config.host = "http://127.0.0.1:9"  # discard port: nothing listens
    config.retries = 0
    runtime = KubernetesRuntime(client.ApiClient(config), image_registry="r", render=by_hand,
                                validate=lambda doc: None)  # fmt: skip
    with pytest.raises(ServingError, match="did not answer"):
        runtime.status(NS, NAME)


def test_seldon_hook_builds_the_runtime_from_its_connections(standin: Standin, monkeypatch: Any) -> None:
    """The Connection chooses the runtime: seldon-v1 goes through the cncf-kubernetes KubernetesHook
    (here a kubeconfig in its Connection pointing at the stand-in)."""
    from operators.hooks import SeldonHook

    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "standin",
        "clusters": [{"name": "standin", "cluster": {"server": standin.url}}],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "u"}}],
    }  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_KUBE_STANDIN",
                       json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": kubeconfig}}))  # fmt: skip
    extra = {"runtime": "seldon-v1", "namespace": NS, "kubernetes_conn_id": "kube_standin",
             "image_registry": "registry.example/models"}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_PUSHBUTTON_SELDON",
                       json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 8000, "extra": extra}))  # fmt: skip
    runtime = SeldonHook().get_conn()
    assert isinstance(runtime, KubernetesRuntime)
    standin.call(lambda: standin.server.objects.__setitem__(
        ("machinelearning.seldon.io/v1/seldondeployments", NS, NAME),
        {"metadata": {"name": NAME, "namespace": NS}, "status": {"state": "Available"}}))  # fmt: skip
    try:
        assert runtime.status(NS, NAME)["state"] == "Available"
        assert any(
            path.endswith(f"/namespaces/{NS}/seldondeployments/{NAME}") for path in standin.requests("GET")
        )
    finally:
        runtime.remove(NS, NAME)
        runtime.close()


def test_the_rendered_manifest_is_what_is_applied(standin: Standin) -> None:
    """With the real renderer and the CRD schema check (no hand-built document)."""
    operator = Operator(standin)
    runtime = KubernetesRuntime(standin.api_client(), image_registry="registry.example/models",
                                sleep=operator.sleep, clock=operator.clock)  # fmt: skip
    operator.will("Available")
    try:
        runtime.apply(with_candidate(1, 2, 10))
        obj = standin.get(NS, NAME)
        assert obj["kind"] == "SeldonDeployment"
        assert {p["name"]: p.get("traffic") for p in obj["spec"]["predictors"]} == {
            "champion": 90,
            "candidate": 10,
        }
        assert image(2) in json.dumps(obj["spec"])
    finally:
        runtime.remove(NS, NAME)


def _connections(standin: Standin, monkeypatch: Any) -> None:
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "standin",
        "clusters": [{"name": "standin", "cluster": {"server": standin.url}}],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "u"}}],
    }  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_KUBE_STANDIN",
                       json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": kubeconfig}}))  # fmt: skip
    extra = {"runtime": "seldon-v1", "namespace": NS, "kubernetes_conn_id": "kube_standin",
             "image_registry": "registry.example/models"}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_PUSHBUTTON_SELDON",
                       json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 8000, "extra": extra}))  # fmt: skip


def _store(standin: Standin, generation: int, status: dict[str, Any] | None) -> None:
    obj = {
        "metadata": {"name": NAME, "namespace": NS, "generation": generation},
        **({"status": status} if status else {}),
    }
    standin.call(lambda: standin.server.objects.__setitem__(
        ("machinelearning.seldon.io/v1/seldondeployments", NS, NAME), obj))  # fmt: skip


def _drop(standin: Standin) -> None:
    standin.call(
        lambda: standin.server.objects[("machinelearning.seldon.io/v1/seldondeployments", NS, NAME)].delete()
    )


def test_trigger_fires_when_the_operator_reports_available_for_the_new_generation(
    standin: Standin, monkeypatch: Any
) -> None:
    import asyncio

    from operators.kube import SeldonDeploymentAvailableTrigger

    _connections(standin, monkeypatch)
    _store(standin, 2, {"state": "Available", "observedGeneration": 1})  # stale: generation 1's status
    trigger = SeldonDeploymentAvailableTrigger(NS, NAME, generation=2, kubernetes_conn_id="kube_standin",
                                               poll_interval=0.05)  # fmt: skip
    classpath, kwargs = trigger.serialize()
    assert classpath == "operators.kube.SeldonDeploymentAvailableTrigger"
    gets_before = len(standin.requests("GET"))

    async def first_event() -> dict[str, Any]:
        task = asyncio.ensure_future(first(SeldonDeploymentAvailableTrigger(**kwargs)))
        while len(standin.requests("GET")) < gets_before + 2 and not task.done():  # polled twice
            await asyncio.sleep(0.02)
        assert not task.done(), "the trigger fired on a stale status"
        standin.set_status(NS, NAME, "Available", "ready")
        return (await asyncio.wait_for(task, 10)).payload

    async def first(trigger: SeldonDeploymentAvailableTrigger) -> Any:
        events = trigger.run()
        try:
            return await events.__anext__()
        finally:
            await events.aclose()

    try:
        assert asyncio.run(first_event())["state"] == "Available"
        _store(standin, 3, {"state": "Failed", "description": "ImagePullBackOff", "observedGeneration": 3})
        failed = asyncio.run(
            SeldonDeploymentAvailableTrigger(**{**kwargs, "generation": 3}).run().__anext__()
        )
        assert failed.payload == {"state": "Failed", "deployment": f"SeldonDeployment {NS}/{NAME}",
                                  "description": "ImagePullBackOff"}  # fmt: skip
    finally:
        _drop(standin)


def test_sensor_pokes_until_available_and_fails_on_failed(standin: Standin, monkeypatch: Any) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from operators.kube import SeldonDeploymentSensor

    _connections(standin, monkeypatch)
    sensor = SeldonDeploymentSensor(task_id="wait", namespace=NS, deployment=NAME, generation=2)
    assert sensor.mode == "reschedule"
    try:
        _store(standin, 2, {"state": "Available", "observedGeneration": 1})
        assert sensor.poke({}) is False  # stale status of generation 1
        standin.set_status(NS, NAME, "Available")
        assert sensor.poke({}) is True
        standin.set_status(NS, NAME, "Failed", "predictor candidate: CrashLoopBackOff")
        with pytest.raises(AirflowFailException, match=r"models/iris is not Available.*CrashLoopBackOff"):
            sensor.poke({})
    finally:
        _drop(standin)
