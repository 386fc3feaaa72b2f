"""Alerts from outside — Prometheus Alertmanager (webhook ``version: "4"``), Grafana (unified
alerting's webhook contact point, Alertmanager-shaped with ``values``) and ElastAlert2 (the ``post2``
alerter) — mapped onto ``AlertEvent`` so they take the same path as internal rules (same dedupe, same
history; ``pushbutton.alerting.judge.act``).

Labels say what the alert is about and what to do: ``model`` (required: a registered pushbutton
model), ``action`` (``retrain``, ``rollback`` or ``notify``; several comma-separated; default
``notify``), ``severity`` (``info``, ``warning``, ``critical``; default ``warning``), optional
``version`` and ``predictor`` (default ``champion``). An ElastAlert2 ``post2`` body carries the same
keys at its top level (see the README for the rule snippet). The event id is derived from the source,
the alert's fingerprint (or its labels) and its start, so a re-delivered webhook is recorded once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pushbutton.alerting.events import AlertEvent, event_id

ACTIONS = ("retrain", "rollback", "notify")
SEVERITIES = ("info", "warning", "critical")
SOURCES = ("alertmanager", "grafana", "elastalert")
COOLDOWN = timedelta(hours=1)  # an external alert's retrain cooldown (its own tool de-duplicates the rest)


class PayloadError(ValueError):
    """The body is not what the named source sends, or an alert lacks what we need (answered 400)."""


@dataclass(frozen=True)
class External:
    event: AlertEvent
    actions: tuple[str, ...]


def _time(value: Any, default: datetime) -> datetime:
    if not value or str(value).startswith("0001-01-01"):
        return default
    text = str(value).replace("Z", "+00:00")
    try:
        found = datetime.fromisoformat(text)
    except ValueError as exc:
        raise PayloadError(f"'{value}' is not an RFC 3339 time") from exc
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def _actions(where: str, value: Any) -> tuple[str, ...]:
    names = [a.strip() for a in str(value or "notify").split(",") if a.strip()]
    unknown = [a for a in names if a not in ACTIONS]
    if unknown:
        raise PayloadError(
            f"{where}: action '{unknown[0]}' is not one of {', '.join(ACTIONS)}; fix the label"
        )
    return tuple(dict.fromkeys(names))


def _one(source: str, where: str, fields: dict[str, Any], *, status: str, name: str, starts: datetime,
         fingerprint: str, value: Any, message: str, labels: dict[str, str]) -> External:  # fmt: skip
    model = str(fields.get("model") or "").strip()
    if not model:
        raise PayloadError(
            f"{where}: no 'model' label; add model: <pushbutton model name> to the alert's labels"
        )
    severity = str(fields.get("severity") or "warning").lower()
    if severity not in SEVERITIES:
        raise PayloadError(f"{where}: severity '{severity}' is not one of {', '.join(SEVERITIES)}")
    actions = _actions(where, fields.get("action"))
    if "rollback" in actions and severity != "critical":
        raise PayloadError(f"{where}: action rollback needs severity critical; set the severity label")
    state = "resolved" if status == "resolved" else "firing"
    try:
        number = None if value is None else float(value)
    except (TypeError, ValueError):
        number = None
    event = AlertEvent(
        id=event_id(source, model, fingerprint, starts.isoformat(), state),
        model=model,
        rule=f"{source}:{name}",
        state=state,  # type: ignore[arg-type]
        severity=severity,
        at=starts,
        source=source,
        rule_type="external",
        version=str(fields.get("version") or ""),
        predictor=str(fields.get("predictor") or ("champion" if fields.get("version") else "")),
        value=number,
        message=message[:1000],
        labels={str(k): str(v) for k, v in labels.items()},
    )
    return External(event, actions)


def parse(source: str, body: Any, now: datetime) -> list[External]:
    """The alerts of one webhook delivery; ``PayloadError`` names what is wrong and how to fix it."""
    if source not in SOURCES:
        raise PayloadError(
            f"unknown alert source '{source}'; POST to one of /alerts/{{{', '.join(SOURCES)}}}"
        )
    if not isinstance(body, dict):
        raise PayloadError(f"the {source} body must be a JSON object")
    if source == "elastalert":
        return [_elastalert(body, now)]
    if source == "alertmanager" and str(body.get("version")) != "4":
        raise PayloadError(
            f'Alertmanager webhook version {body.get("version")!r}; this endpoint reads version "4" payloads'
        )
    alerts = body.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise PayloadError(f"the {source} body has no 'alerts' list")
    common = body.get("commonLabels") or {}
    out = []
    for index, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise PayloadError(f"alerts[{index}] is not an object")
        labels = {**common, **(alert.get("labels") or {})}
        notes = alert.get("annotations") or {}
        values = alert.get("values") or {}  # Grafana: the query values that fired
        value = (
            next(iter(values.values()), None) if isinstance(values, dict) and values else labels.get("value")
        )
        starts = _time(alert.get("startsAt"), now)
        fingerprint = alert.get("fingerprint") or json.dumps(labels, sort_keys=True)
        message = notes.get("summary") or notes.get("description") or labels.get("alertname", "")
        out.append(_one(source, f"alerts[{index}]", {**labels, **notes}, status=str(alert.get("status") or
                        body.get("status") or "firing"), name=labels.get("alertname", "alert"), starts=starts,
                        fingerprint=fingerprint, value=value, message=str(message), labels=labels))  # fmt: skip
    return out


def _elastalert(body: dict[str, Any], now: datetime) -> External:
    name = str(body.get("rule") or body.get("rule_name") or "")
    if not name:
        raise PayloadError(
            "the ElastAlert2 body has no 'rule'; set http_post2_payload: {rule: '{{ rule_name }}'}"
        )
    starts = _time(body.get("at") or body.get("@timestamp"), now)
    fingerprint = str(body.get("alert_id") or body.get("_id") or name)
    labels = {k: str(v) for k, v in body.items() if isinstance(v, str | int | float) and k != "message"}
    return _one("elastalert", "body", body, status=str(body.get("status") or "firing"), name=name, starts=starts,
                fingerprint=fingerprint, value=body.get("value"), message=str(body.get("message") or name),
                labels=labels)  # fmt: skip
