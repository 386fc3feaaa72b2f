"""pushbutton Airflow plugin: a FastAPI app on the Airflow API server at ``/pushbutton``.

``POST /pushbutton/alerts/{alertmanager|grafana|elastalert}`` takes alerts from outside onto the alert
rules' path (``operators.alert_intake``: bearer token from the ``pushbutton_alerts`` connection).

``POST /pushbutton/webhooks/mlflow`` receives MLflow registry webhooks. A ``model_version.created``
delivery with a valid ``X-MLflow-Signature`` (HMAC secret from the ``pushbutton_mlflow`` connection,
extra ``webhook_secret``) triggers ``<model>__cicd`` with that version. A bad or missing signature
is answered 401 and logged; nothing is triggered. A version of a model without a pushbutton spec is
answered 404, also without triggering anything. A model whose spec exists but whose DAG the DAG
processor has not parsed yet (a brand-new model) is answered 503 with ``Retry-After``: MLflow's
webhook delivery retries it.

A root middleware, :class:`HitlSettleMiddleware`, holds an answer to a Human-in-the-loop request
(the Approve/Reject button in the UI or ``PATCH .../hitlDetails`` on the REST API) that arrives
within ``PUSHBUTTON_HITL_SETTLE_SECONDS`` (default 5) of the task parking, until that much time has
passed. Airflow 3.3 fails the task ("state changed externally") when the answer resumes it before the
scheduler has processed the executor event of the worker that parked it: with LocalExecutor the
late event of the parking try removes the resumed try from the executor's running set. It wraps
every request of the API server, so a bad value is a logged warning and the default, never an error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from pushbutton.config import DEFAULT_HITL_SETTLE_SECONDS, HITL_SETTLE_EXPECTED, hitl_settle_seconds
from pushbutton.webhook import WebhookRejected, cicd_run_id, created_version, verify

log = logging.getLogger("pushbutton.webhook")
hitl_log = logging.getLogger("pushbutton.hitl")
CONN_ID = "pushbutton_mlflow"
RETRY_AFTER_SECONDS = 10

app = FastAPI(  # no /docs: Swagger UI loads from a CDN (blank offline) and would be served without login
    title="pushbutton",
    description="pushbutton model lifecycle endpoints on the Airflow API server",
    docs_url=None,
    redoc_url=None,
)


def _secret() -> str | None:
    from airflow.models.connection import Connection

    try:
        return Connection.get_connection_from_secrets(CONN_ID).extra_dejson.get("webhook_secret")
    except Exception:  # AirflowNotFoundException: the connection is not defined
        return None


def _spec_dir(name: str) -> str | None:
    """The model directory that declares ``name`` (from the factory's last stub sync), if any."""
    from pushbutton.config import settings
    from pushbutton.dagstubs import name_owner

    return name_owner(settings().stub_root, name)


def _trigger(name: str, version: str, mlflow_run_id: str, delivery: str) -> tuple[int, dict]:
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType

    dag_id = f"{name}__cicd"
    run_id = cicd_run_id(version, mlflow_run_id)
    try:
        trigger_dag(
            dag_id,
            run_id=run_id,
            conf={"version": version},
            triggered_by=DagRunTriggeredByType.REST_API,
            triggering_user_name="mlflow-webhook",
            note=f"MLflow registered {name} v{version} (delivery {delivery})",
        )
    except DagNotFound:
        owner = _spec_dir(name)
        if owner:  # a new model: its stub exists, the DAG processor has not registered the DAG yet
            log.info(
                "webhook for %s v%s: DAG %s not parsed yet; asked MLflow to retry", name, version, dag_id
            )
            detail = (
                f"model '{name}' ({owner}) has no DAG {dag_id} yet: the DAG processor has not parsed it. "
                f"Retry in {RETRY_AFTER_SECONDS}s; if it never appears, check Airflow's import errors "
                f"for {owner}/model.yaml"
            )
            return 503, {"detail": detail, "retry_after": RETRY_AFTER_SECONDS}
        log.warning(
            "webhook for unknown model %r v%s: DAG %s does not exist; nothing triggered",
            name,
            version,
            dag_id,
        )
        detail = (
            f"no pushbutton model '{name}': DAG {dag_id} does not exist. Add models/<dir>/model.yaml with "
            f"name: {name} (see `pushbutton validate`), or check Airflow's import errors for its spec"
        )
        return 404, {"detail": detail}
    except DagRunAlreadyExists:
        return 200, {"status": "already triggered", "dag_id": dag_id, "run_id": run_id}
    log.info("triggered %s run %s for %s v%s (delivery %s)", dag_id, run_id, name, version, delivery)
    return 200, {"status": "triggered", "dag_id": dag_id, "run_id": run_id}


@app.post("/webhooks/mlflow")
async def mlflow_webhook(request: Request) -> JSONResponse:
    body = await request.body()
    secret = await run_in_threadpool(_secret)
    if not secret:
        log.error("webhook refused: connection %s has no extra.webhook_secret", CONN_ID)
        return JSONResponse(
            {"detail": f"webhooks are not configured: set extra.webhook_secret on connection {CONN_ID}"}, 503
        )
    try:
        delivery = verify(secret, request.headers, body)
        event = created_version(body)
    except WebhookRejected as exc:
        log.warning("webhook rejected from %s: %s", request.client.host if request.client else "?", exc)
        return JSONResponse({"detail": f"rejected: {exc}"}, 401)
    if event is None:
        return JSONResponse({"status": "ignored", "reason": "not a model_version.created event"})
    status, payload = await run_in_threadpool(_trigger, *event, delivery)
    if payload.get("status") in ("triggered", "already triggered"):
        supersede_soon(payload["dag_id"])  # an older version's approval may be waiting
    headers = {"Retry-After": str(payload["retry_after"])} if "retry_after" in payload else None
    return JSONResponse(payload, status, headers=headers)


# -- a newer version supersedes an approval still waiting (pushbutton.supersede) --------------------

supersede_log = logging.getLogger("pushbutton.supersede")
CICD_TRIGGER = re.compile(r"^/api/v2/dags/(?P<dag_id>[^/]+__cicd)/dagRuns/?$")


def _supersede(dag_id: str, settle_seconds: float, passes: int = 2) -> None:
    """Supersede what a queued newer run of ``dag_id`` holds back; once more after the settle time, for
    an approval that was parking while the newer run was created."""
    import time

    from operators.supersede import supersede_waiting

    for attempt in range(passes):
        if attempt:
            time.sleep(settle_seconds + 2.0)
        try:
            supersede_waiting(dag_id, settle_seconds)
        except Exception:  # logged; the approval still waits for a person
            supersede_log.exception("could not supersede waiting approvals of %s", dag_id)


def supersede_soon(dag_id: str, settle_seconds: float | None = None) -> threading.Thread:
    """Run :func:`_supersede` in the background: the caller's request never waits for it."""
    seconds = _settle_seconds_from_environment() if settle_seconds is None else settle_seconds
    thread = threading.Thread(
        target=_supersede, args=(dag_id, seconds), daemon=True, name=f"supersede-{dag_id}"
    )
    thread.start()
    return thread


class SupersedeMiddleware:
    """After a CI/CD run is created through the REST API or the UI (``POST /api/v2/dags/<model>__cicd/
    dagRuns`` answered 200), supersede an older version's approval that it queues behind."""

    def __init__(self, app: Callable, start: Callable[[str], object] = supersede_soon) -> None:
        self.app = app
        self.start = start

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        match = CICD_TRIGGER.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def recording(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, recording)
        if status and status[0] == 200:
            self.start(match.group("dag_id"))


HITL_ANSWER = re.compile(
    r"/dags/(?P<dag_id>[^/]+)/dagRuns/(?P<run_id>[^/]+)/taskInstances/(?P<task_id>[^/]+)/(?P<map_index>-?\d+)/hitlDetails$"
)
HITL_SETTLE_VARIABLE = "PUSHBUTTON_HITL_SETTLE_SECONDS"


def _settle_seconds_from_environment() -> float:
    """The settle time from the environment; the default, with one warning, when it is invalid."""
    raw = os.environ.get(HITL_SETTLE_VARIABLE)
    if raw is None:
        return DEFAULT_HITL_SETTLE_SECONDS
    try:
        return hitl_settle_seconds(raw)
    except ValueError as exc:
        hitl_log.warning(
            "environment variable %s=%r is invalid: %s; using the default %gs (fix: set it to %s, "
            "or unset it)",
            HITL_SETTLE_VARIABLE,
            raw,
            exc,
            DEFAULT_HITL_SETTLE_SECONDS,
            HITL_SETTLE_EXPECTED,
        )
        return DEFAULT_HITL_SETTLE_SECONDS


def _parked_since(dag_id: str, run_id: str, task_id: str, map_index: int) -> datetime | None:
    """When the task instance started waiting for its answer; None if it is not waiting."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    waiting = (TaskInstanceState.AWAITING_INPUT, TaskInstanceState.DEFERRED)
    query = select(TaskInstance.updated_at).where(
        TaskInstance.dag_id == dag_id,
        TaskInstance.run_id == run_id,
        TaskInstance.task_id == task_id,
        TaskInstance.map_index == map_index,
        TaskInstance.state.in_(waiting),
    )
    with create_session() as session:
        return session.scalar(query)


class HitlSettleMiddleware:
    """Hold a HITL answer until the waiting task has been parked ``settle_seconds`` (see module doc)."""

    def __init__(
        self,
        app: Callable,
        settle_seconds: float | None = None,
        parked_since: Callable[..., datetime | None] = _parked_since,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),  # the clock; tests inject one
    ) -> None:
        self.app = app
        self.settle_seconds = _settle_seconds_from_environment() if settle_seconds is None else settle_seconds
        self.parked_since = parked_since
        self.sleep = sleep
        self.now = now

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["method"] == "PATCH" and self.settle_seconds > 0:
            match = HITL_ANSWER.search(scope["path"])
            if match:
                await self._settle(**match.groupdict())
        await self.app(scope, receive, send)

    async def _settle(self, dag_id: str, run_id: str, task_id: str, map_index: str) -> None:
        try:
            since = await run_in_threadpool(self.parked_since, dag_id, run_id, task_id, int(map_index))
        except Exception:  # never block an answer on the check itself; Airflow answers the PATCH
            hitl_log.exception(
                "could not read the state of %s/%s/%s; answering at once", dag_id, run_id, task_id
            )
            return
        if since is None:
            return
        wait = self.settle_seconds - (self.now() - since).total_seconds()
        if wait > 0:
            hitl_log.info(
                "holding the answer to %s %s %s for %.1fs until it has settled", dag_id, run_id, task_id, wait
            )
            await self.sleep(wait)


@app.post("/alerts/{source}")
async def external_alert(source: str, request: Request) -> JSONResponse:
    """Alertmanager (v4), Grafana and ElastAlert2 (post2) webhooks: ``operators.alert_intake``."""
    from operators.alert_intake import ALERTS_CONN, authorized, expected_token, receive

    token = await run_in_threadpool(expected_token)
    if not token:
        return JSONResponse({"detail": f"alert intake is not configured: set a password on connection {ALERTS_CONN}"},
                            503)  # fmt: skip
    if not authorized(request.headers.get("authorization"), token):
        log.warning(
            "alert webhook refused (bad or missing token) from %s",
            request.client.host if request.client else "?",
        )
        return JSONResponse({"detail": "missing or wrong bearer token"}, 401)
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"detail": "the body is not JSON"}, 400)
    status, payload = await run_in_threadpool(
        receive, source, body, lambda model: _spec_dir(model) is not None
    )
    return JSONResponse(payload, status)


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


class PushbuttonPlugin(AirflowPlugin):
    name = "pushbutton"
    fastapi_apps = [{"app": app, "url_prefix": "/pushbutton", "name": "pushbutton"}]
    fastapi_root_middlewares = [
        {"middleware": HitlSettleMiddleware, "name": "pushbutton-hitl-settle"},
        {"middleware": SupersedeMiddleware, "name": "pushbutton-supersede"},
    ]
