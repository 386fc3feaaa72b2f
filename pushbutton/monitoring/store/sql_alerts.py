"""The alert history in the SQL store: table ``pbmon_alerts``, one row per ``AlertEvent``, keyed by its
id (a re-run of the task that recorded an event replaces it), the event itself as JSON beside the
columns the history is filtered and ordered by."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pushbutton.alerting.events import AlertEvent


def table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "pbmon_alerts",
        metadata,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(63), nullable=False, index=True),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("predictor", sa.String(63), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("recorded", sa.Float, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
    )


class SqlAlerts:
    """Mixed into ``SqlStore`` (uses its ``engine``, ``mark`` and ``_errors``)."""

    engine: sa.Engine
    mark: str
    _errors: Any

    def write_alerts(self, events: Iterable[AlertEvent]) -> int:
        m = self.mark
        rows = [
            (e.id, e.model, e.rule, e.state, e.version, e.predictor, e.at.timestamp(), e.recorded_at.timestamp(),
             json.dumps(e.as_dict(), default=str, allow_nan=True))
            for e in events
        ]  # fmt: skip
        if not rows:
            return 0
        sql = (
            "INSERT INTO pbmon_alerts (id, model, rule, state, version, predictor, at, recorded, event) VALUES "
            f"({', '.join([m] * 9)}) ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
            "recorded = excluded.recorded, event = excluded.event"
        )
        with self._errors(f"write {len(rows)} alert events"), self.engine.begin() as conn:
            conn.exec_driver_sql(sql, rows)
        return len(rows)

    def alerts(
        self,
        model: str,
        *,
        rule: str | None = None,
        version: str | None = None,
        predictor: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AlertEvent]:
        clauses, params = [f"model = {self.mark}"], [model]
        for column, value in (("rule", rule), ("version", version), ("predictor", predictor)):
            if value is not None:
                clauses.append(f"{column} = {self.mark}")
                params.append(value)
        if since is not None:
            clauses.append(f"at >= {self.mark}")
            params.append(since.timestamp())
        sql = (
            f"SELECT event FROM pbmon_alerts WHERE {' AND '.join(clauses)} "
            f"ORDER BY at DESC, recorded DESC LIMIT {int(limit)}"
        )
        with self._errors(f"read the alert history of {model!r}"), self.engine.connect() as conn:
            fetched = conn.exec_driver_sql(sql, tuple(params)).fetchall()
        return [AlertEvent.from_dict(json.loads(r[0])) for r in fetched]
