"""Thin operators over ``pushbutton.lifecycle``: build the Platform from hooks, call one step.

Configuration and decision errors (bad spec, failing model code, requirements no serving environment
can be built from, failed gate, promoting an untested version, unknown model, a rollout the Seldon
operator reports Failed) fail the task without retry (``AirflowFailException``); transport errors (an
unreachable MLflow or package index) and a promotion lock held too long (``LockBusy``) may retry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from operators.hooks import MlflowRegistryHook, PushbuttonStoreHook, SeldonHook


def platform() -> Any:
    from pushbutton.config import settings
    from pushbutton.lifecycle import Platform

    return Platform(
        settings=settings(),
        registry=MlflowRegistryHook().get_conn(),
        runtime=SeldonHook().get_conn(),
        history=PushbuttonStoreHook().get_conn(),
    )


def _final(call: Callable[[], Any]) -> Any:
    from pushbutton.errors import Conflict, GateFailed, ModelCodeError, NotFound, RequirementsError, SpecError
    from pushbutton.kube.runtime import RolloutFailed  # Seldon reported Failed: a retry fails the same

    final = (SpecError, ModelCodeError, RequirementsError, GateFailed, Conflict, NotFound, RolloutFailed)
    try:
        return call()
    except final as exc:
        raise AirflowFailException(str(exc)) from exc


ANSWER_KEY = "answer"


class ReleaseApprovalOperator(ApprovalOperator):
    """Airflow's ``ApprovalOperator`` that also keeps the answer (who, which option, the form) in the
    XCom ``answer``: on Reject, Airflow skips the downstream tasks and stores no return value, so
    without it a rejection would lose who rejected and why.

    Before it asks, it looks for a newer version's CI/CD run already queued behind this one: then the
    request is superseded at once (Reject, ``superseded by vN``) instead of holding that run back for
    up to the approval timeout (see ``pushbutton.supersede``; a request already parked is superseded
    by the Airflow plugin when the newer run is created)."""

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "version")

    def __init__(self, *, model: str = "", version: str = "", **kwargs: Any):
        super().__init__(**kwargs)
        self.model = model
        self.version = version

    def execute(self, context: Context) -> Any:
        newer = self._newer_queued_version(context)
        if newer is not None:
            from operators.supersede import superseded_event

            self.log.info("%s v%s is superseded by v%s, whose run is queued: not asking", self.model,
                          self.version, newer)  # fmt: skip
            return self.execute_complete(context, superseded_event(newer))
        from operators.alerting import policy_decision, policy_event

        decision = policy_decision(context)  # the `auto` promotion policy's verdict, when it has one
        if decision and decision.get("verdict") == "promote":
            self.log.info("%s v%s promoted by policy: %s", self.model, self.version, decision["reason"])
            return self.execute_complete(context, policy_event(decision))
        if decision:
            self.body = f"**Promotion policy: a person decides** — {decision['reason']}\n\n{self.body or ''}"
        return super().execute(context)

    def _newer_queued_version(self, context: Context) -> str | None:
        if not self.model or not str(self.version).isdigit():
            return None
        from operators.supersede import newer_queued_version

        ti = context["ti"]
        try:
            registry = MlflowRegistryHook().get_conn()
            return newer_queued_version(self.model, self.version, ti.dag_id, registry, ti.get_dr_count)
        except Exception as exc:  # never block the approval on this check: ask as usual
            self.log.warning("could not check for a newer queued version (%s); asking for approval", exc)
            return None

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if "error" not in event:
            answer = {
                "chosen_options": list(event.get("chosen_options") or []),
                "params_input": dict(event.get("params_input") or {}),
                "responded_by_user": event.get("responded_by_user"),
                "timedout": bool(event.get("timedout")),
            }
            context["ti"].xcom_push(key=ANSWER_KEY, value=answer)
        return super().execute_complete(context, event)


def approval_answer(context: Context, task_id: str = "approve") -> dict[str, Any]:
    ti = context["ti"]
    return ti.xcom_pull(task_ids=task_id, key=ANSWER_KEY) or ti.xcom_pull(task_ids=task_id) or {}


def superseded_by(user: dict[str, Any] | None) -> str | None:
    from pushbutton.supersede import superseded_by as parse

    return parse(user)


def approver(context: Context, task_id: str = "approve") -> str:
    """Who answered the approval task, for the serving history."""
    answer = approval_answer(context, task_id)
    user = answer.get("responded_by_user") or {}
    if not user and answer.get("timedout"):
        return "nobody (approval timed out)"
    return user.get("name") or user.get("id") or "unknown"


def approval_comment(context: Context, task_id: str = "approve") -> str:
    return str((approval_answer(context, task_id).get("params_input") or {}).get("comment") or "").strip()


class _LifecycleOperator(BaseOperator):
    template_fields: Sequence[str] = ("model", "version")
    ui_color = "#e8f4ea"

    def __init__(self, *, model: str, version: str = "", **kwargs: Any):
        super().__init__(**kwargs)
        self.model = model
        self.version = version

    def run_id(self, context: Context) -> str:
        return context["run_id"]

    def release_version(self) -> str:
        """The version this CI/CD run releases; fails (no retry) when it cannot be told."""
        if not self.version:
            raise AirflowFailException(
                f"{self.task_id}: this run releases 'latest' of {self.model} and `build`, which resolves it, "
                "has no result (it was cleared and runs again): clear `build` together with its downstream "
                "tasks, or trigger the DAG with a version number"
            )
        return self.version


class SeldonBuildOperator(_LifecycleOperator):
    """Download the version and build (or reuse, by hash) its seldon-core serving environment.

    ``version`` may be ``latest``: the newest registered version is resolved here and returned, so
    downstream tasks use the resolved number.
    """

    def execute(self, context: Context) -> dict[str, Any]:
        from pushbutton.lifecycle import build

        p = platform()
        version = self.version
        if version in ("", "latest"):
            versions = _final(lambda: p.registry.versions(self.model))
            if not versions:
                raise AirflowFailException(f"model '{self.model}' has no registered version; push it first")
            version = versions[-1].version
        return _final(lambda: build(p, self.model, version, self.run_id(context)))


class SeldonModelTestOperator(_LifecycleOperator):
    """Schema, golden data, model tests, gate thresholds, champion comparison — in the serving env."""

    def execute(self, context: Context) -> dict[str, Any]:
        from pushbutton.errors import GateFailed
        from pushbutton.lifecycle import test

        def run() -> Any:
            try:
                return test(platform(), self.model, self.release_version(), self.run_id(context))
            except GateFailed as exc:
                context["ti"].xcom_push(key="report_md", value=exc.report.markdown())
                raise

        report = _final(run)  # a failed gate, a bad spec, an unknown version: no retry
        context["ti"].xcom_push(key="report_md", value=report.markdown())
        return report.as_dict()


class MlflowCandidateAliasOperator(_LifecycleOperator):
    """Point the registry's ``candidate`` alias at the tested version."""

    def execute(self, context: Context) -> dict[str, Any]:
        from pushbutton.lifecycle import register_candidate

        version = self.release_version()
        return _final(lambda: register_candidate(platform(), self.model, version, self.run_id(context)))


class SeldonDeployCandidateOperator(_LifecycleOperator):
    """Serve the candidate beside the champion per the spec's traffic policy."""

    def execute(self, context: Context) -> dict[str, Any]:
        from pushbutton.lifecycle import deploy_candidate

        actor, version = f"dag:{context['dag'].dag_id}", self.release_version()
        return _final(lambda: deploy_candidate(platform(), self.model, version, actor, self.run_id(context)))


class SeldonActivateOperator(_LifecycleOperator):
    """After approval: the candidate becomes champion and takes 100% of traffic."""

    def execute(self, context: Context) -> dict[str, Any]:
        from pushbutton.lifecycle import make_champion

        version = self.release_version()
        result = _final(
            lambda: make_champion(
                platform(),
                self.model,
                version,
                action="activate",
                actor=approver(context),
                run_id=self.run_id(context),
                comment=approval_comment(context),
            )
        )
        if "unchanged" in result:
            self.log.info("nothing to do: %s", result["unchanged"])
        else:
            from operators.alerting import record_release

            record_release(
                self.model, str(version), "done", f"v{version} activated by {approver(context)}", self.log
            )
        return result


class SeldonDiscardCandidateOperator(_LifecycleOperator):
    """After a rejection (or an approval timeout): remove the candidate, tag the version rejected."""

    def execute(self, context: Context) -> dict[str, Any]:
        from pushbutton.lifecycle import reject

        version = self.release_version()
        newer = superseded_by(approval_answer(context).get("responded_by_user"))
        if newer is not None:  # the approval was answered by a newer version's run
            return _final(lambda: self._supersede(context, version, newer))
        comment = approval_comment(context)
        reason = f"rejected by {approver(context)}" + (f": {comment}" if comment else "")
        return _final(
            lambda: reject(platform(), self.model, version, approver(context), self.run_id(context), reason)
        )

    def _supersede(self, context: Context, version: str, newer: str) -> dict[str, Any]:
        from pushbutton.lifecycle import reject
        from pushbutton.registry import ACTOR
        from pushbutton.supersede import reason

        p = platform()
        pushed_by = p.registry.get(self.model, newer).tags.get(ACTOR) or None
        why = reason(newer, pushed_by)
        self.log.info("%s v%s: %s; withdrawing its candidate", self.model, version, why)
        return reject(
            p,
            self.model,
            version,
            pushed_by or "unknown",
            self.run_id(context),
            why,
            action="supersede",
            detail={"superseded_by": newer, "pushed_by": pushed_by},
        )


class SeldonFailedRunOperator(_LifecycleOperator):
    """Watcher (trigger rule ``one_failed``): withdraw what the failed run put into serving (its
    candidate, or a microservice its test step started), then fail the run. The champion stays."""

    def execute(self, context: Context) -> None:
        from pushbutton.errors import PushbuttonError
        from pushbutton.lifecycle import withdraw

        run_id = self.run_id(context)
        if self.version:
            reason = f"CI/CD run {run_id} failed before activation"
            try:
                done = withdraw(platform(), self.model, self.version, run_id, reason)
                self.log.info("%s v%s after the failed run: %s", self.model, self.version, done)
            except PushbuttonError as exc:  # still fail the run with the original cause first in the UI
                self.log.error("could not withdraw %s v%s: %s", self.model, self.version, exc)
        failed = f"{self.model} v{self.version or '?'}: {_failed_steps(context)} failed"
        if self.version:  # a retrain an alert asked for: its alert says the new version stopped here
            from operators.alerting import record_release

            record_release(
                self.model, str(self.version), "failed", f"{failed} (CI/CD run {run_id})", self.log
            )
        raise AirflowFailException(f"{failed}; its log says which check and why")


def _failed_steps(context: Context) -> str:
    """The run's failed tasks, e.g. ``step 'test'`` (best effort: ``a pipeline step``)."""
    try:
        ti = context["ti"]
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
    except Exception:  # an older API server: the message still points at the logs
        return "a pipeline step"
    failed = sorted(t for t, state in states.items() if state == "failed" and t != ti.task_id)
    return ("step " + ", ".join(f"'{t}'" for t in failed)) if failed else "a pipeline step"


class SeldonPromoteOperator(_LifecycleOperator):
    """Promote a version (or an alias: ``candidate``, ``previous``) to champion; ``action`` names it
    in the serving history (``promote`` / ``rollback``)."""

    def __init__(self, *, action: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.action = action

    def execute(self, context: Context) -> dict[str, Any]:
        from pushbutton.lifecycle import make_champion

        actor = context["dag_run"].triggering_user_name or "unknown"
        result = _final(
            lambda: make_champion(
                platform(),
                self.model,
                self.version or "previous",
                action=self.action,
                actor=actor,
                run_id=self.run_id(context),
            )
        )
        if "unchanged" in result:
            self.log.info("nothing to do: %s", result["unchanged"])
        return result


class MlflowTrainOperator(BaseOperator):
    """Train through the model's entry point, log the run and register a new version in MLflow.

    The model's code runs in a child process without the worker's secrets (``pushbutton.train_job``).

    Registration fires the registry webhook, which starts the model's CI/CD DAG.
    """

    template_fields: Sequence[str] = ("model_dir", "source", "reason", "version_tags")

    def __init__(
        self,
        *,
        model_dir: str,
        source: str = "retrain",
        reason: str = "",
        version_tags: dict[str, str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.model_dir = model_dir
        self.source = source
        self.reason = reason
        self.version_tags = version_tags or {}

    def retrain_reason(self, context: Context) -> str:
        """The given reason, else the alert that asked (asset-triggered runs), else how the run started
        (``scheduled``, ``manual``)."""
        if self.reason.strip():
            return self.reason.strip()
        alert = self.triggering_alert(context)
        if alert:
            return f"alert {alert.get('rule')} ({alert.get('source')}): {alert.get('message', '')}"[:240]
        run_type = context["dag_run"].run_type
        return str(getattr(run_type, "value", run_type))

    @staticmethod
    def triggering_alert(context: Context) -> dict[str, Any] | None:
        """The ``extra`` of the newest retrain asset event that started this run (the alert), if any."""
        events = context.get("triggering_asset_events") or {}
        found = [
            e for key in events for e in events[key] if (getattr(e, "extra", None) or {}).get("alert_id")
        ]
        if not found:
            return None
        newest = max(found, key=lambda e: str(getattr(e, "timestamp", "")))
        return dict(newest.extra)

    def lineage_tags(self, context: Context, name: str, registry: Any) -> dict[str, str]:
        """Why and from what this version was trained: trigger, alert, parent version, data window."""
        from pushbutton.registry import CHAMPION

        alert = self.triggering_alert(context)
        run_type = context["dag_run"].run_type
        trigger = "alert" if alert else str(getattr(run_type, "value", run_type))
        parent = registry.by_alias(name, CHAMPION)
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        tags = {"pushbutton.trigger": trigger, "pushbutton.parent_version": parent.version if parent else ""}
        if start is not None and end is not None:
            tags["pushbutton.data_window"] = f"{start.isoformat()}/{end.isoformat()}"
        if alert:
            tags["pushbutton.alert_id"] = str(alert.get("alert_id", ""))
            tags["pushbutton.alert_rule"] = str(alert.get("rule", ""))
        return tags

    def execute(self, context: Context) -> dict[str, Any]:

        from pushbutton.registry import TRAIN_RUN
        from pushbutton.spec import load_spec
        from pushbutton.train_job import train_in_child

        hook = MlflowRegistryHook()
        run_id = self.run_id_tag(context)
        name = _final(lambda: load_spec(Path(self.model_dir)).name)
        done = [v for v in _final(lambda: hook.get_conn().versions(name)) if v.tags.get(TRAIN_RUN) == run_id]
        if done:  # a retry or a cleared task: this run registered its version already
            self.log.info(
                "run %s already registered %s v%s; not training again", run_id, name, done[-1].version
            )
            return {"name": name, "version": done[-1].version, "run_id": done[-1].run_id, "unchanged": True}
        import tempfile

        spec = _final(lambda: load_spec(Path(self.model_dir)))
        with tempfile.TemporaryDirectory(prefix="pushbutton-data-") as tmp:
            fetched = self.fetch_data(spec, context, Path(tmp))
            lineage = self.lineage_tags(context, name, hook.get_conn())
            if fetched is not None:
                lineage |= {
                    "pushbutton.training_rows": str(fetched.rows),
                    "pushbutton.data_window": fetched.window,
                }
            return _final(
                lambda: train_in_child(
                    Path(self.model_dir),
                    hook.tracking_uri(),
                    source=self.source,
                    actor=f"dag:{context['dag'].dag_id}",
                    extra_tags={
                        **lineage,
                        **self.version_tags,
                        "pushbutton.retrain_reason": self.retrain_reason(context),
                        TRAIN_RUN: run_id,
                    },
                    on_start=lambda proc: setattr(self, "_child", proc),
                    data_file=fetched.path if fetched is not None else None,
                )
            )

    def fetch_data(self, spec: Any, context: Context, directory: Path) -> Any:
        """A ``sql:`` or object storage source, fetched here (the Connections stay in the worker) for the
        run's data window (the ``window_start``/``window_end`` params, else the data interval) and checked
        before training; ``None`` for a file in the model directory."""
        from pushbutton.data import remote

        if not remote.is_remote(spec):
            return None
        start, end = self.data_window(context)
        window = f"{start.isoformat() if start else ''}/{end.isoformat() if end else ''}"
        where = f"{spec.name}: data.source {spec.data.source} ({window or 'no window'})"
        try:
            frame = self._read(spec, start, end, where)
            remote.check(spec, frame, where)
        except remote.DataCheckFailed as exc:
            raise AirflowFailException(str(exc)) from exc
        self.log.info("%s: %d rows for the window %s", spec.name, len(frame), window)
        return remote.save(frame, directory, window)

    def _read(self, spec: Any, start: Any, end: Any, where: str) -> Any:
        from airflow.sdk import BaseHook, ObjectStoragePath

        from pushbutton.data import remote

        scheme, _, rest = spec.data.source.partition(":")
        if scheme == "sql":
            try:
                conn = BaseHook.get_connection(rest)
            except Exception as exc:
                raise remote.DataCheckFailed(f"{where}: the Airflow Connection '{rest}' is not defined "
                                             "(fix: create it, e.g. AIRFLOW_CONN_" + rest.upper() + ")") from exc  # fmt: skip
            return remote.fetch_sql(sqlalchemy_url(conn), spec.data.query, start, end, where)
        path = ObjectStoragePath(spec.data.source, conn_id=spec.data.conn_id)
        try:
            return remote.read_object(path.open("rb"), spec.data.source)
        except FileNotFoundError as exc:
            raise remote.DataCheckFailed(
                f"{where}: the object does not exist (fix: check data.source)"
            ) from exc

    @staticmethod
    def data_window(context: Context) -> tuple[Any, Any]:
        from datetime import datetime

        params = context.get("params") or {}
        found = []
        for key, default in (("window_start", "data_interval_start"), ("window_end", "data_interval_end")):
            value = params.get(key)
            found.append(datetime.fromisoformat(value) if value else context.get(default))
        return found[0], found[1]

    @staticmethod
    def run_id_tag(context: Context) -> str:
        """``<dag_id>/<run_id>``: what makes a re-run of this task find the version it registered."""
        return f"{context['dag'].dag_id}/{context['run_id']}"

    def on_kill(self) -> None:
        child = getattr(self, "_child", None)
        if child is not None and child.poll() is None:
            child.kill()


def sqlalchemy_url(conn: Any) -> str:
    """A SQLAlchemy URL for an Airflow Connection: ``extra.sqlalchemy_url`` when set, else built from it
    (``sqlite``: the host is the file; ``postgres``: psycopg 3)."""
    explicit = (conn.extra_dejson or {}).get("sqlalchemy_url")
    if explicit:
        return str(explicit)
    if conn.conn_type == "sqlite":
        return f"sqlite:///{conn.host}"
    uri = conn.get_uri()
    for old, new in (("postgres://", "postgresql+psycopg://"), ("postgresql://", "postgresql+psycopg://")):
        if uri.startswith(old):
            return new + uri.removeprefix(old)
    return uri


class SeldonProbeOperator(_LifecycleOperator):
    """Check that the model's deployment answers through the gateway (monitoring starts here)."""

    def execute(self, context: Context) -> dict[str, Any]:
        from pushbutton.lifecycle import probe

        return _final(lambda: probe(platform(), self.model))
