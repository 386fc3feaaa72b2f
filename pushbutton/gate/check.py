"""One gate check's outcome: which check, pass or fail (or skipped), and the value and threshold."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    value: float | str | None = None
    threshold: str | None = None
    skipped: bool = False  # did not apply to this version (passed stays True; the detail says why)
