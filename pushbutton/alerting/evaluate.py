"""A rule over one indicator series → pending, firing, resolved or nothing new.

A series is one indicator for one version and predictor, its results newest window first (what
``MonitoringStore.indicators(last=N)`` returns). ``breaches`` judges each window by the rule's type
(``True``, ``False``, or ``None`` when the window gives no verdict: a failed indicator, too little data
— the ``missing`` and ``flatline`` rules are the ones that look at those). ``evaluate`` then decides
with the series' last alert event (the history):

* fires when the newest ``for`` windows all breach (``frequency``: ``events`` of the last ``windows``)
  and the rule is not firing already — or its ``cooldown`` has passed since it last fired, measured in
  window time, so re-evaluating old windows never re-fires;
* resolves a firing rule when the newest window no longer breaches, or when the series has no result
  for the evaluated window any more (the version stopped serving);
* otherwise records nothing (a breach shorter than ``for`` is reported as ``pending``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pushbutton.alerting.events import AlertEvent, event_id
from pushbutton.alerting.rules import (
    ChangeRule,
    FlatlineRule,
    FrequencyRule,
    MissingRule,
    SpikeRule,
    ThresholdRule,
)
from pushbutton.monitoring.results import IndicatorResult

FEATURE_KEYS = ("value", "distance", "psi", "statistic", "share")


def value_of(rule: Any, result: IndicatorResult) -> float | None:
    """The number the rule compares: the headline value, or the named feature's figure."""
    if result.status != "ok":
        return None
    if rule.feature is None:
        return _finite(result.value)
    entry = result.details.get(rule.feature)
    if not isinstance(entry, dict):
        return None
    for key in FEATURE_KEYS:
        if key in entry:
            return _finite(entry[key])
    flagged = entry.get("flagged")
    return None if flagged is None else float(bool(flagged))


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _bounded(rule: ThresholdRule | FrequencyRule, result: IndicatorResult) -> bool | None:
    if rule.above is None and rule.below is None:  # the indicator's own verdict
        if rule.feature is not None and result.status == "ok":
            entry = result.details.get(rule.feature)
            flagged = entry.get("flagged") if isinstance(entry, dict) else None
            return None if flagged is None else bool(flagged)
        return result.flagged if result.status == "ok" else None
    value = value_of(rule, result)
    if value is None:
        return None
    return (rule.above is not None and value > rule.above) or (rule.below is not None and value < rule.below)


def _moved(direction: str, now: float, then: float, amount: float) -> bool:
    up, down = now - then > amount, then - now > amount
    return up if direction == "up" else down if direction == "down" else up or down


def breaches(rule: Any, results: Sequence[IndicatorResult]) -> list[bool | None]:
    """Per window (newest first): does it breach the rule?"""
    out: list[bool | None] = []
    for i, result in enumerate(results):
        if isinstance(rule, ThresholdRule | FrequencyRule):
            out.append(_bounded(rule, result))
        elif isinstance(rule, MissingRule):
            out.append(result.status in rule.statuses)
        elif isinstance(rule, FlatlineRule):
            counted = result.status in ("ok", "empty", "insufficient")
            out.append(
                (0 if result.status == "empty" else result.sample_size) < rule.min_requests
                if counted
                else None
            )
        elif isinstance(rule, ChangeRule):
            now = value_of(rule, result)
            then = value_of(rule, results[i + 1]) if i + 1 < len(results) else None
            if now is None or then is None:
                out.append(None)
            else:
                amount = rule.by * abs(then) if rule.relative else rule.by
                out.append(_moved(rule.direction, now, then, amount))
        elif isinstance(rule, SpikeRule):
            now = value_of(rule, result)
            base = [
                v
                for v in (value_of(rule, r) for r in results[i + 1 : i + 1 + rule.baseline_windows])
                if v is not None
            ]
            if now is None or len(base) < 2:
                out.append(None)
            else:
                mean = sum(base) / len(base)
                up = now > mean * rule.ratio if mean > 0 else now > mean
                down = now * rule.ratio < mean if mean > 0 else False
                out.append(up if rule.direction == "up" else down if rule.direction == "down" else up or down)
        else:  # pragma: no cover - the discriminated union has no other member
            raise TypeError(f"unknown rule {type(rule).__name__}")
    return out


@dataclass(frozen=True)
class Evaluation:
    rule: Any
    model: str
    indicator_id: str
    version: str
    predictor: str
    window_end: datetime
    state: str  # firing | resolved | pending | ok | quiet (firing, within its cooldown)
    value: float | None = None
    values: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    event: AlertEvent | None = None  # what to record (firing or resolved); None: nothing new


def _firing(rule: Any, marks: list[bool | None]) -> tuple[bool, str]:
    if isinstance(rule, FrequencyRule):
        hits = sum(1 for m in marks[: rule.windows] if m)
        return hits >= rule.events, f"{hits} of the last {min(len(marks), rule.windows)} windows breach"
    streak = 0
    for mark in marks:
        if not mark:
            break
        streak += 1
    return streak >= rule.for_, f"{streak} consecutive window(s) breach (for: {rule.for_})"


def _describe(rule: Any) -> str:
    what = f"{rule.indicator}{'.' + rule.feature if rule.feature else ''}"
    if isinstance(rule, ThresholdRule | FrequencyRule):
        bounds = ([f"> {rule.above:g}"] if rule.above is not None else []) + (
            [f"< {rule.below:g}"] if rule.below is not None else []
        )
        return f"{what} {' or '.join(bounds) if bounds else 'flagged by the indicator'}"
    if isinstance(rule, ChangeRule):
        return (
            f"{what} moved {rule.direction} by more than {rule.by:g}{' (relative)' if rule.relative else ''}"
        )
    if isinstance(rule, SpikeRule):
        return f"{what} {rule.direction} {rule.ratio:g}x its mean over {rule.baseline_windows} windows"
    if isinstance(rule, FlatlineRule):
        return f"fewer than {rule.min_requests} requests in a window ({rule.indicator})"
    return f"{rule.indicator} not computed ({', '.join(rule.statuses)} or no result)"


def evaluate(
    rule: Any,
    model: str,
    version: str,
    predictor: str,
    results: Sequence[IndicatorResult],
    window_end: datetime,
    last: AlertEvent | None,
    run_id: str = "",
) -> Evaluation:
    """Judge the series at ``window_end`` (the monitor run's window); ``last`` is its latest alert event."""
    current = [r for r in results if r.window_end <= window_end]
    has_window = bool(current) and current[0].window_end == window_end
    base = {"rule": rule, "model": model, "indicator_id": rule.indicator, "version": version,
            "predictor": predictor, "window_end": window_end}  # fmt: skip
    firing_before = last is not None and last.state == "firing"
    if isinstance(rule, MissingRule) and not has_window:
        marks: list[bool | None] = [True, *breaches(rule, current)]
        why = f"{rule.indicator} has no result for the window ending {window_end.isoformat()}"
        values = [{"window_end": window_end.isoformat(), "value": None, "breach": True}]
        return _decide(rule, base, marks, None, values, firing_before, last, why, run_id)
    if not has_window:
        if firing_before:
            message = (
                f"{rule.indicator} has no result for this window any more (v{version} no longer serves?)"
            )
            return Evaluation(**base, state="resolved", message=message,
                              event=_event(rule, base, "resolved", None, [], message, run_id))  # fmt: skip
        return Evaluation(**base, state="ok", message="no result for this window")
    marks = breaches(rule, current)
    value = value_of(rule, current[0]) if not isinstance(rule, MissingRule | FlatlineRule) else None
    if isinstance(rule, FlatlineRule):
        value = float(0 if current[0].status == "empty" else current[0].sample_size)
    values = [{"window_end": r.window_end.isoformat(), "value": value_of(rule, r), "status": r.status,
               "breach": m} for r, m in zip(current[: rule.windows_needed], marks, strict=False)]  # fmt: skip
    return _decide(rule, base, marks, value, values, firing_before, last, "", run_id)


def _decide(
    rule: Any,
    base: dict[str, Any],
    marks: list[bool | None],
    value: float | None,
    values: list[dict[str, Any]],
    firing_before: bool,
    last: AlertEvent | None,
    why: str,
    run_id: str,
) -> Evaluation:
    fires, count = _firing(rule, marks)
    message = f"{_describe(rule)}: {why or count}"
    if fires:
        if firing_before and last is not None and base["window_end"] - last.at < rule.cooldown:
            until = (last.at + rule.cooldown).isoformat()
            return Evaluation(**base, state="quiet", value=value, values=values,
                              message=f"{message}; already firing, quiet until {until} (cooldown)")  # fmt: skip
        event = _event(rule, base, "firing", value, values, message, run_id)
        return Evaluation(**base, state="firing", value=value, values=values, message=message, event=event)
    if firing_before:
        message = f"{_describe(rule)} no longer holds: {count}"
        event = _event(rule, base, "resolved", value, values, message, run_id)
        return Evaluation(**base, state="resolved", value=value, values=values, message=message, event=event)
    state = "pending" if marks and marks[0] else "ok"
    return Evaluation(**base, state=state, value=value, values=values, message=message)


def _event(
    rule: Any, base: dict[str, Any], state: str, value: float | None, values: list, message: str, run_id: str
) -> AlertEvent:
    model, version, predictor, at = base["model"], base["version"], base["predictor"], base["window_end"]
    return AlertEvent(
        id=event_id(
            model, rule.name, rule.indicator, rule.feature or "", version, predictor, at.isoformat(), state
        ),
        model=model,
        rule=rule.name,
        state=state,  # type: ignore[arg-type]
        severity=rule.severity,
        at=at,
        rule_type=rule.type,
        indicator_id=rule.indicator,
        feature=rule.feature or "",
        version=version,
        predictor=predictor,
        value=value,
        values=values,
        message=message,
        run_id=run_id,
    )
