"""Supersede an approval still waiting when a newer version's CI/CD run is queued behind it.

The rules are ``pushbutton.supersede``; this module applies them in Airflow, in two places:

* :func:`newer_queued_version` — the approval task, before it parks: the newer versions MLflow knows
  whose automatic run (``registered__v<N>__…``) is already queued (Airflow's execution API);
* :func:`supersede_waiting` — the Airflow plugin on the API server, when a newer run is created while
  an older one is parked: answers the parked request in the metadata database exactly as the REST
  API's ``PATCH …/hitlDetails`` does (row locks in the same order, then resume), after the task has
  been parked ``settle_seconds`` (see ``HitlSettleMiddleware``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pushbutton import supersede as rules

log = logging.getLogger("pushbutton.supersede")
REJECT = "Reject"


def newer_queued_version(
    model: str, version: str, dag_id: str, registry: Any, dr_count: Callable
) -> str | None:
    """The newest version of ``model`` above ``version`` whose automatic CI/CD run is queued.

    ``dr_count`` is ``RuntimeTaskInstance.get_dr_count`` (or a stand-in); ``registry`` a
    ``pushbutton.registry.Registry``."""
    from pushbutton.registry import MLFLOW_RUN
    from pushbutton.webhook import cicd_run_id

    if not str(version).isdigit():
        return None
    newer = sorted(
        (v for v in registry.versions(model) if str(v.version).isdigit() and int(v.version) > int(version)),
        key=lambda v: int(v.version),
        reverse=True,
    )
    for found in newer:
        run_id = cicd_run_id(found.version, found.tags.get(MLFLOW_RUN) or found.run_id)
        if dr_count(dag_id=dag_id, run_ids=[run_id], states=["queued"]) > 0:
            return str(found.version)
    return None


def superseded_event(version: str, now: datetime | None = None) -> dict[str, Any]:
    """The answer event of an approval superseded before it parked (as the HITL resume sends it)."""
    return {
        "chosen_options": [REJECT],
        "params_input": {"comment": rules.comment(version)},
        "responded_at": now or datetime.now(UTC),
        "responded_by_user": rules.responder(version),
        "timedout": False,
    }


# -- on the API server (the plugin): the metadata database ---------------------------------------


def _waiting(dag_id: str, session: Any) -> list[tuple[Any, rules.Run, datetime]]:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    parked = (TaskInstanceState.AWAITING_INPUT, TaskInstanceState.DEFERRED)
    rows = session.execute(
        select(TaskInstance, DagRun.conf)
        .join(DagRun, (DagRun.dag_id == TaskInstance.dag_id) & (DagRun.run_id == TaskInstance.run_id))
        .where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.task_id == rules.APPROVAL_TASK,
            TaskInstance.state.in_(parked),
        )
    ).all()
    return [
        (ti, rules.Run(ti.run_id, rules.run_version(ti.run_id, conf)), ti.updated_at) for ti, conf in rows
    ]


def _queued(dag_id: str, session: Any) -> list[rules.Run]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState
    from sqlalchemy import select

    rows = session.execute(
        select(DagRun.run_id, DagRun.conf).where(DagRun.dag_id == dag_id, DagRun.state == DagRunState.QUEUED)
    ).all()
    return [rules.Run(run_id, rules.run_version(run_id, conf)) for run_id, conf in rows]


def plan(dag_id: str) -> list[tuple[dict[str, Any], str, datetime]]:
    """Which parked approvals of ``dag_id`` a queued newer run supersedes: (TI key, version, parked at)."""
    from airflow.utils.session import create_session

    with create_session() as session:
        queued = _queued(dag_id, session)
        found = []
        for ti, run, parked_at in _waiting(dag_id, session):
            newer = rules.superseding(run, queued)
            if newer is not None:
                key = {
                    "dag_id": ti.dag_id,
                    "run_id": ti.run_id,
                    "task_id": ti.task_id,
                    "map_index": ti.map_index,
                }
                found.append((key, str(newer.version), parked_at))
        return found


def answer(key: dict[str, Any], version: str) -> bool:
    """Answer one parked approval "Reject — superseded by v<version>" and resume its task; False when
    it was answered (or resumed) meanwhile. Locks as the REST API does: task instance, then request."""
    from airflow._shared.timezones import timezone
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import handle_event_submit
    from airflow.triggers.base import TriggerEvent
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        ti = session.scalar(select(TaskInstance).filter_by(**key).with_for_update(of=TaskInstance))
        if ti is None or ti.state not in (TaskInstanceState.AWAITING_INPUT, TaskInstanceState.DEFERRED):
            return False
        detail = session.scalar(
            select(HITLDetail).where(HITLDetail.ti_id == ti.id).with_for_update(of=HITLDetail)
        )
        if detail is None or detail.response_received or REJECT not in (detail.options or []):
            return False
        detail.responded_by = rules.responder(version)
        detail.responded_at = timezone.utcnow()
        detail.chosen_options = [REJECT]
        detail.params_input = {"comment": rules.comment(version)}
        session.add(detail)
        handle_event_submit(TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session)
    return True


def supersede_waiting(
    dag_id: str,
    settle_seconds: float,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Answer every approval of ``dag_id`` that a queued newer run supersedes; returns what was done.

    A request parked less than ``settle_seconds`` ago is answered once it has settled (Airflow 3.3
    fails a task resumed before the scheduler processed its parking worker's exit)."""
    done = []
    for key, version, parked_at in plan(dag_id):
        wait = settle_seconds - (now() - parked_at).total_seconds() if parked_at else 0.0
        if wait > 0:
            sleep(wait)
        if answer(key, version):
            log.info("%s run %s: approval superseded by v%s", dag_id, key["run_id"], version)
            done.append({**key, "superseded_by": version})
    return done
