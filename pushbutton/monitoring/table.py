"""What a person reads of the indicator results: ``pushbutton indicators`` (a table, flags highlighted,
the latest drift report) and the ``monitoring`` part of ``pushbutton status MODEL`` (the latest flags)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pushbutton.monitoring.results import IndicatorResult

if TYPE_CHECKING:
    from pushbutton.config import Settings
    from pushbutton.monitoring.store.base import MonitoringStore

COLUMNS = ("window end", "predictor", "version", "indicator", "type", "status", "value", "threshold", "verdict",
           "rows", "message")  # fmt: skip
MESSAGE_WIDTH = 70
RED, YELLOW, RESET = "\033[1;31m", "\033[33m", "\033[0m"


def reports_root(settings: Settings) -> Path:
    """Where drift reports are stored: ``<home>/monitoring/reports/<model>/<window end>.html``."""
    return settings.home / "monitoring" / "reports"


def verdict(result: IndicatorResult) -> str:
    if result.flagged:
        return "FLAGGED"
    return "ok" if result.flagged is False else "-"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def rows(results: Sequence[IndicatorResult]) -> list[tuple[str, ...]]:
    out = []
    for r in results:
        message = r.message if len(r.message) <= MESSAGE_WIDTH else r.message[: MESSAGE_WIDTH - 1] + "…"
        out.append((r.window_end.strftime("%Y-%m-%d %H:%M"), r.predictor, r.version, r.indicator_id,
                    r.indicator_type, r.status, _number(r.value), _number(r.threshold), verdict(r),
                    str(r.sample_size), message))  # fmt: skip
    return out


def render_table(results: Sequence[IndicatorResult], *, color: bool = False) -> str:
    """A plain-text table, newest window first; a flagged row is marked ``FLAGGED`` (red with
    ``color``), a result without a verdict (``empty``, ``error`` …) shows its status (yellow)."""
    table = rows(results)
    widths = [max(len(COLUMNS[i]), *(len(row[i]) for row in table)) for i in range(len(COLUMNS))]
    lines = ["  ".join(name.upper().ljust(widths[i]) for i, name in enumerate(COLUMNS)).rstrip()]
    for result, row in zip(results, table, strict=True):
        text = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        if color and result.flagged:
            text = f"{RED}{text}{RESET}"
        elif color and result.status != "ok":
            text = f"{YELLOW}{text}{RESET}"
        lines.append(text)
    return "\n".join(lines)


def latest_report(settings: Settings, model: str) -> Path | None:
    """The newest drift report of ``model`` (file names are window ends: they sort by time)."""
    reports = sorted((reports_root(settings) / model).glob("*.html"))
    return reports[-1] if reports else None


def latest_flags(store: MonitoringStore, settings: Settings, model: str) -> dict[str, Any]:
    """For ``pushbutton status MODEL``: the latest result of each indicator, version and predictor —
    how many, which are flagged, which have no verdict and why — and the latest drift report."""
    results = store.indicators(model, last=1)
    report = latest_report(settings, model)

    def name(r: IndicatorResult) -> str:
        return f"{r.indicator_id} ({r.predictor} v{r.version}, window to {r.window_end.isoformat()}): {r.message}"

    return {
        "indicators": len(results),
        "flagged": [name(r) for r in results if r.flagged],
        "no_verdict": [f"{name(r)} [{r.status}]" for r in results if r.status != "ok"],
        "last_window_end": max((r.window_end for r in results), default=None),
        "report": str(report) if report else None,
    }
