"""A model's first release (no champion yet) on the tier's shared MLflow and gateway: the monitor's
probe sees it serve, and a rejection removes it from serving altogether — there is nothing to fall
back to, so the route and the microservice go, and the probe says so."""

from __future__ import annotations

import httpx
import pytest

from pushbutton import registry as reg
from pushbutton.config import REPO_ROOT
from pushbutton.lifecycle import Platform, deploy_candidate, probe, register_candidate, reject
from pushbutton.lifecycle import test as run_gate
from pushbutton.spec import load_model_dir
from pushbutton.training import train_and_register
from tests.integration.platform import model_copy

pytestmark = pytest.mark.integration
MODEL, NS = "first-iris", "first-release"  # this module's model line on the shared MLflow and gateway


@pytest.fixture(scope="module")
def platform(shared_stack) -> Platform:
    return Platform.from_settings(shared_stack)


@pytest.fixture(scope="module")
def first(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The model's first version, tested and deployed as the candidate: it serves alone."""
    model_dir = model_copy(REPO_ROOT / "models" / "iris", tmp_path_factory.mktemp("first") / MODEL,
                           name=MODEL, namespace=NS)  # fmt: skip
    version = train_and_register(
        load_model_dir(model_dir), model_dir, platform.registry, source="test"
    ).version
    assert probe(platform, MODEL) == {
        "model": MODEL,
        "serving": False,
        "reason": "no champion or candidate yet",
    }
    run_gate(platform, MODEL, version, run_id="first-run")
    register_candidate(platform, MODEL, version, run_id="first-run")
    deploy_candidate(platform, MODEL, version, actor="pytest", run_id="first-run")
    return version


def predict(platform: Platform) -> httpx.Response:
    body = {"data": {"names": ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"],
                     "ndarray": [[5.1, 3.5, 1.4, 0.2]]}}  # fmt: skip
    url = f"{platform.settings.gateway_url}/seldon/{NS}/{MODEL}/api/v1.0/predictions"
    return httpx.post(url, json=body, timeout=10)


def test_the_monitor_probe_sends_the_first_golden_row_to_what_serves(platform: Platform, first: str) -> None:
    """``<model>__monitor``'s probe task: the deployment's status plus one golden row through the gateway."""
    result = probe(platform, MODEL)
    assert (result["model"], result["serving"]) == (MODEL, True)
    assert {role: b["version"] for role, b in result["status"]["route"]["backends"].items()} == {
        "candidate": first
    }
    answer = result["probe"]["answer"]
    assert (answer["predictor"], answer["version"]) == ("candidate", first)
    expected = (REPO_ROOT / "models" / "iris" / "golden.csv").read_text().splitlines()[1].rsplit(",", 1)[1]
    assert result["probe"]["expected"] == expected
    assert answer["response"]["data"]["ndarray"] == [int(expected)]  # the golden row's label


def test_a_rejected_first_release_is_removed_from_serving(platform: Platform, first: str) -> None:
    answered = predict(platform)
    assert (answered.status_code, answered.headers["X-Pushbutton-Version"]) == (200, first)

    done = reject(platform, MODEL, first, actor="bob", run_id="first-run", reason="rejected by bob: no")
    assert done == {"model": MODEL, "rejected": first, "champion": None}
    gone = predict(platform)
    assert gone.status_code == 404 and f"{NS}/{MODEL}" in gone.json()["error"]  # no route left
    status = platform.runtime.status(NS, MODEL)
    assert status["route"] is None and status["services"] == []  # its microservice stopped
    assert platform.runtime.endpoint(NS, MODEL, first) is None
    rejected = platform.registry.get(MODEL, first)
    assert (rejected.status, rejected.tags[reg.REASON]) == ("rejected", "rejected by bob: no")
    assert platform.registry.by_alias(MODEL, reg.CANDIDATE) is None
    assert platform.registry.by_alias(MODEL, reg.CHAMPION) is None
    assert [(e["action"], e["version"], e["actor"]) for e in platform.history.events(MODEL)] == [
        ("reject", first, "bob"),
        ("deploy_candidate", first, "pytest"),
    ]
    assert probe(platform, MODEL)["serving"] is False  # the monitor sees nothing serving
