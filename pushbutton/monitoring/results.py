"""The one result shape every indicator returns, and what alert rules will read (issue 15).

An indicator is computed for one model version (and predictor: champion, candidate, shadow) over one
window of logged traffic. Whatever its kind, it answers with an ``IndicatorResult``:

* ``value`` — the headline number a rule compares (share of drifted features, PSI, accuracy, p99 ms…),
  ``threshold`` and ``flagged`` — the indicator's own verdict (``None`` when it could not decide);
* ``status`` — ``ok``, or why there is no verdict: ``empty`` (no traffic in the window — never
  reported as "no drift"), ``missing_reference``, ``insufficient`` (too few rows or labels), ``error``
  (the indicator raised; ``message`` holds the exception, the other indicators are unaffected);
* ``details`` — per feature (or per class) figures, e.g. ``{"petal_length_cm": {"p_value": 0.001,
  "distance": 0.41, "flagged": true}}``;
* the window, the sample sizes, the parameters used and the Airflow run that computed it.

Results are idempotent by ``key``: recomputing the same indicator for the same version, predictor and
window replaces the earlier result instead of adding one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["ok", "empty", "missing_reference", "insufficient", "error"]
STATUSES: tuple[Status, ...] = ("ok", "empty", "missing_reference", "insufficient", "error")


@dataclass(frozen=True)
class IndicatorResult:
    indicator_id: str  # the spec's id, e.g. "feature_drift"
    indicator_type: str  # the registry's stable type id, e.g. "drift"
    model: str
    version: str
    predictor: str  # champion | candidate | shadow (the gateway's predictor role)
    window_start: datetime
    window_end: datetime
    status: Status
    value: float | None = None
    threshold: float | None = None
    flagged: bool | None = None
    sample_size: int = 0  # rows of the window the indicator looked at
    reference_size: int = 0  # rows of the reference (0 where none is used)
    details: dict[str, Any] = field(default_factory=dict)
    message: str = ""  # one line a person reads: the verdict, or why there is none
    params: dict[str, Any] = field(default_factory=dict)  # the validated configuration used
    run_id: str = ""  # the Airflow run (or CLI invocation) that computed it
    computed_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {self.status!r}")
        if self.status != "ok" and self.flagged is not None:
            raise ValueError(f"a result with status {self.status!r} has no verdict: flagged must be None")
        if self.window_end < self.window_start:
            raise ValueError("window_end is before window_start")

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """What makes a result unique: recomputing it replaces it."""
        return (self.model, self.version, self.predictor, self.indicator_id, self.window_end.isoformat())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (datetimes as ISO 8601 strings)."""
        out = asdict(self)
        for name in ("window_start", "window_end", "computed_at"):
            out[name] = getattr(self, name).isoformat()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndicatorResult:
        values = dict(data)
        for name in ("window_start", "window_end", "computed_at"):
            if isinstance(values.get(name), str):
                values[name] = datetime.fromisoformat(values[name])
        return cls(**values)
