"""The ``auto`` promotion policy in the CI/CD DAG: ``canary_policy`` gathers the canary's evidence from
the monitoring store and decides; ``approve`` answers itself on ``promote`` (approver: the policy, the
evidence as comment) and otherwise asks a person with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from operators.alerting import POLICY_ACTOR, CanaryPolicySensor, policy_event
from pushbutton.alerting.events import AlertEvent
from pushbutton.alerting.policy import gather
from pushbutton.config import REPO_ROOT, settings
from pushbutton.monitoring.records import InferenceRecord
from pushbutton.monitoring.results import IndicatorResult
from pushbutton.monitoring.store import open_store
from pushbutton.spec import load_model_dir
from tests.integration.platform import model_copy

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(hours=1)


@pytest.fixture
def auto_iris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PUSHBUTTON_MONITORING_URL", f"sqlite:///{tmp_path / 'monitoring.db'}")
    settings.cache_clear()
    edits = {"  min_labels: 30 ": "  min_labels: 10 "}  # iris: policy auto, 20 requests over 2 windows
    yield model_copy(REPO_ROOT / "models" / "iris", tmp_path / "iris", name="iris", edits=edits)
    settings.cache_clear()


def traffic(store, predictor: str, version: str, n: int) -> None:
    spec_inputs = ("sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm")
    store.write_records([InferenceRecord(
        request_id=f"{predictor}-{i}", model="iris", predictor=predictor, version=version, namespace="models",
        model_id="iris", request_event_id=f"q{predictor}{i}", response_event_id=f"p{predictor}{i}",
        request_time=START + timedelta(seconds=i), response_time=START + timedelta(seconds=i, milliseconds=3),
        latency_ms=3.0, status=200, names=spec_inputs, inputs=[[5.0, 3.0, 1.5, 0.2]], predictions=[0],
        request_body="{}", response_body="{}") for i in range(n)])  # fmt: skip


def accuracy(predictor: str, version: str, minutes: int, value: float, labels: int = 30) -> IndicatorResult:
    end = START + timedelta(minutes=minutes)
    return IndicatorResult("accuracy", "label_metric", "iris", version, predictor, end - timedelta(minutes=30), end,
                           "ok", value=value, sample_size=labels)  # fmt: skip


def poke(model_dir: Path, trigger: str | None = "alert", status: str = "candidate") -> tuple[bool, dict]:
    pushed: dict = {}
    ti = SimpleNamespace(xcom_push=lambda key, value: pushed.update({key: value}))
    context = {"ti": ti, "dag_run": SimpleNamespace(start_date=START)}
    sensor = CanaryPolicySensor(task_id="canary_policy", model="iris", version="3", model_dir=str(model_dir))
    sensor._version = lambda model: (status, trigger)  # the version's status and lineage trigger (MLflow)
    sensor._deployed_at = lambda model: None  # no history here: the run's start counts
    return sensor.poke(context), pushed.get("policy", {})


def test_the_canary_waits_for_traffic_then_is_promoted(auto_iris: Path) -> None:
    spec = load_model_dir(auto_iris)
    with open_store(settings().monitoring) as store:
        store.ensure_model("iris", spec.schema_.inputs, spec.schema_.output)
        traffic(store, "candidate", "3", 5)
        assert poke(auto_iris) == (False, {})  # 5 of 20 requests, no window yet
        traffic(store, "candidate", "3", 25)
        store.write_indicators([accuracy("candidate", "3", 30, 0.95), accuracy("candidate", "3", 60, 0.96),
                                accuracy("champion", "2", 60, 0.95)])  # fmt: skip
        assert gather(spec, store, "3", START, NOW)[:3] == (25, 2, [])
    done, decision = poke(auto_iris)
    assert (
        done and decision["verdict"] == "promote" and "accuracy 0.96 vs champion 0.95" in decision["reason"]
    )
    event = policy_event(decision)
    assert event["chosen_options"] == ["Approve"] and event["responded_by_user"] == POLICY_ACTOR
    assert decision["reason"] in event["params_input"]["comment"]  # the evidence goes into the history


def test_a_worse_canary_or_a_firing_rule_goes_to_a_person(auto_iris: Path) -> None:
    spec = load_model_dir(auto_iris)
    with open_store(settings().monitoring) as store:
        store.ensure_model("iris", spec.schema_.inputs, spec.schema_.output)
        traffic(store, "candidate", "3", 30)
        store.write_indicators([accuracy("candidate", "3", 30, 0.70), accuracy("candidate", "3", 60, 0.72),
                                accuracy("champion", "2", 60, 0.95)])  # fmt: skip
        done, decision = poke(auto_iris)
        assert done and decision["verdict"] == "hand_over" and "worse than the champion" in decision["reason"]
        store.write_alerts([AlertEvent(id="x", model="iris", rule="errors-spike", state="firing", severity="warning",
                                       at=NOW, version="3", predictor="candidate")])  # fmt: skip
    done, decision = poke(auto_iris)
    assert done and "firing on the canary: errors-spike" in decision["reason"]


def test_a_version_a_person_pushed_goes_to_a_person_at_once(auto_iris: Path) -> None:
    done, decision = poke(auto_iris, trigger=None)
    assert done and decision["verdict"] == "hand_over" and "trigger: push" in decision["reason"]
    assert poke(auto_iris, trigger="manual")[1]["verdict"] == "hand_over"
    edited = auto_iris / "model.yaml"
    edited.write_text(edited.read_text().replace("  scope: retrained", "  scope: all"))
    assert poke(auto_iris, trigger=None) == (False, {})  # scope all: the canary has to earn it


def test_a_decided_release_is_not_decided_again(auto_iris: Path) -> None:
    """A cleared canary_policy of a finished run (its version is champion now) must not wait for a canary
    that no longer serves: it settles at once, and approve is not asked again anyway."""
    done, decision = poke(auto_iris, status="champion")
    assert done and decision == {"verdict": "hand_over", "reason": "v3 is champion: nothing left to decide",
                                 "evidence": {}}  # fmt: skip


def test_the_canary_counts_from_its_deployment_not_from_a_cleared_runs_restart(auto_iris: Path) -> None:
    from operators.alerting import CanaryPolicySensor

    sensor = CanaryPolicySensor(task_id="canary_policy", model="iris", version="3", model_dir=str(auto_iris))
    events = [{"action": "deploy_candidate", "version": "3", "at": START.replace(tzinfo=None)},
              {"action": "deploy_candidate", "version": "2", "at": NOW}]  # fmt: skip
    from unittest import mock

    with mock.patch("operators.hooks.PushbuttonStoreHook.get_conn", return_value=SimpleNamespace(
            events=lambda model, limit: events)):  # fmt: skip
        assert sensor._deployed_at("iris") == START
