"""Monitor windows: which interval of logged traffic a monitor run covers, and when a schedule ticks.

A scheduled run covers its schedule's last interval, ``[previous tick, this tick)``: Airflow's
``CronTriggerTimetable`` gives runs a zero-length data interval, so the start is the cron tick before
the run's. A manual run covers the interval that ends when it runs (its schedule's length, else
``DEFAULT_WINDOW``), or the ``window_start``/``window_end`` it was triggered with. Windows are
half-open and in UTC, as the store reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_WINDOW = timedelta(minutes=30)  # a model without a monitor schedule, run by hand
PRESETS = {"@annually": "@yearly"}  # croniter's alias, unknown to Airflow's preset table


class WindowError(ValueError):
    """A window that cannot be monitored (bad bounds); the message names the field and the fix."""


@dataclass(frozen=True)
class Window:
    """Half-open ``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            if getattr(self, name).tzinfo is None:
                raise WindowError(
                    f"window_{name} {getattr(self, name).isoformat()} has no timezone (fix: add Z)"
                )
        if self.end <= self.start:
            raise WindowError(
                f"window_end {self.end.isoformat()} is not after window_start {self.start.isoformat()} "
                "(fix: swap them, or give a window_end later than window_start)"
            )

    @property
    def previous(self) -> Window:
        return Window(self.start - (self.end - self.start), self.start)

    @property
    def stamp(self) -> str:
        """``20261130T093000Z``: names the window's report file."""
        return self.end.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

    def describe(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def parse_time(value: Any, name: str) -> datetime | None:
    """An ISO 8601 time (``Z`` or an offset; a naive time is UTC), or None for empty values."""
    if value is None or (isinstance(value, str) and not value.strip()) or value == "None":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise WindowError(
                f"{name}: {value!r} is not an ISO 8601 time (fix: e.g. 2026-11-30T09:30:00Z)"
            ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def previous_tick(cron: str | None, before: datetime) -> datetime | None:
    """The latest tick of ``cron`` strictly before ``before`` (None without a usable cron)."""
    if not cron or cron == "@once":
        return None
    from croniter import croniter

    return croniter(PRESETS.get(cron, cron), before.astimezone(UTC)).get_prev(datetime)


def monitor_window(
    cron: str | None,
    *,
    now: datetime,
    data_interval_start: datetime | None = None,
    data_interval_end: datetime | None = None,
    logical_date: datetime | None = None,
    window_start: Any = None,
    window_end: Any = None,
) -> Window:
    """The window a monitor run covers (see the module docstring); explicit bounds win."""
    end = parse_time(window_end, "window_end") or data_interval_end or logical_date or now
    start = parse_time(window_start, "window_start")
    if start is None:
        if data_interval_start is not None and data_interval_start < end:
            start = data_interval_start
        else:
            start = previous_tick(cron, end) or end - DEFAULT_WINDOW
    return Window(start.astimezone(UTC), end.astimezone(UTC))


def due_ticks(cron: str | None, after: datetime, until: datetime) -> list[datetime]:
    """The ticks of ``cron`` in ``(after, until]``."""
    if not cron or cron == "@once":
        return []
    from croniter import croniter

    found, walker = [], croniter(PRESETS.get(cron, cron), after.astimezone(UTC))
    while (tick := walker.get_next(datetime)) <= until:
        found.append(tick)
    return found
