"""When a quality rule may roll back on its own: the automatic rollback's guard rails.

Allowed only when the firing series is the champion's, the champion was made so by an activation
(a release approved through the CI/CD DAG or by the promotion policy) within ``rollback_window``, and
there is a previous champion to go back to. Never further than one step: a champion that came from a
rollback (automatic or by hand) is left alone. Never against a person: a version a person promoted
explicitly (``pushbutton promote`` / the promote DAG) within the window is theirs to keep.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pushbutton.alerting.events import AlertEvent

PLATFORM_ACTORS = ("pushbutton",)  # actors that are the platform itself, not a person


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def allowed(
    event: AlertEvent,
    champion: str | None,
    serving_history: list[dict[str, Any]],
    now: datetime,
    window: timedelta,
) -> tuple[bool, str]:
    """(allowed, why) for an automatic rollback on ``event``; ``serving_history`` newest first."""
    if event.predictor != "champion" or champion is None or event.version != str(champion):
        return False, f"v{event.version} ({event.predictor}) is not the serving champion (v{champion})"
    changes = [h for h in serving_history if h.get("action") in ("activate", "promote", "rollback")]
    if not changes:
        return False, f"no activation of v{champion} in the serving history"
    last = changes[0]
    at = _time(last["at"])
    if at.tzinfo is None:
        at = at.replace(tzinfo=now.tzinfo)
    if str(last.get("version")) != str(champion):
        return (
            False,
            f"the history's last change is {last['action']} of v{last.get('version')}, not v{champion}",
        )
    if last["action"] == "rollback":
        return False, f"v{champion} is the champion through a rollback: never more than one step on its own"
    actor = str(last.get("actor") or "")
    if last["action"] == "promote" and not actor.startswith(PLATFORM_ACTORS):
        return (
            False,
            f"{actor or 'a person'} promoted v{champion} by hand at {at.isoformat()}: not fighting a person",
        )
    if now - at > window:
        return (
            False,
            f"v{champion} was activated at {at.isoformat()}, longer ago than rollback_window ({window})",
        )
    if not last.get("previous_version"):
        return False, f"v{champion} has no previous champion to go back to"
    return True, (
        f"v{champion} activated at {at.isoformat()} (within {window}); back to v{last['previous_version']}"
    )
