"""A newer version supersedes an older one still waiting for approval (framework-free rules).

With one CI/CD run per model at a time, a run waiting for its Approve/Reject (for up to 7 days) would
hold every later version back. Instead, when the run of a newer version of the same model is queued
behind a waiting approval, pushbutton answers that approval itself: Reject, by the responder
``pushbutton:superseded-by:<N>``, with the comment ``superseded by vN``. The older run then withdraws
its candidate exactly as after a person's Reject, records ``supersede`` in the serving history (with
who pushed vN), and the newer run proceeds. Two places apply it (``operators/supersede.py``): the
approval task, before it parks, when a newer run is already queued; and the Airflow plugin, when a
newer run is created while an older one is parked. Pushes of the same version collapse into one run
(its id), so they never supersede each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

RESPONDER_PREFIX = "pushbutton:superseded-by:"
APPROVAL_TASK = "approve"


@dataclass(frozen=True)
class Run:
    """A CI/CD run and the version it releases (None when it cannot be told, e.g. a 'latest' run)."""

    run_id: str
    version: int | None


def run_version(run_id: str, conf: Mapping[str, Any] | None = None) -> int | None:
    """The version a CI/CD run releases, as a number (``webhook.run_version``)."""
    from pushbutton.webhook import run_version as version_of

    found = version_of(run_id, conf)
    return int(found) if found is not None else None


def superseding(waiting: Run, queued: Iterable[Run]) -> Run | None:
    """The newest queued run of a newer version than ``waiting``'s (None: nothing supersedes it)."""
    if waiting.version is None:
        return None
    newer = [run for run in queued if run.version is not None and run.version > waiting.version]
    return max(newer, key=lambda run: run.version or 0, default=None)


def responder(version: int | str) -> dict[str, str]:
    """The HITL responder recorded for a superseded approval."""
    return {"id": f"{RESPONDER_PREFIX}{version}", "name": f"pushbutton (superseded by v{version})"}


def comment(version: int | str) -> str:
    return f"superseded by v{version}"


def superseded_by(user: Mapping[str, Any] | None) -> str | None:
    """The newer version when an approval answer was pushbutton's supersede, else None."""
    user_id = str((user or {}).get("id") or "")
    return user_id.removeprefix(RESPONDER_PREFIX) if user_id.startswith(RESPONDER_PREFIX) else None


def reason(version: str, pushed_by: str | None) -> str:
    """The rejected version's reason, as the history and ``pushbutton status`` show it."""
    return comment(version) + (f" (pushed by {pushed_by})" if pushed_by else "")
