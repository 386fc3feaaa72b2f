"""Which version a CI/CD run's steps act on: ``build``'s resolution, the run's own version number
while a cleared ``build`` runs again, and a clear failure (no retry) when neither can tell."""

from __future__ import annotations

from types import SimpleNamespace

import jinja2
import pytest
from airflow.sdk.exceptions import AirflowFailException

import operators.lifecycle as ops
import pushbutton.lifecycle as lifecycle
from dags.pushbutton_factory import RESOLVED_VERSION


def rendered(build_result: dict | None, run_version: str) -> str:
    ti = SimpleNamespace(xcom_pull=lambda task_ids: build_result if task_ids == "build" else None)
    return jinja2.Template(RESOLVED_VERSION).render(ti=ti, params={"version": run_version})


@pytest.mark.parametrize(
    ("build_result", "run_version", "expected"),
    [
        ({"version": "4"}, "latest", "4"),  # build resolved 'latest'
        ({"version": "4"}, "4", "4"),
        (None, "7", "7"),  # build cleared and running again: the run's own number
        (None, "latest", ""),  # nobody can tell: the operators refuse (below)
    ],
)
def test_the_version_a_step_acts_on(build_result, run_version, expected) -> None:
    assert rendered(build_result, run_version) == expected


STEPS = [
    ops.SeldonModelTestOperator,
    ops.MlflowCandidateAliasOperator,
    ops.SeldonDeployCandidateOperator,
    ops.SeldonActivateOperator,
    ops.SeldonDiscardCandidateOperator,
]


@pytest.mark.parametrize("operator", STEPS, ids=lambda o: o.__name__)
def test_a_step_without_a_version_fails_without_retry_and_touches_nothing(operator, monkeypatch) -> None:
    called: list[str] = []
    monkeypatch.setattr(ops, "platform", lambda: "platform")
    for name in ("test", "register_candidate", "deploy_candidate", "make_champion", "reject"):
        monkeypatch.setattr(lifecycle, name, lambda *a, _n=name, **k: called.append(_n))
    context = {
        "run_id": "manual__1",
        "dag": SimpleNamespace(dag_id="iris__cicd"),
        "ti": SimpleNamespace(xcom_pull=lambda task_ids, key="return_value": None),
    }
    with pytest.raises(AirflowFailException, match="clear `build` together with its downstream tasks"):
        operator(task_id="step", model="iris", version="").execute(context)
    assert called == []


def test_decision_errors_fail_for_good_while_a_busy_lock_is_retried() -> None:
    from pushbutton.errors import Conflict, LockBusy, NotFound

    def raising(exc: Exception):
        def call():
            raise exc

        return call

    for final in (Conflict("v2 is retired"), NotFound("no version 9")):
        with pytest.raises(AirflowFailException):
            ops._final(raising(final))
    with pytest.raises(LockBusy):  # a plain failure: the task's retries apply
        ops._final(raising(LockBusy("another promotion of 'iris' holds the lock; retry later")))
