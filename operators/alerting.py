"""Alerting adapters for Airflow, thin over ``pushbutton.alerting``:

* ``AlertRulesOperator`` (``evaluate_alerts`` in ``<model>__monitor``, right after the indicators are
  written) — judges the model's rules on the window just computed, records every firing and
  resolution in the alert history (``IndicatorStoreHook``'s store), rolls back through the same path
  as the rollback button where a critical rule allows it, notifies, and hands a retrain request on;
* ``RetrainRequestOperator`` (``request_retrain``) — emits the model's retrain asset event
  (``pushbutton://<model>/retrain``, the alert in ``extra``) when a rule asked for one, else skips
  (a skipped task emits no asset event);
* ``AlertWebhookNotifier`` — an Airflow notifier posting the alert (rule, values, links to the run,
  the drift report and the model) to the HTTP Connection ``pushbutton_notify`` (``host`` is the URL,
  ``password`` an optional bearer token).

``retrain_asset(model)`` is the asset the ``<model>__retrain`` DAG is scheduled on (with its cron).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Asset, AssetAlias, BaseNotifier, BaseOperator, BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

NOTIFY_CONN = "pushbutton_notify"
AUTO_ROLLBACK_ACTOR = "pushbutton:auto-rollback"


RETRAIN_ALIAS = AssetAlias("pushbutton-retrain-requests")  # the fleet DAG's retrain requests, any model


def retrain_asset(model: str) -> Asset:
    return Asset(name=f"{model}__retrain_request", uri=f"pushbutton://{model}/retrain", group="pushbutton")


def busy_reason(model: str, dr_count: Any) -> str | None:
    """Why a retrain request would be absorbed now: a retrain or a release of ``model`` in progress."""
    for dag_id, what in ((f"{model}__retrain", "a retrain"), (f"{model}__cicd", "a release")):
        try:
            found = dr_count(dag_id=dag_id, states=["queued", "running"])
        except Exception:  # the DAG does not exist (yet): nothing in progress
            found = 0
        if found:
            return f"{what} of {model} is in progress ({dag_id}: {found} run(s) queued or running)"
    return None


class AlertWebhookNotifier(BaseNotifier):
    """POST the alert as JSON to the ``pushbutton_notify`` HTTP Connection (generic webhook)."""

    template_fields = ("payload",)

    def __init__(self, *, payload: dict[str, Any], http_conn_id: str = NOTIFY_CONN, timeout: float = 10.0):
        super().__init__()
        self.payload = payload
        self.http_conn_id = http_conn_id
        self.timeout = timeout

    def notify(self, context: Any) -> None:
        import httpx
        from airflow.sdk import BaseHook

        from pushbutton.alerting.judge import NotConfigured

        try:
            conn = BaseHook.get_connection(self.http_conn_id)
        except Exception as exc:
            raise NotConfigured(
                f"no notifier configured: define the HTTP Connection {self.http_conn_id} (host: the webhook URL)"
            ) from exc
        url = webhook_url(self.http_conn_id, conn.host, conn.schema, conn.port)
        headers = {"Authorization": f"Bearer {conn.password}"} if conn.password else {}
        response = httpx.post(url, json=self.payload, headers=headers, timeout=self.timeout)
        response.raise_for_status()


def webhook_url(conn_id: str, host: str | None, schema: str | None, port: int | None) -> str:
    """The notifier's URL from an HTTP Connection: ``host`` is a URL (``https://hooks.example/a/b``) or a
    host name with an optional path (``schema`` then gives the scheme, default http); ``port`` goes
    after the host name, never after the path, and never replaces a port the URL already names."""
    from urllib.parse import urlsplit, urlunsplit

    from pushbutton.alerting.judge import NotConfigured

    if not host:
        raise NotConfigured(f"the HTTP Connection {conn_id} has no host (fix: set host to the webhook URL)")
    parts = urlsplit(host if "://" in host else f"{schema or 'http'}://{host}")
    if port and parts.port is None:
        parts = parts._replace(netloc=f"{parts.netloc}:{port}")
    return urlunsplit(parts)


def alert_payload(event: Any, context: Any, report: str | None) -> dict[str, Any]:
    """What a notification says: the rule, values, outcomes and links to run, report and model."""
    from pushbutton.config import settings

    ti = context["ti"]
    airflow = settings().airflow_url.rstrip("/")
    return {
        "text": event.summary(),
        "alert": event.as_dict(),
        "links": {
            "run": f"{airflow}/dags/{ti.dag_id}/runs/{ti.run_id}",
            "report": report,
            "model": f"models:/{event.model}" + (f"/{event.version}" if event.version else ""),
        },
    }


class AlertRulesOperator(BaseOperator):
    """Judge ``model.yaml``'s ``alerts`` on the window ``compute_indicators`` just computed, and act."""

    template_fields: Sequence[str] = ("model", "model_dir")

    def __init__(
        self, *, model: str, model_dir: str, compute_task_id: str = "compute_indicators", **kwargs: Any
    ):
        super().__init__(**kwargs)
        self.model = model
        self.model_dir = model_dir
        self.compute_task_id = compute_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        from pathlib import Path

        from operators.monitoring import IndicatorStoreHook
        from pushbutton.alerting.judge import judge
        from pushbutton.errors import SpecError
        from pushbutton.spec import load_model_dir

        try:
            spec = load_model_dir(Path(self.model_dir))
        except SpecError as exc:
            raise AirflowFailException(str(exc)) from exc
        computed = context["ti"].xcom_pull(task_ids=self.compute_task_id) or {}
        if not spec.alerts or not computed.get("window_end"):
            return {"events": [], "pending": [], "retrain": None, "note": "no rules or no window"}
        window_end = datetime.fromisoformat(computed["window_end"])
        serving = [tuple(s) for s in computed.get("series") or []]
        effects = alert_effects(spec, context, computed.get("report"))
        with IndicatorStoreHook().get_conn() as store:
            found = judge(spec, store, window_end, serving, effects, datetime.now(UTC), context["run_id"])
        for event in found.events:
            self.log.info("alert: %s", event.summary())
        return found.summary()


def alert_effects(spec: Any, context: Any, report: str | None, platform_: Any = None) -> Any:
    """What judging ``spec``'s rules may do from a task: busy check, champion, history, rollback, notify."""
    from operators.lifecycle import platform
    from pushbutton.alerting.judge import Effects
    from pushbutton.registry import CHAMPION

    ti, model, state = context["ti"], spec.name, {"p": platform_} if platform_ is not None else {}

    def p() -> Any:  # built on first use: most windows fire nothing
        if "p" not in state:
            state["p"] = platform()
        return state["p"]

    def champion() -> str | None:
        found = p().registry.by_alias(model, CHAMPION)
        return found.version if found else None

    def rollback(event: Any) -> str:
        from pushbutton.lifecycle import make_champion

        done = make_champion(p(), model, "previous", action="rollback", actor=AUTO_ROLLBACK_ACTOR,
                             run_id=context["run_id"], comment=f"automatic rollback: {event.summary()}")  # fmt: skip
        return f"v{done['champion']} serves again (was v{done.get('previous')})"

    def notify(event: Any) -> str:
        AlertWebhookNotifier(payload=alert_payload(event, context, report)).notify(context)
        return f"posted to the {NOTIFY_CONN} Connection"

    return Effects(
        busy=lambda: busy_reason(model, ti.get_dr_count),
        champion=champion,
        serving_history=lambda: p().history.events(model, limit=20),
        rollback=rollback,
        notify=notify,
        rollback_window=spec.promotion.rollback_window,
    )


class RetrainRequestOperator(BaseOperator):
    """Emit the retrain asset event a rule asked for (``extra``: the alert); skip when none did."""

    template_fields: Sequence[str] = ("model",)

    def __init__(self, *, model: str, evaluate_task_id: str = "evaluate_alerts", **kwargs: Any):
        super().__init__(outlets=[retrain_asset(model)], **kwargs)
        self.model = model
        self.evaluate_task_id = evaluate_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        judged = context["ti"].xcom_pull(task_ids=self.evaluate_task_id) or {}
        request = judged.get("retrain")
        if not request:
            raise AirflowSkipException("no alert asked for a retrain in this window")
        context["outlet_events"][retrain_asset(self.model)].extra = request
        self.log.info(
            "retrain of %s requested by %s: %s", self.model, request.get("rule"), request.get("message")
        )
        return request


POLICY_KEY = "policy"
POLICY_ACTOR = {"id": "pushbutton:policy", "name": "promotion policy (auto)"}


class CanaryPolicySensor(BaseSensorOperator):
    """``canary_policy`` (CI/CD DAG of a model whose ``promotion.policy`` is ``auto``): waits, without
    holding a worker (reschedule mode), until the canary has the evidence the policy needs; then the
    decision (``promote`` or ``hand_over`` with the reason) goes to the XCom ``policy`` for ``approve``,
    which answers itself on ``promote`` and otherwise asks a person, showing the reason."""

    template_fields: Sequence[str] = ("model", "version", "model_dir")

    def __init__(self, *, model: str, version: str, model_dir: str, **kwargs: Any):
        kwargs.setdefault("mode", "reschedule")
        if "poke_interval" not in kwargs:
            from pushbutton.config import settings

            kwargs["poke_interval"] = settings().policy_poke_seconds
        super().__init__(**kwargs)
        self.model = model
        self.version = version
        self.model_dir = model_dir

    def poke(self, context: Context) -> bool:
        from pathlib import Path

        from operators.monitoring import IndicatorStoreHook
        from pushbutton.alerting.policy import decide, gather, in_scope
        from pushbutton.spec import load_model_dir

        spec = load_model_dir(Path(self.model_dir))
        status, trigger = self._version(spec.name)
        if status != "candidate":  # decided already (a cleared task of a finished run) or withdrawn
            return self._decided(context, "hand_over", f"v{self.version} is {status}: nothing left to decide")
        ok, why = in_scope(spec.promotion, trigger)
        if not ok:
            return self._decided(context, "hand_over", why)
        now = datetime.now(UTC)
        since = self._deployed_at(spec.name) or context["dag_run"].start_date or now
        with IndicatorStoreHook().get_conn() as store:
            served, windows, firing, comparison = gather(spec, store, str(self.version), since, now)
        found = decide(spec.promotion, served=served, windows=windows, firing=firing, waited=now - since,
                       tolerance=spec.gate.champion_tolerance, comparison=comparison)  # fmt: skip
        self.log.info(
            "promotion policy for %s v%s: %s (%s)", self.model, self.version, found.verdict, found.reason
        )
        if found.verdict == "wait":
            return False
        return self._decided(context, found.verdict, found.reason, found.evidence)

    @staticmethod
    def _decided(context: Context, verdict: str, reason: str, evidence: dict[str, Any] | None = None) -> bool:
        context["ti"].xcom_push(
            key=POLICY_KEY, value={"verdict": verdict, "reason": reason, "evidence": evidence or {}}
        )
        return True

    def _version(self, model: str) -> tuple[str, str | None]:
        """The version's status (candidate, champion, …) and its lineage trigger (MLflow tags)."""
        from operators.hooks import MlflowRegistryHook

        found = MlflowRegistryHook().get_conn().get(model, str(self.version))
        return found.status, found.tags.get("pushbutton.trigger")

    def _deployed_at(self, model: str) -> datetime | None:
        """When this version was deployed as the candidate (the serving history): the canary's evidence
        counts from there, also when a cleared task runs again later."""
        from operators.hooks import PushbuttonStoreHook

        for event in PushbuttonStoreHook().get_conn().events(model, limit=50):
            if event["action"] == "deploy_candidate" and str(event["version"]) == str(self.version):
                at = (
                    event["at"]
                    if isinstance(event["at"], datetime)
                    else datetime.fromisoformat(str(event["at"]))
                )
                return at if at.tzinfo else at.replace(tzinfo=UTC)
        return None


def policy_decision(context: Any, task_id: str = "canary_policy") -> dict[str, Any] | None:
    try:
        return context["ti"].xcom_pull(task_ids=task_id, key=POLICY_KEY)
    except Exception:  # no such task in this DAG (manual policy)
        return None


def policy_event(decision: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The approval answer of an automatic promotion (as the HITL resume sends it), with the evidence."""
    return {
        "chosen_options": ["Approve"],
        "params_input": {"comment": f"promoted by policy: {decision['reason']}"},
        "responded_at": now or datetime.now(UTC),
        "responded_by_user": POLICY_ACTOR,
        "timedout": False,
    }


def record_release(model: str, version: str, outcome: str, detail: str, log: Any) -> None:
    """Add the fate of a retrained version's release (``failed`` at a gate, ``done``) to the alert that
    asked for the retrain (the version's ``pushbutton.alert_id`` tag), as its ``release`` action. Best
    effort: the release's own outcome never depends on it."""
    from operators.hooks import MlflowRegistryHook
    from operators.monitoring import IndicatorStoreHook
    from pushbutton.alerting.events import ActionTaken

    try:
        alert_id = MlflowRegistryHook().get_conn().get(model, version).tags.get("pushbutton.alert_id")
        if not alert_id:
            return
        with IndicatorStoreHook().get_conn() as store:
            found = next((e for e in store.alerts(model, limit=500) if e.id == alert_id), None)
            if found is not None:
                store.write_alerts([found.with_action(ActionTaken("release", outcome, detail))])  # type: ignore[arg-type]
    except Exception as exc:
        log.warning("could not record v%s's release in its alert's history: %s", version, exc)
