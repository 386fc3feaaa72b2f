"""Alert rules as written under ``alerts:`` in ``model.yaml`` (pydantic, ``extra="forbid"``).

Six types, named after what operators already know from ElastAlert and Alertmanager:

* ``threshold`` — the value is ``above`` and/or ``below`` a bound; with neither, the indicator's own
  verdict (``flagged``) is the breach;
* ``change`` — the value moved ``by`` more than an amount (``relative: true``: a fraction of the
  previous value) since the previous window, ``direction`` up, down or both;
* ``spike`` — the value is ``ratio`` times its rolling mean over ``baseline_windows`` (up), or that
  many times below it (down), like ElastAlert's ``spike_height``;
* ``flatline`` — fewer than ``min_requests`` requests in a window (the indicator's sample size;
  a window without traffic counts as zero);
* ``frequency`` — ``events`` breaches (as ``threshold`` defines them) within the last ``windows``;
* ``missing`` — the indicator failed or could not be computed (``statuses``), or has no result for
  the window at all.

Every rule: ``indicator`` (an id under ``indicators:``) and optionally ``feature`` (its per-feature
figure), ``predictor`` (champion, candidate, shadow or any), ``severity``, ``for`` (consecutive
breaching windows before it fires), ``cooldown`` (how long a firing rule stays quiet before it acts
again: ElastAlert's ``realert``, Alertmanager's ``repeat_interval``) and ``actions`` (``retrain``,
``rollback`` — only on a ``critical`` rule — and ``notify``).
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, model_validator

Severity = Literal["info", "warning", "critical"]
Action = Literal["retrain", "rollback", "notify"]
Direction = Literal["up", "down", "both"]
Predictor = Literal["champion", "candidate", "shadow", "any"]
RULE_TYPES = ("threshold", "change", "spike", "flatline", "frequency", "missing")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """``30s``, ``15m``, ``2h``, ``1d``, ``1w`` (or a ``timedelta``) → ``timedelta``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a duration; write a number and a unit, e.g. 30m, 2h or 1d")
    if isinstance(value, int | float):
        raise ValueError(f"{value!r} has no unit; write e.g. '{value}m' (s, m, h, d or w)")
    found = _DURATION.match(value)
    if not found:
        raise ValueError(
            f"'{value}' does not parse as a duration; write a number and a unit, e.g. 30m, 2h or 1d"
        )
    return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)]
    indicator: Annotated[str, Field(min_length=1)]
    feature: str | None = None
    predictor: Predictor = "any"
    severity: Severity = "warning"
    for_: int = Field(1, ge=1, le=1000, alias="for")
    cooldown: Duration = timedelta(hours=1)
    actions: list[Action] = Field(default_factory=lambda: ["notify"])

    @model_validator(mode="after")
    def _actions(self) -> _Rule:
        if len(set(self.actions)) != len(self.actions):
            raise ValueError(f"actions: {self.actions} lists an action twice; list each once")
        if "rollback" in self.actions and self.severity != "critical":
            raise ValueError(
                "actions: rollback is only taken on a critical rule (it changes what serves without a person); "
                "set severity: critical, or drop rollback"
            )
        if self.cooldown <= timedelta(0):
            raise ValueError("cooldown: must be longer than zero; write e.g. 30m")
        return self

    @property
    def windows_needed(self) -> int:
        """How many of the newest windows the rule reads."""
        return self.for_ + 1


class _Bounded(_Rule):
    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> _Bounded:
        for key in ("above", "below"):
            value = getattr(self, key)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{key}: {value} is not a finite number; write e.g. 0.5")
        if self.above is not None and self.below is not None and self.below > self.above:
            # both bounds: a breach is outside [below, above]; the other way round nothing is inside
            raise ValueError(
                f"below ({self.below:g}) is above 'above' ({self.above:g}), so every value breaches; "
                "swap them, or keep one"
            )
        return self


class ThresholdRule(_Bounded):
    type: Literal["threshold"]


class ChangeRule(_Rule):
    type: Literal["change"]
    by: float = Field(gt=0, description="the smallest move that breaches (a fraction when relative)")
    relative: bool = False
    direction: Direction = "both"


class SpikeRule(_Rule):
    type: Literal["spike"]
    ratio: float = Field(gt=1, description="how many times the rolling mean (or below it) breaches")
    baseline_windows: int = Field(6, ge=2, le=1000)
    direction: Direction = "up"

    @property
    def windows_needed(self) -> int:
        return self.for_ + self.baseline_windows


class FlatlineRule(_Rule):
    type: Literal["flatline"]
    min_requests: int = Field(ge=1)


class FrequencyRule(_Bounded):
    type: Literal["frequency"]
    events: int = Field(ge=1)
    windows: int = Field(ge=1, le=1000)

    @model_validator(mode="after")
    def _fits(self) -> FrequencyRule:
        if self.events > self.windows:
            raise ValueError(
                f"events ({self.events}) is more than windows ({self.windows}), so it can never fire; "
                f"set windows to at least {self.events}"
            )
        return self

    @property
    def windows_needed(self) -> int:
        return self.windows + 1


class MissingRule(_Rule):
    type: Literal["missing"]
    statuses: list[Literal["error", "missing_reference", "insufficient", "empty"]] = Field(
        default_factory=lambda: ["error", "missing_reference"], min_length=1
    )


def _rule_type(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in RULE_TYPES else None


def _unknown_type(value: Any) -> Any:
    if isinstance(value, dict) and value.get("type") not in RULE_TYPES:
        kind = value.get("type")
        if kind is None and ("op" in value or "threshold" in value):
            raise ValueError(
                "type: missing; this is the older 'op/threshold' form — write e.g. 'type: threshold' with "
                "'above: 0.5' (op '>') or 'below: 0.5' (op '<')"
            )
        what = "missing" if kind is None else f"'{kind}' is not a rule type"
        raise ValueError(f"type: {what}; use one of {', '.join(RULE_TYPES)}")
    return value


AlertRule = Annotated[
    Annotated[ThresholdRule, Tag("threshold")]
    | Annotated[ChangeRule, Tag("change")]
    | Annotated[SpikeRule, Tag("spike")]
    | Annotated[FlatlineRule, Tag("flatline")]
    | Annotated[FrequencyRule, Tag("frequency")]
    | Annotated[MissingRule, Tag("missing")],
    Discriminator(_rule_type),
    BeforeValidator(_unknown_type),
]
