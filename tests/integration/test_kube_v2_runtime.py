"""The seldon-v2 runtime over HTTP with the real ``kubernetes`` client, against a STAND-IN API server
(kmock's KubernetesEmulator, ``tests/kube_standin.py``), not a cluster and not Seldon: the stand-in
plays Seldon Core v2's controller (each new generation reports ``Ready: False`` progressing, then the
scripted outcome) and the API server's error answers. Documents are rendered and validated against the
CRD schemas as in production."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from pushbutton.errors import ServingError, SpecError
from pushbutton.kube.runtime import RolloutFailed
from pushbutton.kube.runtime_v2 import SeldonV2Runtime
from pushbutton.serving.spec import Predictor, ServingSpec
from tests.kube_standin import V2Standin

pytestmark = [pytest.mark.integration, pytest.mark.standin]

NS, NAME = "models", "iris"
STORAGE = "s3://mlflow/models/{model}/{version}"


def predictor(role: str, version: int, traffic: int, shadow: bool = False) -> Predictor:
    return Predictor(name=role, model=NAME, version=str(version), model_uri=f"models:/{NAME}/{version}",
                     class_ref="predict:IrisClassifier", traffic=traffic, shadow=shadow)  # fmt: skip


def champion_only(version: int) -> ServingSpec:
    return ServingSpec(namespace=NS, deployment=NAME, predictors=[predictor("champion", version, 100)])


def with_candidate(champion: int, candidate: int, percent: int = 10, shadow: bool = False) -> ServingSpec:
    second = predictor("candidate", candidate, 0 if shadow else percent, shadow=shadow)
    first = predictor("champion", champion, 100 if shadow else 100 - percent)
    return ServingSpec(namespace=NS, deployment=NAME, predictors=[first, second])


class Clock:
    """The runtime's clock and sleeper: a poll's sleep advances time, nothing really sleeps."""

    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, 0

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def standin() -> Iterator[V2Standin]:
    server = V2Standin().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def kube(standin: V2Standin) -> Iterator[tuple[SeldonV2Runtime, V2Standin]]:
    clock = Clock()
    runtime = SeldonV2Runtime(standin.api_client(), storage_template=STORAGE, timeout=60, poll_interval=5,
                              sleep=clock.sleep, clock=clock.clock)  # fmt: skip
    yield runtime, standin
    runtime.remove(NS, NAME)
    standin.call(lambda: (standin.server.failures.clear(), standin.server.outcomes.clear()))


def kinds(standin: V2Standin) -> list[str]:
    return sorted(standin.objects(NS))


def applied(standin: V2Standin) -> dict[str, Any]:
    """What apply writes of each object (spec, labels, annotations): the state a restore must bring back."""
    return {
        key: {
            "spec": obj["spec"],
            "labels": obj["metadata"].get("labels"),
            "annotations": obj["metadata"].get("annotations"),
        }
        for key, obj in standin.objects(NS).items()
    }


def writes(standin: V2Standin) -> int:
    return sum(len(standin.requests(m)) for m in ("POST", "PATCH", "DELETE"))


def test_candidate_activate_rollback_and_reject(kube: Any) -> None:
    runtime, standin = kube
    first = runtime.apply(champion_only(1))
    assert (first["action"], first["changed"], first["resources"]) == (
        "created",
        True,
        {"Model/iris-v1": "created"},
    )
    assert kinds(standin) == ["Model/iris-v1"]
    model = standin.objects(NS)["Model/iris-v1"]
    assert model["spec"]["storageUri"] == "s3://mlflow/models/iris/1"
    assert [c["status"] for c in model["status"]["conditions"] if c["type"] == "Ready"] == ["True"]
    v1 = applied(standin)

    before = writes(standin)
    again = runtime.apply(champion_only(1))  # idempotent re-apply: nothing is written
    assert (again["changed"], again["action"], writes(standin)) == (False, "unchanged", before)

    canary = runtime.apply(with_candidate(1, 2, 10))
    assert kinds(standin) == ["Experiment/iris", "Model/iris-v1", "Model/iris-v2"]
    experiment = standin.objects(NS)["Experiment/iris"]["spec"]
    assert experiment == {"default": "iris-v1", "resourceType": "model",
                          "candidates": [{"name": "iris-v1", "weight": 90}, {"name": "iris-v2", "weight": 10}]}  # fmt: skip
    assert canary["route"]["weights"] == {"champion": 90, "candidate": 10}
    assert runtime.status(NS, NAME)["state"] == "Available"

    runtime.apply(champion_only(2))  # activate: the Experiment goes, v2's Model is the champion
    assert kinds(standin) == ["Model/iris-v2"]
    assert standin.objects(NS)["Model/iris-v2"]["metadata"]["labels"]["pushbutton.io/role"] == "champion"
    assert runtime.route(NS, NAME) == {"backends": {"champion": {"version": "2"}},
                                       "weights": {"champion": 100}, "shadows": []}  # fmt: skip

    runtime.apply(champion_only(1))  # rollback: exactly the first resources again
    assert applied(standin) == v1

    runtime.apply(with_candidate(1, 3, shadow=True))
    assert standin.objects(NS)["Experiment/iris"]["spec"]["mirror"] == {"name": "iris-v3", "percent": 100}
    assert runtime.route(NS, NAME)["shadows"] == ["candidate"]
    runtime.apply(champion_only(1))  # reject v3: nothing of it is left
    assert applied(standin) == v1
    status = runtime.status(NS, NAME)
    assert (status["state"], status["backends"]) == ("Available", {"champion": {"version": "1"}})


def test_a_failed_experiment_restores_the_previous_canary(kube: Any) -> None:
    runtime, standin = kube
    runtime.apply(champion_only(1))
    runtime.apply(with_candidate(1, 2, 10))
    before = applied(standin)
    standin.script(NAME, (False, "ExperimentFailed: candidate iris-v3 not routable"))
    with pytest.raises(RolloutFailed) as failed:
        runtime.apply(with_candidate(1, 3, 20))
    text = str(failed.value)
    assert "Experiment models/iris failed: Seldon reports:" in text and "ExperimentFailed" in text
    assert (
        "restored the previous spec of Experiment models/iris" in text
        and "deleted Model models/iris-v3 again" in text
    )
    assert applied(standin) == before  # the v2 canary serves as before, nothing of v3 is left


def test_a_deferring_apply_hands_over_each_phase_and_a_failure_undoes_them_all(kube: Any) -> None:
    """Models first, then the Experiment: each phase's wait is handed over once; the resumed step writes
    nothing already written, and a failure in the second phase puts back what the first one wrote."""
    from pushbutton.kube.rollout import Deferral, RolloutPending

    runtime, standin = kube
    runtime.apply(champion_only(1))
    before, sleeps = applied(standin), runtime.sleep.__self__.sleeps
    standin.script(NAME, (False, "ExperimentFailed: candidate iris-v2 not routable"))
    runtime.deferral = Deferral()
    with pytest.raises(RolloutPending) as models:
        runtime.apply(with_candidate(1, 2, 10))
    assert [(w["kind"], w["name"]) for w in models.value.waits] == [("Model", "iris-v2")]
    assert ("Model", "iris-v2", None) in [(u["kind"], u["name"], u["previous"]) for u in models.value.undo]
    written = writes(standin)

    runtime.deferral = Deferral(**json.loads(json.dumps(models.value.carry())))
    with pytest.raises(RolloutPending) as experiment:  # the Models are ready now: the Experiment's turn
        runtime.apply(with_candidate(1, 2, 10))
    assert [(w["kind"], w["name"]) for w in experiment.value.waits] == [("Experiment", "iris")]
    assert experiment.value.deadline == models.value.deadline  # one deadline for the whole rollout
    assert experiment.value.undo[: len(models.value.undo)] == models.value.undo
    assert writes(standin) == written + 1  # the Experiment only; the Models were not written again

    runtime.deferral = Deferral(**experiment.value.carry())
    with pytest.raises(RolloutFailed) as failed:
        runtime.apply(with_candidate(1, 2, 10))
    assert "ExperimentFailed" in str(failed.value)
    assert "deleted Experiment models/iris again" in str(failed.value)
    assert "deleted Model models/iris-v2 again" in str(failed.value)  # the first phase's write, undone too
    assert applied(standin) == before and runtime.sleep.__self__.sleeps == sleeps  # nothing slept


def test_a_failed_model_leaves_the_champion_and_its_experiment_alone(kube: Any) -> None:
    runtime, standin = kube
    runtime.apply(champion_only(2))
    before, requests = applied(standin), len(standin.requests("POST"))
    standin.script("iris-v1", (False, "ModelFailed: ScheduleFailed no server with requirements [mlflow]"))
    with pytest.raises(RolloutFailed, match="ScheduleFailed"):
        runtime.apply(champion_only(1))  # a rollback to a version that does not load
    assert applied(standin) == before
    assert len(standin.requests("POST")) == requests + 1  # only the new Model was created (and deleted)


def test_a_rollout_that_never_gets_ready_times_out_and_is_undone(kube: Any) -> None:
    runtime, standin = kube
    runtime.apply(champion_only(1))
    before = applied(standin)
    standin.script("iris-v2", (False, "ModelProgressing"))  # never Ready, never failed
    with pytest.raises(ServingError, match=r"not Ready within 60 s .*ModelProgressing") as timed_out:
        runtime.apply(with_candidate(1, 2))
    assert not isinstance(timed_out.value, RolloutFailed)  # a timeout may be retried
    assert applied(standin) == before


def test_the_api_servers_422_is_a_spec_error_and_nothing_stays_half_done(kube: Any) -> None:
    runtime, standin = kube
    runtime.apply(champion_only(1))
    before = applied(standin)
    cause = {"field": "spec.storageUri", "message": "Invalid value: must be a gs:// or s3:// URI"}
    standin.call(lambda: standin.server.fail_next("create", 422, "Model.mlops.seldon.io is invalid", [cause]))
    with pytest.raises(SpecError) as invalid:
        runtime.apply(with_candidate(1, 2))  # the champion's Model is patched first, then v2's create fails
    issue = invalid.value.issues[0]
    assert (issue.file, issue.field, issue.message) == (
        "Model models/iris-v2",
        "spec.storageUri",
        cause["message"],
    )
    assert applied(standin) == before


def test_a_document_the_crd_rejects_is_never_sent(kube: Any) -> None:
    runtime, standin = kube
    from pushbutton.kube.seldon_v2 import render_seldon_v2

    def render(spec: ServingSpec, **kwargs: Any) -> list[dict[str, Any]]:
        docs = render_seldon_v2(spec, **kwargs)
        docs[0]["spec"]["replicaz"] = 2
        return docs

    runtime._render = render
    before = len(standin.requests())
    with pytest.raises(SpecError, match=r"Model models/iris-v1: \$\.spec.*replicaz"):
        runtime.apply(champion_only(1))
    assert len(standin.requests()) == before


def test_the_connection_chooses_seldon_v2(standin: V2Standin, monkeypatch: pytest.MonkeyPatch) -> None:
    from operators.hooks import SeldonHook

    _kube_connections(standin, monkeypatch)
    runtime = SeldonHook().get_conn()
    assert isinstance(runtime, SeldonV2Runtime)
    try:
        assert runtime.apply(champion_only(4))["resources"] == {"Model/iris-v4": "created"}
        assert runtime.status(NS, NAME)["backends"] == {"champion": {"version": "4"}}
    finally:
        runtime.remove(NS, NAME)
    assert kinds(standin) == []


def _kube_connections(standin: V2Standin, monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "standin",
        "clusters": [{"name": "standin", "cluster": {"server": standin.url}}],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "u"}}],
    }  # fmt: skip
    extra = {"runtime": "seldon-v2", "kubernetes_conn_id": "kube_standin", "storage_template": STORAGE,
             "apply_timeout_seconds": 30, "poll_seconds": 0.01}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_KUBE_STANDIN",
                       json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": kubeconfig}}))  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_PUSHBUTTON_SELDON",
                       json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 8000, "extra": extra}))  # fmt: skip


def _model(standin: V2Standin, name: str) -> dict[str, Any]:
    from pushbutton.kube.runtime_v2 import SeldonV2Runtime

    body = {"apiVersion": "mlops.seldon.io/v1alpha1", "kind": "Model",
            "metadata": {"name": name, "namespace": NS}, "spec": {"storageUri": "s3://m/1"}}  # fmt: skip
    return SeldonV2Runtime(standin.api_client()).resources["Model"].create(NS, body)


def test_sensor_and_trigger_wait_for_a_v2_model(standin: V2Standin, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from airflow.sdk.exceptions import AirflowFailException

    from operators.kube import SeldonDeploymentAvailableTrigger, SeldonDeploymentSensor

    _kube_connections(standin, monkeypatch)
    runtime = SeldonV2Runtime(standin.api_client())
    try:
        _model(standin, "iris-v7")
        sensor = SeldonDeploymentSensor(task_id="wait", namespace=NS, deployment="iris-v7", kind="Model")
        assert sensor.mode == "reschedule"
        assert sensor.poke({}) is False  # Seldon still reports ModelProgressing
        assert sensor.poke({}) is True

        standin.script("iris-v8", (False, "ModelFailed: LoadFailed no such file"))
        _model(standin, "iris-v8")
        failing = SeldonDeploymentSensor(task_id="wait", namespace=NS, deployment="iris-v8", kind="Model")
        assert failing.poke({}) is False
        with pytest.raises(AirflowFailException, match=r"Model models/iris-v8 is not Available.*LoadFailed"):
            failing.poke({})

        standin.script("iris-v9", (False, "ModelFailed: ScheduleFailed"))
        created = _model(standin, "iris-v9")
        trigger = SeldonDeploymentAvailableTrigger(NS, "iris-v9", generation=created["metadata"]["generation"],
                                                   kubernetes_conn_id="kube_standin", poll_interval=0.01,
                                                   kind="Model")  # fmt: skip
        _, kwargs = trigger.serialize()
        assert kwargs["kind"] == "Model"

        async def first() -> Any:
            events = SeldonDeploymentAvailableTrigger(**kwargs).run()
            try:
                return (await asyncio.wait_for(events.__anext__(), 10)).payload
            finally:
                await events.aclose()

        event = asyncio.run(first())
        assert (event["state"], event["deployment"]) == ("Failed", f"Model {NS}/iris-v9")
        assert "ScheduleFailed" in event["description"]
        with pytest.raises(AirflowFailException, match="kind 'Modle' is not a Seldon resource"):
            SeldonDeploymentSensor(task_id="typo", namespace=NS, deployment="x", kind="Modle").poke({})
    finally:
        for name in ("iris-v7", "iris-v8", "iris-v9"):
            runtime.resources["Model"].delete(NS, name)
