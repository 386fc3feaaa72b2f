"""Rollouts that wait without holding a worker: what a Kubernetes runtime hands to a deferring operator.

By default a runtime's ``apply`` writes the new spec and then polls until Seldon reports it ready
(bounded), which is what the CLI wants. An Airflow operator instead sets ``runtime.deferral`` (a
``Deferral``): ``apply`` then writes, reads each written resource once, and, when Seldon has not
reported it ready yet, raises ``RolloutPending`` naming the resources to wait for (kind, namespace,
name, generation), how to undo what was written (``UndoStep``: delete a new object, or put a
previous one back), and the wall-clock deadline. The operator defers to a trigger with that data,
and on ``Available`` runs the step again: every write is idempotent by hash, so the re-run writes
nothing already written, finds it ready and finishes (a Seldon v2 apply may defer once per phase).
On ``Failed``, a timeout or a deleted object the operator puts the previous resources back with
``undo`` and fails, as the polling path does. Everything here is JSON, so it survives the deferral.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pushbutton.errors import PushbuttonError

RESTORED_KEYS = ("name", "namespace", "labels", "annotations")
LEASE_GRACE_SECONDS = 300.0  # past the rollout's deadline: time for the triggerer to resume the task


def undo_step(kind: str, namespace: str, name: str, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """How to undo one write: delete the object again (``previous`` None: it was new), or put
    ``previous`` (the object as read before the write) back. Only what a restore needs is kept."""
    kept = None
    if previous is not None:
        kept = {k: previous[k] for k in ("apiVersion", "kind", "spec") if k in previous}
        kept["metadata"] = {k: v for k, v in (previous.get("metadata") or {}).items() if k in RESTORED_KEYS}
    return {"kind": kind, "namespace": namespace, "name": name, "previous": kept}


def merge_undo(carried: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``carried`` then the steps of ``new`` for objects ``carried`` does not cover: the first write's
    'before' is what the undo must restore, whatever later phases wrote over it."""
    seen = {(s["kind"], s["namespace"], s["name"]) for s in carried}
    return [*carried, *(s for s in new if (s["kind"], s["namespace"], s["name"]) not in seen)]


def run_undo(
    steps: list[dict[str, Any]],
    api_of: Callable[[str], Any],
    restore: Callable[[Any, str, str, Mapping[str, Any]], None],
) -> str:
    """Undo ``steps`` newest first through ``api_of(kind)`` (a ``CustomObjects``); what was done, or
    why it could not be (the champion may then not serve: said so the operator looks at once)."""
    done = []
    for step in reversed(steps):
        api, ns, name = api_of(step["kind"]), step["namespace"], step["name"]
        try:
            if step["previous"] is None:
                api.delete(ns, name)
                done.append(f"deleted {api.what(ns, name)} again (it was new)")
            else:
                restore(api, ns, name, step["previous"])
                done.append(f"restored the previous spec of {api.what(ns, name)}")
        except PushbuttonError as exc:
            return f"could NOT undo it ({exc}); the champion may not serve: check the resources now"
    return "; ".join(done) or "nothing had been changed"


def undo_carried(runtime: Any, steps: list[dict[str, Any]]) -> str:
    """``runtime.undo(steps)``; once done, the runtime's ``deferral`` has nothing left to undo (so the
    caller's own clean-up of the carried steps does not put them back twice)."""
    outcome = runtime.undo(steps)
    if getattr(runtime, "deferral", None) is not None and not outcome.startswith("could NOT"):
        runtime.deferral.undo = []
    return outcome


@dataclass
class Deferral:
    """Set on a runtime (``runtime.deferral``) by an operator that defers instead of polling.

    ``undo`` and ``deadline`` come back from an earlier deferral of the same task (empty/None at first)."""

    undo: list[dict[str, Any]] = field(default_factory=list)
    deadline: float | None = None  # wall clock (time.time()), set by the first deferral

    def deadline_from(self, timeout: float, now: Callable[[], float] = time.time) -> float:
        return self.deadline if self.deadline is not None else now() + timeout


class RolloutPending(Exception):
    """``apply`` wrote the new spec and Seldon has not reported it ready yet; wait, then run the step
    again. Not a ``PushbuttonError``: nothing failed, and no error handler may swallow it."""

    def __init__(
        self,
        waits: list[dict[str, Any]],
        *,
        undo: list[dict[str, Any]],
        deadline: float,
        poll_interval: float,
        description: str = "",
    ):
        self.waits, self.undo, self.deadline = waits, undo, deadline
        self.poll_interval, self.description = poll_interval, description
        names = ", ".join(f"{w['kind']} {w['namespace']}/{w['name']}" for w in waits)
        super().__init__(f"waiting for Seldon to report {names} ready ({description or 'no status yet'})")

    def carry(self) -> dict[str, Any]:
        """What the resumed task needs back (JSON): the undo steps and the deadline."""
        return {"undo": self.undo, "deadline": self.deadline}


def wait_entry(kind: str, namespace: str, name: str, generation: int | None) -> dict[str, Any]:
    return {"kind": kind, "namespace": namespace, "name": name, "generation": generation}
