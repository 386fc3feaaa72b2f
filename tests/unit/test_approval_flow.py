"""The release approval of ``<model>__cicd`` when no person answers in time, or its first try fails.

The ``approve`` task is the factory's own (built from the iris example); Airflow's HITL operator code
runs as is, on an injected clock, with the request store and the serving steps replaced:

* a timeout: the scheduler's awaiting-input sweep answers with the request's defaults once its clock
  passed the deadline (``check_awaiting_input_timeouts``; the event is built by Airflow's
  ``HITLDetail.as_resume_event_payload``) — that is a Reject by nobody: ``activate`` is skipped and
  ``discard_candidate`` withdraws the candidate as "rejected by nobody (approval timed out)";
* a failed first try (Airflow 3.3 can fail a task resumed too early: "state changed externally"):
  Airflow retries it, and the retry writes the same request again, so a person is asked again.
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import operators.lifecycle as ops
from pushbutton.config import REPO_ROOT
from pushbutton.spec import load_model_dir

PARKED = datetime(2026, 11, 30, 9, 35, tzinfo=UTC)  # when `approve` wrote its request and parked
RUN = "registered__v4__0a1b2c3d"


class FakeTI:
    """The task instance as the operators use it: an id and XComs."""

    task_id, map_index = "approve", -1

    def __init__(self) -> None:
        self.id = uuid.uuid4()
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        assert task_ids == "approve"
        return self.xcoms.get(key)


@pytest.fixture
def cicd(monkeypatch: pytest.MonkeyPatch):
    """The iris ``__cicd`` DAG as the factory builds it."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "dags"))
    import pushbutton_factory

    try:
        yield pushbutton_factory.cicd_dag(
            load_model_dir(REPO_ROOT / "models" / "iris"), REPO_ROOT / "models" / "iris"
        )
    finally:
        sys.modules.pop("pushbutton_factory", None)


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The HITL requests ``approve`` writes (Airflow's ``upsert_hitl_detail``), on the clock PARKED."""
    import airflow.providers.standard.operators.hitl as hitl

    written: list[dict[str, Any]] = []
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **request: written.append(request))
    monkeypatch.setattr(hitl, "utcnow", lambda: PARKED)
    return written


def park(approve: Any, ti: FakeTI) -> timedelta:
    """Run ``approve`` until it parks for an answer; the timeout it parks with."""
    from airflow.sdk.exceptions import TaskAwaitingInput

    with pytest.raises(TaskAwaitingInput) as parked:
        approve.execute({"task_instance": ti, "ti": ti, "task": approve})
    return parked.value.timeout


def sweep(request: dict[str, Any], ti: FakeTI, parked_for: timedelta, now: datetime) -> dict[str, Any] | None:
    """The scheduler's awaiting-input sweep at ``now`` for a task parked at PARKED: None before the
    deadline; after it, the resume event of an unanswered request with defaults (the answer becomes
    the defaults, with the params' values, responded by nobody)."""
    from airflow.models.hitl import HITLDetail

    if not PARKED + parked_for < now:  # TI.trigger_timeout < now
        return None
    detail = HITLDetail(ti_id=ti.id, options=request["options"], subject=request["subject"],
                        defaults=request["defaults"], params=request["params"])  # fmt: skip
    detail.chosen_options = list(detail.defaults)
    detail.params_input = {
        k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in detail.params.items()
    }
    detail.responded_by, detail.responded_at = None, now
    return detail.as_resume_event_payload(timedout=True)


def test_an_approval_nobody_answers_in_7_days_is_a_rejection_by_nobody(cicd, requests, monkeypatch) -> None:
    from airflow.sdk.exceptions import DownstreamTasksSkipped

    approve, ti = cicd.get_task("approve"), FakeTI()
    parked_for = park(approve, ti)
    [request] = requests
    assert request["defaults"] == ["Reject"] and request["options"] == ["Approve", "Reject"]
    deadline = PARKED + parked_for
    assert deadline == datetime(2026, 12, 7, 9, 35, tzinfo=UTC)  # 7 days on the clock it parked by
    assert approve.hitl_summary_extra["timeout_datetime"] == deadline.isoformat()
    assert sweep(request, ti, parked_for, deadline) is None  # still waiting at the deadline itself
    event = sweep(request, ti, parked_for, deadline + timedelta(seconds=1))
    assert event is not None and event["timedout"] is True and event["responded_by_user"] is None

    with pytest.raises(DownstreamTasksSkipped) as skipped:  # Reject: `activate` is skipped ...
        approve.execute_complete({"ti": ti, "task": approve}, event)
    assert skipped.value.tasks == ["activate"]

    withdrawn: list[tuple] = []  # ... so `discard_candidate` (all upstream skipped) runs
    monkeypatch.setattr(ops, "platform", lambda: "platform")
    monkeypatch.setattr("pushbutton.lifecycle.reject", lambda *args: withdrawn.append(args) or {"ok": True})
    discard = cicd.get_task("discard_candidate")
    assert discard.trigger_rule == "all_skipped"
    discard.version = "4"  # rendered from the run's version at run time
    discard.execute({"ti": ti, "run_id": RUN})
    nobody = "nobody (approval timed out)"
    assert withdrawn == [("platform", "iris", "4", nobody, RUN, f"rejected by {nobody}")]


def test_a_failed_first_try_of_approve_is_retried_and_asks_again(cicd, requests) -> None:
    """Airflow's retry rule applied to the factory's ``approve``: a failed first try goes up for retry
    (the failure watcher is not reached: ``approve`` is not its upstream), the retry writes the same
    request again, and its answer is the one ``activate`` acts on. A second failure is final."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.serialization.serialized_objects import DagSerialization

    approve = cicd.get_task("approve")
    assert "approve" not in cicd.get_task("fail_on_error").upstream_task_ids
    scheduled = DagSerialization.from_dict(DagSerialization.to_dict(cicd)).get_task("approve")
    core_ti = TaskInstance(task=scheduled, run_id=RUN, dag_version_id=uuid.uuid4())

    first, second = FakeTI(), FakeTI()
    park(approve, first)  # try 1 parks; then fails as it resumes ("state changed externally")
    core_ti.try_number = 1
    assert core_ti.is_eligible_to_retry()  # up_for_retry, not failed
    park(approve, second)  # try 2 (retry_delay later)
    assert len(requests) == 2 and requests[1] == {**requests[0], "ti_id": second.id}  # asked again
    assert approve.retry_delay == timedelta(seconds=5)

    answer = {"chosen_options": ["Approve"], "params_input": {"comment": "second time lucky"},
              "responded_at": PARKED + timedelta(seconds=9), "responded_by_user": {"id": "7", "name": "ada"}}  # fmt: skip
    approve.execute_complete({"ti": second, "task": approve}, answer)
    assert (
        ops.approver({"ti": second}) == "ada" and ops.approval_comment({"ti": second}) == "second time lucky"
    )
    core_ti.try_number = 2
    assert not core_ti.is_eligible_to_retry()  # once only: a second failure fails the run
