"""What a model's CI/CD runs did, read through Airflow's REST API (``AirflowClient``): each version's
last run for ``pushbutton status``, and one run followed step by step for ``pushbutton push --wait``.

A run belongs to a version by its conf (``{"version": "7"}``) or its id (``registered__v7__<8
characters of the MLflow run>``, ``webhook.cicd_run_id``); an automatic run whose id names another
MLflow run is an earlier model's of the same name (deleted and registered again) and is not counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pushbutton import registry as reg
from pushbutton.airflow_client import PENDING_HITL_STATES, failure_reason
from pushbutton.errors import NotFound, PushbuttonError
from pushbutton.webhook import AUTOMATIC_RUN, cicd_run_id
from pushbutton.webhook import run_version as version_of

WATCHER = "fail_on_error"  # the cicd DAG's watcher: it fails whenever another step failed
APPROVAL = "approve"
STEP_DONE = frozenset({"success", "failed", "up_for_retry"})  # a try that ran and ended
IN_PROGRESS = ("running", "awaiting_input", "deferred", "up_for_retry", "up_for_reschedule", "queued")
REASON_LIMIT = 300


def one_line(text: str | None, limit: int = REASON_LIMIT) -> str | None:
    """A reason on one line: the first line, with a bullet list that follows a ``…:`` line joined in
    (``quality gate failed: accuracy 0.5 < 0.85; f1 …``); cut at ``limit`` characters."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    if not lines:
        return None
    line = lines[0]
    bullets = [b[2:].strip() for b in lines[1:] if b.startswith("- ")]
    if line.endswith(":") and bullets:
        line = f"{line} {'; '.join(bullets)}"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def run_version(run: dict[str, Any]) -> str | None:
    """The model version a CI/CD run releases (its conf, else its automatic run id); None for 'latest'."""
    return version_of(str(run.get("dag_run_id", "")), run.get("conf"))


def belongs_to(run: dict[str, Any], version: reg.Version) -> bool:
    """Whether ``run`` releases this registered version (not a same-numbered one of an earlier model)."""
    if run_version(run) != version.version:
        return False
    run_id = str(run.get("dag_run_id", ""))
    if not AUTOMATIC_RUN.match(run_id):
        return True  # a manual run for this version number
    return run_id == cicd_run_id(version.version, version.tags.get(reg.MLFLOW_RUN) or version.run_id)


def last_runs(client: Any, model: str, versions: Iterable[reg.Version]) -> dict[str, dict[str, Any]]:
    """version -> its last CI/CD run: run id, state, the failing (or current) task and a one-line
    reason. Versions without a run are left out."""
    dag_id = f"{model}__cicd"
    pending = {v.version: v for v in versions}
    found: dict[str, dict[str, Any]] = {}
    for run in client.list_runs(dag_id):  # newest first
        number = run_version(run)
        if number in pending and belongs_to(run, pending[number]):
            found[number] = describe_run(client, dag_id, run)
            del pending[number]
        if not pending:
            break
    return found


def describe_run(client: Any, dag_id: str, run: dict[str, Any]) -> dict[str, Any]:
    """One run for ``status``: id, state, when, and for a failed run its failing task and reason, for
    an unfinished one the task it is at (``approve``: waiting for an answer)."""
    state = run.get("state")
    described: dict[str, Any] = {
        "run_id": run["dag_run_id"],
        "state": state,
        "started": run.get("start_date") or run.get("queued_at"),
        "ended": run.get("end_date"),
    }
    if state == "failed":
        task, reason = failing_task(client, dag_id, run["dag_run_id"])
        described |= {"failed_task": task, "reason": reason}
    elif state in ("running", "queued"):
        tis = client.task_instances(dag_id, run["dag_run_id"])
        current = [t for t in tis if t.get("state") in IN_PROGRESS]
        if current:
            described["task"] = current[0]["task_id"]
            described["task_state"] = current[0].get("state")
    return described


def failing_task(
    client: Any, dag_id: str, run_id: str, tis: list[dict[str, Any]] | None = None
) -> tuple[str | None, str | None]:
    """The task that failed first (not the watcher, unless nothing else failed) and its one-line reason
    from its last try's log."""
    tis = client.task_instances(dag_id, run_id) if tis is None else tis
    failed = sorted(
        (t for t in tis if t.get("state") == "failed"),
        key=lambda t: (t["task_id"] == WATCHER, t.get("end_date") or "~"),
    )
    if not failed:
        return None, None
    ti = failed[0]
    try:
        log = client.task_log(
            dag_id, run_id, ti["task_id"], int(ti.get("try_number") or 1), ti.get("map_index", -1)
        )
    except PushbuttonError as exc:
        return ti["task_id"], one_line(f"(its log could not be read: {exc})")
    return ti["task_id"], one_line(failure_reason(log)) or "(no error in its log; see the Airflow UI)"


@dataclass(frozen=True)
class Clock:
    """Time for ``follow``: tests pass a fake one (no real sleeps)."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def follow(
    client: Any,
    dag_id: str,
    run_id: str,
    *,
    timeout: float,
    poll: float = 2.0,
    clock: Clock | None = None,
    emit: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Follow one CI/CD run until it waits for approval, fails, succeeds, or ``timeout`` seconds pass.

    Each step's try is passed to ``emit`` once it ends (task, state, duration); at the approval the test
    report and how to answer it (CLI command, UI URL), at a failure the failing task and its reason.
    Returns ``{"state": "awaiting_approval" | "failed" | "success" | "timeout", "run_id", "steps", …}``.
    """
    clock = clock or Clock()
    deadline = clock.now() + timeout
    model = dag_id.removesuffix("__cicd")
    seen: set[tuple] = set()
    steps: list[dict[str, Any]] = []
    told_queued = False
    emit(f"following {dag_id} run {run_id} (at most {timeout:.0f}s)")
    while True:
        run = _get_run(client, dag_id, run_id)
        tis = client.task_instances(dag_id, run_id) if run is not None else []
        for ti in sorted(
            (t for t in tis if t.get("state") in STEP_DONE), key=lambda t: t.get("end_date") or "~"
        ):
            key = (ti["task_id"], ti.get("map_index", -1), ti.get("try_number"), ti.get("state"))
            if key not in seen:
                seen.add(key)
                steps.append(_step(ti))
                emit(_step_line(steps[-1]))
        outcome: dict[str, Any] = {"run_id": run_id, "steps": steps}
        state = (run or {}).get("state")
        if state == "failed":
            task, reason = failing_task(client, dag_id, run_id, tis)
            emit(f"✗ {model}: step '{task}' failed: {reason}")
            if task:
                emit(f"  its log: {client.task_ui_url(dag_id, run_id, task)}")
            return outcome | {"state": "failed", "failed_task": task, "reason": reason}
        if state == "success":
            emit(f"✓ {dag_id} run {run_id} finished")
            return outcome | {"state": "success"}
        if any(t["task_id"] == APPROVAL and t.get("state") in PENDING_HITL_STATES for t in tis):
            request = _pending_request(client, dag_id, run_id)
            if request is not None:
                approval = _approval(client, model, dag_id, run_id, request)
                for line in _approval_lines(model, approval):
                    emit(line)
                return outcome | {"state": "awaiting_approval", "approval": approval}
        if state == "queued" and not told_queued:
            told_queued = True
            others = [
                r["dag_run_id"]
                for r in client.list_runs(dag_id, state="running")
                if r["dag_run_id"] != run_id
            ]
            if others:
                emit(f"  queued: {dag_id} runs one run at a time and {', '.join(others)} is still running")
        if clock.now() >= deadline:
            at = ", ".join(f"{t['task_id']}={t.get('state')}" for t in tis if t.get("state") in IN_PROGRESS)
            emit(
                f"… stopped following after {timeout:.0f}s: {dag_id} run {run_id} is {state or 'not started'}"
                + (f" ({at})" if at else "")
                + f"; it goes on in Airflow: `pushbutton status {model}` shows where it is"
            )
            return outcome | {"state": "timeout", "run_state": state}
        clock.sleep(poll)


def _get_run(client: Any, dag_id: str, run_id: str) -> dict[str, Any] | None:
    try:
        return client.get_run(dag_id, run_id)
    except NotFound:  # not created yet (MLflow's webhook delivers it)
        return None


def _pending_request(client: Any, dag_id: str, run_id: str) -> dict[str, Any] | None:
    for item in client.pending_hitl(dag_id=dag_id):
        if item["task_instance"]["dag_run_id"] == run_id:
            return item
    return None


def _step(ti: dict[str, Any]) -> dict[str, Any]:
    duration = ti.get("duration")
    return {
        "task": ti["task_id"],
        "state": ti.get("state"),
        "try": ti.get("try_number"),
        "seconds": round(float(duration), 1) if duration is not None else None,
    }


def _step_line(step: dict[str, Any]) -> str:
    seconds = f"{step['seconds']:.1f}s" if step["seconds"] is not None else "-"
    note = " (will retry)" if step["state"] == "up_for_retry" else ""
    tried = f" try {step['try']}" if (step["try"] or 1) > 1 or note else ""
    state = "failed" if step["state"] == "up_for_retry" else step["state"]
    return f"  {step['task']:<18} {state:<8} {seconds:>8}{tried}{note}"


def _approval(client: Any, model: str, dag_id: str, run_id: str, request: dict[str, Any]) -> dict[str, Any]:
    task = request["task_instance"]
    return {
        "subject": request.get("subject"),
        "report": request.get("body") or "",
        "cli": f"pushbutton approve {model} --run-id {run_id}",
        "reject_cli": f"pushbutton approve {model} --run-id {run_id} --reject --comment WHY",
        "url": client.task_ui_url(dag_id, run_id, task["task_id"], task.get("map_index", -1))
        + "/required_actions",
    }


def _approval_lines(model: str, approval: dict[str, Any]) -> list[str]:
    return [
        f"✓ {approval['subject'] or model} — waiting for approval",
        "",
        approval["report"].rstrip(),
        "",
        f"approve: {approval['cli']}",
        f"reject:  {approval['reject_cli']}",
        f"or in the Airflow UI: {approval['url']}",
    ]
