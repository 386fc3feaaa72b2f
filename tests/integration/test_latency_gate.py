"""The test step times the candidate's own microservice: a predict class too slow to serve fails the
gate with its latency named, and the champion keeps serving (real MLflow, seldon-core, gateway)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import pytest

from pushbutton import registry as reg
from pushbutton.config import REPO_ROOT
from pushbutton.errors import GateFailed
from pushbutton.lifecycle import Platform, deploy_candidate, make_champion, register_candidate
from pushbutton.lifecycle import test as run_gate
from pushbutton.spec import load_model_dir
from pushbutton.training import train_and_register
from tests.integration.platform import model_copy

pytestmark = pytest.mark.integration
IRIS = REPO_ROOT / "models" / "iris"
MODEL, NS = "lat-iris", "latency"  # this module's model line on the tier's shared MLflow and gateway
SLEEP = 0.25  # seconds per predict() call: over the 100 ms ceiling below, far under any timeout
SLOW_PREDICT = f"""
import time

from predict_fast import FEATURES, IrisClassifier as Fast


class IrisClassifier(Fast):
    def predict(self, X, features_names=None):
        time.sleep({SLEEP})
        return super().predict(X, features_names)
"""


@pytest.fixture(scope="module")
def platform(shared_stack) -> Platform:
    return Platform.from_settings(shared_stack)


def push(p: Platform, directory: Path) -> str:
    return train_and_register(load_model_dir(directory), directory, p.registry, source="test").version


def ask(p: Platform, n: int) -> Counter[str]:
    url = f"{p.settings.gateway_url}/seldon/{NS}/{MODEL}/api/v1.0/predictions"
    body = {"data": {"names": ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"],
                     "ndarray": [[5.1, 3.5, 1.4, 0.2]]}}  # fmt: skip
    with httpx.Client(timeout=10) as client:
        answers = [client.post(url, json=body) for _ in range(n)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200][:1]
    return Counter(a.headers["X-Pushbutton-Version"] for a in answers)


@pytest.fixture(scope="module")
def v1(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> str:
    """iris as it is, released: it passes the default latency ceilings on this machine."""
    version = push(
        platform, model_copy(IRIS, tmp_path_factory.mktemp("fast") / MODEL, name=MODEL, namespace=NS)
    )
    report = run_gate(platform, MODEL, version, run_id="t")
    checks = {c.name: c for c in report.checks}
    assert checks["latency single-row p99"].passed and checks["latency batch p99"].passed, report.markdown()
    assert report.latency["single"]["requests"] >= 1 and report.latency["ceilings"]["p99_ms"] == 1000.0
    register_candidate(platform, MODEL, version, run_id="t")
    deploy_candidate(platform, MODEL, version, actor="pytest", run_id="t")
    make_champion(platform, MODEL, version, action="activate", actor="ann", run_id="r-1")
    return version


def test_a_predict_too_slow_to_serve_fails_the_gate_and_the_champion_serves(
    platform: Platform, v1: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    slow_dir = model_copy(
        IRIS,
        tmp_path_factory.mktemp("slow") / MODEL,
        name=MODEL,
        namespace=NS,
        edits={
            "  golden: golden.csv\n": "  golden: golden.csv\n  latency: {p99_ms: 100, batch_p99_ms: 2000}\n"
        },
        files={"predict.py": SLOW_PREDICT, "predict_fast.py": (IRIS / "predict.py").read_text()},
    )
    slow = push(platform, slow_dir)
    with pytest.raises(GateFailed) as failed:
        run_gate(platform, MODEL, slow, run_id="t")
    report = failed.value.report
    checks = {c.name: c for c in report.checks}
    single = checks["latency single-row p99"]
    assert not single.passed and single.value >= SLEEP * 1000
    assert "ms > max 100 ms (gate.latency.p99_ms;" in single.detail
    assert "make predict() faster, or raise gate.latency.p99_ms in model.yaml" in single.detail
    assert checks["latency batch p99"].passed  # 250 ms per batch is under its 2000 ms ceiling
    versus = checks["latency vs champion"]  # the champion was timed the same way
    assert not versus.passed and versus.detail.startswith(f"slower than champion v{v1}: single-row p50 ")
    assert report.champion["latency"]["single"]["p50_ms"] < SLEEP * 1000 <= report.latency["single"]["p50_ms"]
    for text in ("| latency | candidate | champion v", "| single-row p99 |", "| 100 ms |"):
        assert text in report.markdown()

    version = platform.registry.get(MODEL, slow)
    assert version.status == "failed" and "latency single-row p99" in version.tags[reg.REASON]
    stored = json.loads(version.tags["pushbutton.test_report"])
    assert stored["latency"]["single"]["p99_ms"] == single.value
    assert platform.runtime.endpoint(NS, MODEL, slow) is None  # its microservice is stopped
    assert platform.registry.by_alias(MODEL, reg.CHAMPION).version == v1
    assert ask(platform, 20) == {v1: 20}
