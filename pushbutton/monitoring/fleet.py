"""Scheduled monitoring at fleet scale: many models per tick in one process.

Why (measured by ``bench/fleet_monitor.py``; figures in BENCHMARKS.md): an Airflow task is a process
that starts, parses its DAG file and imports what it runs — seconds of CPU before any monitoring,
and alibi-detect's import alone takes seconds more. With one ``<model>__monitor`` run per model per
tick (four tasks each), 500 models on a ``*/30`` schedule would spend more CPU on start-ups than
the machine can give without starving serving. One process per tick pays the start-up and the
imports once, then runs each model in tens of milliseconds; being one process, it uses at most one
core, so on this 2-core machine half of it always stays for serving.

The shape (``FLEET_THRESHOLD``): while the platform has at most that many models, each
``<model>__monitor`` DAG runs on its own schedule (its own run history in the Airflow UI). Above it,
the per-model monitor DAGs lose their time schedule (they stay for on-demand runs: trigger them, with
a window if you like) and the ``pushbutton__monitor_fleet`` DAG ticks every ``FLEET_TICK``: each
tick runs every model whose ``schedules.monitor`` ticked since the fleet's previous tick
(``due_models``; never a tick before the model first appeared), over the same window its own DAG
would have covered, one model after another in batches of ``BATCH``. A model that fails as a whole
is reported and the others go on. Its drift report is written (and logged to MLflow) when one of
its results is flagged or failed, so a fleet does not write 500 reports every half hour.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pushbutton.monitoring.runtime import ModelRun, References, run_model
from pushbutton.monitoring.windows import Window, due_ticks, previous_tick

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pushbutton.monitoring.store.base import MonitoringStore
    from pushbutton.spec.model import ModelSpec

log = logging.getLogger(__name__)

FLEET_DAG_ID = "pushbutton__monitor_fleet"
FLEET_TICK = "*/5 * * * *"
FLEET_THRESHOLD = 20  # models; above it scheduled monitoring runs in the fleet DAG
BATCH = 50


def fleet_shape(model_count: int) -> bool:
    """Whether scheduled monitoring runs in the fleet DAG for a platform of ``model_count`` models."""
    return model_count > FLEET_THRESHOLD


FLEET_SINCE = "fleet.since"  # in the stub root: when the fleet shape first held (the DAG's start_date)


def fleet_since(
    stub_root: Path, shape: bool, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> datetime:
    """When the fleet DAG first appeared: its ``start_date``, so a freshly started stack (or a platform
    that just grew past ``FLEET_THRESHOLD``) never runs a tick from before it (Airflow 3.3's
    ``CronTriggerTimetable`` with ``catchup=False`` otherwise runs the latest past tick; see
    ``dags/pushbutton_factory.py``). Recorded on the first parse that finds the shape, forgotten when
    the platform shrinks below it, so growing again starts afresh."""
    marker = Path(stub_root) / FLEET_SINCE
    stamp = now().astimezone(UTC).replace(microsecond=0)
    if not shape:
        marker.unlink(missing_ok=True)
        return stamp
    try:
        return datetime.fromisoformat(marker.read_text().strip())
    except (OSError, ValueError):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(stamp.isoformat() + "\n")
        return stamp


def stub_count(stub_root: Path) -> int:
    """How many models the platform has: its DAG stubs (one file per model directory; a listdir)."""
    try:
        return sum(1 for p in (Path(stub_root) / "models").iterdir() if p.suffix == ".py")
    except OSError:
        return 0


@dataclass(frozen=True)
class Due:
    spec: ModelSpec
    model_dir: Path
    window: Window
    ticks: int  # the model's ticks in the fleet's interval (more than 1: a cron finer than the fleet's)


def due_models(
    models: Iterable[tuple[ModelSpec, Path, datetime | None]], after: datetime, until: datetime
) -> list[Due]:
    """The models whose monitor schedule ticked in ``(after, until]`` (and not before they first
    appeared), each with the window its own DAG covers: ``[the tick before the first due tick, the
    last due tick)``."""
    found = []
    for spec, model_dir, first_seen in models:
        cron = spec.schedules.monitor
        since = after if first_seen is None else max(after, first_seen - timedelta(microseconds=1))
        ticks = due_ticks(cron, since, until)
        if not ticks:
            continue
        start = previous_tick(cron, ticks[0]) or ticks[0] - (until - after)
        found.append(Due(spec, model_dir, Window(start, ticks[-1]), len(ticks)))
    return found


@dataclass(frozen=True)
class Plan:
    """One model of a fleet run: its spec, directory, window, current route and references."""

    spec: ModelSpec
    model_dir: Path | None
    window: Window
    references: References
    route: Mapping[str, Any] | None = None


@dataclass
class FleetRun:
    """What a fleet run did: one summary per model (not the frames: a tick may hold hundreds)."""

    summaries: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # model -> why its run failed as a whole
    written: int = 0
    purged: int = 0  # raw log records past their model's retention_days
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "models": len(self.summaries) + len(self.failed),
            "written": self.written,
            "purged": self.purged,
            "flagged": {s["model"]: s["flagged"] for s in self.summaries if s["flagged"]},
            "errors": {s["model"]: s["errors"] for s in self.summaries if s["errors"]},
            "reports": {s["model"]: s["report"] for s in self.summaries if s["report"]},
            "failed": self.failed,
            "seconds": round(self.seconds, 2),
        }


def needs_report(run: ModelRun) -> bool:
    return bool(run.flagged or run.errors)


def _purge(store: MonitoringStore, plan: Plan) -> int:
    """The model's raw log past retention (after its results are written): a failure is logged, and
    the model's run stands — the next tick purges the same span."""
    from pushbutton.monitoring.retention import purge_expired
    from pushbutton.monitoring.store.base import StoreUnavailable

    try:
        return purge_expired(store, plan.spec.name, plan.spec.logging.retention_days, plan.window.end).purged
    except StoreUnavailable:
        raise
    except Exception:
        log.exception("purging the request log of %s failed; its indicators are written", plan.spec.name)
        return 0


def run_fleet(
    store: MonitoringStore,
    plans: Sequence[Plan],
    *,
    run_id: str = "",
    report_dir: Path | None = None,
    report_if: Callable[[ModelRun], bool] = needs_report,
    write: bool = True,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    into: FleetRun | None = None,
) -> FleetRun:
    """Run (and write) ``plans`` one after another in this process; a model whose run fails as a whole
    (its table unreadable, a spec the runtime cannot use) is reported and the others go on.
    ``StoreUnavailable`` stops the batch: nothing later could be read or written either."""
    from pushbutton.monitoring.store.base import StoreUnavailable

    started = time.perf_counter()
    fleet = into or FleetRun()
    for plan in plans:
        try:
            run = run_model(store, plan.spec, plan.window, references=plan.references, model_dir=plan.model_dir,
                            route=plan.route, run_id=run_id, now=now, report_dir=report_dir,
                            report_if=report_if)  # fmt: skip
            if write:
                fleet.written += store.write_indicators(run.results)
                fleet.purged += _purge(store, plan)
        except StoreUnavailable:
            raise
        except Exception as exc:
            log.exception("monitoring %s failed as a whole", plan.spec.name)
            fleet.failed[plan.spec.name] = f"{type(exc).__name__}: {exc}"
            continue
        fleet.summaries.append(run.summary())
    fleet.seconds += time.perf_counter() - started
    return fleet
