"""Who answered the release approval, and their comment, reach the history on Approve *and* Reject."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

import operators.lifecycle as ops


class FakeTI:
    """Just enough of a task instance for XComs and task states."""

    dag_id, run_id, task_id = "iris__cicd", "registered__v4", "fail_on_error"

    def __init__(self, states: dict[str, str] | None = None):
        self.xcoms: dict[tuple[str, str], Any] = {}
        self.states = states

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[("approve", key)] = value

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.xcoms.get((task_ids, key))

    def get_task_states(self, dag_id: str, run_ids: list[str]) -> dict[str, dict[str, str]]:
        if self.states is None:
            raise RuntimeError("no API server")
        assert (dag_id, run_ids) == (self.dag_id, [self.run_id])
        return {self.run_id: self.states}


def answer(option: str, comment: str | None, user: dict | None) -> dict[str, Any]:
    return {
        "chosen_options": [option],
        "params_input": {"comment": comment},
        "responded_at": datetime(2026, 11, 22, tzinfo=UTC),
        "responded_by_user": user,
    }


@pytest.mark.parametrize("option", ["Approve", "Reject"])
def test_the_answer_is_kept_for_both_options(option: str) -> None:
    ti = FakeTI()
    op = ops.ReleaseApprovalOperator(task_id="approve", subject="Release iris v4?", params={"comment": None})
    op.params["comment"] = None
    op.execute_complete({"ti": ti, "task": op}, answer(option, " looks good ", {"id": "7", "name": "ada"}))
    context = {"ti": ti}
    assert ops.approver(context) == "ada"
    assert ops.approval_comment(context) == "looks good"
    assert ti.xcoms[("approve", ops.ANSWER_KEY)]["chosen_options"] == [option]


def test_a_timed_out_approval_names_no_person() -> None:
    ti = FakeTI()
    ti.xcom_push(ops.ANSWER_KEY, {"chosen_options": ["Reject"], "responded_by_user": None, "timedout": True})
    assert ops.approver({"ti": ti}) == "nobody (approval timed out)"
    assert ops.approval_comment({"ti": ti}) == ""


def test_the_failure_watcher_names_the_failed_steps() -> None:
    ti = FakeTI(
        {"build": "success", "test": "failed", "register": "upstream_failed", "fail_on_error": "running"}
    )
    assert ops._failed_steps({"ti": ti}) == "step 'test'"
    assert ops._failed_steps({"ti": FakeTI()}) == "a pipeline step"  # states unavailable
