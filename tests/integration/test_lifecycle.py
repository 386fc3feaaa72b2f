"""The release lifecycle on real MLflow, real seldon-core microservices and the real gateway.

Airflow is not involved here (the e2e test drives the same steps through the DAGs); these tests
call ``pushbutton.lifecycle`` directly, so every failure shows the exact step.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from pushbutton import registry as reg
from pushbutton.config import REPO_ROOT
from pushbutton.errors import Conflict, GateFailed, NotFound
from pushbutton.gate import Check, GateReport
from pushbutton.lifecycle import (
    Platform,
    build,
    deploy_candidate,
    make_champion,
    register_candidate,
    reject,
    release_unrouted,
    withdraw,
)
from pushbutton.lifecycle import (
    test as run_gate,
)
from pushbutton.spec import load_model_dir
from pushbutton.training import train_and_register
from tests.integration.platform import model_copy

pytestmark = pytest.mark.integration
IRIS = REPO_ROOT / "models" / "iris"
ROW = [5.1, 3.5, 1.4, 0.2]


MODEL, NS = "lc-iris", "lifecycle"  # this module's model line on the tier's shared MLflow and gateway


@pytest.fixture(scope="module")
def platform(shared_stack) -> Platform:
    return Platform.from_settings(shared_stack)


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory):
    """Copies of the iris example registered as MODEL, served in NS, with edits to model.yaml."""
    root = tmp_path_factory.mktemp("variants")

    def make(
        label: str,
        edits: dict[str, str] | None = None,
        files: dict[str, str] | None = None,
        name: str = MODEL,
    ) -> Path:
        return model_copy(IRIS, root / label, name=name, namespace=NS, edits=edits, files=files)

    return make


def push(p: Platform, model_dir: Path) -> str:
    return train_and_register(load_model_dir(model_dir), model_dir, p.registry, source="test").version


def predictions_url(p: Platform, model: str = MODEL) -> str:
    return f"{p.settings.gateway_url}/seldon/{NS}/{model}/api/v1.0/predictions"


def ask(p: Platform, n: int, model: str = MODEL) -> Counter[str]:
    url = predictions_url(p, model)
    body = {"data": {"names": ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"],
                     "ndarray": [ROW]}}  # fmt: skip
    with httpx.Client(timeout=10) as client:
        answers = [client.post(url, json=body) for _ in range(n)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200][:1]
    return Counter(a.headers["X-Pushbutton-Version"] for a in answers)


def release(p: Platform, version: str, model: str = MODEL) -> None:
    run_gate(p, model, version, run_id="t")
    register_candidate(p, model, version, run_id="t")
    deploy_candidate(p, model, version, actor="pytest", run_id="t")


def champion(p: Platform) -> str | None:
    found = p.registry.by_alias(MODEL, reg.CHAMPION)
    return found.version if found else None


def candidate_service_running(p: Platform, version: str, model: str = MODEL) -> bool:
    return p.runtime.endpoint(NS, model, version) is not None


@pytest.fixture(scope="module")
def v1(platform: Platform, variants) -> str:
    """The first release: tested, deployed alone, approved."""
    version = push(platform, variants("first"))
    release(platform, version)
    assert ask(platform, 10) == {version: 10}  # a first release answers everything, still as candidate
    make_champion(platform, MODEL, version, action="activate", actor="ann", run_id="r-1")
    return version


def test_first_release_becomes_champion(platform: Platform, v1: str) -> None:
    assert champion(platform) == v1
    assert platform.registry.by_alias(MODEL, reg.CANDIDATE) is None
    version = platform.registry.get(MODEL, v1)
    assert version.status == "champion" and version.tests_passed
    report = json.loads(version.tags["pushbutton.test_report"])
    results = {c["name"]: ("skipped" if c["skipped"] else "passed" if c["passed"] else "failed")
               for c in report["checks"]}  # fmt: skip
    for check in ("input signature", "metric accuracy", "golden data", "model tests"):
        assert results.get(check) == "passed", (check, results)  # ran and passed: not failed, not skipped
    assert report["passed"] is True
    assert [e["action"] for e in platform.history.events(MODEL)][:2] == ["activate", "deploy_candidate"]


def test_activation_is_idempotent(platform: Platform, v1: str) -> None:
    before = len(platform.history.events(MODEL))
    result = make_champion(platform, MODEL, v1, action="activate", actor="ann", run_id="r-1")
    assert result["champion"] == v1
    assert len(platform.history.events(MODEL)) == before
    assert ask(platform, 10) == {v1: 10}


def test_rerunning_earlier_steps_after_activation_changes_nothing(platform: Platform, v1: str) -> None:
    events = len(platform.history.events(MODEL))
    assert "unchanged" in register_candidate(platform, MODEL, v1, run_id="again")
    assert "unchanged" in deploy_candidate(platform, MODEL, v1, actor="pytest", run_id="again")
    assert platform.registry.by_alias(MODEL, reg.CANDIDATE) is None
    assert platform.registry.get(MODEL, v1).status == "champion"
    assert len(platform.history.events(MODEL)) == events
    assert ask(platform, 10) == {v1: 10}
    with pytest.raises(Conflict, match="is the champion; roll back instead"):
        reject(platform, MODEL, v1, actor="bob")


def test_canary_then_reject_restores_the_champion(platform: Platform, v1: str, variants) -> None:
    v2 = push(platform, variants("canary", {"C: 1.0": "C: 10.0"}))
    release(platform, v2)
    report = platform.registry.get(MODEL, v2).tags["pushbutton.test_report"]
    assert f"vs champion v{v1}" in report  # compared on the same holdout
    split = ask(platform, 400)
    assert set(split) == {v1, v2}
    assert 0.04 <= split[v2] / 400 <= 0.18  # spec: 10% canary
    deploy_candidate(platform, MODEL, v2, actor="pytest", run_id="t")  # a re-run: same route, no event
    assert [e["action"] for e in platform.history.events(MODEL)][:2] == ["deploy_candidate", "activate"]
    reject(platform, MODEL, v2, actor="bob", run_id="r-2", reason="rejected by bob: not now")
    assert reject(platform, MODEL, v2, actor="bob", run_id="r-2")["unchanged"] == "already rejected"
    assert [e["action"] for e in platform.history.events(MODEL)][:2] == ["reject", "deploy_candidate"]
    assert ask(platform, 20) == {v1: 20}
    rejected = platform.registry.get(MODEL, v2)
    assert rejected.status == "rejected" and "bob" in rejected.tags[reg.REASON]
    assert platform.registry.by_alias(MODEL, reg.CANDIDATE) is None
    assert not candidate_service_running(platform, v2)
    assert champion(platform) == v1


def test_shadow_candidate_gets_copies_and_answers_no_client(platform: Platform, v1: str, variants) -> None:
    from pushbutton.serving.gateway import GatewayClient

    shadow = push(platform, variants("shadow", {"mode: canary\n  candidate_percent: 10": "mode: shadow"}))
    release(platform, shadow)
    assert platform.history.events(MODEL)[0]["detail"]["mode"] == "shadow"
    with GatewayClient(platform.settings.gateway_url) as gateway:
        before = gateway.route(NS, MODEL)["backends"]["candidate"]
        assert before["version"] == shadow
        assert ask(platform, 100) == {v1: 100}  # every answer is the champion's

        deadline = time.monotonic() + 30
        while True:  # copies are sent after the answer; wait until all arrived
            now = gateway.route(NS, MODEL)["backends"]["candidate"]
            if now["shadow_requests"] - before["shadow_requests"] >= 100 and now["inflight"] == 0:
                break
            assert time.monotonic() < deadline, f"shadow copies not served: {now}"
            time.sleep(0.05)
        assert now["requests"] == before["requests"] and now["shadow_errors"] == before["shadow_errors"]
    reject(platform, MODEL, shadow, actor="bob", run_id="r-shadow")
    assert ask(platform, 10) == {v1: 10} and not candidate_service_running(platform, shadow)


def test_a_run_failing_after_its_test_releases_the_warm_microservice(
    platform: Platform, v1: str, variants
) -> None:
    tested = push(platform, variants("abandoned", {"max_iter: 500": "max_iter: 550"}))
    run_gate(platform, MODEL, tested, run_id="t")  # passes: its microservice now runs, unrouted
    assert candidate_service_running(platform, tested)
    assert withdraw(platform, MODEL, tested) == "stopped its unrouted microservice"  # the DAG's watcher
    assert not candidate_service_running(platform, tested)
    assert withdraw(platform, MODEL, tested) == "nothing to undo"  # a re-run of the watcher
    assert withdraw(platform, MODEL, v1) == "left as champion"
    assert ask(platform, 10) == {v1: 10}


def test_a_run_failing_after_deploy_withdraws_its_canary(platform: Platform, v1: str, variants) -> None:
    canary = push(platform, variants("stranded", {"max_iter: 500": "max_iter: 560"}))
    release(platform, canary)  # a 10% canary; then e.g. the approval task fails
    assert set(ask(platform, 200)) == {v1, canary}
    done = withdraw(platform, MODEL, canary, run_id="r-9", reason="CI/CD run r-9 failed before activation")
    assert done == "candidate withdrawn; the champion serves"
    assert ask(platform, 20) == {v1: 20} and not candidate_service_running(platform, canary)
    withdrawn = platform.registry.get(MODEL, canary)
    assert withdrawn.status == "rejected" and "r-9 failed" in withdrawn.tags[reg.REASON]
    assert platform.registry.by_alias(MODEL, reg.CANDIDATE) is None
    assert withdraw(platform, MODEL, canary) == "left as rejected"


FLAKY_TEST = """
import os


def test_feature_store_reachable():
    assert os.environ.get("PB_TEST_FEATURE_STORE") == "up", "feature store unreachable (on purpose)"
"""


def test_a_passing_retest_after_a_failure_clears_the_verdict(
    platform: Platform, v1: str, variants, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = push(platform, variants("flaky", files={"tests/test_flaky.py": FLAKY_TEST}))
    monkeypatch.delenv("PB_TEST_FEATURE_STORE", raising=False)
    with pytest.raises(GateFailed, match="model tests"):
        run_gate(platform, MODEL, flaky, run_id="t")
    failed = platform.registry.get(MODEL, flaky)
    assert failed.status == "failed" and "model tests" in failed.tags[reg.REASON]
    monkeypatch.setenv("PB_TEST_FEATURE_STORE", "up")  # the clear-and-retry of the test task
    run_gate(platform, MODEL, flaky, run_id="t")
    passed = platform.registry.get(MODEL, flaky)
    assert (passed.status, passed.tests_passed, reg.REASON in passed.tags) == ("registered", True, False)
    assert release_unrouted(platform, MODEL, flaky) and champion(platform) == v1


def test_a_failing_retest_of_the_champion_keeps_its_status(
    platform: Platform, v1: str, variants, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert platform.registry.get(MODEL, v1).status == "champion"
    monkeypatch.setattr(
        "pushbutton.lifecycle.evaluate",
        lambda p, name, version: GateReport(name, version, checks=[Check("model tests", False, "flaky")]),
    )
    with pytest.raises(GateFailed):
        run_gate(platform, MODEL, v1, run_id="t")
    again = platform.registry.get(MODEL, v1)
    assert again.status == "champion" and not again.tests_passed  # serving unchanged; not re-promotable
    assert ask(platform, 10) == {v1: 10}
    monkeypatch.undo()
    run_gate(platform, MODEL, v1, run_id="t")  # the real gate passes again
    assert platform.registry.get(MODEL, v1).tests_passed


def test_a_version_with_changed_inputs_is_tested_without_the_champion_comparison(
    platform: Platform, v1: str, variants
) -> None:
    """The champion cannot be scored on data without its inputs: the report says so, nothing crashes."""
    three = (IRIS / "predict.py").read_text().replace('"sepal_width_cm", ', "")
    edits = {
        "    - {name: sepal_width_cm, type: double}\n": "",
        "tests: tests\n": "",
        "  golden: golden.csv\n": "",
    }
    fewer = push(platform, variants("fewer-inputs", edits, files={"predict.py": three}))
    report = run_gate(platform, MODEL, fewer, run_id="t")
    [check] = [c for c in report.checks if c.name == "champion comparison"]
    assert check.passed and check.skipped
    assert "needs input(s) sepal_width_cm that this version's data lacks" in check.detail
    assert "| champion comparison | skipped |" in report.markdown()
    assert platform.registry.get(MODEL, fewer).tests_passed
    assert release_unrouted(platform, MODEL, fewer)


def test_a_cicd_run_releases_a_version_once(platform: Platform, v1: str, variants) -> None:
    once = push(platform, variants("once", {"max_iter: 500": "max_iter: 570"}))
    build(platform, MODEL, once, run_id="run-a")
    release(platform, once)
    reject(platform, MODEL, once, actor="bob", run_id="run-a", reason="rejected by bob: not yet")
    build(platform, MODEL, once, run_id="run-a")  # re-running the run's own task: fine
    with pytest.raises(Conflict, match=rf"v{once} is already rejected \(CI/CD run run-a\)"):
        build(platform, MODEL, once, run_id="run-b")  # a new run would ask to approve it again

    make_champion(platform, MODEL, once, action="promote", actor="eve", run_id="p-1", comment="fine now")
    promoted = platform.registry.get(MODEL, once)
    assert promoted.status == "champion" and reg.REASON not in promoted.tags  # "rejected by bob" is gone
    assert platform.history.events(MODEL)[0]["detail"] == {"comment": "fine now"}
    with pytest.raises(
        Conflict, match=rf"v{once} is already champion.*stops before asking.*serves all traffic"
    ):
        build(platform, MODEL, once, run_id="run-c")  # a new CI/CD run of the champion stops at build
    make_champion(platform, MODEL, v1, action="rollback", actor="eve", run_id="p-2")
    assert champion(platform) == v1 and ask(platform, 10) == {v1: 10}
    with pytest.raises(
        Conflict, match=rf"v{once} is already retired.*`pushbutton promote {MODEL} --version {once}`"
    ):
        build(platform, MODEL, once, run_id="run-d")  # nor does one of a retired version
    assert platform.registry.get(MODEL, once).status == "retired" and champion(platform) == v1


def test_activate_then_roll_back_to_previous(platform: Platform, v1: str, variants) -> None:
    v3 = push(platform, variants("next", {"max_iter: 500": "max_iter: 600"}))  # same quality, new version
    release(platform, v3)
    make_champion(platform, MODEL, v3, action="activate", actor="ann", run_id="r-3")
    assert champion(platform) == v3 and ask(platform, 20) == {v3: 20}
    assert platform.registry.by_alias(MODEL, reg.PREVIOUS).version == v1
    make_champion(platform, MODEL, "previous", action="rollback", actor="ann", run_id="r-4")
    assert champion(platform) == v1 and ask(platform, 20) == {v1: 20}
    assert platform.registry.by_alias(MODEL, reg.PREVIOUS).version == v3
    latest = platform.history.events(MODEL)[0]
    assert (latest["action"], latest["version"], latest["previous_version"]) == ("rollback", v1, v3)

    # clearing a finished run's task must not undo what happened since
    events = len(platform.history.events(MODEL))
    again = make_champion(platform, MODEL, v3, action="activate", actor="ann", run_id="r-3")
    assert again["unchanged"].startswith(f"run r-3 already did its activate (to v{v3}")
    again = make_champion(platform, MODEL, "previous", action="rollback", actor="ann", run_id="r-4")
    assert again["unchanged"].startswith(f"run r-4 already did its rollback (to v{v1}")
    assert again["champion"] == v1 and again["unchanged"].endswith(f"v{v1} is the champion now")
    assert champion(platform) == v1 and len(platform.history.events(MODEL)) == events
    with pytest.raises(
        Conflict, match=rf"v{v3} is retired, not the candidate any more.*promote {MODEL} --version {v3}"
    ):
        make_champion(platform, MODEL, v3, action="activate", actor="ann", run_id="r-5")
    assert champion(platform) == v1 and ask(platform, 10) == {v1: 10}


# -- bad input: each a clear error, the champion untouched ---------------------------------------


def assert_champion_untouched(platform: Platform, version: str, expected: str) -> None:
    assert champion(platform) == expected
    assert ask(platform, 10) == {expected: 10}
    assert not candidate_service_running(platform, version)
    assert platform.registry.get(MODEL, version).status == "failed"


def test_failing_gate_names_check_value_and_threshold(platform: Platform, v1: str, variants) -> None:
    bad = push(platform, variants("strict", {"accuracy: {min: 0.85}": "accuracy: {min: 0.9999}"}))
    with pytest.raises(GateFailed) as failed:
        run_gate(platform, MODEL, bad)
    assert any(
        f.startswith("metric accuracy: accuracy 0.") and "< min 0.9999" in f for f in failed.value.failures
    )
    assert "< min 0.9999" in platform.registry.get(MODEL, bad).tags[reg.REASON]
    assert_champion_untouched(platform, bad, champion(platform))


def test_model_whose_predict_raises(platform: Platform, v1: str, variants) -> None:
    source, line = (
        (IRIS / "predict.py").read_text(),
        "        return self.model.predict(self.frame(X, features_names))",
    )
    assert line in source  # else the variant would not be broken and this test would prove nothing
    broken = source.replace(line, "        raise ValueError('predict exploded on purpose')")
    bad = push(platform, variants("raises", files={"predict.py": broken}))
    with pytest.raises(GateFailed) as failed:
        run_gate(platform, MODEL, bad)
    assert any("serving" in f and "predict exploded on purpose" in f for f in failed.value.failures)
    assert_champion_untouched(platform, bad, champion(platform))


def test_corrupted_model_artifact(platform: Platform, v1: str, variants) -> None:
    bad = push(platform, variants("corrupted"))
    model_dir = platform.registry.download(MODEL, bad, platform.release_dir(MODEL, bad)) / "model"
    (model_dir / "model.skops").write_bytes(b"\x00 not a model \x00")
    with pytest.raises(GateFailed) as failed:
        run_gate(platform, MODEL, bad)
    assert any(f.startswith("serving: v") for f in failed.value.failures)
    assert_champion_untouched(platform, bad, champion(platform))


def test_signature_mismatch(platform: Platform, v1: str, variants) -> None:
    """A spec type the data contradicts is refused at push now (validate reads the data source); the
    gate still catches a version whose logged signature disagrees with its spec (an artifact changed
    after registration)."""
    import json

    import yaml

    from pushbutton.errors import SpecError

    edits = {"{name: petal_width_cm, type: double}": "{name: petal_width_cm, type: string}"}
    with pytest.raises(SpecError, match=r"schema\.inputs.*petal_width_cm"):
        push(platform, variants("signature", edits))
    bad = push(platform, variants("signature-artifact"))
    model_dir = platform.registry.download(MODEL, bad, platform.release_dir(MODEL, bad)) / "model"
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    inputs = json.loads(mlmodel["signature"]["inputs"])
    for column in inputs:
        if column["name"] == "petal_width_cm":
            column["type"] = "long"
    mlmodel["signature"]["inputs"] = json.dumps(inputs)
    (model_dir / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(GateFailed) as failed:
        run_gate(platform, MODEL, bad)
    assert any("petal_width_cm: spec double, model long" in f for f in failed.value.failures)
    assert_champion_untouched(platform, bad, champion(platform))


def test_promoting_a_failed_version_is_refused(platform: Platform, v1: str, variants) -> None:
    bad = push(platform, variants("refused", {"accuracy: {min: 0.85}": "accuracy: {min: 0.9999}"}))
    with pytest.raises(GateFailed):
        run_gate(platform, MODEL, bad)
    current = champion(platform)
    with pytest.raises(Conflict, match=rf"v{bad} did not pass its tests \(metric accuracy"):
        make_champion(platform, MODEL, bad, action="promote", actor="eve")
    assert champion(platform) == current and ask(platform, 10) == {current: 10}


def test_unknown_version_and_missing_alias(platform: Platform, v1: str) -> None:
    with pytest.raises(NotFound, match="version 999"):
        make_champion(platform, MODEL, "999", action="promote")
    with pytest.raises(NotFound, match="no 'candidate' alias"):
        make_champion(platform, MODEL, "candidate", action="promote")
    with pytest.raises(NotFound, match="model 'nosuch' is not registered in MLflow; check the name"):
        make_champion(platform, "nosuch", "candidate", action="promote")
