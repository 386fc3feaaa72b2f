"""The indicator runtime: for one model, each serving version and predictor,
read the window, run every indicator the spec declares, and answer one ``IndicatorResult`` each.

What one model's run does (``run_model``):

1. **targets** — every (predictor, version) that answered in the window (the request log), plus every
   one the gateway routes to now (``route``: the route's config; a shadow backend is the predictor
   ``shadow``). A routed version without traffic still gets results: status ``empty``, never "no drift".
2. **layers** — the window's rows are read once for all targets (``MonitoringStore.rows``); the
   previous window (same length, just before) only when an indicator compares with it
   (``prediction_stability``, ``custom``), the labels only when one reads them (``label_metric``,
   ``custom``); the version's training reference from ``references`` (``reference.ReferenceStore``:
   cached, from MLflow, or computed on demand). The other predictor's rows (``skew``): the champion's
   for a candidate or shadow, the first other predictor's for the champion.
3. **indicators** — each declared ``indicators:`` entry through ``indicators.registry.REGISTRY``; a
   failing one (bad params, an exception, a custom function raising) becomes status ``error`` with its
   traceback in the log and in ``details.traceback``, and the others still run.
4. **aggregates** — ``aggregate.window_aggregates`` of the same frame (no second read), for the report.

Writing is the caller's (the ``<model>__monitor`` DAG's write task, the fleet task, tests): results are
idempotent by ``IndicatorResult.key``, so a re-run of a window replaces its results.

Windows: ``windows.monitor_window``. The drift report: ``report``. Many models in one process (the
fleet shape): ``fleet``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pushbutton.monitoring.results import IndicatorResult
from pushbutton.monitoring.windows import Window

if TYPE_CHECKING:
    import pandas as pd

    from indicators.base import Indicator
    from pushbutton.monitoring.aggregate import WindowAggregates
    from pushbutton.monitoring.reference import Lookup
    from pushbutton.monitoring.store.base import MonitoringStore
    from pushbutton.spec.model import ModelSpec

log = logging.getLogger(__name__)

ROLE_ORDER = ("champion", "candidate", "shadow")
NEEDS_PREVIOUS = frozenset({"prediction_stability", "custom"})
NEEDS_LABELS = frozenset({"label_metric", "custom"})
NEEDS_OTHER = frozenset({"skew", "custom"})
NEEDS_REFERENCE = frozenset({"drift", "class_frequency", "prediction_stability", "custom"})


# --- what is monitored ---------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Target:
    predictor: str
    version: str

    def describe(self) -> str:
        return f"{self.predictor} v{self.version}"


def route_targets(route: Mapping[str, Any] | None) -> list[Target]:
    """The (predictor, version) pairs a gateway route config serves (shadow backends as ``shadow``)."""
    if not route:
        return []
    shadows = set(route.get("shadows") or ())
    found = []
    for role, backend in (route.get("backends") or {}).items():
        version = str((backend or {}).get("version", ""))
        if version:
            found.append(Target("shadow" if role in shadows else str(role), version))
    return found


def order_targets(targets: Iterable[Target]) -> list[Target]:
    def rank(t: Target) -> tuple[int, str, int, str]:
        role = ROLE_ORDER.index(t.predictor) if t.predictor in ROLE_ORDER else len(ROLE_ORDER)
        number = int(t.version) if t.version.isdigit() else -1
        return role, t.predictor, -number, t.version

    return sorted(set(targets), key=rank)


@dataclass(frozen=True)
class Declared:
    id: str
    type: str
    params: Mapping[str, Any]


def declared(spec: ModelSpec) -> list[Declared]:
    return [Declared(i.id, i.type, dict(i.params)) for i in spec.indicators]


# --- one model -----------------------------------------------------------------------------------


@dataclass
class ModelRun:
    """What one model's run computed: results (not yet written), the frames' sizes, the report."""

    model: str
    window: Window
    targets: list[Target]
    results: list[IndicatorResult]
    aggregates: WindowAggregates | None = None
    references: dict[str, Lookup] = field(default_factory=dict)  # version -> how its reference was found
    report: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    rows: int = 0

    @property
    def errors(self) -> list[IndicatorResult]:
        return [r for r in self.results if r.status == "error"]

    @property
    def flagged(self) -> list[IndicatorResult]:
        return [r for r in self.results if r.flagged]

    def summary(self) -> dict[str, Any]:
        """JSON-ready: counts by status, the flags, the errors and the report (the DAG's return value)."""
        statuses: dict[str, int] = {}
        for result in self.results:
            statuses[result.status] = statuses.get(result.status, 0) + 1
        return {
            "model": self.model,
            "window_start": self.window.start.isoformat(),
            "window_end": self.window.end.isoformat(),
            "rows": self.rows,
            "targets": [t.describe() for t in self.targets],
            "versions": sorted({t.version for t in self.targets}),
            "series": sorted({(t.version, t.predictor) for t in self.targets}),
            "results": len(self.results),
            "statuses": statuses,
            "flagged": [f"{r.indicator_id} ({r.predictor} v{r.version}): {r.message}" for r in self.flagged],
            "errors": [f"{r.indicator_id} ({r.predictor} v{r.version}): {r.message}" for r in self.errors],
            "references": {v: lookup.origin for v, lookup in self.references.items()},
            "report": str(self.report) if self.report else None,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


References = Callable[[str], "Lookup"]  # version -> its reference lookup


def run_model(
    store: MonitoringStore,
    spec: ModelSpec,
    window: Window,
    *,
    references: References,
    model_dir: Path | None = None,
    route: Mapping[str, Any] | None = None,
    run_id: str = "",
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    registry: Mapping[str, type[Indicator]] | None = None,
    report_dir: Path | None = None,
    report_if: Callable[[ModelRun], bool] | None = None,
) -> ModelRun:
    """Compute every declared indicator of ``spec`` for each target in ``window`` (module docstring);
    with ``report_dir``, also write the drift report there (only when ``report_if(run)``, if given)."""
    from indicators.base import Inputs
    from pushbutton.monitoring.aggregate import window_aggregates

    entries = declared(spec)
    types = {e.type for e in entries}
    features = _features(spec)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    frame = store.rows(spec.name, window.start, window.end)
    previous = _previous(store, spec.name, window, types)
    labels = store.labels(spec.name, window.start, window.end) if types & NEEDS_LABELS else None
    seconds["read"] = time.perf_counter() - clock

    clock = time.perf_counter()
    groups = _split(frame)
    targets = order_targets([*groups, *route_targets(route)])
    aggregates = window_aggregates(frame, list(features), task=spec.task)
    seconds["aggregate"] = time.perf_counter() - clock

    clock = time.perf_counter()
    lookups: dict[str, Lookup] = {}
    if types & NEEDS_REFERENCE:
        for version in dict.fromkeys(t.version for t in targets):
            lookups[version] = references(version)
    seconds["reference"] = time.perf_counter() - clock

    clock = time.perf_counter()
    instances = {e.id: _instance(e, registry) for e in entries}
    empty = frame.iloc[0:0]
    results: list[IndicatorResult] = []
    for target in targets:
        current = groups.get(target, empty)
        lookup = lookups.get(target.version)
        reference = lookup.reference if lookup else None
        for entry in entries:
            indicator = instances[entry.id]
            inputs = Inputs(
                current=current,
                reference=reference.frame_for(entry.type) if reference is not None else None,
                previous=_of(previous, target) if previous is not None else None,
                labels=labels,
                other=_other(groups, target) if entry.type in NEEDS_OTHER else None,
                features=features,
                task=spec.task,
                window_start=window.start,
                window_end=window.end,
                model_dir=model_dir,
            )
            results.append(
                _result(entry, indicator, inputs, spec.name, target, window, run_id, now(), lookup)
            )
    seconds["indicators"] = time.perf_counter() - clock
    run = ModelRun(spec.name, window, targets, results, aggregates, lookups, seconds=seconds, rows=len(frame))
    if report_dir is not None and (report_if is None or report_if(run)):
        clock = time.perf_counter()
        from pushbutton.monitoring.report import write_report

        run.report = write_report(run, spec, frame, report_dir, now())
        seconds["report"] = time.perf_counter() - clock
    for result in run.errors:
        log.error("%s: indicator %s (%s) on %s v%s failed: %s\n%s", spec.name, result.indicator_id,
                  result.indicator_type, result.predictor, result.version, result.message,
                  result.details.get("traceback", ""))  # fmt: skip
    return run


def _features(spec: ModelSpec) -> dict[str, str]:
    excluded = set(spec.logging.exclude)
    return {f.name: f.type for f in spec.schema_.inputs if f.name not in excluded}


def _previous(store: MonitoringStore, model: str, window: Window, types: set[str]) -> pd.DataFrame | None:
    if not types & NEEDS_PREVIOUS:
        return None
    earlier = window.previous
    # prediction_stability reads only the answers: skip the feature columns unless a custom one may need them
    columns = None if "custom" in types else ["prediction"]
    return store.rows(model, earlier.start, earlier.end, columns=columns)


def _split(frame: pd.DataFrame) -> dict[Target, pd.DataFrame]:
    if frame.empty:
        return {}
    return {
        Target(str(predictor), str(version)): part
        for (predictor, version), part in frame.groupby(["predictor", "version"], sort=False)
    }


def _of(frame: pd.DataFrame, target: Target) -> pd.DataFrame:
    if frame.empty:
        return frame
    return frame[(frame["predictor"] == target.predictor) & (frame["version"] == target.version)]


def _other(groups: Mapping[Target, pd.DataFrame], target: Target) -> pd.DataFrame | None:
    """The rows ``skew`` compares with: the champion's, or (for the champion) another predictor's."""
    others = [t for t in order_targets(groups) if t.predictor != target.predictor]
    if not others:
        return None
    champion = [t for t in others if t.predictor == "champion"]
    return groups[(champion or others)[0]]


def _instance(entry: Declared, registry: Mapping[str, type[Indicator]] | None) -> Indicator | Exception:
    from indicators.registry import REGISTRY

    try:
        return (registry or REGISTRY)[entry.type](entry.params)
    except KeyError:
        return LookupError(
            f"'{entry.type}' is not an indicator type of this platform (fix: pushbutton validate)"
        )
    except Exception as exc:  # bad params: IndicatorConfigError with the fix
        return exc


def _result(
    entry: Declared,
    indicator: Indicator | Exception,
    inputs: Any,
    model: str,
    target: Target,
    window: Window,
    run_id: str,
    computed_at: datetime,
    lookup: Lookup | None,
) -> IndicatorResult:
    from indicators.base import Verdict

    if isinstance(indicator, Exception):
        verdict = Verdict.error(indicator, f"{entry.type} indicator '{entry.id}'", len(inputs.current))
        params = dict(entry.params)
    else:
        try:  # compute() never raises by contract; a broken indicator class must not stop the others
            verdict = indicator.compute(inputs)
        except Exception as exc:
            verdict = Verdict.error(exc, indicator.name, len(inputs.current))
        params = indicator.params
    if verdict.status == "missing_reference" and lookup is not None and lookup.why:
        verdict = replace(verdict, message=f"{verdict.message}: {lookup.why}")
    result = verdict.to_result(indicator_id=entry.id, indicator_type=entry.type, model=model,
                               version=target.version, predictor=target.predictor, window_start=window.start,
                               window_end=window.end, params=params, run_id=run_id,
                               computed_at=computed_at)  # fmt: skip
    return replace(result, value=json_safe(result.value), threshold=json_safe(result.threshold),
                   details=json_safe(result.details))  # fmt: skip


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf as None and numpy scalars as Python: valid JSON for XCom and every store."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (str, bytes)):
        try:
            value = item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value
