"""Release steps that wait for Seldon in the triggerer: the promotion lease (injected clock, at its edge),
the lifecycle's lock-or-lease, the undo steps carried through a deferral, the trigger over several
resources, and the operators' resume (Available: the step again; Failed/timeout: undo, then fail)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pushbutton.errors import Conflict, LockBusy
from pushbutton.history import HistoryStore
from pushbutton.kube.rollout import LEASE_GRACE_SECONDS, RolloutPending, merge_undo, run_undo, undo_step

HOLDER, OTHER = "iris__cicd/run-1/activate", "pushbutton__promote/run-2/promote"


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> HistoryStore:
    history = HistoryStore(f"sqlite:///{tmp_path / 'store.db'}")
    history.clock = Clock()
    return history


def test_a_lease_keeps_others_out_until_it_runs_out_and_its_holder_gets_back_in(store: HistoryStore) -> None:
    clock = store.clock
    with store.lock("iris", holder=HOLDER):
        store.hold("iris", HOLDER, until=clock.now + 600)
    with store.lock("iris", holder=HOLDER):  # the resumed task: its own lease lets it in
        pass
    busy = r"\(iris__cicd/run-1/activate\) is waiting for Seldon.*lease until"
    with pytest.raises(LockBusy, match=busy), store.lock("iris", holder=OTHER, timeout=1):
        pass
    with store.lock("other-model", holder=OTHER):  # per model
        pass
    clock.now += 599.999  # just before the edge: still held
    with pytest.raises(LockBusy), store.lock("iris", holder=OTHER, timeout=1):
        pass
    clock.now += 0.001  # at `until` the lease has run out
    assert store.lease("iris") is None
    with store.lock("iris", holder=OTHER):
        pass


def test_release_ends_only_the_holders_lease_and_is_idempotent(store: HistoryStore) -> None:
    store.hold("iris", HOLDER, until=store.clock.now + 60)
    assert store.release("iris", OTHER) is False and store.lease("iris")["holder"] == HOLDER
    assert store.release("iris", HOLDER) is True and store.release("iris", HOLDER) is False
    assert store.lease("iris") is None


def platform(store: HistoryStore, holder: str = HOLDER, resumed: bool = False) -> Any:
    from pushbutton.lifecycle import Platform

    return Platform(settings=None, registry=None, runtime=None, history=store, holder=holder, resumed=resumed)  # type: ignore[arg-type]


def pending(deadline: float) -> RolloutPending:
    return RolloutPending([{"kind": "SeldonDeployment", "namespace": "models", "name": "iris", "generation": 2}],
                          undo=[], deadline=deadline, poll_interval=5)  # fmt: skip


def test_a_step_handing_its_wait_over_keeps_the_model_leased_past_the_deadline(store: HistoryStore) -> None:
    from pushbutton.lifecycle import promotion

    deadline = store.clock.now + 600
    with pytest.raises(RolloutPending), promotion(platform(store), "iris"):
        raise pending(deadline)
    carry = {"undo": [], "deadline": deadline}  # kept with the lease: a retry or a clear finds it there
    assert store.lease("iris") == {"model": "iris", "holder": HOLDER, "until": deadline + LEASE_GRACE_SECONDS,
                                   "carry": carry}  # fmt: skip
    with promotion(platform(store, resumed=True), "iris"):  # resumed and finished: the lease ends
        pass
    assert store.lease("iris") is None


def test_a_failing_step_ends_its_lease_and_a_resumed_step_without_one_stops(store: HistoryStore) -> None:
    from pushbutton.lifecycle import promotion

    store.hold("iris", HOLDER, until=store.clock.now + 60)
    with pytest.raises(ValueError), promotion(platform(store, resumed=True), "iris"):
        raise ValueError("MLflow said no")
    assert store.lease("iris") is None
    ran_out = "lease on 'iris' ran out while it waited"
    with pytest.raises(Conflict, match=ran_out), promotion(platform(store, resumed=True), "iris"):
        pytest.fail("a resumed step whose lease ran out must not write")
    with promotion(platform(store, holder=""), "iris"):  # the CLI: no holder, lock only, no lease rows
        pass
    assert store.lease("iris") is None


def test_undo_keeps_the_first_write_of_each_object_and_runs_newest_first() -> None:
    first = [undo_step("Model", "ns", "m-v2", None), undo_step("Model", "ns", "m-v1", {"spec": {"a": 1},
             "metadata": {"name": "m-v1", "generation": 4, "uid": "x", "labels": {"r": "c"}}})]  # fmt: skip
    assert first[1]["previous"] == {"spec": {"a": 1}, "metadata": {"name": "m-v1", "labels": {"r": "c"}}}
    later = [
        undo_step("Model", "ns", "m-v1", {"spec": {"a": 2}, "metadata": {}}),
        undo_step("Experiment", "ns", "m", None),
    ]
    merged = merge_undo(first, later)
    assert [(s["kind"], s["name"]) for s in merged] == [
        ("Model", "m-v2"),
        ("Model", "m-v1"),
        ("Experiment", "m"),
    ]
    assert merged[1]["previous"]["spec"] == {"a": 1}  # what served before the rollout, not phase 1's write

    calls: list[tuple[str, str]] = []
    api = SimpleNamespace(delete=lambda ns, name: calls.append(("delete", name)),
                          what=lambda ns, name: f"X {ns}/{name}")  # fmt: skip
    done = run_undo(merged, lambda kind: api, lambda a, ns, name, prev: calls.append(("restore", name)))
    assert calls == [("delete", "m"), ("restore", "m-v1"), ("delete", "m-v2")]
    assert done.startswith("deleted X ns/m again (it was new); restored the previous spec of X ns/m-v1")


class FakeApi:
    """``CustomObjectsApi`` of ``kubernetes_asyncio``: answers each read with the next scripted object."""

    def __init__(self, script: dict[str, list[Any]]):
        self.script, self.reads = script, []

    async def get_namespaced_custom_object(
        self, group: str, version: str, ns: str, plural: str, name: str
    ) -> Any:
        self.reads.append(name)
        answer = self.script[name].pop(0) if len(self.script[name]) > 1 else self.script[name][0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def ready(generation: int, status: str = "True", reason: str = "") -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "status": {"observedGeneration": generation,
            "conditions": [{"type": "Ready", "status": status, "reason": reason}]}}  # fmt: skip


def run_trigger(monkeypatch: pytest.MonkeyPatch, api: FakeApi, **kwargs: Any) -> dict[str, Any]:
    import kubernetes_asyncio.client
    from airflow.providers.cncf.kubernetes.hooks import kubernetes as provider

    from operators.kube import SeldonRolloutTrigger

    class Hook:
        def __init__(self, conn_id: str):
            assert conn_id == "kube_standin"

        @contextlib.asynccontextmanager
        async def get_conn(self) -> Any:
            yield None

    monkeypatch.setattr(provider, "AsyncKubernetesHook", Hook)
    monkeypatch.setattr(kubernetes_asyncio.client, "CustomObjectsApi", lambda client: api)
    classpath, serialized = SeldonRolloutTrigger(
        kubernetes_conn_id="kube_standin", poll_interval=0, **kwargs
    ).serialize()
    assert classpath == "operators.kube.SeldonRolloutTrigger"
    trigger = SeldonRolloutTrigger(**json.loads(json.dumps(serialized)))  # as the triggerer rebuilds it

    async def first() -> dict[str, Any]:
        events = trigger.run()
        try:
            return (await events.__anext__()).payload
        finally:
            await events.aclose()

    return asyncio.run(first())


WAITS = [{"kind": "Model", "namespace": "ns", "name": "m-v2", "generation": 1},
         {"kind": "Experiment", "namespace": "ns", "name": "m", "generation": 3}]  # fmt: skip
CARRY = {"undo": [undo_step("Model", "ns", "m-v2", None)], "deadline": 2e9}


def test_the_rollout_trigger_waits_for_every_resource_and_carries_the_undo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = FakeApi({"m-v2": [ready(1, "False"), ready(1)], "m": [ready(2), ready(3, "False"), ready(3)]})
    event = run_trigger(monkeypatch, api, waits=WAITS, deadline=2e9, carry=CARRY)
    assert (event["state"], event["carry"]) == ("Available", CARRY)
    assert api.reads == ["m-v2", "m", "m-v2", "m", "m"]  # a ready one is not read again


def test_a_trigger_that_cannot_reach_the_cluster_still_sends_the_carry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.providers.cncf.kubernetes.hooks import kubernetes as provider

    def no_connection(**kwargs: Any) -> Any:
        raise RuntimeError("The conn_id `kube_standin` isn't defined")

    monkeypatch.setattr(provider, "AsyncKubernetesHook", no_connection)
    from operators.kube import SeldonRolloutTrigger

    events = SeldonRolloutTrigger(WAITS, kubernetes_conn_id="kube_standin", carry=CARRY).run()
    event = asyncio.run(events.__anext__()).payload
    assert (event["state"], event["carry"]) == ("error", CARRY)  # the task undoes and fails, not the trigger
    assert "isn't defined" in event["description"]


def test_the_rollout_trigger_stops_at_a_failure_a_missing_object_and_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed = FakeApi({"m-v2": [ready(1, "False", "ModelFailed: no server")], "m": [ready(3, "False")]})
    event = run_trigger(monkeypatch, failed, waits=WAITS, deadline=2e9, carry=CARRY)
    assert (event["state"], event["deployment"], event["carry"]) == ("Failed", "Model ns/m-v2", CARRY)

    gone = SimpleNamespace(status=404, body="{}", reason="Not Found")
    missing = FakeApi({"m-v2": [ready(1)], "m": [Exception()]})
    missing.script["m"] = [type("NotFound", (Exception,), vars(gone))()]
    assert run_trigger(monkeypatch, missing, waits=WAITS, deadline=2e9)["state"] == "missing"

    late = run_trigger(
        monkeypatch, FakeApi({"m-v2": [ready(1, "False")], "m": [ready(3)]}), waits=WAITS, deadline=1.0
    )
    assert (late["state"], late["deployment"]) == ("timeout", "Model ns/m-v2")


class Runtime:
    """A Kubernetes runtime as the operator sees it: ``deferral`` and ``undo``."""

    def __init__(self, outcome: str = "restored the previous spec of SeldonDeployment models/iris") -> None:
        self.deferral, self.undone, self.outcome = None, [], outcome

    def undo(self, steps: list[dict[str, Any]]) -> str:
        self.undone.append(steps)
        return self.outcome


def test_a_resumed_step_failing_before_its_apply_puts_back_what_its_first_run_wrote(
    store: HistoryStore,
) -> None:
    from pushbutton.errors import NotFound
    from pushbutton.kube.rollout import Deferral
    from pushbutton.lifecycle import promotion

    p = platform(store, resumed=True)
    p.runtime = Runtime()
    p.runtime.deferral = Deferral(undo=CARRY["undo"], deadline=CARRY["deadline"])
    store.hold("iris", HOLDER, until=store.clock.now + 60, carry=CARRY)
    with pytest.raises(NotFound) as caught, promotion(p, "iris"):
        raise NotFound("MLflow lost version 2")  # before the re-run's apply finished
    assert p.runtime.undone == [CARRY["undo"]] and p.runtime.deferral.undo == []
    assert caught.value.__notes__ == ["the rollout this step had started, put back: restored the previous spec "
                                      "of SeldonDeployment models/iris"]  # fmt: skip
    assert store.lease("iris") is None

    p.runtime.outcome = "could NOT undo it (HTTP 503)"  # the undo could not run: the lease keeps its steps
    p.runtime.deferral.undo = CARRY["undo"]
    store.hold("iris", HOLDER, until=store.clock.now + 60, carry=CARRY)
    with pytest.raises(NotFound), promotion(p, "iris"):
        raise NotFound("MLflow lost version 2")
    assert store.lease("iris")["carry"] == CARRY


def test_a_resumed_step_finding_another_promotions_lease_stops_instead_of_retrying(
    store: HistoryStore,
) -> None:
    from pushbutton.lifecycle import promotion

    store.hold("iris", OTHER, until=store.clock.now + 60)
    with pytest.raises(LockBusy), promotion(platform(store), "iris"):  # a fresh step: busy, retry later
        pass
    overtaken = r"ran out while it waited.*pushbutton__promote/run-2/promote"
    with pytest.raises(Conflict, match=overtaken), promotion(platform(store, resumed=True), "iris"):
        pytest.fail("must not write over the other promotion")


def operator_and_platform(
    monkeypatch: pytest.MonkeyPatch, store: HistoryStore
) -> tuple[Any, Any, dict[str, Any]]:
    import operators.lifecycle as ops

    p = platform(store, holder="")
    p.runtime = Runtime()
    monkeypatch.setattr(ops, "platform", lambda: p)
    from airflow.sdk import DAG

    with DAG("pushbutton__promote", schedule=None):
        op = ops.SeldonPromoteOperator(task_id="promote", model="iris", version="2", action="promote")
    context = {"run_id": "run-2", "dag_run": SimpleNamespace(triggering_user_name="alice")}
    return op, p, context


@pytest.mark.parametrize(
    ("state", "error"), [("Failed", "AirflowFailException"), ("timeout", "AirflowException")]
)
def test_a_resumed_task_whose_rollout_did_not_finish_undoes_and_fails(
    monkeypatch: pytest.MonkeyPatch, store: HistoryStore, state: str, error: str
) -> None:
    from airflow.sdk import exceptions

    op, p, context = operator_and_platform(monkeypatch, store)
    holder = "pushbutton__promote/run-2/promote"
    store.hold("iris", holder, until=store.clock.now + 60)
    event = {"state": state, "deployment": "SeldonDeployment models/iris", "description": "ImagePullBackOff",
             "carry": CARRY}  # fmt: skip
    with pytest.raises(getattr(exceptions, error)) as caught:
        op.resume_rollout(context, event)
    assert type(caught.value).__name__ == error  # Failed: no retry; a timeout may retry
    assert "ImagePullBackOff" in str(caught.value) and "restored the previous spec" in str(caught.value)
    assert p.runtime.undone == [CARRY["undo"]] and store.lease("iris") is None
    assert (p.holder, p.runtime.deferral.deadline) == (holder, CARRY["deadline"])

    p.runtime.undone.clear()  # the lease ran out meanwhile: another promotion may have written since
    with pytest.raises(exceptions.AirflowFailException, match=r"lease on iris ran out.*nothing was undone"):
        op.resume_rollout(context, event)
    assert p.runtime.undone == []


def test_an_available_event_runs_the_step_again_as_resumed(
    monkeypatch: pytest.MonkeyPatch, store: HistoryStore
) -> None:
    import pushbutton.lifecycle

    op, p, context = operator_and_platform(monkeypatch, store)
    seen: list[tuple[bool, Any]] = []
    monkeypatch.setattr(pushbutton.lifecycle, "make_champion",
                        lambda q, *a, **k: seen.append((q.resumed, q.runtime.deferral)) or {"champion": "2"})  # fmt: skip
    assert op.resume_rollout(context, {"state": "Available", "deployment": "x", "carry": CARRY}) == {
        "champion": "2"
    }
    [(resumed, deferral)] = seen
    assert resumed and (deferral.undo, deferral.deadline) == (CARRY["undo"], CARRY["deadline"])

    seen.clear()  # not deferrable: the runtime polls in the task, as the CLI does
    op.deferrable = False
    p.runtime.deferral, p.resumed = None, False  # as a fresh Platform of the task has them
    op.execute(context)
    assert seen == [(False, None)]


def test_a_retry_after_a_deferral_takes_the_undo_steps_from_its_lease(
    monkeypatch: pytest.MonkeyPatch, store: HistoryStore
) -> None:
    op, p, context = operator_and_platform(monkeypatch, store)
    store.hold("iris", OTHER, until=store.clock.now + 60, carry=CARRY)  # the same task instance's name
    q = op.release_platform(context)  # execute() of the retry: no event, no kwargs
    assert (q.holder, q.resumed, q.runtime.deferral.undo, q.runtime.deferral.deadline) == (
        OTHER, True, CARRY["undo"], CARRY["deadline"])  # fmt: skip
    store.release("iris", OTHER)
    p.resumed = False
    assert op.release_platform(context).runtime.deferral.undo == []  # no lease: a first run


def test_a_deferral_that_ends_without_an_event_is_undone_from_the_lease(
    monkeypatch: pytest.MonkeyPatch, store: HistoryStore
) -> None:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    op, p, context = operator_and_platform(monkeypatch, store)
    store.hold("iris", OTHER, until=store.clock.now + 60, carry=CARRY)
    with pytest.raises(
        AirflowException, match=r"without an event \(Trigger/execution timeout\).*restored"
    ) as out:
        op.resume_execution("__fail__", {"error": "Trigger/execution timeout"}, context)
    assert not isinstance(out.value, AirflowFailException)  # may retry: the retry applies afresh
    assert p.runtime.undone == [CARRY["undo"]] and store.lease("iris") is None


def test_a_resumed_step_failing_before_it_takes_the_lock_still_undoes_and_ends_its_lease(
    monkeypatch: pytest.MonkeyPatch, store: HistoryStore
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    import pushbutton.lifecycle
    from pushbutton.errors import NotFound

    op, p, context = operator_and_platform(monkeypatch, store)
    store.hold("iris", OTHER, until=store.clock.now + 60, carry=CARRY)  # a retry after the deferral

    def mlflow_lost_it(*args: Any, **kwargs: Any) -> Any:
        raise NotFound("model 'iris' version 2 is gone from MLflow")

    monkeypatch.setattr(pushbutton.lifecycle, "make_champion", mlflow_lost_it)
    with pytest.raises(AirflowFailException, match="gone from MLflow"):
        op.execute(context)
    assert p.runtime.undone == [CARRY["undo"]] and store.lease("iris") is None


def test_a_late_retry_that_defers_again_gets_a_whole_grace_period(store: HistoryStore) -> None:
    from pushbutton.lifecycle import promotion

    past = store.clock.now - 3600  # the carried deadline passed while the task waited for its retry
    with pytest.raises(RolloutPending), promotion(platform(store), "iris"):
        raise pending(past)
    assert store.lease("iris")["until"] == store.clock.now + LEASE_GRACE_SECONDS
