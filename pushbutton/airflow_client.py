"""A small client for the Airflow 3 REST API v2 (``/api/v2``) with simple-auth-manager JWTs.

Authentication: ``POST /auth/token`` with ``{"username", "password"}`` returns ``access_token``;
it is sent as a bearer token and fetched again once when a request answers 401 (expired token).
HTTP errors become pushbutton errors (404 NotFound, 409 Conflict, anything else StackError),
raised ``from`` the httpx error and carrying Airflow's ``detail``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from pushbutton.errors import Conflict, NotFound, PushbuttonError, StackError

HEALTH_COMPONENTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
PENDING_HITL_STATES = ("awaiting_input", "deferred")
PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"
PAGE = 100  # [api] maximum_page_limit default


def is_healthy(report: dict[str, Any]) -> bool:
    """True when every component of a ``/api/v2/monitor/health`` answer reports ``healthy``."""
    return all((report.get(name) or {}).get("status") == "healthy" for name in HEALTH_COMPONENTS)


def read_password(password_file: Path, username: str = "admin") -> str:
    """The simple auth manager password of ``username`` from its JSON password file."""
    try:
        passwords = json.loads(Path(password_file).read_text() or "{}")
    except FileNotFoundError as exc:
        raise StackError(
            f"Airflow password file {password_file} does not exist; start the stack with `pushbutton up`"
        ) from exc
    except ValueError as exc:
        raise StackError(f"Airflow password file {password_file} is not valid JSON") from exc
    if username not in passwords:
        raise StackError(f"user '{username}' has no password in {password_file}")
    return passwords[username]


class RunTimeout(StackError):
    """A DAG run did not reach a terminal state in time."""


class AirflowClient:
    """REST API v2 of one Airflow API server. Use as a context manager or call ``close()``."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self._token: str | None = None
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    @classmethod
    def from_settings(cls, settings: Any, username: str = "admin") -> AirflowClient:
        """Client for the embedded stack: URL from settings, password from the auth manager's file."""
        password = read_password(Path(settings.home) / "airflow" / PASSWORD_FILE, username)
        return cls(settings.airflow_url, username, password)

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"AirflowClient({self.base_url!r}, user={self.username!r})"

    # -- transport ---------------------------------------------------------------------------

    def _login(self) -> str:
        body = {"username": self.username, "password": self._password}
        response = self._send("POST", "/auth/token", json=body, auth=False)
        self._token = response.json()["access_token"]
        return self._token

    def _send(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> httpx.Response:
        what = f"{method} {self.base_url}{path}"
        extra_headers = dict(kwargs.pop("headers", None) or {})
        for attempt in (1, 2):
            headers = dict(extra_headers)
            if auth:
                headers["Authorization"] = f"Bearer {self._token or self._login()}"
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                raise StackError(
                    f"{what} failed: {exc!r}; is Airflow running? (`pushbutton status`, `pushbutton up`)"
                ) from exc
            if response.status_code == 401 and auth and attempt == 1:
                self._token = None  # expired or revoked: log in again once
                continue
            break
        try:
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            raise _error(what, response) from exc
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Authenticated call of ``/api/v2`` + ``path``; returns the decoded JSON (None when empty)."""
        response = self._send(method, "/api/v2" + path, **kwargs)
        return response.json() if response.content else None

    def _paged(self, path: str, key: str, params: dict[str, Any] | None = None) -> Iterator[dict]:
        offset = 0
        while True:
            page = self.request("GET", path, params={**(params or {}), "limit": PAGE, "offset": offset})
            items = list(page.get(key) or [])
            yield from items
            offset += len(items)
            if not items or offset >= page.get("total_entries", 0):
                return

    # -- monitor, DAGs -----------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``/api/v2/monitor/health`` (no authentication needed)."""
        return self._send("GET", "/api/v2/monitor/health", auth=False).json()

    def list_dags(self, tags: list[str] | None = None) -> list[dict]:
        params = {"tags": list(tags), "tags_match_mode": "all"} if tags else {}
        return list(self._paged("/dags", "dags", params))

    def get_dag(self, dag_id: str) -> dict:
        return self.request("GET", f"/dags/{_q(dag_id)}")

    def unpause(self, dag_id: str) -> dict:
        return self.request("PATCH", f"/dags/{_q(dag_id)}", json={"is_paused": False})

    def import_errors(self) -> list[dict]:
        return list(self._paged("/importErrors", "import_errors"))

    def wait_dag(self, dag_id: str, timeout: float = 120.0, poll: float = 1.0) -> dict:
        """Wait until the DAG processor has parsed and registered ``dag_id``; return the DAG."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                dag = self.get_dag(dag_id)
                if not dag.get("is_stale"):
                    return dag
            except NotFound:
                pass
            if time.monotonic() >= deadline:
                errors = [
                    f"{e['filename']}: {e['stack_trace'].strip().splitlines()[-1]}"
                    for e in self.import_errors()
                ]
                hint = ("; import errors:\n  " + "\n  ".join(errors)) if errors else ""
                raise NotFound(
                    f"DAG '{dag_id}' was not registered within {timeout:.0f}s; check the DAG file and "
                    f"the dag-processor log{hint}"
                )
            time.sleep(poll)

    # -- runs --------------------------------------------------------------------------------

    def trigger(
        self,
        dag_id: str,
        conf: dict[str, Any] | None = None,
        run_id: str | None = None,
        note: str | None = None,
    ) -> dict:
        """Start a manual run now (``logical_date`` null, as Airflow 3 allows); return the run."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        if note:
            body["note"] = note
        return self.request("POST", f"/dags/{_q(dag_id)}/dagRuns", json=body)

    def get_run(self, dag_id: str, run_id: str) -> dict:
        return self.request("GET", f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}")

    def list_runs(self, dag_id: str, state: str | list[str] | None = None) -> list[dict]:
        params: dict[str, Any] = {"order_by": "-run_after"}
        if state:
            params["state"] = [state] if isinstance(state, str) else list(state)
        return list(self._paged(f"/dags/{_q(dag_id)}/dagRuns", "dag_runs", params))

    def clear_tasks(self, dag_id: str, run_id: str, task_ids: list[str]) -> list[dict]:
        """Clear these tasks (only) of a run so they run again; the run is set back to queued."""
        body = {
            "dag_run_id": run_id,
            "task_ids": list(task_ids),
            "dry_run": False,
            "only_failed": False,
            "reset_dag_runs": True,
        }
        return self.request("POST", f"/dags/{_q(dag_id)}/clearTaskInstances", json=body)["task_instances"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return list(self._paged(f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances", "task_instances"))

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> dict:
        """One try's log as JSON: ``{"content": [{"event", "level", "error_detail", ...}], ...}``."""
        path = f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}/logs/{try_number}"
        return self.request(
            "GET",
            path,
            params={"full_content": "true", "map_index": map_index},
            headers={"Accept": "application/json"},
        )

    def failure_reasons(self, dag_id: str, run_id: str) -> dict[str, str]:
        """task_id -> why it failed (the exception message of its last try) for each failed task."""
        reasons: dict[str, str] = {}
        for ti in self.task_instances(dag_id, run_id):
            if ti.get("state") != "failed":
                continue
            try:
                log = self.task_log(
                    dag_id, run_id, ti["task_id"], int(ti.get("try_number") or 1), ti.get("map_index", -1)
                )
            except PushbuttonError as exc:
                reasons[ti["task_id"]] = f"(its log could not be read: {exc})"
                continue
            reasons[ti["task_id"]] = failure_reason(log) or "(no error in its log; see the Airflow UI)"
        return reasons

    def wait_run_created(self, dag_id: str, run_id: str, timeout: float = 120.0, poll: float = 0.5) -> dict:
        """Wait until run ``run_id`` of ``dag_id`` exists (e.g. started by a webhook); return it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get_run(dag_id, run_id)
            except NotFound:
                if time.monotonic() >= deadline:
                    raise RunTimeout(
                        f"no run {run_id} of {dag_id} after {timeout:.0f}s: did the MLflow webhook reach "
                        f"the pushbutton plugin at {self.base_url}/pushbutton/webhooks/mlflow?"
                    ) from None
            time.sleep(poll)

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600.0, poll: float = 2.0) -> dict:
        """Poll until the run is ``success`` or ``failed``; return it. RunTimeout lists the task states."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(dag_id, run_id)
            if run.get("state") in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() >= deadline:
                tasks = ", ".join(
                    f"{t['task_id']}={t.get('state')}" for t in self.task_instances(dag_id, run_id)
                )
                raise RunTimeout(
                    f"run {run_id} of {dag_id} is still {run.get('state')} after {timeout:.0f}s "
                    f"(tasks: {tasks or 'none yet'}); see the Airflow UI at {self.base_url}"
                )
            time.sleep(poll)

    # -- human in the loop -------------------------------------------------------------------

    def pending_hitl(self, dag_id: str | None = None) -> list[dict]:
        """HITL requests still waiting for an answer (optionally of one DAG), oldest first."""
        params = {"response_received": "false", "state": list(PENDING_HITL_STATES), "order_by": "created_at"}
        return list(self._paged(f"/dags/{_q(dag_id or '~')}/dagRuns/~/hitlDetails", "hitl_details", params))

    def wait_hitl(self, dag_id: str, run_id: str, timeout: float = 600.0, poll: float = 1.0) -> dict:
        """Wait until the run's HITL request (e.g. Approve/Reject) is pending; return it.

        Fails early (StackError naming the failed tasks and why) when the run fails before asking.
        """
        deadline = time.monotonic() + timeout
        while True:
            for item in self.pending_hitl(dag_id=dag_id):
                if item["task_instance"]["dag_run_id"] == run_id:
                    return item
            if self.get_run(dag_id, run_id).get("state") == "failed":
                why = "; ".join(f"{t}: {r}" for t, r in self.failure_reasons(dag_id, run_id).items())
                raise StackError(
                    f"{dag_id} run {run_id} failed ({why or 'no failed task'}); see {self.base_url}"
                )
            if time.monotonic() >= deadline:
                raise RunTimeout(f"{dag_id} run {run_id} did not reach its approval within {timeout:.0f}s")
            time.sleep(poll)

    def respond_hitl(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        chosen_options: list[str],
        params_input: dict[str, Any] | None = None,
        map_index: int = -1,
    ) -> dict:
        """Answer a HITL task (e.g. ``["Approve"]``); Conflict if it was already answered.

        The pushbutton plugin holds an answer to a request that has just appeared for a few seconds
        (``HitlSettleMiddleware``), so this call may take that long.
        """
        path = f"/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}/{map_index}/hitlDetails"
        body = {"chosen_options": list(chosen_options), "params_input": params_input or {}}
        return self.request("PATCH", path, json=body)

    # -- links into the UI -------------------------------------------------------------------

    def task_ui_url(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
        """The Airflow 3 UI page of one task instance (its log; ``+ "/required_actions"``: its form)."""
        url = f"{self.base_url}/dags/{_q(dag_id)}/runs/{_q(run_id)}/tasks/{_q(task_id)}"
        return url + (f"/mapped/{map_index}" if map_index >= 0 else "")


_EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?((?:\w*(?:Error|Exception|Failed)): .*)$")
_WRAPPERS = {"AirflowFailException", "AirflowException", "AirflowTaskTimeout"}


def failure_reason(log: dict[str, Any] | None) -> str | None:
    """The exception message of the last error in a task log (``task_log``), without traceback.

    Airflow 3 logs a failure as the event "Task failed with exception" whose ``error_detail`` lists
    the exception first, then its causes; Airflow's own wrapper types are not named. Without one, the
    last error-level event or exception line (a log Airflow could not parse) stands in.
    """
    detailed = plain = None
    for entry in (log or {}).get("content") or []:
        if isinstance(entry, str):
            try:
                entry = json.loads(entry)
            except ValueError:
                found = _EXCEPTION_LINE.match(entry.strip())
                plain = _reason(*found.group(1).split(": ", 1)) if found else plain
                continue
        if not isinstance(entry, dict) or str(entry.get("level", "")).lower() not in ("error", "critical"):
            continue
        details = [d for d in entry.get("error_detail") or [] if isinstance(d, dict)]
        if details:
            detailed = _reason(str(details[0].get("exc_type", "")), str(details[0].get("exc_value", "")))
        elif entry.get("event"):
            plain = str(entry["event"]).strip()
    return detailed or plain


def _reason(kind: str, value: str) -> str:
    value = value.strip()
    if not value:
        return kind
    return value if kind in _WRAPPERS else f"{kind}: {value}"


def _q(segment: str) -> str:
    return quote(segment, safe="~")


def _error(what: str, response: httpx.Response) -> Exception:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    if not isinstance(detail, str):
        detail = json.dumps(detail)
    message = f"{what} answered {response.status_code}: {detail}"
    if response.status_code == 404:
        return NotFound(message)
    if response.status_code == 409:
        return Conflict(message)
    if response.status_code in (401, 403):
        message += "; check the Airflow credentials (AirflowClient.from_settings reads the password file)"
    return StackError(message)
