"""Latency gate decisions (pure): the ``gate.latency`` ceilings and the comparison with the champion.

The figures come from sequential requests against one version's own microservice
(``pushbutton.serving.checks.measure_latency``): single-row requests, and batch requests of
``gate.latency.batch_rows`` holdout rows. Sequential requests measure what one request costs, not
queueing; a microservice answers one request at a time, so that cost bounds its throughput too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pushbutton.gate.check import Check
from pushbutton.spec.model import ModelSpec

KINDS = ("single", "batch")
CEILINGS = {"single": ("p50_ms", "p99_ms"), "batch": ("batch_p50_ms", "batch_p99_ms")}
COMPARISON = "latency vs champion"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), interpolating linearly between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values to take a percentile of")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Latency:
    """Milliseconds per request against one microservice, requests sent one after another.

    A request that timed out counts as the timeout (its percentiles are then lower bounds) and in
    ``*_timeouts``.
    """

    single_ms: tuple[float, ...]
    batch_ms: tuple[float, ...]
    batch_rows: int
    single_timeouts: int = 0
    batch_timeouts: int = 0
    timeout_seconds: float | None = None

    def figures(self, kind: str) -> dict[str, Any]:
        """``requests``, ``rows`` per request, ``p50_ms``/``p99_ms`` (0.01 ms) and ``timeouts``."""
        samples = self.single_ms if kind == "single" else self.batch_ms
        return {
            "requests": len(samples),
            "rows": 1 if kind == "single" else self.batch_rows,
            "p50_ms": round(percentile(samples, 50), 2) if samples else None,
            "p99_ms": round(percentile(samples, 99), 2) if samples else None,
            "timeouts": self.single_timeouts if kind == "single" else self.batch_timeouts,
        }

    def summary(self) -> dict[str, Any]:
        return {kind: self.figures(kind) for kind in KINDS} | {"timeout_seconds": self.timeout_seconds}


def _label(kind: str, rows: int) -> str:
    return "single-row" if kind == "single" else f"batch ({rows} rows)"


def _requests(count: int) -> str:
    return f"{count} request{'' if count == 1 else 's'}"


def _name(kind: str, stat: str) -> str:
    return f"latency {'single-row' if kind == 'single' else 'batch'} {stat}"


def latency_summary(spec: ModelSpec, latency: Latency) -> dict[str, Any]:
    """What the report keeps of the candidate's latency: its figures and the ceilings it was held to."""
    return latency.summary() | {"ceilings": spec.gate.latency.model_dump()}


def latency_checks(spec: ModelSpec, latency: Latency) -> list[Check]:
    """One check per configured ceiling (single-row p99 and batch p99 always; p50s when set)."""
    config = spec.gate.latency
    checks = []
    for kind in KINDS:
        figures = latency.figures(kind)
        label, count = _label(kind, figures["rows"]), figures["requests"]
        tail_key = CEILINGS[kind][1]
        if figures["timeouts"]:
            seconds = latency.timeout_seconds or spec.serving.timeout_seconds
            checks.append(
                Check(
                    _name(kind, "p99"),
                    False,
                    f"{figures['timeouts']} of {count} {label} requests timed out after {seconds:g} s "
                    "(serving.timeout_seconds): make predict() faster, or raise serving.timeout_seconds "
                    f"and gate.latency.{tail_key} in model.yaml",
                    figures["p99_ms"],
                    f"<= {getattr(config, tail_key):g} ms",
                )
            )
            continue
        for key in CEILINGS[kind]:
            ceiling = getattr(config, key)
            if ceiling is None:
                continue
            stat = key.removeprefix("batch_").removesuffix("_ms")
            value = figures[f"{stat}_ms"]
            name = _name(kind, stat)
            if value is None:
                checks.append(Check(name, False, f"no {label} request was measured; see the test step's log"))
                continue
            measured = f"{label} {stat} {value:.1f} ms"
            if value <= ceiling:
                detail = f"{measured} <= max {ceiling:g} ms ({_requests(count)})"
            else:
                faster = " on whole batches (vectorise per-row work)" if kind == "batch" else ""
                detail = (
                    f"{measured} > max {ceiling:g} ms (gate.latency.{key}; {_requests(count)}): make "
                    f"predict() faster{faster}, or raise gate.latency.{key} in model.yaml"
                )
            checks.append(Check(name, value <= ceiling, detail, value, f"<= {ceiling:g} ms"))
    return checks


def champion_latency_check(
    spec: ModelSpec, candidate: Latency, champion: Latency, champion_version: str
) -> Check:
    """The candidate's medians (single-row and batch) may be at most ``champion_slowdown`` times the
    champion's, measured the same way; a difference within ``champion_margin_ms`` never fails
    (a few milliseconds on a fast model are noise, not a regression)."""
    config = spec.gate.latency
    factor, margin = config.champion_slowdown, config.champion_margin_ms
    if factor is None:
        return Check(
            COMPARISON, True, "skipped: gate.latency.champion_slowdown is null (comparison off)", skipped=True
        )
    compared, slower = [], []
    for kind in KINDS:
        mine, theirs = candidate.figures(kind), champion.figures(kind)
        if mine["p50_ms"] is None or theirs["p50_ms"] is None:
            continue
        new, old = mine["p50_ms"], theirs["p50_ms"]
        times = f"{new / old:.1f}x" if old > 0 else "n/a"
        text = f"{_label(kind, mine['rows'])} p50 {new:.1f} ms vs {old:.1f} ms ({times})"
        compared.append(text)
        if new > factor * old and new - old > margin:
            slower.append(text)
    allowed = f"allowed: up to {factor:g}x the champion's median, or within {margin:g} ms of it"
    if not compared:
        return Check(
            COMPARISON, True, f"skipped: champion v{champion_version} was not measured", skipped=True
        )
    if slower:
        detail = (
            f"slower than champion v{champion_version}: {'; '.join(slower)} ({allowed}): make predict() "
            "faster, or if the slowdown is intended raise gate.latency.champion_slowdown in model.yaml "
            "(null turns the comparison off)"
        )
    else:
        detail = f"candidate vs champion v{champion_version}: {'; '.join(compared)} ({allowed})"
    return Check(COMPARISON, not slower, detail, threshold=f"<= {factor:g}x or +{margin:g} ms")


def latency_markdown(
    latency: dict[str, Any], champion: dict[str, Any] | None, champion_version: str | None
) -> list[str]:
    """Report lines: p50/p99 and request counts of the candidate and (where measured) the champion."""
    ceilings = latency.get("ceilings", {})
    head = f"champion v{champion_version}" if champion and champion_version else "champion"
    lines = ["", f"| latency | candidate | {head} | ceiling |", "|---|---|---|---|"]

    def cell(figures: dict[str, Any] | None, key: str) -> str:
        value = (figures or {}).get(key)
        return "" if value is None else f"{value:.1f} ms" if key.endswith("_ms") else str(value)

    for kind in KINDS:
        mine, theirs = latency.get(kind, {}), (champion or {}).get(kind)
        label = _label(kind, mine.get("rows", 0))
        for key, stat in zip(CEILINGS[kind], ("p50_ms", "p99_ms"), strict=True):
            ceiling = ceilings.get(key)
            limit = "" if ceiling is None else f"{ceiling:g} ms"
            lines.append(f"| {label} {stat[:3]} | {cell(mine, stat)} | {cell(theirs, stat)} | {limit} |")
        lines.append(f"| {label} requests | {cell(mine, 'requests')} | {cell(theirs, 'requests')} | |")
        if mine.get("timeouts"):
            lines.append(f"| {label} timed out | {mine['timeouts']} | | {latency.get('timeout_seconds')} s |")
    return lines
