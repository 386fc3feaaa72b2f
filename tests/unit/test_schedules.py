"""When a model's scheduled DAGs first run, under an injected clock, through the scheduler's own path.

The factory builds the DAGs as a stub does (with the stub's ``first_seen``); each DAG is serialized as
the DAG processor stores it, and its first run is asked of the deserialized DAG exactly as the
scheduler asks it (``next_dagrun_info`` with the DAG's time restriction). Airflow 3.3's
``CronTriggerTimetable`` reads the clock through ``airflow.timetables.trigger.utcnow``; the tests set
it. A past tick must never run: the first run is the first tick at or after the model appeared.
"""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pushbutton.config import REPO_ROOT, settings
from pushbutton.dagstubs import first_seen_of, sync_stubs

MONDAY = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday; iris retrains "0 3 * * 1" (Mondays 03:00 UTC)


def at(day: datetime, clock: str) -> datetime:
    hours, minutes, *seconds = (int(part) for part in clock.split(":"))
    return day + timedelta(hours=hours, minutes=minutes, seconds=seconds[0] if seconds else 0)


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``build(cron, first_seen)`` -> the model's retrain DAG, built by the real factory."""
    models = tmp_path / "models"
    shutil.copytree(
        REPO_ROOT / "models" / "iris", models / "iris", ignore=shutil.ignore_patterns("__pycache__")
    )
    monkeypatch.setenv("PUSHBUTTON_MODELS_DIR", str(models))
    monkeypatch.setenv("PUSHBUTTON_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PUSHBUTTON_SCHEDULES", "on")
    monkeypatch.syspath_prepend(str(REPO_ROOT / "dags"))
    settings.cache_clear()
    import pushbutton_factory

    spec_file = models / "iris" / "model.yaml"
    original = spec_file.read_text()

    def build(cron: str | None, first_seen: datetime | None, kind: str = "retrain"):
        line = f'retrain: "{cron}"' if cron is not None else "retrain: null"
        spec_file.write_text(original.replace('retrain: "0 3 * * 1"', line))
        namespace: dict = {}
        seen = first_seen.isoformat() if first_seen else None
        dags = pushbutton_factory.build_model_dags("iris", namespace, first_seen=seen)
        return next(d for d in dags if d.dag_id == f"iris__{kind}")

    yield build
    settings.cache_clear()
    sys.modules.pop("pushbutton_factory", None)


def first_run(dag, now: datetime, monkeypatch: pytest.MonkeyPatch, last: datetime | None = None):
    """When the scheduler would run ``dag`` next at ``now`` (None: never), as it computes it."""
    from airflow.serialization.serialized_objects import DagSerialization, LazyDeserializedDAG
    from airflow.timetables.base import DagRunInfo

    monkeypatch.setattr("airflow.timetables.trigger.utcnow", lambda: now)
    serialized = LazyDeserializedDAG(data=DagSerialization.to_dict(dag))
    previous = DagRunInfo.interval(last, last) if last else None
    info = serialized.next_dagrun_info(last_automated_run_info=previous)
    return None if info is None else info.run_after


@pytest.mark.parametrize(
    ("first_seen", "now", "expected"),
    [
        # the demo's failure: stack started Monday 09:35, 6.5 h after the 03:00 tick (old code: ran it)
        (at(MONDAY, "09:35"), at(MONDAY, "09:35:05"), at(MONDAY + timedelta(days=7), "03:00")),
        # just after the weekly tick
        (at(MONDAY, "03:00:01"), at(MONDAY, "03:00:02"), at(MONDAY + timedelta(days=7), "03:00")),
        # on the day of the tick, before it: that day's tick is the first run, once it is due
        (at(MONDAY, "02:59"), at(MONDAY, "03:00:00"), at(MONDAY, "03:00")),
        (at(MONDAY, "02:59"), at(MONDAY, "03:07"), at(MONDAY, "03:00")),
        # the model appeared the day before: the next Monday's tick
        (at(MONDAY - timedelta(days=1), "12:00"), at(MONDAY, "03:00:01"), at(MONDAY, "03:00")),
    ],
    ids=["hours-after-tick", "just-after-tick", "day-of-tick-due", "day-of-tick-late", "day-before"],
)
def test_weekly_retrain_never_fires_a_tick_from_before_the_model(
    factory, monkeypatch, first_seen, now, expected
) -> None:
    assert first_run(factory("0 3 * * 1", first_seen), now, monkeypatch) == expected


def test_hourly_schedule_just_after_a_tick_waits_for_the_next(factory, monkeypatch) -> None:
    for cron in ("0 * * * *", "@hourly"):
        dag = factory(cron, at(MONDAY, "10:00:30"))
        assert first_run(dag, at(MONDAY, "10:01"), monkeypatch) == at(MONDAY, "11:00"), cron


def test_a_tick_after_the_model_appeared_runs_across_midnight(factory, monkeypatch) -> None:
    """The monitor's */30 seen at 23:45 on Sunday: Monday 00:00 is after it, so it is due at 00:10."""
    dag = factory(None, at(MONDAY - timedelta(days=1), "23:45"), kind="monitor")
    assert first_run(dag, at(MONDAY, "00:10"), monkeypatch) == at(MONDAY, "00:00")
    daily = factory("@daily", at(MONDAY - timedelta(days=1), "23:59:59"))
    assert first_run(daily, at(MONDAY - timedelta(days=1), "23:59:59"), monkeypatch) == at(MONDAY, "00:00")


def test_every_preset_starts_at_its_next_tick(factory, monkeypatch) -> None:
    seen = at(MONDAY, "09:35")
    expected = {
        "@hourly": at(MONDAY, "10:00"),
        "@daily": at(MONDAY + timedelta(days=1), "00:00"),
        "@weekly": at(MONDAY + timedelta(days=6), "00:00"),  # Sundays 00:00
        "@monthly": datetime(2026, 12, 1, tzinfo=UTC),
        "@yearly": datetime(2027, 1, 1, tzinfo=UTC),
        "@annually": datetime(2027, 1, 1, tzinfo=UTC),
    }
    for preset, when in expected.items():
        assert first_run(factory(preset, seen), seen, monkeypatch) == when, preset


def test_once_runs_once_when_the_model_appears_and_never_again(factory, monkeypatch) -> None:
    seen = at(MONDAY, "09:35")
    dag = factory("@once", seen)
    assert first_run(dag, at(MONDAY, "09:36"), monkeypatch) == seen
    assert first_run(dag, at(MONDAY, "09:40"), monkeypatch, last=seen) is None


def test_after_a_run_the_next_tick_follows(factory, monkeypatch) -> None:
    dag = factory("0 3 * * 1", at(MONDAY, "02:00"))
    done = at(MONDAY, "03:00")
    assert first_run(dag, at(MONDAY, "03:05"), monkeypatch, last=done) == done + timedelta(days=7)


def test_no_schedule_and_schedules_off_never_run(factory, monkeypatch) -> None:
    assert first_run(factory(None, at(MONDAY, "09:35")), at(MONDAY, "10:00"), monkeypatch) is None
    monkeypatch.setenv("PUSHBUTTON_SCHEDULES", "off")
    settings.cache_clear()
    for kind in ("retrain", "monitor"):
        dag = factory("0 3 * * 1", at(MONDAY, "02:00"), kind=kind)
        assert first_run(dag, at(MONDAY, "03:05"), monkeypatch) is None, kind


def test_a_stub_keeps_the_time_its_model_first_appeared(tmp_path: Path) -> None:
    """first_seen is stamped when a model directory gets its stub, and survives later syncs (also
    when the spec changes, which rewrites the stub so Airflow re-parses it)."""
    models, stubs = tmp_path / "models", tmp_path / "home" / "dags"
    shutil.copytree(
        REPO_ROOT / "models" / "iris", models / "iris", ignore=shutil.ignore_patterns("__pycache__")
    )
    sync_stubs(models, stubs, now=lambda: MONDAY + timedelta(hours=9, minutes=35, seconds=12.5))
    stub = stubs / "models" / "iris.py"
    assert first_seen_of(stub) == "2026-11-30T09:35:12+00:00"
    spec = models / "iris" / "model.yaml"
    spec.write_text(spec.read_text().replace("C: 1.0", "C: 2.0"))
    assert sync_stubs(models, stubs, now=lambda: at(MONDAY, "12:00")) == [stub]  # rewritten: spec changed
    assert first_seen_of(stub) == "2026-11-30T09:35:12+00:00"
    assert sync_stubs(models, stubs, now=lambda: at(MONDAY, "12:00")) == []  # unchanged: not touched


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``build(now)`` -> the ``pushbutton__monitor_fleet`` DAG as the DAG processor parses it at ``now``
    (its file imported afresh) on a platform of ``FLEET_THRESHOLD + 1`` models."""
    import importlib

    from pushbutton.monitoring import fleet as fleet_module

    home = tmp_path / "home"
    monkeypatch.setenv("PUSHBUTTON_HOME", str(home))
    monkeypatch.setenv("PUSHBUTTON_SCHEDULES", "on")
    monkeypatch.syspath_prepend(str(REPO_ROOT / "dags"))
    settings.cache_clear()
    stubs = settings().stub_root / "models"
    stubs.mkdir(parents=True)
    for n in range(fleet_module.FLEET_THRESHOLD + 1):
        (stubs / f"m{n}.py").write_text("")

    real = fleet_module.fleet_since

    def build(now: datetime):
        monkeypatch.setattr(fleet_module, "fleet_since", _clocked(real, now))
        sys.modules.pop("pushbutton_monitor_fleet", None)
        return importlib.import_module("pushbutton_monitor_fleet").fleet_dag

    yield build
    settings.cache_clear()
    sys.modules.pop("pushbutton_monitor_fleet", None)


def _clocked(function, now: datetime):
    return lambda stub_root, shape: function(stub_root, shape, now=lambda: now)


def test_a_freshly_started_fleet_never_runs_the_tick_before_it(fleet, monkeypatch) -> None:
    """The fleet DAG ticks */5: a stack started at 09:35:10 (old code: start_date 2024, so the 09:35
    tick ran at once) first runs at 09:40; parsed again later, it keeps the time it first appeared."""
    dag = fleet(at(MONDAY, "09:35:10"))
    assert first_run(dag, at(MONDAY, "09:35:12"), monkeypatch) == at(MONDAY, "09:40")
    again = fleet(at(MONDAY, "09:52"))  # a later parse: still started at 09:35:10; latest tick due
    assert again.start_date == at(MONDAY, "09:35:10")
    assert first_run(again, at(MONDAY, "09:52"), monkeypatch) == at(MONDAY, "09:50")


def test_the_fleet_appearing_just_before_midnight_first_runs_at_midnight(fleet, monkeypatch) -> None:
    dag = fleet(at(MONDAY, "23:59:59"))
    assert first_run(dag, at(MONDAY, "23:59:59"), monkeypatch) == at(MONDAY + timedelta(days=1), "00:00")


def test_the_fleet_start_is_forgotten_when_the_platform_shrinks(tmp_path: Path) -> None:
    from pushbutton.monitoring.fleet import FLEET_SINCE, fleet_since

    first, later = at(MONDAY, "09:36"), at(MONDAY, "12:00")
    assert fleet_since(tmp_path, True, now=lambda: first) == first
    assert fleet_since(tmp_path, True, now=lambda: later) == first  # recorded once
    fleet_since(tmp_path, False, now=lambda: later)
    assert not (tmp_path / FLEET_SINCE).exists()
    assert fleet_since(tmp_path, True, now=lambda: later) == later  # grew again: starts afresh
