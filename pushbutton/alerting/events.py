"""The alert history's one record shape: every firing and every resolution, internal or external.

An ``AlertEvent`` holds the rule (or the external alert's name), the series it is about (indicator,
version, predictor), the values that caused it, and what was done (``actions``: one entry per action
with its outcome — ``requested``, ``absorbed``, ``deduplicated``, ``done``, ``skipped`` or
``failed`` — and a one-line detail). Its ``id`` is derived from what makes it unique (model, rule,
series, window, state; for an external alert its fingerprint and start), so a re-run of the task that
recorded it replaces it instead of adding another, and sees that its actions were already taken.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

State = Literal["firing", "resolved"]
Outcome = Literal["requested", "absorbed", "deduplicated", "done", "skipped", "failed", "pending"]
SOURCES = ("rule", "alertmanager", "elastalert", "grafana")


def event_id(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ActionTaken:
    action: str  # retrain | rollback | notify
    outcome: Outcome
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class AlertEvent:
    id: str
    model: str
    rule: str
    state: State
    severity: str
    at: datetime  # the window end the rule judged (internal) or when the alert started/ended (external)
    source: str = "rule"
    rule_type: str = ""
    indicator_id: str = ""
    feature: str = ""
    version: str = ""
    predictor: str = ""
    value: float | None = None
    values: list[dict[str, Any]] = field(default_factory=list)  # recent windows: window_end, value, breach
    message: str = ""
    actions: list[ActionTaken] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # external alerts: their labels
    run_id: str = ""
    recorded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.state not in ("firing", "resolved"):
            raise ValueError(f"state must be firing or resolved, not {self.state!r}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {self.source!r}")

    def outcome(self, action: str) -> ActionTaken | None:
        return next((a for a in self.actions if a.action == action), None)

    def with_action(self, taken: ActionTaken) -> AlertEvent:
        kept = [a for a in self.actions if a.action != taken.action]
        return replace(self, actions=[*kept, taken])

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.at.isoformat()
        out["recorded_at"] = self.recorded_at.isoformat()
        out["actions"] = [a.as_dict() for a in self.actions]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertEvent:
        values = dict(data)
        for name in ("at", "recorded_at"):
            if isinstance(values.get(name), str):
                values[name] = datetime.fromisoformat(values[name])
        values["actions"] = [
            a if isinstance(a, ActionTaken) else ActionTaken(**a) for a in values.get("actions") or []
        ]
        return cls(**values)

    def summary(self) -> str:
        """One line for logs, the CLI and notifications."""
        where = f" {self.model} v{self.version} ({self.predictor})" if self.version else f" {self.model}"
        value = f" value={self.value:.4g}" if self.value is not None else ""
        done = ", ".join(f"{a.action}: {a.outcome}" for a in self.actions) or "no action"
        return f"[{self.severity}] {self.rule} {self.state}{where}{value} — {self.message} ({done})"
