"""Judge a model's rules after a monitor window, and act — the one path internal rules and external
alerts (``pushbutton.alerting.external``) both take.

``judge`` evaluates every rule on every series it covers (the versions the window served, and any
series with results), records each firing and resolution in the alert history, and runs the actions
of each new firing through ``act``:

* ``retrain`` → ``dedupe.retrain_outcome``: at most one retrain request per model per cooldown, none
  while a retrain is running or queued or a release is in progress (absorbed, and said so); the
  request itself is an Airflow asset event the caller emits (``Judgement.retrain``);
* ``rollback`` → ``rollback.allowed`` then the caller's ``rollback`` (the button's path);
* ``notify`` → the caller's notifier (firing and resolved).

An event already in the history (a re-run of the same window, a re-delivered webhook) keeps what was
done then: no action runs twice. The caller supplies the side effects as ``Effects`` so this module
stays framework-free and the decisions are unit-tested.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from pushbutton.alerting import dedupe
from pushbutton.alerting import rollback as rb
from pushbutton.alerting.evaluate import Evaluation, evaluate
from pushbutton.alerting.events import ActionTaken, AlertEvent
from pushbutton.alerting.rules import MissingRule


class NotConfigured(Exception):
    """An action whose target is not set up (e.g. no notification Connection): skipped, not failed."""


@dataclass
class Effects:
    """What acting needs from the outside world (Airflow, the registry, the serving history)."""

    busy: Callable[[], str | None] = lambda: None  # why a retrain would be absorbed now, or None
    champion: Callable[[], str | None] = lambda: None  # the champion version
    serving_history: Callable[[], list[dict[str, Any]]] = list  # newest first: at, action, version, actor
    rollback: Callable[[AlertEvent], str] | None = None  # restores the previous champion; a detail line
    notify: Callable[[AlertEvent], str] | None = None  # sends the event; a detail line
    rollback_window: timedelta = timedelta(hours=2)


@dataclass
class Judgement:
    evaluations: list[Evaluation] = field(default_factory=list)
    events: list[AlertEvent] = field(default_factory=list)  # recorded by this run (new or kept)
    retrain: dict[str, Any] | None = None  # the asset event's extra when a retrain was requested

    def summary(self) -> dict[str, Any]:
        return {
            "events": [e.summary() for e in self.events],
            "pending": [
                f"{e.rule.name} ({e.predictor} v{e.version}): {e.message}"
                for e in self.evaluations
                if e.state == "pending"
            ],
            "retrain": self.retrain,
        }


def series_of(rule: Any, results: Iterable[Any], serving: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(version, predictor) pairs the rule judges: those with results, plus those serving in the window
    (a ``missing`` rule must see a version whose indicator was never computed)."""
    found = {(r.version, r.predictor) for r in results}
    if isinstance(rule, MissingRule):
        found |= set(serving)
    return sorted(p for p in found if rule.predictor in ("any", p[1]))


def judge(
    spec: Any,
    store: Any,
    window_end: datetime,
    serving: Sequence[tuple[str, str]],
    effects: Effects,
    now: datetime,
    run_id: str = "",
) -> Judgement:
    """Evaluate ``spec.alerts`` at ``window_end``; record and act. ``serving``: (version, predictor)."""
    out = Judgement()
    for rule in spec.alerts:
        results = store.indicators(spec.name, indicator_id=rule.indicator, last=rule.windows_needed)
        for version, predictor in series_of(rule, results, serving):
            mine = [r for r in results if r.version == version and r.predictor == predictor]
            history = store.alerts(spec.name, rule=rule.name, version=version, predictor=predictor, limit=1)
            found = evaluate(rule, spec.name, version, predictor, mine, window_end, history[0] if history else None,
                             run_id)  # fmt: skip
            out.evaluations.append(found)
            if found.event is not None:
                event = act(store, found.event, rule.actions, rule.cooldown, effects, now, out)
                out.events.append(event)
    return out


def act(
    store: Any,
    event: AlertEvent,
    actions: Sequence[str],
    cooldown: timedelta,
    effects: Effects,
    now: datetime,
    out: Judgement | None = None,
) -> AlertEvent:
    """Run ``actions`` for ``event`` once, record it (with the outcomes) and return it."""
    stored = _stored(store, event)
    if stored is not None and stored.actions:  # recorded before: what was done then stands
        return stored
    taken: list[ActionTaken] = []
    for action in actions:
        if event.state == "resolved" and action != "notify":
            continue
        if action == "retrain":
            already = out.retrain if out is not None else None
            outcome = dedupe.retrain_outcome(event, store, cooldown, effects.busy, already)
            taken.append(outcome)
            if outcome.outcome == "requested" and out is not None:
                out.retrain = retrain_extra(event)
        elif action == "rollback":
            taken.append(_rollback(event, effects, now))
        elif action == "notify":
            so_far = replace(event, actions=list(taken))  # the notification says what was done
            taken.append(_call("notify", effects.notify, so_far, "no notifier configured"))
    event = replace(event, actions=taken)
    store.write_alerts([event])
    return event


def retrain_extra(event: AlertEvent) -> dict[str, Any]:
    """The asset event's ``extra``: which alert asked, with the values (the retrain's lineage)."""
    return {
        "alert_id": event.id, "rule": event.rule, "source": event.source, "severity": event.severity,
        "model": event.model, "version": event.version, "predictor": event.predictor,
        "indicator": event.indicator_id, "value": event.value, "at": event.at.isoformat(),
        "message": event.message,
    }  # fmt: skip


def _stored(store: Any, event: AlertEvent) -> AlertEvent | None:
    near = store.alerts(event.model, rule=event.rule, version=event.version, predictor=event.predictor,
                        since=event.at, limit=20)  # fmt: skip
    return next((e for e in near if e.id == event.id), None)


def _rollback(event: AlertEvent, effects: Effects, now: datetime) -> ActionTaken:
    ok, why = rb.allowed(event, effects.champion(), effects.serving_history(), now, effects.rollback_window)
    if not ok:
        return ActionTaken("rollback", "skipped", why)
    return _call("rollback", effects.rollback, event, "no rollback path configured", why)


def _call(action: str, call: Callable[[AlertEvent], str] | None, event: AlertEvent, missing: str,
          why: str = "") -> ActionTaken:  # fmt: skip
    if call is None:
        return ActionTaken(action, "skipped", missing)
    try:
        detail = call(event)
    except NotConfigured as exc:
        return ActionTaken(action, "skipped", str(exc))
    except Exception as exc:  # recorded with the alert; the other actions still run
        return ActionTaken(action, "failed", f"{type(exc).__name__}: {exc}"[:500])
    return ActionTaken(action, "done", "; ".join(p for p in (why, detail) if p))
