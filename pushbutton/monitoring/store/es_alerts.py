"""The alert history on Elasticsearch: the regular index ``pushbutton-alerts`` (mapping in
``deploy/elasticsearch/indices/pushbutton-alerts.json``), one document per ``AlertEvent`` with the
event's id as ``_id`` (a re-run replaces it), the event itself as JSON beside the searchable fields."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pushbutton.alerting.events import AlertEvent
from pushbutton.monitoring.store import es_aggs, es_docs
from pushbutton.monitoring.store import es_layout as L

ALERTS = L.ALERTS


class EsAlerts:
    """Mixed into ``ElasticsearchStore`` (uses its ``es`` client, ``schemas`` bootstrap and ``refresh``)."""

    es: Any
    schemas: Any
    refresh: Any

    def write_alerts(self, events: Iterable[AlertEvent]) -> int:
        self.schemas.bootstrap()
        operations = []
        for e in events:
            document = {
                "model": e.model, "rule": e.rule, "state": e.state, "severity": e.severity, "source": e.source,
                "version": e.version, "predictor": e.predictor, "indicator_id": e.indicator_id,
                "at": es_aggs.iso(e.at), "recorded_at": es_aggs.iso(e.recorded_at),
                "value": es_docs.clean(e.value), "message": e.message,
                "actions": [f"{a.action}:{a.outcome}" for a in e.actions],
                "event": json.dumps(e.as_dict(), default=str, allow_nan=True),
            }  # fmt: skip
            operations.append(({"index": {"_index": ALERTS, "_id": e.id}},
                               {k: v for k, v in document.items() if v is not None}))  # fmt: skip
        if not operations:
            return 0
        found = self.es.bulk(f"write {len(operations)} alert events", operations, refresh=self.refresh)
        self.es.raise_refused([(op[0]["index"]["_id"], r) for op, r in zip(operations, found, strict=True)
                               if r["status"] >= 300])  # fmt: skip
        return len(operations)

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
        filters: list[dict[str, Any]] = [{"term": {"model": model}}]
        for field, value in (("rule", rule), ("version", version), ("predictor", predictor)):
            if value is not None:
                filters.append({"term": {field: value}})
        if since is not None:
            filters.append({"range": {"at": {"gte": es_aggs.iso(since)}}})
        found = self.es.search(f"read the alert history of {model!r}", ALERTS, size=int(limit),
                               query={"bool": {"filter": filters}}, _source=["event"],
                               sort=[{"at": {"order": "desc"}}, {"recorded_at": {"order": "desc"}}])  # fmt: skip
        return [AlertEvent.from_dict(json.loads(h["_source"]["event"])) for h in found["hits"]["hits"]]
