"""Issue 13 §2 on the real stack: a newer version's CI/CD run supersedes an older one waiting for
approval, both ways it can happen, and the champion keeps serving throughout.

1. v(A) is still being tested when v(B) is pushed: B's run queues behind A's; A's approval task finds
   B's run queued and is answered "superseded by vB" without asking anyone.
2. v(B) waits for approval (parked) when v(C) is pushed: the Airflow plugin answers B's parked request
   when C's run is created.
Each superseded run withdraws its candidate and ends; the newer run proceeds to its own approval.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pushbutton.config import REPO_ROOT

pytestmark = pytest.mark.e2e
DAG = "iris__cicd"


def variant(tmp_path: Path, c: float) -> Path:
    """A copy of iris with another regularisation strength: a new version when pushed. Its gate lets
    it pass against whichever champion the earlier e2e tests left (this test is about the approval)."""
    target = tmp_path / f"c{c}" / "iris"
    shutil.copytree(REPO_ROOT / "models" / "iris", target, ignore=shutil.ignore_patterns("__pycache__"))
    spec = target / "model.yaml"
    text = spec.read_text().replace("C: 1.0", f"C: {c}")
    assert "champion_tolerance: 0.02" in text
    spec.write_text(text.replace("champion_tolerance: 0.02", "champion_tolerance: 0.5"))
    return target


def test_a_newer_version_supersedes_an_approval_that_is_waiting_or_about_to(demo, tmp_path: Path) -> None:
    from pushbutton.actions import model_status, push, respond_approval
    from pushbutton.airflow_client import AirflowClient
    from pushbutton.registry import REASON, Registry
    from tests.e2e.test_demo import iris_answers

    cfg, _, _ = demo
    registry = Registry(cfg.mlflow_url)
    champion = registry.by_alias("iris", "champion").version
    with AirflowClient.from_settings(cfg) as client:
        # 1. B pushed while A is still testing: A's approval is superseded before it is asked
        a = push(cfg, variant(tmp_path, 3.0), trigger=True)
        b = push(cfg, variant(tmp_path, 4.0), trigger=True)
        run_a, run_b = a["pipeline"]["run_id"], b["pipeline"]["run_id"]
        assert client.get_run(DAG, run_b)["state"] == "queued"  # behind A (one run per model at a time)
        assert client.wait_run(DAG, run_a, timeout=600)["state"] == "success"
        states_a = {t["task_id"]: t["state"] for t in client.task_instances(DAG, run_a)}
        assert (states_a["approve"], states_a["activate"], states_a["discard_candidate"]) == (
            "success", "skipped", "success",
        )  # fmt: skip
        assert not [h for h in client.pending_hitl(DAG) if h["task_instance"]["dag_run_id"] == run_a]

        # 2. B waits for approval when C is pushed: the plugin answers B's parked request
        client.wait_hitl(DAG, run_b, timeout=600)
        assert iris_answers(cfg) >= {(200, champion)}  # B serves as a canary beside the champion
        c = push(cfg, variant(tmp_path, 5.0), trigger=True)
        run_c = c["pipeline"]["run_id"]
        assert client.wait_run(DAG, run_b, timeout=300)["state"] == "success"
        detail = client.request("GET", f"/dags/{DAG}/dagRuns/{run_b}/taskInstances/approve/-1/hitlDetails")
        assert detail["chosen_options"] == ["Reject"]
        assert detail["responded_by_user"]["id"] == f"pushbutton:superseded-by:{c['version']}"
        assert detail["params_input"] == {"comment": f"superseded by v{c['version']}"}

        client.wait_hitl(DAG, run_c, timeout=600)  # the newest proceeds to its own approval
        assert respond_approval(cfg, "iris", approve=False, comment="e2e: not this one")["run_id"] == run_c
        assert client.wait_run(DAG, run_c, timeout=300)["state"] == "success"

    for older, newer in ((a, b), (b, c)):
        pushed_by = registry.get("iris", newer["version"]).tags["pushbutton.actor"]
        version = registry.get("iris", older["version"])
        assert version.status == "rejected"
        assert version.tags[REASON] == f"superseded by v{newer['version']} (pushed by {pushed_by})"
    history = model_status(cfg, "iris")["history"]
    superseded = [e for e in history if e["action"] == "supersede"]
    assert {(e["version"], e["detail"]["superseded_by"]) for e in superseded} == {
        (a["version"], b["version"]),
        (b["version"], c["version"]),
    }
    assert all(e["actor"] == e["detail"]["pushed_by"] for e in superseded)
    assert registry.by_alias("iris", "champion").version == champion
    assert registry.by_alias("iris", "candidate") is None
    assert iris_answers(cfg) == {(200, champion)}
