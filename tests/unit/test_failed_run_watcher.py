"""The cicd DAG's failure watcher: withdraw what the failed run deployed, then fail the run."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

import operators.lifecycle as ops
import pushbutton.lifecycle as lifecycle
from pushbutton.errors import StackError


@pytest.fixture
def withdrawn(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr(ops, "platform", lambda: "platform")

    def withdraw(p: str, name: str, version: str, run_id: str, reason: str) -> str:
        assert p == "platform"
        calls.append((name, version, run_id, reason))
        if version == "down":
            raise StackError("MLflow is not reachable")
        return "candidate withdrawn"

    monkeypatch.setattr(lifecycle, "withdraw", withdraw)
    return calls


def watcher(version: str) -> ops.SeldonFailedRunOperator:
    return ops.SeldonFailedRunOperator(task_id="fail_on_error", model="iris", version=version)


def test_watcher_withdraws_the_runs_version_and_fails_the_run(withdrawn: list) -> None:
    with pytest.raises(AirflowFailException, match="a pipeline step failed"):
        watcher("4").execute({"run_id": "registered__v4"})
    assert withdrawn == [("iris", "4", "registered__v4", "CI/CD run registered__v4 failed before activation")]


def test_watcher_after_a_failed_build_only_fails_the_run(withdrawn: list) -> None:
    with pytest.raises(AirflowFailException):
        watcher("").execute({"run_id": "r"})
    assert withdrawn == []


def test_watcher_fails_the_run_even_when_it_cannot_withdraw(withdrawn: list) -> None:
    with pytest.raises(AirflowFailException, match="a pipeline step failed"):
        watcher("down").execute({"run_id": "r"})
    assert len(withdrawn) == 1
