"""Failures the data scientist sees, on the demo's running stack (the ``demo`` fixture of
tests/e2e/conftest.py; these tests add models of their own names): a requirements.txt naming a
package no index has fails `build` once (no retry), and both `push --wait` and `status` say which
step failed and why; `push --wait` of a good version stops at its approval with the report and how
to answer, and the build's task log has no MLflow progress bars."""

from __future__ import annotations

import json

import pytest

from pushbutton.cli import main as cli
from pushbutton.config import REPO_ROOT
from tests.integration.platform import model_copy

pytestmark = pytest.mark.e2e

MISSING = "nosuch-pkg-pushbutton-e2e"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_missing_package_fails_build_once_and_push_wait_and_status_say_why(demo, capsys) -> None:
    from pushbutton.airflow_client import AirflowClient

    cfg, _, _ = demo
    model_dir = model_copy(
        REPO_ROOT / "models" / "iris",
        cfg.models_dir / "badreqs",
        name="badreqs",
        namespace="badreqs",
        files={"requirements.txt": f"scikit-learn==1.9.1\n{MISSING}==1.0\n"},
    )
    code, out, err = run_cli(capsys, "push", str(model_dir), "--wait", "--timeout", "600")
    result = json.loads(out)
    outcome = result["pipeline"]["outcome"]
    assert code == 1, err
    assert (outcome["state"], outcome["failed_task"]) == ("failed", "build")
    assert outcome["reason"].startswith(
        f"requirements.txt:2: package '{MISSING}' does not exist on the package index"
    )
    assert f"✗ badreqs: step 'build' failed: requirements.txt:2: package '{MISSING}'" in err

    client = AirflowClient.from_settings(cfg)
    tries = {t["task_id"]: (t["state"], t["try_number"]) for t in client.task_instances(
        "badreqs__cicd", result["pipeline"]["run_id"])}  # fmt: skip
    assert tries["build"] == ("failed", 1)  # no retry of a failure no retry can fix

    code, out, _ = run_cli(capsys, "status", "badreqs")
    status = json.loads(out)
    assert code == 0 and status["cicd"]["available"] is True
    (entry,) = [v for v in status["versions"] if v["version"] == result["version"]]
    assert entry["status"] == "failed" and entry["reason"] == f"build failed: {outcome['reason']}"
    last = entry["last_run"]
    assert (last["run_id"], last["state"], last["failed_task"]) == (
        result["pipeline"]["run_id"],
        "failed",
        "build",
    )
    assert last["reason"] == outcome["reason"]


def test_push_wait_stops_at_the_approval_with_the_report(demo, capsys) -> None:
    from pushbutton.airflow_client import AirflowClient

    cfg, _, _ = demo
    model_dir = model_copy(
        REPO_ROOT / "models" / "iris", cfg.models_dir / "waited", name="waited", namespace="waited"
    )
    code, out, err = run_cli(capsys, "push", str(model_dir), "--wait", "--timeout", "600")
    result = json.loads(out)
    run_id = result["pipeline"]["run_id"]
    approval = result["pipeline"]["outcome"]["approval"]
    try:
        assert code == 0, err
        steps = [s["task"] for s in result["pipeline"]["outcome"]["steps"] if s["state"] == "success"]
        # iris's promotion policy is auto: canary_policy hands a pushed version to a person at once
        # build_image (nothing to build on the local runtime) ends beside test, in either order
        assert [s for s in steps if s != "build_image"] == ["build", "test", "register", "deploy_candidate",
                                                           "canary_policy"]  # fmt: skip
        assert steps.index("build") < steps.index("build_image") < steps.index("register")
        assert approval["cli"] == f"pushbutton approve waited --run-id {run_id}"
        assert "Test report: waited v" in approval["report"] and approval["report"].strip() in err
        client = AirflowClient.from_settings(cfg)
        log = client.task_log("waited__cicd", run_id, "build", 1)
        assert "Downloading artifacts" not in json.dumps(log)  # MLflow's progress bars stay out
    finally:
        assert (
            run_cli(capsys, "approve", "waited", "--run-id", run_id, "--reject", "--comment", "e2e")[0] == 0
        )
