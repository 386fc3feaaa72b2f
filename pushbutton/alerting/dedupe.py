"""One retrain per storm: whether a retrain request goes out, or is absorbed or deduplicated.

In order: a retrain already asked for by this evaluation (several rules firing at once) takes the
others along; a run of the model's retrain DAG running or queued — or a release of the model in
progress, whose candidate is about to be judged — absorbs the request (Airflow can lose asset events
while a DAG is at ``max_active_runs``: apache/airflow#56050, so we never send one into a busy DAG);
a retrain requested for the model within the firing rule's ``cooldown`` deduplicates it. Each
outcome says why, and goes into the alert history with the alert.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pushbutton.alerting.events import ActionTaken, AlertEvent


def retrain_outcome(
    event: AlertEvent,
    store: Any,
    cooldown: timedelta,
    busy: Callable[[], str | None],
    already: dict[str, Any] | None = None,
) -> ActionTaken:
    if already is not None:
        return ActionTaken(
            "retrain",
            "deduplicated",
            f"taken along with the retrain requested by {already['rule']} in this run",
        )
    reason = busy()
    if reason:
        return ActionTaken("retrain", "absorbed", reason)
    recent = store.alerts(event.model, since=event.at - cooldown, limit=500)
    for earlier in recent:
        done = earlier.outcome("retrain")
        if earlier.id != event.id and done is not None and done.outcome == "requested":
            return ActionTaken(
                "retrain",
                "deduplicated",
                f"a retrain was requested at {earlier.at.isoformat()} by {earlier.rule} ({earlier.source}), "
                f"within the cooldown of {cooldown}",
            )
    return ActionTaken("retrain", "requested", f"asset event pushbutton://{event.model}/retrain")
