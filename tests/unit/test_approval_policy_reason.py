"""When the ``auto`` promotion policy leaves a release to a person, the Approve form says why.

``canary_policy`` (the real ``CanaryPolicySensor``) writes its decision to XCom; ``approve`` (the real
``ReleaseApprovalOperator``) reads it and writes the Required Action; the fake is at Airflow's
``upsert_hitl_detail``, so what is asserted is the subject/body a person sees in the form."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.standard.operators import hitl
from airflow.sdk.exceptions import TaskAwaitingInput

import operators.lifecycle as ops
from operators.alerting import POLICY_ACTOR, POLICY_KEY, CanaryPolicySensor
from pushbutton.config import REPO_ROOT

REPORT = "## Test report\n\naccuracy 0.97 on the holdout"


class FakeTI:
    """One DAG run's XComs, keyed by (task id, key), shared by the tasks of the run."""

    dag_id, run_id = "iris__cicd", "registered__v3"

    def __init__(self, xcoms: dict[tuple[str, str], Any], task_id: str):
        self.xcoms, self.task_id = xcoms, task_id
        self.id = f"ti-{task_id}"

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[(self.task_id, key)] = value

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.xcoms.get((task_ids, key))


@pytest.fixture
def forms(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Every Required Action the operator writes (Airflow's call that puts the form in the UI)."""
    written: list[dict[str, Any]] = []
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **kwargs: written.append(kwargs))
    yield written


def canary_policy(xcoms: dict, trigger: str | None) -> dict[str, Any]:
    """Run the real sensor for iris v3 (whose ``promotion.policy`` is auto) trained by ``trigger``."""
    ti = FakeTI(xcoms, "canary_policy")
    sensor = CanaryPolicySensor(task_id="canary_policy", model="iris", version="3",
                                model_dir=str(REPO_ROOT / "models" / "iris"), poke_interval=1)  # fmt: skip
    sensor._version = lambda model: ("candidate", trigger)  # MLflow: status and lineage trigger
    assert sensor.poke({"ti": ti, "dag_run": SimpleNamespace(start_date=datetime.now(UTC))}) is True
    return xcoms[("canary_policy", POLICY_KEY)]


def approve(xcoms: dict) -> tuple[ops.ReleaseApprovalOperator, dict[str, Any]]:
    op = ops.ReleaseApprovalOperator(task_id="approve", subject="Release iris v3 to production?", body=REPORT,
                                     params={"comment": None}, model="iris", version="3")  # fmt: skip
    op.params["comment"] = None
    op._newer_queued_version = lambda context: None  # no newer version queued behind this run
    ti = FakeTI(xcoms, "approve")
    return op, {"ti": ti, "task_instance": ti, "task": op}


def test_a_release_the_policy_hands_over_shows_the_reason_above_the_report(forms: list) -> None:
    xcoms: dict = {}
    decision = canary_policy(xcoms, trigger=None)  # a version a person pushed: scope `retrained`
    assert decision["verdict"] == "hand_over" and "trigger: push" in decision["reason"]
    op, context = approve(xcoms)
    with pytest.raises(TaskAwaitingInput):  # parked, waiting for a person
        op.execute(context)
    [form] = forms
    assert form["subject"] == "Release iris v3 to production?"
    head, _, rest = form["body"].partition("\n\n")
    assert head == f"**Promotion policy: a person decides** — {decision['reason']}"
    assert rest == REPORT  # the test report is still there, below the reason
    assert form["options"] == ["Approve", "Reject"]


def test_a_worse_canary_is_handed_over_with_its_reason(forms: list) -> None:
    reason = "the canary is worse than the champion on production labels: accuracy 0.7 vs 0.95"
    xcoms = {("canary_policy", POLICY_KEY): {"verdict": "hand_over", "reason": reason, "evidence": {}}}
    op, context = approve(xcoms)
    with pytest.raises(TaskAwaitingInput):
        op.execute(context)
    assert reason in forms[0]["body"] and forms[0]["body"].endswith(REPORT)


def test_without_a_policy_decision_the_form_is_the_report_alone(forms: list) -> None:
    op, context = approve({})  # a manual-policy DAG has no canary_policy task
    with pytest.raises(TaskAwaitingInput):
        op.execute(context)
    assert [f["body"] for f in forms] == [REPORT]
    assert "Promotion policy" not in forms[0]["body"]


def test_a_promotion_by_policy_writes_no_form(forms: list) -> None:
    reason = "served 25 requests over 2 windows, no rule firing; accuracy 0.96 vs champion 0.95"
    xcoms = {("canary_policy", POLICY_KEY): {"verdict": "promote", "reason": reason, "evidence": {}}}
    op, context = approve(xcoms)
    result = op.execute(context)
    assert forms == []  # nobody is asked
    assert result["chosen_options"] == ["Approve"]
    answer = xcoms[("approve", ops.ANSWER_KEY)]
    assert answer["responded_by_user"] == POLICY_ACTOR and reason in answer["params_input"]["comment"]
