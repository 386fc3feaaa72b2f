"""The indicator runtime on a fake store and fake indicators: failure isolation, empty windows,
missing and on-demand references, which layers are read, targets, windows and fleets."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import yaml

from indicators.base import Indicator, Inputs, Verdict
from indicators.configs import IndicatorConfig
from pushbutton.config import REPO_ROOT
from pushbutton.monitoring.fleet import Plan, due_models, fleet_shape, run_fleet, stub_count
from pushbutton.monitoring.reference import Lookup, Reference, ReferenceStore
from pushbutton.monitoring.runtime import Target, route_targets, run_model
from pushbutton.monitoring.store.base import StoreError, StoreUnavailable
from pushbutton.monitoring.windows import DEFAULT_WINDOW, Window, WindowError, due_ticks, monitor_window
from pushbutton.spec.model import ModelSpec

END = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
WINDOW = Window(END - timedelta(minutes=30), END)
FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


def spec(indicators: list[dict[str, Any]], **changes: Any) -> ModelSpec:
    data = yaml.safe_load((REPO_ROOT / "models" / "iris" / "model.yaml").read_text())
    data["indicators"] = indicators
    data.pop("alerts", None)
    return ModelSpec.model_validate(data | changes)


def rows(predictor: str = "champion", version: str = "1", n: int = 40, shift: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(5.0 + shift, 1.0, n) for name in FEATURES})
    return frame.assign(
        request_id=[f"{predictor}-{i}" for i in range(n)],
        row=0,
        time=pd.Timestamp(WINDOW.start) + pd.Timedelta(seconds=1),
        predictor=predictor,
        version=version,
        model_id="iris",
        latency_ms=5.0,
        status=pd.array([200] * n, dtype="Int64"),
        complete=True,
        prediction=rng.integers(0, 3, n),
    )


class FakeStore:
    """The two reads the runtime makes, recorded; ``fail`` raises for one model."""

    def __init__(
        self, frames: dict[tuple[str, datetime], pd.DataFrame] | None = None, fail: Exception | None = None
    ):
        self.frames = frames or {}
        self.fail = fail
        self.reads: list[tuple[str, datetime, datetime, Any]] = []
        self.label_reads = 0
        self.written: list[Any] = []
        self.purges: list[tuple[str, datetime]] = []

    def rows(self, model, start, end, *, version=None, predictor=None, columns=None):
        if self.fail is not None and model == "broken":
            raise self.fail
        self.reads.append((model, start, end, columns))
        return self.frames.get((model, start), rows(n=0))

    def labels(self, model, start, end, *, version=None, predictor=None):
        self.label_reads += 1
        return pd.DataFrame({"request_id": ["champion-1"], "row": [0], "label": [1]})

    def write_indicators(self, results):
        results = list(results)
        self.written += results
        return len(results)

    def purge(self, model, before):
        self.purges.append((model, before))
        return 2


class Seen(IndicatorConfig):
    pass


class Recording(Indicator):
    """Answers ok with the sizes of what it was given (and keeps the inputs)."""

    type_id = "drift"
    Config = Seen
    needs_reference = False
    seen: ClassVar[list[Inputs]] = []

    def evaluate(self, inputs: Inputs) -> Verdict:
        Recording.seen.append(inputs)
        size = 0 if inputs.reference is None else len(inputs.reference)
        return Verdict("ok", value=float(size), threshold=0.5, flagged=False, sample_size=len(inputs.current))


class Raising(Indicator):
    type_id = "error_rate"
    Config = Seen

    def evaluate(self, inputs: Inputs) -> Verdict:
        return 1 / 0  # type: ignore[return-value]


class Broken(Indicator):
    """An indicator class that breaks the never-raise contract of ``compute``."""

    type_id = "latency"
    Config = Seen

    def compute(self, inputs: Inputs) -> Verdict:
        raise RuntimeError("compute itself blew up")


def no_reference(version: str) -> Lookup:
    return Lookup(None, "missing", "the version's run has no reference/ artifact")


@pytest.fixture(autouse=True)
def _reset() -> None:
    Recording.seen.clear()


def test_a_failing_indicator_fails_only_itself(caplog: pytest.LogCaptureFixture) -> None:
    model = spec([
        {"id": "fine", "type": "drift"},
        {"id": "divides", "type": "error_rate"},
        {"id": "broken", "type": "latency"},
        {"id": "bad_params", "type": "drift", "params": {"p_value": 0.01}},  # valid for drift, not for Seen
    ])  # fmt: skip
    store = FakeStore({("iris", WINDOW.start): rows()})
    registry = {"drift": Recording, "error_rate": Raising, "latency": Broken}
    with caplog.at_level(logging.ERROR, logger="pushbutton.monitoring.runtime"):
        run = run_model(store, model, WINDOW, references=no_reference, registry=registry, run_id="r1")
    by_id = {r.indicator_id: r for r in run.results}
    assert by_id["fine"].status == "ok" and by_id["fine"].sample_size == 40
    for failed in ("divides", "broken", "bad_params"):
        assert by_id[failed].status == "error" and by_id[failed].flagged is None
    assert "ZeroDivisionError" in by_id["divides"].message
    assert "ZeroDivisionError" in by_id["divides"].details["traceback"]
    assert "compute itself blew up" in by_id["broken"].message
    assert "params.p_value" in by_id["bad_params"].message and "fix:" in by_id["bad_params"].message
    assert {(r.model, r.predictor, r.version, r.run_id) for r in run.results} == {
        ("iris", "champion", "1", "r1")
    }
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "divides" in logged and "Traceback" in logged and "1 / 0" in logged
    assert run.summary()["statuses"] == {"ok": 1, "error": 3}


def test_an_empty_window_is_reported_empty_never_no_drift() -> None:
    """A routed version without traffic: every indicator answers ``empty`` (no verdict), with the real
    drift indicator too."""
    model = spec([{"id": "feature_drift", "type": "drift"}, {"id": "errors", "type": "error_rate"}])
    reference = Reference(rows(n=50)[FEATURES], rows(n=50), {"origin": "training"})
    run = run_model(FakeStore(), model, WINDOW, references=lambda v: Lookup(reference, "cache"),
                    route={"backends": {"champion": {"url": "http://x", "version": "3"}}})  # fmt: skip
    assert run.targets == [Target("champion", "3")]
    assert [(r.indicator_id, r.status, r.flagged, r.value) for r in run.results] == [
        ("feature_drift", "empty", None, None),
        ("errors", "empty", None, None),
    ]
    assert all("no traffic" in r.message and "not 'no drift'" in r.message for r in run.results)


def test_nothing_served_and_nothing_routed_computes_nothing() -> None:
    run = run_model(FakeStore(), spec([{"id": "d", "type": "drift"}]), WINDOW, references=no_reference)
    assert (run.targets, run.results) == ([], [])


def test_a_missing_reference_says_why() -> None:
    model = spec([{"id": "feature_drift", "type": "drift"}])
    run = run_model(FakeStore({("iris", WINDOW.start): rows()}), model, WINDOW, references=no_reference)
    (result,) = run.results
    assert result.status == "missing_reference" and result.flagged is None
    assert "the version's run has no reference/ artifact" in result.message
    assert run.summary()["references"] == {"1": "missing"}


def test_a_reference_is_computed_on_demand_once_and_then_cached(tmp_path: Path) -> None:
    """A version without a reference artifact: computed from its training data (the spec's split) and
    answered by its predict function, cached on disk, and used by the indicators."""
    calls: list[tuple[str, str]] = []
    model = spec([{"id": "d", "type": "drift"}, {"id": "c", "type": "class_frequency"}])

    def materialize(name: str, version: str):
        calls.append((name, version))
        return model, tmp_path, lambda frame: [1] * len(frame)

    store = FakeStore({("iris", WINDOW.start): rows()})
    registry = {"drift": Recording, "class_frequency": Recording}
    references = ReferenceStore(tmp_path / "cache", None, materialize)
    run = run_model(store, model, WINDOW, references=lambda v: references.get("iris", v), registry=registry)
    assert calls == [("iris", "1")] and run.references["1"].origin == "computed"
    drift_inputs, frequency_inputs = Recording.seen
    assert list(drift_inputs.reference.columns) == FEATURES and len(drift_inputs.reference) == 105
    assert set(frequency_inputs.reference["prediction"]) == {1} and len(frequency_inputs.reference) == 45
    again = ReferenceStore(tmp_path / "cache", None, materialize).get("iris", "1")
    assert again.origin == "cache" and calls == [("iris", "1")]
    assert again.reference.stats["origin"] == "on demand"


def test_a_reference_that_cannot_be_computed_is_missing_with_the_reason(tmp_path: Path) -> None:
    def materialize(name: str, version: str):
        raise FileNotFoundError("data/train.csv")

    lookup = ReferenceStore(tmp_path, None, materialize).get("iris", "4")
    assert lookup.reference is None and lookup.origin == "missing"
    assert "computing it from the training data failed: FileNotFoundError: data/train.csv" in lookup.why


def test_only_the_layers_an_indicator_needs_are_read() -> None:
    store = FakeStore({("iris", WINDOW.start): rows()})
    run_model(store, spec([{"id": "d", "type": "drift"}]), WINDOW, references=no_reference,
              registry={"drift": Recording})  # fmt: skip
    assert [(r[1], r[3]) for r in store.reads] == [(WINDOW.start, None)] and store.label_reads == 0

    store = FakeStore({("iris", WINDOW.start): rows()})
    model = spec([{"id": "s", "type": "prediction_stability"}, {"id": "a", "type": "label_metric"}])
    run_model(store, model, WINDOW, references=no_reference,
              registry={"prediction_stability": Recording, "label_metric": Recording})  # fmt: skip
    earlier = WINDOW.previous
    assert [(r[1], r[2], r[3]) for r in store.reads] == [
        (WINDOW.start, WINDOW.end, None),
        (earlier.start, earlier.end, ["prediction"]),  # the previous window: answers only
    ]
    assert store.label_reads == 1
    assert list(Recording.seen[1].labels["request_id"]) == ["champion-1"]


def test_targets_are_what_answered_plus_what_is_routed() -> None:
    """A shadow backend is the predictor ``shadow``; a routed version without traffic is a target too;
    skew compares each predictor with the champion (the champion with the other one)."""
    frame = pd.concat([rows("champion", "1"), rows("shadow", "2", seed=1)], ignore_index=True)
    route = {"backends": {"champion": {"version": "1"}, "candidate": {"version": "2"},
                          "next": {"version": "3"}}, "shadows": ["candidate"]}  # fmt: skip
    assert route_targets(route) == [Target("champion", "1"), Target("shadow", "2"), Target("next", "3")]
    model = spec([{"id": "skew", "type": "skew"}])
    run = run_model(FakeStore({("iris", WINDOW.start): frame}), model, WINDOW, references=no_reference,
                    route=route, registry={"skew": Recording})  # fmt: skip
    assert run.targets == [Target("champion", "1"), Target("shadow", "2"), Target("next", "3")]
    others = [set(i.other["predictor"]) for i in Recording.seen]
    assert others == [{"shadow"}, {"champion"}]  # "next" has no rows: empty before evaluate
    assert [r.status for r in run.results] == ["ok", "ok", "empty"]


def test_results_are_json_safe() -> None:
    class NotANumber(Recording):
        def evaluate(self, inputs: Inputs) -> Verdict:
            return Verdict("ok", value=1.0, flagged=False, details={"x": {"p_value": float("nan")},
                                                                     "n": np.int64(3)})  # fmt: skip

    run = run_model(FakeStore({("iris", WINDOW.start): rows()}), spec([{"id": "d", "type": "drift"}]), WINDOW,
                    references=no_reference, registry={"drift": NotANumber})  # fmt: skip
    assert run.results[0].details == {"x": {"p_value": None}, "n": 3}
    assert type(run.results[0].details["n"]) is int


def test_a_scheduled_run_covers_the_interval_before_its_tick() -> None:
    """CronTriggerTimetable gives a zero-length data interval: the window starts at the tick before."""
    tick = datetime(2026, 11, 30, 10, 30, tzinfo=UTC)
    found = monitor_window("*/30 * * * *", now=tick + timedelta(minutes=2), data_interval_start=tick,
                           data_interval_end=tick, logical_date=tick)  # fmt: skip
    assert found == Window(datetime(2026, 11, 30, 10, 0, tzinfo=UTC), tick)
    daily = monitor_window("@daily", now=tick, data_interval_start=tick, data_interval_end=tick)
    assert daily == Window(datetime(2026, 11, 30, tzinfo=UTC), tick)
    manual = monitor_window(None, now=tick)  # no schedule, no data interval: the last DEFAULT_WINDOW
    assert manual == Window(tick - DEFAULT_WINDOW, tick)


def test_explicit_window_bounds_win_and_bad_ones_are_explained() -> None:
    found = monitor_window("*/30 * * * *", now=END, window_start="2026-11-30T08:00:00Z",
                           window_end="2026-11-30T09:00:00+00:00")  # fmt: skip
    assert found == Window(datetime(2026, 11, 30, 8, tzinfo=UTC), datetime(2026, 11, 30, 9, tzinfo=UTC))
    with pytest.raises(WindowError, match=r"window_start: 'yesterday' is not an ISO 8601 time \(fix: e\.g\."):
        monitor_window(None, now=END, window_start="yesterday")
    with pytest.raises(WindowError, match=r"window_end .* is not after window_start .*fix: swap them"):
        monitor_window(None, now=END, window_start="2026-11-30T11:00:00Z", window_end="2026-11-30T10:00:00Z")


def test_due_ticks_of_a_cron_in_an_interval() -> None:
    after = datetime(2026, 11, 30, 9, 50, tzinfo=UTC)
    assert due_ticks("*/30 * * * *", after, after + timedelta(minutes=45)) == [
        datetime(2026, 11, 30, 10, 0, tzinfo=UTC),
        datetime(2026, 11, 30, 10, 30, tzinfo=UTC),
    ]
    assert due_ticks("0 3 * * 1", after, after + timedelta(minutes=45)) == []
    assert due_ticks(None, after, after + timedelta(days=1)) == []


def test_a_fleet_runs_every_model_and_reports_the_one_that_failed() -> None:
    good, broken = spec([{"id": "d", "type": "drift"}]), spec([{"id": "d", "type": "drift"}], name="broken")
    store = FakeStore({("iris", WINDOW.start): rows()}, fail=StoreError("table of 'broken' is corrupt"))
    plans = [Plan(broken, None, WINDOW, no_reference), Plan(good, None, WINDOW, no_reference)]
    fleet = run_fleet(store, plans, run_id="tick")
    assert [s["model"] for s in fleet.summaries] == ["iris"] and fleet.written == 1 == len(store.written)
    assert fleet.failed == {"broken": "StoreError: table of 'broken' is corrupt"}
    # the raw log past retention_days (30 by default) before the window's end goes, after the write
    assert store.purges == [("iris", WINDOW.end - timedelta(days=30))] and fleet.purged == 2
    down = FakeStore(fail=StoreUnavailable("database is locked"))
    with pytest.raises(StoreUnavailable):  # nothing later could be read either: the task retries
        run_fleet(down, [Plan(broken, None, WINDOW, no_reference)])


def test_a_fleet_tick_runs_the_models_whose_schedule_ticked_over_their_own_window() -> None:
    """(after, until] = the fleet's interval; a model's window is its own schedule's interval; a model
    that first appeared after its tick is not run for it; a model without a monitor schedule never."""
    after, until = datetime(2026, 11, 30, 9, 55, tzinfo=UTC), datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    half_hourly, hourly = spec([]), spec([], name="hourly", schedules={"monitor": "0 * * * *"})
    daily_at_3 = spec([], name="nightly", schedules={"monitor": "0 3 * * *"})
    unscheduled = spec([], name="manual", schedules={"monitor": None})
    newcomer = spec([], name="newcomer")
    found = due_models(
        [(half_hourly, Path("iris"), None), (hourly, Path("hourly"), until - timedelta(days=1)),
         (daily_at_3, Path("nightly"), None), (unscheduled, Path("manual"), None),
         (newcomer, Path("newcomer"), until + timedelta(seconds=1))],
        after, until,
    )  # fmt: skip
    assert [(d.spec.name, d.window, d.ticks) for d in found] == [
        ("iris", Window(until - timedelta(minutes=30), until), 1),
        ("hourly", Window(until - timedelta(hours=1), until), 1),
    ]
    minutely = spec([], name="minutely", schedules={"monitor": "* * * * *"})
    (due,) = due_models([(minutely, Path("m"), None)], after, until)
    assert (due.window, due.ticks) == (Window(after, until), 5)  # a finer cron: one window, its 5 ticks


def test_the_fleet_shape_starts_above_the_threshold(tmp_path: Path) -> None:
    from pushbutton.monitoring.fleet import FLEET_THRESHOLD

    stubs = tmp_path / "models"
    stubs.mkdir()
    for i in range(FLEET_THRESHOLD):
        (stubs / f"model-{i}.py").write_text("")
    (stubs / "_names.json").write_text("{}")
    assert stub_count(tmp_path) == FLEET_THRESHOLD and not fleet_shape(stub_count(tmp_path))
    (stubs / "one-more.py").write_text("")
    assert fleet_shape(stub_count(tmp_path))
    assert stub_count(tmp_path / "absent") == 0
