"""pushbutton Airflow plugin: a FastAPI app on the Airflow API server at ``/pushbutton``.

``POST /pushbutton/webhooks/mlflow`` receives MLflow registry webhooks. A ``model_version.created``
delivery with a valid ``X-MLflow-Signature`` (HMAC secret from the ``pushbutton_mlflow`` connection,
extra ``webhook_secret``) triggers ``<model>__cicd`` with that version. A bad or missing signature
is answered 401 and logged; nothing is triggered. A version of a model without a pushbutton spec is
answered 404, also without triggering anything. A model whose spec exists but whose DAG the DAG
processor has not parsed yet (a brand-new model) is answered 503 with ``Retry-After``: MLflow's
webhook delivery retries it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from pushbutton.webhook import WebhookRejected, cicd_run_id, created_version, verify

log = logging.getLogger("pushbutton.webhook")
CONN_ID = "pushbutton_mlflow"
RETRY_AFTER_SECONDS = 10

app = FastAPI(
    title="pushbutton", description="pushbutton model lifecycle endpoints on the Airflow API server"
)


def _secret() -> str | None:
    from airflow.models.connection import Connection

    try:
        return Connection.get_connection_from_secrets(CONN_ID).extra_dejson.get("webhook_secret")
    except Exception:  # AirflowNotFoundException: the connection is not defined
        return None


def _spec_dir(name: str) -> str | None:
    """The model directory that declares ``name`` (from the factory's last stub sync), if any."""
    from airflow.configuration import conf

    from pushbutton.dagstubs import name_owner

    return name_owner(Path(conf.get("core", "dags_folder")), name)


def _trigger(name: str, version: str, delivery: str) -> tuple[int, dict]:
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType

    dag_id = f"{name}__cicd"
    run_id = cicd_run_id(version)
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
    headers = {"Retry-After": str(payload["retry_after"])} if "retry_after" in payload else None
    return JSONResponse(payload, status, headers=headers)


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


class PushbuttonPlugin(AirflowPlugin):
    name = "pushbutton"
    fastapi_apps = [{"app": app, "url_prefix": "/pushbutton", "name": "pushbutton"}]
