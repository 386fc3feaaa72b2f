"""The cicd DAG's failure watcher: release an unrouted candidate microservice, then fail the run."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

import operators.lifecycle as ops
import pushbutton.lifecycle as lifecycle


@pytest.fixture
def released(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(ops, "platform", lambda: "platform")

    def release(p: str, name: str, version: str) -> bool:
        assert p == "platform"
        calls.append((name, version))
        return True

    monkeypatch.setattr(lifecycle, "release_unrouted", release)
    return calls


def watcher(version: str) -> ops.SeldonFailedRunOperator:
    return ops.SeldonFailedRunOperator(task_id="fail_on_error", model="iris", version=version)


def test_watcher_releases_the_tested_version_and_fails_the_run(released: list) -> None:
    with pytest.raises(AirflowFailException, match="a pipeline step failed"):
        watcher("4").execute({})
    assert released == [("iris", "4")]


def test_watcher_after_a_failed_build_only_fails_the_run(released: list) -> None:
    with pytest.raises(AirflowFailException):
        watcher("").execute({})
    assert released == []
