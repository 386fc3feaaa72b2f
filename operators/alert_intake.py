"""Alerts from outside, on the Airflow API server (the plugin's ``POST /pushbutton/alerts/{source}``).

``source`` is ``alertmanager`` (webhook version 4), ``grafana`` or ``elastalert`` (``post2``). The
request must carry ``Authorization: Bearer <token>``, the password of the Airflow Connection
``pushbutton_alerts`` (compared in constant time; 401 otherwise, 503 when the Connection is not set
up). The payload is mapped by ``pushbutton.alerting.external``; every alert must name a known
pushbutton model (404 otherwise, nothing acted on), then each takes the internal rules' path
(``pushbutton.alerting.judge.act``: same dedupe, same history). A retrain request becomes the model's
retrain asset event (registered here, where the metadata database is); a rollback triggers the
``pushbutton__rollback`` DAG (the rollback button's path) after the same guard rails.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from datetime import UTC, datetime
from typing import Any

from operators.alerting import busy_reason, retrain_asset

log = logging.getLogger("pushbutton.alerts")
ALERTS_CONN = "pushbutton_alerts"


def expected_token() -> str | None:
    from airflow.models.connection import Connection

    try:
        return Connection.get_connection_from_secrets(ALERTS_CONN).password or None
    except Exception:  # AirflowNotFoundException: not configured
        return None


def authorized(header: str | None, token: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _dr_count(dag_id: str, states: list[str]) -> int:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        query = (
            select(func.count()).select_from(DagRun).where(DagRun.dag_id == dag_id, DagRun.state.in_(states))
        )
        return int(session.scalar(query) or 0)


def _emit(model: str, extra: dict[str, Any]) -> None:
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    uri = retrain_asset(model).uri
    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.uri == uri).limit(1))
        if asset is None:
            raise LookupError(
                f"asset {uri} is not registered: the DAG processor has not parsed {model}__retrain"
            )
        asset_manager.register_asset_change(asset=asset, extra=extra, source_is_api=True, session=session)


def _trigger_rollback(event: Any) -> str:
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType

    run_id = f"alert__{event.id}"
    with contextlib.suppress(DagRunAlreadyExists):  # a re-delivered alert: the run exists already
        trigger_dag("pushbutton__rollback", run_id=run_id, conf={"model": event.model, "version": "previous"},
                    triggered_by=DagRunTriggeredByType.REST_API, triggering_user_name=f"pushbutton:{event.source}",
                    note=event.summary()[:1000])  # fmt: skip
    return f"pushbutton__rollback run {run_id} triggered"


def _effects(model: str) -> Any:
    from operators.hooks import MlflowRegistryHook, PushbuttonStoreHook
    from pushbutton.alerting.judge import Effects
    from pushbutton.registry import CHAMPION

    def champion() -> str | None:
        found = MlflowRegistryHook().get_conn().by_alias(model, CHAMPION)
        return found.version if found else None

    return Effects(
        busy=lambda: busy_reason(model, lambda dag_id, states: _dr_count(dag_id, states)),
        champion=champion,
        serving_history=lambda: PushbuttonStoreHook().get_conn().events(model, limit=20),
        rollback=_trigger_rollback,
        notify=None,  # the sender (Alertmanager, Grafana, ElastAlert) notifies people itself
    )


def receive(source: str, body: Any, known: Any, now: datetime | None = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON answer) for one delivery; ``known(model)`` says whether the model exists."""
    from dataclasses import replace

    from operators.monitoring import IndicatorStoreHook
    from pushbutton.alerting import external
    from pushbutton.alerting.events import ActionTaken
    from pushbutton.alerting.judge import Judgement, act

    now = now or datetime.now(UTC)
    try:
        alerts = external.parse(source, body, now)
    except external.PayloadError as exc:
        return 400, {"detail": str(exc)}
    unknown = sorted({a.event.model for a in alerts if not known(a.event.model)})
    if unknown:
        return 404, {"detail": f"unknown model(s) {', '.join(unknown)}: set the 'model' label to a pushbutton "
                               "model name (see `pushbutton status`); nothing was done"}  # fmt: skip
    recorded = []
    with IndicatorStoreHook().get_conn() as store:
        for found in alerts:
            out = Judgement()
            event = act(
                store, found.event, found.actions, external.COOLDOWN, _effects(found.event.model), now, out
            )
            if out.retrain:
                try:
                    _emit(event.model, out.retrain)
                except Exception as exc:
                    event = event.with_action(ActionTaken("retrain", "failed", f"{exc}"[:500]))
                    store.write_alerts([replace(event)])
            log.info("external alert: %s", event.summary())
            recorded.append(event.summary())
    return 200, {"events": recorded}
