"""``pushbutton__monitor_fleet`` judges the alert rules of every model it monitored (as each model's
``evaluate_alerts`` does), and a retrain request leaves as an asset event through its AssetAlias."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from operators.alerting import RETRAIN_ALIAS, retrain_asset
from operators.monitoring import FleetMonitorOperator
from pushbutton.config import REPO_ROOT
from pushbutton.monitoring.results import IndicatorResult
from pushbutton.monitoring.store.sql import SqlStore
from pushbutton.spec import load_model_dir

END = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)


class Outlets(dict):
    def __missing__(self, key):
        found = self[key] = SimpleNamespace(
            added=[], add=lambda asset, extra: found.added.append((asset, extra))
        )
        return found


def test_the_fleet_judges_each_models_rules_and_requests_retrains_through_the_alias(tmp_path) -> None:
    spec = load_model_dir(REPO_ROOT / "models" / "iris")  # drift-retrain: above 0.5 for 2 windows
    store = SqlStore(f"sqlite:///{tmp_path / 'm.db'}")
    store.write_indicators([
        IndicatorResult("feature_drift", "drift", "iris", "1", "champion", end - timedelta(minutes=30), end, "ok",
                        value=0.75, flagged=True)
        for end in (END - timedelta(minutes=30), END)])  # fmt: skip
    outlets = Outlets()
    context = {
        "ti": SimpleNamespace(get_dr_count=lambda **kw: 0),
        "run_id": "scheduled__fleet",
        "outlet_events": outlets,
    }
    fleet = SimpleNamespace(summaries=[
        {"model": "iris", "window_end": END.isoformat(), "series": [["1", "champion"]], "report": None},
        {"model": "quiet", "window_end": END.isoformat(), "series": [], "report": None}])  # fmt: skip
    operator = FleetMonitorOperator(task_id="monitor_due_models", outlets=[RETRAIN_ALIAS])
    judged = operator._judge(context, store, {"iris": spec}, fleet, SimpleNamespace())
    assert list(judged) == ["iris"] and judged["iris"]["retrain"]["rule"] == "drift-retrain"
    [(asset, extra)] = outlets[RETRAIN_ALIAS].added
    assert asset == retrain_asset("iris") and extra["alert_id"] == store.alerts("iris")[0].id
    # the next tick, within the rule's cooldown: nothing new is recorded or requested
    again = Outlets()
    operator._judge({**context, "outlet_events": again}, store, {"iris": spec}, fleet, SimpleNamespace())
    assert again[RETRAIN_ALIAS].added == [] and len(store.alerts("iris")) == 1
    store.close()


def test_a_retrained_versions_release_lands_in_the_alert_that_asked_for_it(tmp_path, monkeypatch) -> None:
    import logging

    from operators.alerting import record_release
    from pushbutton.alerting.events import ActionTaken, AlertEvent
    from pushbutton.config import settings

    url = f"sqlite:///{tmp_path / 'm.db'}"
    monkeypatch.setenv("PUSHBUTTON_MONITORING_URL", url)
    settings.cache_clear()
    tags = {"5": {"pushbutton.alert_id": "a1"}, "6": {}}
    registry = SimpleNamespace(get=lambda model, version: SimpleNamespace(tags=tags[version]))
    monkeypatch.setattr("operators.hooks.MlflowRegistryHook.get_conn", lambda self: registry)
    store = SqlStore(url)
    store.write_alerts([AlertEvent(id="a1", model="iris", rule="drift-retrain", state="firing", severity="warning",
                                   at=END, actions=[ActionTaken("retrain", "requested")])])  # fmt: skip
    record_release("iris", "5", "failed", "iris v5: step 'test' failed", logging.getLogger("t"))
    record_release("iris", "6", "failed", "a pushed version: no alert to tell", logging.getLogger("t"))
    [event] = store.alerts("iris")
    assert event.actions == [ActionTaken("retrain", "requested"), ActionTaken("release", "failed",
                                                                              "iris v5: step 'test' failed")]  # fmt: skip
    store.close()
    settings.cache_clear()
