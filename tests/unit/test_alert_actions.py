"""Acting on alerts: dedupe (one retrain per storm, absorbed while busy), idempotent re-runs, the
automatic rollback's guard rails, notifications, the promotion policy and external payloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from pydantic import TypeAdapter

from pushbutton.alerting import external, policy, rollback
from pushbutton.alerting.events import AlertEvent
from pushbutton.alerting.judge import Effects, Judgement, NotConfigured, act, judge
from pushbutton.alerting.rules import AlertRule
from pushbutton.monitoring.results import IndicatorResult
from pushbutton.monitoring.store.sql import SqlStore

NOW = datetime(2026, 11, 30, 0, 10, tzinfo=UTC)  # just after midnight
HOUR = timedelta(hours=1)


@pytest.fixture
def store(tmp_path):
    found = SqlStore(f"sqlite:///{tmp_path / 'monitoring.db'}")
    yield found
    found.close()


def firing(n: int = 0, *, at: datetime = NOW, rule: str = "drift", version: str = "2", **kw) -> AlertEvent:
    return AlertEvent(id=f"e{n}-{rule}", model="iris", rule=rule, state="firing", severity=kw.pop("severity", "warning"),
                      at=at, version=version, predictor="champion", **kw)  # fmt: skip


def test_an_alert_storm_triggers_one_retrain(store):
    outs = [Judgement() for _ in range(50)]  # 50 deliveries (webhooks or windows), one after the other
    events = [act(store, firing(n, at=NOW + timedelta(seconds=n)), ["retrain"], HOUR, Effects(), NOW, outs[n])
              for n in range(50)]  # fmt: skip
    outcomes = [e.outcome("retrain").outcome for e in events]
    assert outcomes.count("requested") == 1 and outcomes.count("deduplicated") == 49
    assert [o.retrain["alert_id"] for o in outs if o.retrain] == [events[0].id]  # one asset event
    assert "within the cooldown of 1:00:00" in events[-1].outcome("retrain").detail
    # after the cooldown, the next firing asks again
    later = act(store, firing(99, at=NOW + 2 * HOUR), ["retrain"], HOUR, Effects(), NOW, Judgement())
    assert later.outcome("retrain").outcome == "requested"


def test_a_retrain_in_progress_absorbs_the_request_and_says_so(store):
    busy = Effects(
        busy=lambda: "a retrain of iris is in progress (iris__retrain: 1 run(s) queued or running)"
    )
    out = Judgement()
    event = act(store, firing(), ["retrain"], HOUR, busy, NOW, out)
    assert (
        event.outcome("retrain").outcome == "absorbed"
        and "iris__retrain: 1 run" in event.outcome("retrain").detail
    )
    assert out.retrain is None  # no asset event goes into a busy DAG (apache/airflow#56050)
    assert store.alerts("iris")[0].outcome("retrain").outcome == "absorbed"  # in the history


def test_a_re_run_keeps_what_was_done_and_acts_once(store):
    calls = []
    effects = Effects(notify=lambda e: calls.append(e.id) or "sent")
    first = act(store, firing(), ["notify"], HOUR, effects, NOW)
    again = act(store, firing(), ["notify"], HOUR, effects, NOW)
    assert calls == [first.id] and again.actions == first.actions and len(store.alerts("iris")) == 1


def test_notify_not_configured_is_skipped_and_a_failure_does_not_stop_other_actions(store):
    def broken(event):
        raise RuntimeError("webhook answered 500")

    def unset(event):
        raise NotConfigured("no notifier configured: define the HTTP Connection pushbutton_notify")

    done = act(store, firing(1), ["notify", "retrain"], HOUR, Effects(notify=broken), NOW, Judgement())
    assert done.outcome("notify").outcome == "failed" and "500" in done.outcome("notify").detail
    assert done.outcome("retrain").outcome == "requested"
    skipped = act(store, firing(2, rule="other"), ["notify"], HOUR, Effects(notify=unset), NOW)
    assert (
        skipped.outcome("notify").outcome == "skipped"
        and "pushbutton_notify" in skipped.outcome("notify").detail
    )


def _activation(action: str = "activate", *, ago: timedelta = timedelta(minutes=5), actor: str = "alice"):
    return {"at": NOW - ago, "action": action, "version": "2", "previous_version": "1", "actor": actor}


@pytest.mark.parametrize(
    ("history", "champion", "event", "ok", "why"),
    [
        ([_activation()], "2", firing(severity="critical"), True, "back to v1"),
        (
            [_activation(ago=3 * HOUR)],
            "2",
            firing(severity="critical"),
            False,
            "longer ago than rollback_window",
        ),
        ([_activation("rollback")], "2", firing(severity="critical"), False, "never more than one step"),
        ([_activation("promote")], "2", firing(severity="critical"), False, "not fighting a person"),
        (
            [_activation("promote", actor="pushbutton:policy")],
            "2",
            firing(severity="critical"),
            True,
            "back to v1",
        ),
        ([_activation()], "3", firing(severity="critical"), False, "not the serving champion"),
        ([], "2", firing(severity="critical"), False, "no activation"),
        (
            [{**_activation(), "previous_version": None}],
            "2",
            firing(severity="critical"),
            False,
            "no previous",
        ),
    ],
)
def test_automatic_rollback_guard_rails(history, champion, event, ok, why):
    allowed, reason = rollback.allowed(event, champion, history, NOW, timedelta(hours=2))
    assert allowed is ok and why in reason


def test_rollback_runs_through_the_given_path_once(store):
    calls = []
    effects = Effects(champion=lambda: "2", serving_history=lambda: [_activation()],
                      rollback=lambda e: calls.append(e.version) or "v1 serves again")  # fmt: skip
    event = act(store, firing(severity="critical"), ["rollback"], HOUR, effects, NOW)
    assert calls == ["2"] and event.outcome("rollback").outcome == "done"
    assert "v1 serves again" in event.outcome("rollback").detail
    act(store, firing(severity="critical"), ["rollback"], HOUR, effects, NOW)  # the task re-runs
    assert calls == ["2"]


def test_judge_records_firing_and_resolution_from_the_store(store):
    spec = SimpleNamespace(name="iris", alerts=[TypeAdapter(AlertRule).validate_python(
        {"name": "drift", "type": "threshold", "indicator": "feature_drift", "above": 0.5, "for": 2,
         "actions": ["retrain"]})])  # fmt: skip
    ends = [NOW - timedelta(minutes=30 * k) for k in (3, 2, 1, 0)]
    values = [0.1, 0.8, 0.9, 0.2]
    verdicts = []
    for end, value in zip(ends, values, strict=True):
        store.write_indicators([IndicatorResult("feature_drift", "drift", "iris", "2", "champion", end - HOUR / 2,
                                                end, "ok", value=value)])  # fmt: skip
        found = judge(spec, store, end, [("2", "champion")], Effects(), NOW, run_id=f"run-{end:%H%M}")
        verdicts.append(([e.state for e in found.events], bool(found.retrain)))
    assert verdicts == [([], False), ([], False), (["firing"], True), (["resolved"], False)]
    history = store.alerts("iris")
    assert [e.state for e in history] == ["resolved", "firing"]
    assert history[1].values[0]["value"] == 0.9 and history[1].outcome("retrain").outcome == "requested"


ALERTMANAGER = {
    "version": "4", "groupKey": "{}:{alertname=\"IrisDrift\"}", "status": "firing", "receiver": "pushbutton",
    "groupLabels": {"alertname": "IrisDrift"}, "commonLabels": {"model": "iris"}, "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0,
    "alerts": [{"status": "firing", "labels": {"alertname": "IrisDrift", "action": "retrain,notify",
                                               "severity": "warning"},
                "annotations": {"summary": "petal length drifted"}, "startsAt": "2026-11-30T00:05:00Z",
                "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/graph", "fingerprint": "abc123"}],
}  # fmt: skip


def test_alertmanager_v4_maps_labels_to_model_and_actions():
    [found] = external.parse("alertmanager", ALERTMANAGER, NOW)
    assert found.actions == ("retrain", "notify")
    e = found.event
    assert (e.model, e.rule, e.severity, e.source, e.message) == (
        "iris",
        "alertmanager:IrisDrift",
        "warning",
        "alertmanager",
        "petal length drifted",
    )
    assert e.at == datetime(2026, 11, 30, 0, 5, tzinfo=UTC)
    assert external.parse("alertmanager", ALERTMANAGER, NOW)[0].event.id == e.id  # a re-delivery: same id
    resolved = {**ALERTMANAGER, "alerts": [{**ALERTMANAGER["alerts"][0], "status": "resolved"}]}
    assert external.parse("alertmanager", resolved, NOW)[0].event.state == "resolved"


def test_grafana_and_elastalert_payloads():
    grafana = {"receiver": "pb", "status": "firing", "version": "1", "orgId": 1, "alerts": [
        {"status": "firing", "labels": {"alertname": "ErrorRate", "model": "iris", "action": "rollback",
                                        "severity": "critical", "version": "3"},
         "annotations": {}, "values": {"B": 0.31}, "startsAt": "2026-11-30T00:00:00Z", "fingerprint": "f1"}]}  # fmt: skip
    [g] = external.parse("grafana", grafana, NOW)
    assert g.actions == ("rollback",) and g.event.value == 0.31 and g.event.version == "3"
    assert g.event.predictor == "champion"
    post2 = {"rule": "iris-drift", "model": "iris", "action": "retrain", "value": "0.7", "message": "drift"}
    [x] = external.parse("elastalert", post2, NOW)
    assert (x.event.rule, x.event.value, x.event.at, x.actions) == (
        "elastalert:iris-drift",
        0.7,
        NOW,
        ("retrain",),
    )


@pytest.mark.parametrize(
    ("source", "body", "problem"),
    [
        ("alertmanager", {**ALERTMANAGER, "version": "3"}, 'reads version "4"'),
        ("alertmanager", {**ALERTMANAGER, "commonLabels": {}}, "no 'model' label"),
        ("alertmanager", {**ALERTMANAGER, "alerts": []}, "no 'alerts' list"),
        (
            "grafana",
            {"alerts": [{"labels": {"model": "iris", "action": "restart"}}]},
            "'restart' is not one of",
        ),
        (
            "grafana",
            {"alerts": [{"labels": {"model": "iris", "action": "rollback"}}]},
            "needs severity critical",
        ),
        ("elastalert", {"model": "iris"}, "has no 'rule'"),
        ("nagios", {}, "unknown alert source"),
    ],
)
def test_bad_external_payloads_say_what_to_fix(source, body, problem):
    with pytest.raises(external.PayloadError, match=problem):
        external.parse(source, body, NOW)


AUTO = policy.PromotionSpec(policy="auto", min_requests=100, min_windows=2, min_labels=20)


@pytest.mark.parametrize(
    ("kwargs", "verdict", "why"),
    [
        ({"served": 150, "windows": 2}, "promote", "the gate's champion comparison stands"),
        ({"served": 50, "windows": 2}, "wait", "served 50/100"),
        ({"served": 50, "windows": 1, "waited": 3 * HOUR}, "hand_over", "within max_wait"),
        ({"served": 150, "windows": 3, "firing": ["errors"]}, "hand_over", "firing on the canary: errors"),
        (
            {"served": 150, "windows": 3, "comparison": policy.Comparison("accuracy", 0.80, 0.95, 40, 40)},
            "hand_over",
            "worse than the champion",
        ),
        (
            {"served": 150, "windows": 3, "comparison": policy.Comparison("accuracy", 0.94, 0.95, 40, 40)},
            "promote",
            "on production labels",
        ),
        (
            {"served": 150, "windows": 3, "comparison": policy.Comparison("rmse", 60, 50, 40, 40, True)},
            "hand_over",
            "worse than the champion",
        ),
    ],
)
def test_auto_promotion_policy(kwargs, verdict, why):
    args = {"firing": [], "waited": HOUR, "tolerance": 0.02, **kwargs}
    found = policy.decide(AUTO, **args)
    assert found.verdict == verdict and why in found.reason
    assert found.evidence["served"] == kwargs["served"]
    assert policy.decide(policy.PromotionSpec(), **args).verdict == "hand_over"  # manual: a person decides


def test_an_identical_model_on_a_smaller_canary_sample_is_not_called_worse() -> None:
    """The demo's case: the retrained model (identical to the champion) scored 0.936 on 78 canary labels
    and the champion 0.964 on 700 — a sampling difference, not a worse model; 0.80 on 400 is worse."""
    same = policy.Comparison("accuracy", 0.9359, 0.9636, 78, 700)
    assert 0.04 < policy.sampling_margin(same) < 0.05
    args = {"served": 150, "windows": 3, "firing": [], "waited": HOUR, "tolerance": 0.02}
    assert policy.decide(AUTO, comparison=same, **args).verdict == "promote"
    worse = policy.Comparison("accuracy", 0.80, 0.9636, 400, 700)
    found = policy.decide(AUTO, comparison=worse, **args)
    assert found.verdict == "hand_over" and "sampling margin" in found.reason
    assert policy.sampling_margin(policy.Comparison("rmse", 60, 50, 40, 40, True)) == 0.0  # not a share
