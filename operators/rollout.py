"""Release steps that wait for Seldon in the triggerer, not in a worker slot.

``SeldonRolloutMixin`` is the shared part of the release operators (deploy candidate, activate, discard,
promote/rollback). On a Kubernetes runtime it sets ``runtime.deferral``: the step writes the new spec
and, when Seldon has not reported it ready yet, the runtime hands the wait over
(``pushbutton.kube.rollout.RolloutPending``). The step's promotion lock is then kept as a lease in the
task's name, and the task defers to ``SeldonRolloutTrigger``.

- **Available:** the task resumes by running the same step again. Every write is idempotent by hash,
  so the re-run writes nothing it already wrote; it moves the aliases and records the history. A Seldon
  v2 rollout may defer once per phase.
- **Failed, a timeout, a deleted object or an API error:** the resumed task puts the previous resources
  back (the undo steps came back in the event, and are also kept in the lease), ends the lease, and
  fails. A deferral that ends without an event (its own timeout, or a trigger that crashed) is undone
  the same way from the lease. A retry or a cleared task finds its own lease and takes the undo steps
  from it.
  - A ``Failed`` rollout fails without retry: the same spec would fail the same way.
  - The other cases may retry.

On the local runtime, or with ``deferrable=False``, the step polls within the task, as the CLI does.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

DEFER_GRACE_SECONDS = 60  # the deferral's own timeout lies past the trigger's deadline: the trigger says why


class SeldonRolloutMixin:
    """For ``_LifecycleOperator`` subclasses: ``step(context, platform)`` does the work, ``finish(context,
    result)`` what follows it; ``execute`` and the resume after a deferral both run them."""

    deferrable: bool = True
    model: str

    def step(self, context: Context, p: Any) -> dict[str, Any]:
        raise NotImplementedError

    def finish(self, context: Context, result: dict[str, Any]) -> dict[str, Any]:
        return result

    def release_platform(self, context: Context, carry: dict[str, Any] | None = None) -> Any:
        """The Platform of this task; on a Kubernetes runtime (``deferrable``) the runtime told to hand its
        waits over, and the lease holder named after the task instance. Without ``carry`` (a retry or a
        cleared task after a deferral that ended without an event) the carry kept in this task's lease."""
        from operators.lifecycle import platform
        from pushbutton.kube.rollout import Deferral

        p = platform()
        if self.deferrable and hasattr(getattr(p, "runtime", None), "deferral"):  # a Kubernetes runtime
            p.holder = f"{self.dag_id}/{context['run_id']}/{self.task_id}"  # type: ignore[attr-defined]
            if not carry:
                lease = p.history.lease(self.model)
                carry = lease["carry"] if lease is not None and lease["holder"] == p.holder else {}
            p.runtime.deferral = Deferral(undo=list(carry.get("undo") or []), deadline=carry.get("deadline"))
            p.resumed = bool(carry)
        return p

    def execute(self, context: Context) -> dict[str, Any]:
        return self._run(context, None)

    def _run(self, context: Context, carry: dict[str, Any] | None) -> dict[str, Any]:
        from operators.lifecycle import _final
        from pushbutton.kube.rollout import RolloutPending

        p = _final(lambda: self.release_platform(context, carry))  # a bad Connection fails without retry
        try:
            result = _final(lambda: self.step(context, p))
        except RolloutPending as pending:
            self._defer(p, pending)
        except Exception:
            self._undo_unfinished(p)
            raise
        return self.finish(context, result)

    def _undo_unfinished(self, p: Any) -> None:
        """A resumed step that failed before it took the model's lock (e.g. MLflow down while it re-reads
        the version; inside the lock ``pushbutton.lifecycle.promotion`` does this): put back what its first
        run wrote and end the lease. Best effort: the step's own error is what the task reports."""
        from pushbutton.kube.rollout import undo_carried

        deferral = getattr(getattr(p, "runtime", None), "deferral", None)
        if not (getattr(p, "resumed", False) and deferral is not None and deferral.undo):
            return
        try:
            with p.history.lock(self.model, holder=p.holder):
                outcome = undo_carried(p.runtime, deferral.undo)
                if not deferral.undo:  # undone: the lease (and its undo steps) has nothing left to keep
                    p.history.release(self.model, p.holder)
            self.log.warning("the rollout this step had started: %s", outcome)  # type: ignore[attr-defined]
        except Exception as exc:  # the lease keeps the undo steps for the retry
            self.log.error("could not undo the rollout this step had started (%s); a retry will", exc)  # type: ignore[attr-defined]

    def _defer(self, p: Any, pending: Any) -> None:
        from operators.kube import SeldonRolloutTrigger

        left = max(pending.deadline - time.time(), 0.0)
        self.log.info("%s: the task waits in the triggerer (up to %.0f s more)", pending, left)  # type: ignore[attr-defined]
        self.defer(  # type: ignore[attr-defined]
            trigger=SeldonRolloutTrigger(
                pending.waits,
                kubernetes_conn_id=getattr(p.runtime, "kubernetes_conn_id", "kubernetes_default"),
                poll_interval=pending.poll_interval,
                deadline=pending.deadline,
                carry=pending.carry(),
            ),
            method_name="resume_rollout",
            timeout=timedelta(seconds=left + DEFER_GRACE_SECONDS),
        )

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Airflow's resume; when the deferral ended without an event (its timeout, or the trigger
        failed in the triggerer) the rollout is undone from the lease's carry before the task fails."""
        if next_method == "__fail__":
            error = str((next_kwargs or {}).get("error") or "the trigger failed")
            if (next_kwargs or {}).get("traceback"):
                self.log.error("Trigger failed:\n%s", "\n".join(next_kwargs["traceback"]))  # type: ignore[attr-defined,index]
            return self.resume_rollout(context, {"state": "no event", "deployment": self.model,
                                                 "description": f"the deferral ended without an event ({error})"})  # fmt: skip
        return super().resume_execution(next_method, next_kwargs, context)  # type: ignore[misc]

    def resume_rollout(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """After the trigger: the step again when Seldon reports ready; else undo and fail."""
        from operators.lifecycle import _final
        from pushbutton.errors import LeaseHeld, PushbuttonError

        carry = event.get("carry") or None  # None: the carry kept in the lease
        if event.get("state") == "Available":
            self.log.info("%s: ready; the step goes on", event.get("deployment"))  # type: ignore[attr-defined]
            return self._run(context, carry)
        message = f"{event.get('deployment')} is not ready ({event.get('state')}): {event.get('description')}"
        p = _final(lambda: self.release_platform(context, carry))
        steps = p.runtime.deferral.undo if getattr(p.runtime, "deferral", None) else []
        try:
            with p.history.lock(self.model, holder=p.holder):
                lease = p.history.lease(self.model)
                if lease is None or lease["holder"] != p.holder:
                    raise LeaseHeld("no lease of this task")
                outcome = p.runtime.undo(steps)
                if outcome.startswith("could NOT"):  # the lease (and its undo steps) stays for the retry
                    raise AirflowException(f"{message}; {outcome}")
                p.history.release(self.model, p.holder)
        except LeaseHeld as exc:
            raise AirflowFailException(
                f"{message}; this task's lease on {self.model} ran out while it waited, so another promotion "
                "may have changed serving since: nothing was undone — check the resources, then clear the task"
            ) from exc
        except PushbuttonError as exc:  # the store or the API server: the retry finds the lease's undo steps
            raise AirflowException(f"{message}; the undo could not run yet ({exc})") from exc
        if event.get("state") == "Failed":  # the same spec fails the same way: no retry
            raise AirflowFailException(f"{message}; {outcome}")
        raise AirflowException(f"{message}; {outcome}")
