"""pushbutton DAG factory: per model spec, the Airflow DAGs ``<model>__cicd``, ``__monitor``, ``__retrain``.

How it is wired (Airflow 3.3 records import errors per file, so each model gets its own file):
- when Airflow parses *this* file, it discovers every ``model.yaml`` under ``PUSHBUTTON_MODELS_DIR``
  and keeps one small stub per model under the stub root (``<home>/dags/models/``, a DAG bundle of its
  own; ``pushbutton.dagstubs``), never in the source tree;
- each stub calls ``build_model_dags`` for its model. A broken spec raises ``SpecError`` there, so it
  becomes an import error of that model's file only, naming the spec, line, field and fix.

Schedules never fire a tick from before the model's DAGs first appeared: each stub records when its
model first appeared, and that is the DAGs' ``start_date``. (With ``catchup=False`` Airflow 3.3's
``CronTriggerTimetable`` otherwise schedules the most recent past tick at once, whatever
``run_immediately`` says: it always considers ``_align_to_prev(now)`` and only a ``start_date`` bounds
it.) ``PUSHBUTTON_SCHEDULES=off`` leaves retrain and monitor DAGs without a time schedule.

Parsing stays cheap: mlflow, pandas and scikit-learn are imported inside task callables only.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param, TriggerRule, chain

from operators.alerting import AlertRulesOperator, CanaryPolicySensor, RetrainRequestOperator, retrain_asset
from operators.lifecycle import (
    MlflowCandidateAliasOperator,
    ReleaseApprovalOperator,
    SeldonActivateOperator,
    SeldonBuildOperator,
    SeldonDeployCandidateOperator,
    SeldonDiscardCandidateOperator,
    SeldonFailedRunOperator,
    SeldonImageBuildOperator,
    SeldonModelTestOperator,
    SeldonProbeOperator,
)
from operators.monitoring import (
    DriftReportLogOperator,
    IndicatorComputeOperator,
    IndicatorWriteOperator,
    RequestLogPurgeOperator,
)
from operators.training import MlflowTrainOperator
from pushbutton.config import settings
from pushbutton.errors import SpecError, SpecIssue
from pushbutton.monitoring.fleet import FLEET_DAG_ID, FLEET_THRESHOLD, fleet_shape, stub_count
from pushbutton.spec import ModelSpec, load_model_dir

log = logging.getLogger(__name__)
START = datetime(2024, 1, 1)
# the version `build` resolved ('latest' → a number); empty when build failed (only the watcher runs then)
# the version `build` resolved; while `build` re-runs after a clear its result is gone, so the run's
# own version number stands in ('' for a 'latest' run: the operators then fail saying so)
RESOLVED_VERSION = (
    "{{ (ti.xcom_pull(task_ids='build') or {}).get('version') "
    "or (params.version if params.version != 'latest' else '') }}"
)


def _doc(spec: ModelSpec, model_dir: Path, kind: str) -> str:
    gate = ", ".join(
        f"{m} {'≥ ' + str(t.min) if t.min is not None else ''}{' ≤ ' + str(t.max) if t.max is not None else ''}"
        for m, t in spec.gate.metrics.items()
    )
    schedules = f"retrain `{spec.schedules.retrain}`, monitor `{spec.schedules.monitor}`"
    if settings().schedules == "off":
        schedules += " (off in this stack: PUSHBUTTON_SCHEDULES=off; trigger runs by hand)"
    return (
        f"## {spec.name} — {kind}\n\n{spec.description.strip()}\n\n"
        f"* owner: {spec.owner}\n* spec: `{model_dir / 'model.yaml'}`\n* task: {spec.task} ({spec.flavor})\n"
        f"* gate: {gate or 'no thresholds'}; champion tolerance {spec.gate.champion_tolerance:.0%}\n"
        f"* traffic: {spec.traffic.mode}"
        + (f" {spec.traffic.candidate_percent}%" if spec.traffic.mode == "canary" else "")
        + f"\n* schedules: {schedules}\n"
    )


PRESETS = {"@annually": "@yearly"}  # croniter's alias, unknown to Airflow's preset table


def _schedule(cron: str | None, first_seen: datetime | None = None) -> dict[str, Any]:
    """A time schedule that starts at the model's first appearance (``first_seen``): the first run is
    the first tick at or after it, never an earlier one (see the module docstring)."""
    if cron is None or settings().schedules == "off":
        return {"schedule": None, "start_date": START}
    start = first_seen or datetime.now(UTC)
    if cron == "@once":  # runs once, when the model first appears
        return {"schedule": "@once", "start_date": start}
    return {"schedule": CronTriggerTimetable(PRESETS.get(cron, cron), timezone="UTC"), "start_date": start}


def _first_seen(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        log.warning("pushbutton: ignoring unreadable first_seen %r in a DAG stub", value)
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _common(spec: ModelSpec, model_dir: Path, kind: str) -> dict[str, Any]:
    return {
        "catchup": False,
        "tags": ["pushbutton", kind, f"model:{spec.name}", *spec.tags],
        "doc_md": _doc(spec, model_dir, kind),
        "default_args": {"owner": spec.owner, "retries": 1, "retry_delay": timedelta(seconds=15)},
    }


def cicd_dag(spec: ModelSpec, model_dir: Path) -> DAG:
    """build → test (and build_image) → register → deploy candidate → approve → activate (reject →
    discard candidate)."""
    with DAG(
        dag_id=f"{spec.name}__cicd",
        description=f"Release pipeline of {spec.name}: build, test, register, deploy, approve, activate",
        **_schedule(None),
        # one CI/CD run per model at a time; later runs queue, and a newer version's queued run
        # supersedes an approval still waiting (pushbutton.supersede)
        max_active_runs=1,
        params={
            "version": Param(
                "latest",
                type="string",
                pattern=r"^(latest|[0-9]+)$",
                title="Version",
                description="registered model version to release: a number, or 'latest' (the newest)",
            ),
        },
        **_common(spec, model_dir, "cicd"),
    ) as dag:
        build = SeldonBuildOperator(task_id="build", model=spec.name, version="{{ params.version }}")
        test = SeldonModelTestOperator(task_id="test", model=spec.name, version=RESOLVED_VERSION)
        # the image a Seldon v1 cluster pulls, built beside the test when the Seldon Connection asks for it
        image = SeldonImageBuildOperator(task_id="build_image", model=spec.name, version=RESOLVED_VERSION)
        register = MlflowCandidateAliasOperator(task_id="register", model=spec.name, version=RESOLVED_VERSION)
        deploy = SeldonDeployCandidateOperator(
            task_id="deploy_candidate", model=spec.name, version=RESOLVED_VERSION
        )
        approve = ReleaseApprovalOperator(
            task_id="approve",
            model=spec.name,
            version=RESOLVED_VERSION,  # a newer version's queued run supersedes this approval
            subject=f"Release {spec.name} v{RESOLVED_VERSION} to production?",
            body="{{ ti.xcom_pull(task_ids='test', key='report_md') }}",
            defaults="Reject",  # no answer within the timeout counts as a rejection
            response_timeout=timedelta(days=7),
            params={  # nullable: a required field would disable the Approve button until filled
                "comment": Param(
                    None,
                    type=["null", "string"],
                    title="Comment",
                    description="optional note for the history",
                )
            },
            # the plugin holds answers until the parked task has settled (HitlSettleMiddleware); should
            # Airflow still fail the resumed task ("state changed externally"), ask again rather than
            # let the failure watcher withdraw the candidate
            retries=1,
            retry_delay=timedelta(seconds=5),
        )
        activate = SeldonActivateOperator(task_id="activate", model=spec.name, version=RESOLVED_VERSION)
        discard = SeldonDiscardCandidateOperator(
            task_id="discard_candidate",
            model=spec.name,
            version=RESOLVED_VERSION,
            trigger_rule=TriggerRule.ALL_SKIPPED,  # runs only when a rejection skipped `activate`
        )
        gate: list[Any] = [deploy]
        if spec.promotion.policy == "auto":  # the canary earns its promotion (pushbutton.alerting.policy)
            gate.append(CanaryPolicySensor(
                task_id="canary_policy",
                model=spec.name,
                version=RESOLVED_VERSION,
                model_dir=str(model_dir),
                timeout=(spec.promotion.max_wait + timedelta(hours=1)).total_seconds(),
            ))  # fmt: skip
        chain(build, [test, image], register, *gate, approve, activate, discard)
        # `discard_candidate` is the only leaf and is skipped on success *and* after a failure, so
        # without a watcher a failed gate would leave the run "success"; the watcher also withdraws
        # whatever the failed run had put into serving. It is not a direct downstream of `approve`,
        # which skips all of those on Reject: a failed `approve` still reaches it through `activate`
        # (upstream_failed), and a failed `discard_candidate` after a Reject fails the run.
        [build, test, image, register, deploy, activate, discard] >> SeldonFailedRunOperator(
            task_id="fail_on_error",
            model=spec.name,
            version=RESOLVED_VERSION,
            trigger_rule=TriggerRule.ONE_FAILED,
            retries=0,
        )
    return dag


WINDOW_PARAM = "window bound (ISO 8601, e.g. 2026-11-30T09:30:00Z); empty: the run's schedule interval"


def _retrain_schedule(spec: ModelSpec, first_seen: datetime | None) -> dict[str, Any]:
    """The model's retrain asset (alerts) or its cron, whichever comes first (``AssetOrTimeSchedule``);
    only the asset when there is no cron or time schedules are off."""
    timed = _schedule(spec.schedules.retrain, first_seen)
    asset = retrain_asset(spec.name)
    if isinstance(timed["schedule"], CronTriggerTimetable):
        return {**timed, "schedule": AssetOrTimeSchedule(timetable=timed["schedule"], assets=asset)}
    if timed["schedule"] == "@once":  # the first tick of a schedule that began before the model appeared
        return timed
    return {**timed, "schedule": [asset]}


def retrain_dag(spec: ModelSpec, model_dir: Path, first_seen: datetime | None = None) -> DAG:
    with DAG(
        dag_id=f"{spec.name}__retrain",
        description=f"Retrain {spec.name} and register a new version (which starts its CI/CD)",
        **_retrain_schedule(spec, first_seen),
        max_active_runs=1,
        params={
            "reason": Param(
                None,
                type=["null", "string"],
                title="Reason",
                description="why this retrain runs, tagged on the new version (empty: the run type, "
                "e.g. 'scheduled' or 'manual')",
            ),
            # the data window of a sql:/object storage source (empty: the run's data interval)
            "window_start": Param(
                None, type=["null", "string"], title="Data window start", description=WINDOW_PARAM
            ),
            "window_end": Param(
                None, type=["null", "string"], title="Data window end", description=WINDOW_PARAM
            ),
        },
        **_common(spec, model_dir, "retrain"),
    ) as dag:
        MlflowTrainOperator(
            task_id="train_and_register",
            model_dir=str(model_dir),
            reason="{{ params.reason or '' }}",
        )
    return dag


def monitor_dag(spec: ModelSpec, model_dir: Path, first_seen: datetime | None = None) -> DAG:
    """probe_serving; compute_indicators (window → every declared indicator for each serving version and
    predictor → drift report) → write_indicators (IndicatorStoreHook) → log_report (MLflow artifact) →
    purge_request_log (the raw log past ``logging.retention_days``); write_indicators → evaluate_alerts
    (the alert rules: history, rollback, notify) → request_retrain (the retrain asset event, or skipped)."""
    fleet = fleet_shape(stub_count(settings().stub_root))  # then pushbutton__monitor_fleet schedules it
    with DAG(
        dag_id=f"{spec.name}__monitor",
        description=f"Monitor {spec.name} in production: indicators and a drift report per window",
        **_schedule(None if fleet else spec.schedules.monitor, first_seen),
        max_active_runs=1,
        params={
            "window_start": Param(
                None, type=["null", "string"], title="Window start", description=WINDOW_PARAM
            ),
            "window_end": Param(None, type=["null", "string"], title="Window end", description=WINDOW_PARAM),
        },
        **_common(spec, model_dir, "monitor"),
    ) as dag:
        SeldonProbeOperator(task_id="probe_serving", model=spec.name)
        compute = IndicatorComputeOperator(
            task_id="compute_indicators",
            model=spec.name,
            model_dir=str(model_dir),
            schedule=spec.schedules.monitor,
            window_start="{{ params.window_start or '' }}",
            window_end="{{ params.window_end or '' }}",
        )
        write = IndicatorWriteOperator(task_id="write_indicators", model=spec.name)
        report = DriftReportLogOperator(task_id="log_report", model=spec.name)
        purge = RequestLogPurgeOperator(
            task_id="purge_request_log", model=spec.name, retention_days=spec.logging.retention_days
        )
        compute >> write >> report >> purge  # never deletes under a read of the same run
        judge = AlertRulesOperator(
            task_id="evaluate_alerts", model=spec.name, model_dir=str(model_dir), retries=0
        )
        write >> judge >> RetrainRequestOperator(task_id="request_retrain", model=spec.name)
    if fleet and spec.schedules.monitor and settings().schedules == "on":
        dag.doc_md = (dag.doc_md or "") + (
            f"\n**Scheduled monitoring runs in `{FLEET_DAG_ID}`** (more than {FLEET_THRESHOLD} models: one "
            "process per tick for all of them); trigger this DAG for an on-demand run.\n"
        )
    return dag


def build_model_dags(relative: str, namespace: dict[str, Any], first_seen: str | None = None) -> list[DAG]:
    """Build the DAGs of the model directory ``relative`` (to the models dir) into ``namespace``.

    ``first_seen`` (ISO time, from the stub) is when the model first appeared: its schedules start there.
    Raises ``SpecError`` for a broken spec: Airflow shows it as this model file's import error.
    """
    model_dir = settings().models_dir / relative
    try:
        spec = load_model_dir(model_dir)
    except SpecError as exc:  # keep the import error to our message, without pydantic's chain
        raise SpecError(exc.issues) from None
    _check_unique_name(spec, model_dir)
    since = _first_seen(first_seen)
    dags = [
        cicd_dag(spec, model_dir),
        monitor_dag(spec, model_dir, since),
        retrain_dag(spec, model_dir, since),
    ]
    for dag in dags:
        namespace[dag.dag_id.replace("-", "_")] = dag
    return dags


def _check_unique_name(spec: ModelSpec, model_dir: Path) -> None:
    from pushbutton.dagstubs import name_owner

    owner = name_owner(settings().stub_root, spec.name)
    if owner and Path(owner) != model_dir.resolve():
        raise SpecError(
            [
                SpecIssue(
                    str(model_dir / "model.yaml"),
                    "name",
                    f"model name '{spec.name}' is already used by {owner}/model.yaml, which keeps the "
                    "model line (its DAGs, versions and serving)",
                    "give this directory's model a name of its own, or remove the copy",
                )
            ]
        )


def _parsed_by_airflow() -> bool:
    """True when Airflow parses this file as a DAG file (it names the module after the file's path);
    False when a stub or a test imports it as a module, which must never write stubs."""
    from airflow.utils.file import get_unique_dag_module_name

    return __name__ == get_unique_dag_module_name(__file__)


if _parsed_by_airflow():
    from pushbutton.dagstubs import sync_stubs

    try:
        sync_stubs(settings().models_dir, settings().stub_root)
    except OSError as exc:  # read-only DAG bundle: stubs come from `pushbutton sync-dags` in CI instead
        log.warning("pushbutton: cannot write DAG stubs (%s); run `pushbutton sync-dags` in CI", exc)
    if settings().strict_specs:  # CI: one broken spec anywhere is an import error of the factory itself
        from pushbutton.spec import discover

        broken = [
            issue for found in discover(settings().models_dir) if found.error for issue in found.error.issues
        ]
        if broken:
            raise SpecError(broken)
