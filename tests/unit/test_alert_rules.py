"""Alert rules over indicator series with known firing points: each type, ``for``, cooldown, resolution.

``replay`` plays the monitor DAG window by window: at each window it evaluates the rule on the series
so far (newest first, as the store answers) with the series' last recorded event, and records what the
rule decided — so the tests see exactly where a rule fires and resolves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from pushbutton.alerting.evaluate import breaches, evaluate
from pushbutton.alerting.events import AlertEvent
from pushbutton.alerting.rules import AlertRule, parse_duration
from pushbutton.monitoring.results import IndicatorResult

T0 = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)  # windows cross midnight
STEP = timedelta(minutes=30)
RULE = TypeAdapter(AlertRule)


def rule(**fields):
    return RULE.validate_python({"name": "r", "indicator": "x", **fields})


def result(k: int, value: float | None, *, status: str = "ok", n: int = 100, flagged=None, details=None):
    return IndicatorResult(
        indicator_id="x", indicator_type="drift", model="m", version="1", predictor="champion",
        window_start=T0 + (k - 1) * STEP, window_end=T0 + k * STEP, status=status,
        value=value if status == "ok" else None, flagged=flagged if status == "ok" else None,
        sample_size=n, details=details or {},
    )  # fmt: skip


def replay(r, series: list[IndicatorResult], windows: list[datetime] | None = None) -> list[tuple[int, str]]:
    """(window index, firing|resolved) for every event the rule records over the series."""
    recorded: list[AlertEvent] = []
    out = []
    for k, end in enumerate(windows or [s.window_end for s in series]):
        seen = sorted((s for s in series if s.window_end <= end), key=lambda s: s.window_end, reverse=True)
        last = recorded[-1] if recorded else None
        found = evaluate(r, "m", "1", "champion", seen, end, last)
        if found.event is not None:
            recorded.append(found.event)
            out.append((k, found.event.state))
    return out


def values(*numbers):
    return [result(k, v) for k, v in enumerate(numbers)]


def test_threshold_fires_after_for_consecutive_windows_and_resolves():
    r = rule(type="threshold", above=0.5, **{"for": 2})
    assert replay(r, values(0.1, 0.6, 0.2, 0.7, 0.8, 0.9, 0.3)) == [(4, "firing"), (6, "resolved")]


def test_threshold_below_and_both_bounds():
    assert replay(rule(type="threshold", below=0.8), values(0.9, 0.7, 0.85)) == [
        (1, "firing"),
        (2, "resolved"),
    ]
    both = rule(type="threshold", above=0.9, below=0.1)
    assert replay(both, values(0.5, 0.95, 0.5, 0.05)) == [(1, "firing"), (2, "resolved"), (3, "firing")]


def test_threshold_without_bounds_uses_the_indicators_own_verdict():
    series = [result(0, 0.2, flagged=False), result(1, 0.2, flagged=True), result(2, 0.9, flagged=False)]
    assert replay(rule(type="threshold"), series) == [(1, "firing"), (2, "resolved")]


def test_feature_value_comes_from_the_details():
    series = [
        result(k, 0.0, details={"f": {"distance": d, "p_value": 0.5}}) for k, d in enumerate((0.1, 0.4))
    ]
    assert replay(rule(type="threshold", feature="f", above=0.3), series) == [(1, "firing")]


def test_cooldown_keeps_a_firing_rule_quiet_then_it_acts_again_in_window_time():
    r = rule(type="threshold", above=0.5, cooldown="1h")  # two 30-minute windows
    assert replay(r, values(*[0.9] * 5)) == [(0, "firing"), (2, "firing"), (4, "firing")]
    # re-evaluating an old window never re-fires: the cooldown is measured in window time
    fired = evaluate(r, "m", "1", "champion", values(0.9, 0.9)[::-1], T0 + STEP, None).event
    again = evaluate(r, "m", "1", "champion", values(0.9, 0.9)[::-1], T0 + STEP, fired)
    assert again.event is None and again.state == "quiet"


def test_a_failed_window_breaks_the_streak_without_resolving_silently():
    r = rule(type="threshold", above=0.5, **{"for": 2})
    series = [result(0, 0.9), result(1, None, status="error"), result(2, 0.9), result(3, 0.9)]
    assert breaches(r, series[::-1]) == [True, True, None, True]
    assert replay(r, series) == [(3, "firing")]


def test_change_fires_on_a_move_larger_than_by_in_its_direction():
    up = rule(type="change", by=0.2, direction="up")
    assert replay(up, values(0.1, 0.2, 0.5, 0.2, 0.25)) == [(2, "firing"), (3, "resolved")]
    rel = rule(type="change", by=0.5, relative=True, direction="down")
    assert replay(rel, values(10, 9, 4, 4)) == [(2, "firing"), (3, "resolved")]


def test_spike_compares_with_the_rolling_mean():
    r = rule(type="spike", ratio=3, baseline_windows=3, direction="up")
    # needs two baseline windows first; 0.01 → 0.05 is 5x the mean of (0.01, 0.01, 0.01)
    assert replay(r, values(0.01, 0.01, 0.01, 0.05, 0.02)) == [(3, "firing"), (4, "resolved")]
    down = rule(type="spike", ratio=2, baseline_windows=2, direction="down")
    assert replay(down, values(100, 100, 40, 45)) == [(2, "firing"), (3, "resolved")]


def test_flatline_counts_requests_and_an_empty_window_as_zero():
    r = rule(type="flatline", min_requests=10)
    series = [
        result(0, 0.1, n=50),
        result(1, None, status="empty", n=0),
        result(2, 0.1, n=5),
        result(3, 0.1, n=80),
    ]
    assert replay(r, series) == [(1, "firing"), (3, "resolved")]


def test_frequency_fires_on_n_breaches_in_m_windows():
    r = rule(type="frequency", above=0.5, events=2, windows=3)
    assert replay(r, values(0.9, 0.1, 0.1, 0.9, 0.1, 0.9, 0.1, 0.1)) == [(5, "firing"), (6, "resolved")]


def test_missing_fires_on_failed_results_and_on_a_window_without_result():
    r = rule(type="missing", **{"for": 2})
    series = [result(0, 0.1), result(1, None, status="error"), result(2, None, status="missing_reference")]
    assert replay(r, series) == [(2, "firing")]
    # no result at all for the evaluated windows (the indicator was not computed)
    windows = [T0, T0 + STEP, T0 + 2 * STEP]
    assert replay(rule(type="missing"), [result(0, 0.1)], windows) == [(1, "firing")]


def test_a_firing_rule_resolves_when_its_version_stops_serving():
    r = rule(type="threshold", above=0.5)
    assert replay(r, [result(0, 0.9)], [T0, T0 + STEP]) == [(0, "firing"), (1, "resolved")]


def test_the_event_carries_the_values_that_caused_it_and_a_stable_id():
    r = rule(type="threshold", above=0.5, **{"for": 2})
    series = values(0.6, 0.7)[::-1]
    first = evaluate(r, "m", "1", "champion", series, T0 + STEP, None).event
    again = evaluate(r, "m", "1", "champion", series, T0 + STEP, None).event
    assert first.id == again.id  # a re-run of the task records the same event
    assert [v["value"] for v in first.values] == [0.7, 0.6] and first.value == 0.7
    assert "2 consecutive window(s) breach (for: 2)" in first.message


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"type": "threshold", "cooldown": "soon"}, "does not parse as a duration"),
        ({"type": "threshold", "cooldown": 30}, "has no unit"),
        ({"type": "threshold", "above": 0.1, "below": 0.9}, "swap them"),
        ({"type": "frequency", "events": 4, "windows": 3}, "can never fire"),
        ({"type": "spike", "ratio": 1}, "greater than 1"),
        ({"type": "threshold", "actions": ["retrain", "retrain"]}, "lists an action twice"),
        ({"type": "threshold", "actions": ["rollback"]}, "set severity: critical"),
    ],
)
def test_bad_rules_say_how_to_fix(fields, problem):
    with pytest.raises(ValidationError, match=problem):
        rule(**fields)


def test_durations():
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    assert parse_duration("1w") == timedelta(days=7)
