"""Retention of the raw request log: each model's ``logging.retention_days`` (30 by default).

``purge_expired`` deletes a model's records, feature rows and their labels older than ``retention_days``
before ``at`` — the time the run is for (a monitor run's ``run_after``, a fleet tick's window end),
never the wall clock, so a re-run of the same run deletes the same span and nothing more. A record at
exactly the cutoff is kept. Indicator results are kept: they are small and the alert history needs
them. On Elasticsearch the data streams' ILM policy deletes old backing indices as well
(``deploy/elasticsearch/ilm``); the purge trims inside the retained ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pushbutton.monitoring.store.base import retention_cutoff

if TYPE_CHECKING:
    from pushbutton.monitoring.store.base import MonitoringStore


@dataclass(frozen=True)
class Purge:
    model: str
    before: datetime  # records older than this were deleted
    purged: int  # records deleted

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "before": self.before.isoformat(), "purged": self.purged}


def purge_expired(store: MonitoringStore, model: str, retention_days: float, at: datetime) -> Purge:
    """Delete ``model``'s raw log older than ``retention_days`` before ``at`` (timezone-aware)."""
    if at.tzinfo is None:
        raise ValueError(
            f"purge time {at.isoformat()} has no timezone (fix: pass an aware datetime, e.g. UTC)"
        )
    before = retention_cutoff(at, retention_days)
    return Purge(model, before, store.purge(model, before))
