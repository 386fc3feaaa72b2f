"""Thin operators over ``pushbutton.lifecycle``: build the Platform from hooks, call one step.

Configuration and decision errors (bad spec, failing model code, requirements no serving environment
can be built from, failed gate, promoting an untested version, unknown model, a rollout the Seldon
operator reports Failed) fail the task without retry (``AirflowFailException``); transport errors (an
unreachable MLflow or package index) and a promotion lock held too long (``LockBusy``) may retry.
The release steps (deploy candidate, activate, discard, promote) hand their wait for Seldon to the
triggerer on a Kubernetes runtime (``operators.rollout.SeldonRolloutMixin``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from operators.hooks import MlflowRegistryHook, PushbuttonStoreHook, SeldonHook
from operators.rollout import SeldonRolloutMixin


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


class SeldonImageBuildOperator(_LifecycleOperator):
    """The image the Seldon runtime will pull for this version, built when the Seldon Connection asks
    for it (``runtime: seldon-v1`` with ``extra.image_build``): the Kaniko pod of
    ``operators.image_build.KanikoImageBuildOperator``, run here, with its logs in this task's log.
    Otherwise there is nothing to build and the task succeeds at once: the local runtime serves from
    the environment ``build`` made, Seldon v2 loads the model from its storage URI, and a ``seldon-v1``
    Connection without ``image_build`` means your own CI pushes ``image_template``.

    The pod operator's module is imported only here, at run time: importing it costs a DAG file
    seconds of parsing."""

    ui_color = "#dde8f8"

    def __init__(
        self,
        *,
        seldon_conn_id: str = SeldonHook.default_conn_name,
        pod_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.seldon_conn_id = seldon_conn_id
        self.pod_options = dict(pod_options or {})  # KubernetesPodOperator arguments (get_logs, ...)
        self._pod: Any = None

    def nothing_to_build(self) -> str | None:
        """Why this run builds no image (None: it builds one)."""
        extra = SeldonHook.get_connection(self.seldon_conn_id).extra_dejson
        runtime = extra.get("runtime", "local")
        if runtime == "local":
            return "the local runtime serves from the serving environment `build` made; no image"
        if runtime == "seldon-v2":
            return "Seldon Core v2 loads the model from its storage URI into its servers; no image"
        if runtime == "seldon-v1" and "image_build" not in extra:
            return (f"connection {self.seldon_conn_id} has no extra.image_build: the model images are pushed "
                    "by your CI (extra.image_template); set extra.image_build to build them here")  # fmt: skip
        return None  # seldon-v1 with image_build (an unknown runtime fails in KanikoImageBuildOperator)

    def execute(self, context: Context) -> str | None:
        version = self.release_version()
        reason = self.nothing_to_build()
        if reason:
            self.log.info("%s v%s: %s", self.model, version, reason)
            return None
        from operators.image_build import KanikoImageBuildOperator

        self._pod = KanikoImageBuildOperator(
            task_id=self.task_id, model=self.model, version=version, seldon_conn_id=self.seldon_conn_id,
            **self.pod_options,
        )  # fmt: skip
        return self._pod.build(context)

    def on_kill(self) -> None:
        if self._pod is not None:  # delete the Kaniko pod with the task
            self._pod.on_kill()


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


class SeldonDeployCandidateOperator(SeldonRolloutMixin, _LifecycleOperator):
    """Serve the candidate beside the champion per the spec's traffic policy."""

    def __init__(self, *, deferrable: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.deferrable = deferrable

    def step(self, context: Context, p: Any) -> dict[str, Any]:
        from pushbutton.lifecycle import deploy_candidate

        actor, version = f"dag:{context['dag'].dag_id}", self.release_version()
        return deploy_candidate(p, self.model, version, actor, self.run_id(context))


class SeldonActivateOperator(SeldonRolloutMixin, _LifecycleOperator):
    """After approval: the candidate becomes champion and takes 100% of traffic."""

    def __init__(self, *, deferrable: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.deferrable = deferrable

    def step(self, context: Context, p: Any) -> dict[str, Any]:
        from pushbutton.lifecycle import make_champion

        return make_champion(
            p,
            self.model,
            self.release_version(),
            action="activate",
            actor=approver(context),
            run_id=self.run_id(context),
            comment=approval_comment(context),
        )

    def finish(self, context: Context, result: dict[str, Any]) -> dict[str, Any]:
        if "unchanged" in result:
            self.log.info("nothing to do: %s", result["unchanged"])
        else:
            from operators.alerting import record_release

            version = self.release_version()
            record_release(
                self.model, str(version), "done", f"v{version} activated by {approver(context)}", self.log
            )
        return result


class SeldonDiscardCandidateOperator(SeldonRolloutMixin, _LifecycleOperator):
    """After a rejection (or an approval timeout): remove the candidate, tag the version rejected."""

    def __init__(self, *, deferrable: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.deferrable = deferrable

    def step(self, context: Context, p: Any) -> dict[str, Any]:
        from pushbutton.lifecycle import reject

        version = self.release_version()
        newer = superseded_by(approval_answer(context).get("responded_by_user"))
        if newer is not None:  # the approval was answered by a newer version's run
            return self._supersede(context, p, version, newer)
        comment = approval_comment(context)
        reason = f"rejected by {approver(context)}" + (f": {comment}" if comment else "")
        return reject(p, self.model, version, approver(context), self.run_id(context), reason)

    def _supersede(self, context: Context, p: Any, version: str, newer: str) -> dict[str, Any]:
        from pushbutton.lifecycle import reject
        from pushbutton.registry import ACTOR
        from pushbutton.supersede import reason

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


class SeldonPromoteOperator(SeldonRolloutMixin, _LifecycleOperator):
    """Promote a version (or an alias: ``candidate``, ``previous``) to champion; ``action`` names it
    in the serving history (``promote`` / ``rollback``)."""

    def __init__(self, *, action: str, deferrable: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.action, self.deferrable = action, deferrable

    def step(self, context: Context, p: Any) -> dict[str, Any]:
        from pushbutton.lifecycle import make_champion

        actor = context["dag_run"].triggering_user_name or "unknown"
        return make_champion(
            p,
            self.model,
            self.version or "previous",
            action=self.action,
            actor=actor,
            run_id=self.run_id(context),
        )

    def finish(self, context: Context, result: dict[str, Any]) -> dict[str, Any]:
        if "unchanged" in result:
            self.log.info("nothing to do: %s", result["unchanged"])
        return result


class SeldonProbeOperator(_LifecycleOperator):
    """Check that the model's deployment answers through the gateway (monitoring starts here)."""

    def execute(self, context: Context) -> dict[str, Any]:
        from pushbutton.lifecycle import probe

        return _final(lambda: probe(platform(), self.model))
