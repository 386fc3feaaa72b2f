"""Monitoring adapters for Airflow: ``IndicatorStoreHook`` (owns the ``pushbutton_monitoring``
Connection and hands out the monitoring store) and the thin operators of the ``<model>__monitor`` DAG
over ``pushbutton.monitoring.runtime``:

* ``IndicatorComputeOperator`` (``compute_indicators``) — reads the window, aggregates it, computes
  every declared indicator for each serving version and predictor, renders the drift report into
  ``<home>/monitoring/reports/<model>/<window end>.html``; the results go to the XCom ``results``;
* ``IndicatorWriteOperator`` (``write_indicators``) — writes those results through the hook (idempotent
  by result key: a cleared task or a re-run of the window replaces them);
* ``DriftReportLogOperator`` (``log_report``) — logs the report as the MLflow artifact
  ``monitoring/<window end>.html`` of each monitored version's run;
* ``RequestLogPurgeOperator`` (``purge_request_log``) — deletes the raw log older than the model's
  ``logging.retention_days`` before the run's ``run_after`` (idempotent);
* ``FleetMonitorOperator`` — one tick of ``pushbutton__monitor_fleet`` (many models in one process:
  ``pushbutton.monitoring.fleet``).

The Connection (``pushbutton up`` sets it as ``AIRFLOW_CONN_PUSHBUTTON_MONITORING``):

* ``extra.url`` — a SQLAlchemy URL (``sqlite:///…/monitoring.db``, ``postgresql+psycopg://…``) or an
  ``elasticsearch+https://…`` URL, used as it is;
* or an Elasticsearch connection (conn type ``elasticsearch``, or ``extra.backend: elasticsearch``):
  ``host``, ``port`` (9200), ``schema`` (``https``/``http``), ``login``/``password``; every other
  ``extra`` field is passed on as a URL query parameter (``ElasticsearchStore``'s options);
* no such Connection: the platform default (``PUSHBUTTON_MONITORING_URL``, else ``<home>/monitoring.db``).

Heavy imports (pandas, the store, the indicators) happen inside ``execute``: DAG files parse cheaply.
A bad window or spec fails the task without retry; an unreachable store may retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from airflow.sdk import BaseHook, BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from operators.hooks import MlflowRegistryHook

if TYPE_CHECKING:
    from pushbutton.monitoring.store.base import MonitoringStore

RESULTS_KEY = "results"
ES_TYPES = ("elasticsearch", "elasticsearch_http")


def connection_url(conn: Any) -> str | None:
    """The store URL a Connection describes (see the module docstring), or None for the default."""
    extra = dict(conn.extra_dejson or {})
    if extra.get("url"):
        return str(extra["url"])
    backend = str(extra.pop("backend", "") or "")
    if (conn.conn_type or "") not in ES_TYPES and backend != "elasticsearch":
        return None
    if not conn.host:
        raise AirflowFailException(
            f"connection {conn.conn_id}: host: empty (fix: the Elasticsearch host, e.g. es.example.com, or set "
            "extra.url to elasticsearch+https://host:9200)"
        )
    scheme = conn.schema or "https"
    if scheme not in ("http", "https"):
        raise AirflowFailException(f"connection {conn.conn_id}: schema: '{scheme}' (fix: https or http)")
    auth = ""
    if conn.login:
        auth = (
            quote(conn.login, safe="") + (f":{quote(conn.password, safe='')}" if conn.password else "") + "@"
        )
    query = f"?{urlencode({k: v for k, v in sorted(extra.items())})}" if extra else ""
    return f"elasticsearch+{scheme}://{auth}{conn.host}:{conn.port or 9200}{query}"


class IndicatorStoreHook(BaseHook):
    """The monitoring store: request log, labels and indicator results (SQL or Elasticsearch)."""

    conn_name_attr = "monitoring_conn_id"
    default_conn_name = "pushbutton_monitoring"
    conn_type = "generic"
    hook_name = "Pushbutton monitoring store"

    def __init__(self, monitoring_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.monitoring_conn_id = monitoring_conn_id

    def url(self) -> str:
        from pushbutton.config import settings

        try:
            conn = self.get_connection(self.monitoring_conn_id)
        except Exception:  # the Connection is not defined: the platform default store
            return settings().monitoring
        return connection_url(conn) or settings().monitoring

    def get_conn(self) -> MonitoringStore:
        from pushbutton.monitoring.store import open_store

        return open_store(self.url())


def _fail_on_config(call: Any) -> Any:
    """Bad windows and specs fail without retry; an unreachable store or MLflow may retry."""
    from pushbutton.errors import SpecError
    from pushbutton.monitoring.store.base import StoreError, StoreUnavailable
    from pushbutton.monitoring.windows import WindowError

    try:
        return call()
    except StoreUnavailable:
        raise
    except (WindowError, SpecError, StoreError) as exc:
        raise AirflowFailException(str(exc)) from exc


class IndicatorComputeOperator(BaseOperator):
    """Compute the model's indicators over the run's window (``window_start``/``window_end`` override
    it: ISO 8601 times, e.g. from the DAG's params) and render the drift report."""

    template_fields: Sequence[str] = ("model", "window_start", "window_end")

    def __init__(self, *, model: str, model_dir: str, schedule: str | None = None, window_start: str = "",
                 window_end: str = "", **kwargs: Any):  # fmt: skip
        super().__init__(**kwargs)
        self.model = model
        self.model_dir = model_dir
        self.schedule = schedule
        self.window_start = window_start
        self.window_end = window_end

    def execute(self, context: Context) -> dict[str, Any]:
        return _fail_on_config(lambda: self._compute(context))

    def _compute(self, context: Context) -> dict[str, Any]:
        from datetime import UTC, datetime
        from pathlib import Path

        from operators.lifecycle import platform
        from pushbutton.monitoring.reference import ReferenceStore, platform_materialize
        from pushbutton.monitoring.runtime import run_model
        from pushbutton.monitoring.windows import monitor_window
        from pushbutton.spec import load_model_dir

        window = monitor_window(
            self.schedule,
            now=datetime.now(UTC),
            data_interval_start=context.get("data_interval_start"),
            data_interval_end=context.get("data_interval_end"),
            logical_date=context.get("logical_date"),
            window_start=self.window_start,
            window_end=self.window_end,
        )
        spec = load_model_dir(Path(self.model_dir))
        p = platform()
        references = ReferenceStore(p.settings.home / "monitoring" / "reference", p.registry,
                                    platform_materialize(p))  # fmt: skip
        route = _route(p, spec)
        self.log.info("monitoring %s over %s; routed: %s", self.model, window.describe(), route)
        with IndicatorStoreHook().get_conn() as store:
            run = run_model(store, spec, window, references=lambda v: references.get(self.model, v),
                            model_dir=Path(self.model_dir), route=route, run_id=context["run_id"],
                            report_dir=p.settings.home / "monitoring" / "reports")  # fmt: skip
        for result in run.results:
            mark = "FLAGGED " if result.flagged else ""
            self.log.info("%s%s %s v%s: %s — %s", mark, result.indicator_id, result.predictor, result.version,
                          result.status, result.message)  # fmt: skip
        self.log.info("drift report: %s", run.report)
        context["ti"].xcom_push(key=RESULTS_KEY, value=[r.as_dict() for r in run.results])
        return run.summary()


def serving_routes(runtime: Any, deployments: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """``namespace/deployment`` → ``{"config": route}`` of what serves now: the local gateway's routes
    (one call), or on a runtime without a gateway (seldon-v1) each deployment's ``route`` (its
    SeldonDeployment's predictors; deployments that do not exist are left out)."""
    gateway = getattr(runtime, "gateway", None)
    if gateway is not None:
        return gateway.routes()
    found = {}
    for namespace, name in dict.fromkeys(deployments):
        route = runtime.route(namespace, name)
        if route is not None:
            found[f"{namespace}/{name}"] = {"config": route}
    return found


def _route(p: Any, spec: Any) -> dict[str, Any] | None:
    """What the gateway routes to now; the registry's champion/candidate when the gateway is down."""
    from pushbutton.errors import PushbuttonError

    try:
        status = p.runtime.status(spec.serving.namespace, spec.name)
        if "error" not in status:
            return status.get("route")
    except PushbuttonError:
        pass
    backends = {}
    for alias in ("champion", "candidate"):
        found = p.registry.by_alias(spec.name, alias)
        if found is not None:
            backends[alias] = {"version": found.version}
    return {"backends": backends} if backends else None


class IndicatorWriteOperator(BaseOperator):
    """Write the results another task computed (its XCom ``results``) through ``IndicatorStoreHook``."""

    template_fields: Sequence[str] = ("model", "results_task")

    def __init__(self, *, model: str, results_task: str = "compute_indicators", **kwargs: Any):
        super().__init__(**kwargs)
        self.model = model
        self.results_task = results_task

    def execute(self, context: Context) -> dict[str, Any]:
        from pushbutton.monitoring.results import IndicatorResult

        found = context["ti"].xcom_pull(task_ids=self.results_task, key=RESULTS_KEY)
        if found is None:
            raise AirflowFailException(
                f"task '{self.results_task}' left no '{RESULTS_KEY}' XCom to write (fix: run it first)"
            )
        results = [IndicatorResult.from_dict(item) for item in found]
        strangers = sorted({r.model for r in results} - {self.model})
        if strangers:
            raise AirflowFailException(
                f"results of {', '.join(strangers)} handed to the writer of {self.model}"
            )
        with IndicatorStoreHook().get_conn() as store:
            written = _fail_on_config(lambda: store.write_indicators(results))
        flagged = [f"{r.indicator_id} ({r.predictor} v{r.version})" for r in results if r.flagged]
        errors = [f"{r.indicator_id} ({r.predictor} v{r.version})" for r in results if r.status == "error"]
        self.log.info("wrote %d indicator results of %s; flagged: %s; failed: %s", written, self.model,
                      ", ".join(flagged) or "none", ", ".join(errors) or "none")  # fmt: skip
        return {"written": written, "flagged": flagged, "errors": errors}


class DriftReportLogOperator(BaseOperator):
    """Log the drift report as the MLflow artifact ``monitoring/<file>`` of each monitored version."""

    template_fields: Sequence[str] = ("model", "report_task")

    def __init__(self, *, model: str, report_task: str = "compute_indicators", **kwargs: Any):
        super().__init__(**kwargs)
        self.model = model
        self.report_task = report_task

    def execute(self, context: Context) -> dict[str, Any]:
        from pushbutton.monitoring.report import log_report

        summary = context["ti"].xcom_pull(task_ids=self.report_task) or {}
        if not summary.get("report"):
            self.log.info("no report to log")
            return {"logged": []}
        versions = [v for v in summary.get("versions", []) if v]
        if not versions:
            self.log.info("nothing served in the window: no version to log %s to", summary["report"])
            return {"logged": []}
        logged = log_report(MlflowRegistryHook().get_conn(), self.model, versions, summary["report"])
        self.log.info("logged %s to MLflow: %s", summary["report"], logged)
        return {"logged": logged}


class RequestLogPurgeOperator(BaseOperator):
    """Deletes the model's raw request log older than ``retention_days`` before ``at`` (the run's
    ``run_after``: a re-run deletes the same span; ``pushbutton.monitoring.retention``)."""

    template_fields: Sequence[str] = ("model", "at")

    def __init__(self, *, model: str, retention_days: int, at: str = "{{ dag_run.run_after.isoformat() }}",
                 **kwargs: Any):  # fmt: skip
        super().__init__(**kwargs)
        self.model, self.retention_days, self.at = model, retention_days, at

    def execute(self, context: Context) -> dict[str, Any]:
        from pushbutton.monitoring.retention import purge_expired
        from pushbutton.monitoring.windows import WindowError, parse_time

        try:
            at = parse_time(self.at, "at")
        except WindowError as exc:
            raise AirflowFailException(str(exc)) from exc
        if at is None:
            raise AirflowFailException(f"{self.task_id}: at: empty (fix: the time the run is for, ISO 8601)")
        with IndicatorStoreHook().get_conn() as store:
            done = purge_expired(store, self.model, self.retention_days, at)
        self.log.info("%s: %d records older than %s purged (retention_days %s)", self.model, done.purged,
                      done.before.isoformat(), self.retention_days)  # fmt: skip
        return done.as_dict()


class FleetMonitorOperator(BaseOperator):
    """One tick of ``pushbutton__monitor_fleet``: every model whose monitor schedule ticked since the
    fleet's previous tick, each over its own window, in one process (``pushbutton.monitoring.fleet``)."""

    template_fields: Sequence[str] = ()

    def execute(self, context: Context) -> dict[str, Any]:
        from datetime import UTC, datetime

        from pushbutton.monitoring.fleet import FLEET_TICK
        from pushbutton.monitoring.windows import previous_tick

        tick = context.get("data_interval_end") or context.get("logical_date") or datetime.now(UTC)
        after = previous_tick(FLEET_TICK, tick) or tick
        return _fail_on_config(lambda: self._tick(context, after, tick))

    def _tick(self, context: Context, after: Any, tick: Any) -> dict[str, Any]:
        from operators.lifecycle import platform
        from pushbutton.dagstubs import first_seen_of, stub_name
        from pushbutton.errors import PushbuttonError
        from pushbutton.monitoring.fleet import BATCH, FleetRun, Plan, due_models, run_fleet
        from pushbutton.monitoring.reference import ReferenceStore, platform_materialize
        from pushbutton.monitoring.report import log_report
        from pushbutton.monitoring.windows import parse_time
        from pushbutton.spec import discover

        p = platform()
        cfg = p.settings
        found = []
        for item in discover(cfg.models_dir):
            if item.spec is None:
                self.log.warning("skipping %s: %s", item.model_dir, item.error)
                continue
            stub = cfg.stub_root / "models" / stub_name(cfg.models_dir, item.model_dir)
            found.append((item.spec, item.model_dir, parse_time(first_seen_of(stub), "first_seen")))
        due = due_models(found, after, tick)
        self.log.info("%d of %d models are due in (%s, %s]", len(due), len(found), after, tick)
        try:
            routes = serving_routes(p.runtime, [(d.spec.serving.namespace, d.spec.name) for d in due])
        except PushbuttonError as exc:
            self.log.warning("what serves is unknown (%s): monitoring what the request log holds", exc)
            routes = {}
        references = ReferenceStore(
            cfg.home / "monitoring" / "reference", p.registry, platform_materialize(p)
        )
        fleet = FleetRun()
        with IndicatorStoreHook().get_conn() as store:
            for first in range(0, len(due), BATCH):
                plans = [
                    Plan(d.spec, d.model_dir, d.window, lambda v, m=d.spec.name: references.get(m, v),
                         (routes.get(f"{d.spec.serving.namespace}/{d.spec.name}") or {}).get("config"))
                    for d in due[first : first + BATCH]
                ]  # fmt: skip
                run_fleet(store, plans, run_id=context["run_id"], report_dir=cfg.home / "monitoring" / "reports",
                          into=fleet)  # fmt: skip
                self.log.info("batch %d: %d models done, %d results written, %.1fs", first // BATCH + 1,
                              len(fleet.summaries) + len(fleet.failed), fleet.written, fleet.seconds)  # fmt: skip
            judged = self._judge(context, store, {d.spec.name: d.spec for d in due}, fleet, p)
        registry = MlflowRegistryHook().get_conn() if fleet.summary()["reports"] else None
        for summary in fleet.summaries:
            if summary["report"] and registry is not None:
                try:
                    log_report(registry, summary["model"], summary["versions"], summary["report"])
                except Exception as exc:  # the report stays in the home; the results are written
                    self.log.warning("could not log %s to MLflow: %s", summary["report"], exc)
        for model, why in fleet.failed.items():
            self.log.error("monitoring %s failed: %s", model, why)
        return {**fleet.summary(), "alerts": judged}

    def _judge(
        self, context: Context, store: Any, specs: dict[str, Any], fleet: Any, p: Any
    ) -> dict[str, Any]:
        """The alert rules of every model monitored this tick (as ``evaluate_alerts`` does per model); the
        retrain requests become asset events through the ``RETRAIN_ALIAS`` outlet."""
        from datetime import UTC, datetime

        from operators.alerting import RETRAIN_ALIAS, alert_effects, retrain_asset
        from pushbutton.alerting.judge import judge

        out: dict[str, Any] = {}
        for summary in fleet.summaries:
            spec = specs.get(summary["model"])
            if spec is None or not spec.alerts:
                continue
            try:
                found = judge(spec, store, datetime.fromisoformat(summary["window_end"]),
                              [tuple(x) for x in summary.get("series") or []],
                              alert_effects(spec, context, summary.get("report"), p), datetime.now(UTC),
                              context["run_id"])  # fmt: skip
            except Exception as exc:  # one model's rules never stop the others'
                self.log.exception("judging the alert rules of %s failed", spec.name)
                out[spec.name] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            if found.retrain:
                context["outlet_events"][RETRAIN_ALIAS].add(retrain_asset(spec.name), extra=found.retrain)
            out[spec.name] = found.summary()
        return out
