"""The README's main job (`make demo`) under `airflow standalone`, then checks on the running stack:
webhook security, the CLI status, and `pushbutton down` leaving no process behind. The ``demo``
fixture (tests/e2e/conftest.py) is the tier's one shared stack; these tests run first on it."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest

from pushbutton.cli import main as cli
from pushbutton.config import REPO_ROOT
from tests.webhook_deliveries import created_body, signed_headers

pytestmark = pytest.mark.e2e
LOAD_FLOOR = 100  # requests in a load phase: at least 1 s of the demo's 100 req/s


def iris_answers(cfg, requests: int = 10) -> set[tuple[int, str]]:
    """(status, answering version) of ``requests`` iris predictions through the gateway."""
    url = f"{cfg.gateway_url}/seldon/models/iris/api/v1.0/predictions"
    body = {"data": {"names": ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"],
                     "ndarray": [[5.1, 3.5, 1.4, 0.2]]}}  # fmt: skip
    answers = [httpx.post(url, json=body, timeout=10) for _ in range(requests)]
    return {(a.status_code, a.headers.get("X-Pushbutton-Version")) for a in answers}


def test_demo_runs_the_whole_lifecycle(demo) -> None:
    _, report, stdout = demo
    v1, v2, v3 = (report["versions"][k] for k in ("v1", "v2", "v3"))
    assert report["ok"] is True
    assert 50 <= report["canary"]["v2"] <= 150  # 10% canary over 1 000 requests
    # the load the demo announces ran (100 req/s through the gateway) while the traffic moved
    for phase, arrived in (("activation", v2), ("rollback", v1)):
        load = report[phase]
        assert load["requests"] >= LOAD_FLOOR, f"{phase}: only {load['requests']} requests were sent"
        assert load["rps"] >= 0.5 * load["rps_announced"], load  # at least half the announced rate
        assert load["failed"] == 0 and load["by_version"].get(arrived, 0) > 0, load
    reject = dict(report["reject"])
    assert reject.pop("cleared_s") > 0  # the candidate alias was cleared after the answer (time measured)
    assert reject == {"version": v3, "status": "rejected", "serving": {v1: 100}}
    # the closed loop: drift → alert → retrain → canary → promoted by policy → broken version activated
    # by hand → rolled back automatically to the retrained one
    loop = report["closed_loop"]
    retrained, broken = loop["retrained"], loop["broken"]
    assert int(v3) < int(retrained) < int(broken) and report["champion"] == retrained
    steps = [what for what, _ in loop["timeline"]]
    assert steps == [
        "drift onset (second drifted window starts)", "alert fired, retrain requested",
        f"v{retrained} registered by the retrain", f"v{retrained} serving as canary",
        f"v{retrained} champion by policy", f"broken v{broken} activated by hand",
        f"v{retrained} serving again (automatic rollback)",
    ]  # fmt: skip
    seconds = [at for _, at in loop["timeline"]]
    assert seconds == sorted(seconds) and report["total_s"] < 600  # the whole demo stays under 10 minutes
    assert "Airflow UI → Browse → Required Actions" in stdout


def test_webhook_with_a_bad_signature_is_refused_and_triggers_nothing(demo) -> None:
    from pushbutton.airflow_client import AirflowClient

    cfg, _, _ = demo
    client = AirflowClient.from_settings(cfg)
    before = len(client.list_runs("iris__cicd"))
    body = created_body("iris", "77")
    url = f"{cfg.airflow_url}/pushbutton/webhooks/mlflow"
    forged = httpx.post(url, content=body, headers=signed_headers("not-the-secret", body, "e2e-1"))
    assert forged.status_code == 401 and "signature does not match" in forged.text
    unsigned = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    assert len(client.list_runs("iris__cicd")) == before


def test_webhook_for_an_unknown_model_is_404_and_triggers_nothing(demo) -> None:
    from pushbutton.stack import webhook_secret

    cfg, _, _ = demo
    body = created_body("no-such-model", "1")
    answer = httpx.post(f"{cfg.airflow_url}/pushbutton/webhooks/mlflow", content=body,
                        headers=signed_headers(webhook_secret(cfg), body, "e2e-1"))  # fmt: skip
    assert answer.status_code == 404
    assert "no pushbutton model 'no-such-model'" in answer.json()["detail"]


def test_redelivery_of_a_version_does_not_start_a_second_run(demo) -> None:
    from pushbutton.registry import Registry
    from pushbutton.stack import webhook_secret

    cfg, report, _ = demo
    v1 = report["versions"]["v1"]
    body = created_body("iris", v1, Registry(cfg.mlflow_url).get("iris", v1).tags["pushbutton.run_id"])
    answer = httpx.post(f"{cfg.airflow_url}/pushbutton/webhooks/mlflow", content=body,
                        headers=signed_headers(webhook_secret(cfg), body, "e2e-1"))  # fmt: skip
    assert answer.status_code == 200 and answer.json()["status"] == "already triggered"


def test_cli_status_shows_aliases_serving_and_history(demo, capsys: pytest.CaptureFixture[str]) -> None:
    _, report, _ = demo
    assert cli(["status", "iris"]) == 0
    status = json.loads(capsys.readouterr().out)
    v1, v2, v3 = (report["versions"][k] for k in ("v1", "v2", "v3"))
    retrained, broken = report["closed_loop"]["retrained"], report["closed_loop"]["broken"]
    assert status["aliases"]["champion"] == retrained and status["aliases"]["previous"] == broken
    assert {v["version"]: v["status"] for v in status["versions"]}[v3] == "rejected"
    assert all(v["pushed_by"] for v in status["versions"] if v["version"] in (v1, v2, v3))
    history = [(e["action"], e["version"]) for e in status["history"]]
    assert history[:12] == [
        ("rollback", retrained), ("activate", broken), ("deploy_candidate", broken), ("activate", retrained),
        ("deploy_candidate", retrained), ("reject", v3), ("deploy_candidate", v3), ("rollback", v1),
        ("activate", v2), ("deploy_candidate", v2), ("activate", v1), ("deploy_candidate", v1),
    ]  # fmt: skip
    automatic = {(e["action"], e["version"]): e for e in status["history"]}
    assert automatic[("rollback", retrained)]["actor"] == "pushbutton:auto-rollback"
    assert "accuracy-collapse" in automatic[("rollback", retrained)]["detail"]["comment"]
    assert automatic[("activate", retrained)]["actor"] == "promotion policy (auto)"
    assert "promoted by policy: served" in automatic[("activate", retrained)]["detail"]["comment"]
    lineage = {v["version"]: v["lineage"] for v in status["versions"]}  # why each version was trained
    assert lineage[retrained]["trigger"] == "alert" and lineage[retrained]["alert_rule"] == "drift-retrain"
    assert lineage[retrained]["parent_version"] == v1 and "trigger" not in lineage[v2]  # v2: a push
    alerts = status["monitoring"]["alerts"]
    assert any("accuracy-collapse firing" in a and "rollback: done" in a for a in alerts), alerts
    # the alert that asked for the retrain also says how its version's release ended
    assert any(
        "drift-retrain firing" in a and "retrain: requested" in a and "release: done" in a for a in alerts
    )
    assert status["serving"]["route"] is not None
    events = {(e["action"], e["version"]): e for e in status["history"]}
    rejected = events[("reject", v3)]  # answered through the REST API as admin, with a comment
    assert rejected["actor"] == "admin" and rejected["detail"]["reason"] == "rejected by admin: demo: Reject"
    assert events[("activate", v2)]["actor"] == "admin"
    assert events[("activate", v2)]["detail"] == {"comment": "demo: Approve"}


def test_a_failing_gate_fails_the_run_and_the_champion_keeps_serving(demo, tmp_path) -> None:
    from pushbutton.actions import push
    from pushbutton.airflow_client import AirflowClient
    from pushbutton.registry import REASON, Registry

    cfg, report, _ = demo
    strict = tmp_path / "iris"
    shutil.copytree(REPO_ROOT / "models" / "iris", strict, ignore=shutil.ignore_patterns("__pycache__"))
    spec = strict / "model.yaml"
    spec.write_text(spec.read_text().replace("accuracy: {min: 0.85}", "accuracy: {min: 0.9999}"))
    pushed = push(cfg, strict, trigger=True)  # webhook or REST API, whichever is first: one run
    version, pipeline = pushed["version"], pushed["pipeline"]
    with AirflowClient.from_settings(cfg) as client:
        run = client.wait_run(pipeline["dag_id"], pipeline["run_id"], timeout=600)
        instances = client.task_instances(pipeline["dag_id"], pipeline["run_id"])
        states = {t["task_id"]: t["state"] for t in instances}
        tries = {t["task_id"]: t["try_number"] for t in instances}
    assert run["state"] == "failed"
    assert states["build"] == "success" and states["test"] == "failed"
    assert tries["test"] == 1  # a failed gate is deterministic: failed at once, never retried
    assert states["fail_on_error"] == "failed"  # the watcher ran (and rendered its version)
    assert {states[t] for t in ("register", "deploy_candidate", "approve", "activate")} == {"upstream_failed"}
    failed = Registry(cfg.mlflow_url).get("iris", version)
    assert failed.status == "failed" and "accuracy" in failed.tags[REASON]
    assert iris_answers(cfg) == {(200, report["champion"])}


def test_a_new_model_goes_from_init_to_serving_with_one_push_and_one_approval(demo) -> None:
    """The data scientist's path: `pushbutton init` under the models directory, push while the platform
    runs (its DAGs do not exist yet), Approve at once, and it serves. Only the MLflow webhook starts the run:
    the plugin answers 503 + Retry-After until Airflow has parsed the new DAG, and MLflow retries."""
    from pushbutton.actions import push, respond_approval
    from pushbutton.airflow_client import AirflowClient
    from pushbutton.spec import load_model_dir

    cfg, _, _ = demo
    assert cli(["init", "fresh", "--template", "sklearn-classifier", "--dir", str(cfg.models_dir)]) == 0
    pushed = push(cfg, cfg.models_dir / "fresh", trigger=False)  # register only: the webhook triggers
    dag_id, run_id = pushed["pipeline"]["dag_id"], pushed["pipeline"]["run_id"]
    assert dag_id == "fresh__cicd"
    with AirflowClient.from_settings(cfg) as client:
        client.wait_dag(dag_id, timeout=180)
        client.wait_run_created(dag_id, run_id, timeout=120)  # only MLflow's webhook can start it
        runs = client.list_runs(dag_id)
        assert [(r["dag_run_id"], r["triggering_user_name"]) for r in runs] == [(run_id, "mlflow-webhook")]
        client.wait_hitl(dag_id, run_id, timeout=600, poll=0.2)
        # answered the instant it appears: the plugin holds the answer until the parked task has
        # settled, so Airflow resumes it on its first try (without the hold it fails ~3 times in 4)
        assert respond_approval(cfg, "fresh", approve=True)["answer"] == "Approve"
        assert client.wait_run(dag_id, run_id, timeout=300)["state"] == "success"
        approve = next(t for t in client.task_instances(dag_id, run_id) if t["task_id"] == "approve")
        assert (approve["state"], approve["try_number"]) == ("success", 1)
    assert cli(["status", "fresh"]) == 0
    spec = load_model_dir(cfg.models_dir / "fresh")
    url = f"{cfg.gateway_url}/seldon/{spec.serving.namespace}/fresh/api/v1.0/predictions"
    body = {"data": {"names": spec.feature_names, "ndarray": [[0.5] * len(spec.feature_names)]}}
    answer = httpx.post(url, json=body, timeout=10)
    assert answer.status_code == 200 and answer.headers["X-Pushbutton-Version"] == pushed["version"]


def test_rerunning_a_successful_runs_tasks_changes_nothing(demo) -> None:
    """Idempotency at the DAG level: clear every task but the approval of the retrained version's
    finished run (the champion again after the demo's automatic rollback); they run again, the run
    succeeds, and aliases, statuses, serving (same microservice processes) and the history stay."""
    from pushbutton.actions import model_status
    from pushbutton.airflow_client import AirflowClient

    cfg, report, _ = demo
    retrained = report["closed_loop"]["retrained"]
    dag_id, run_id = "iris__cicd", report["cicd_runs"][retrained]
    steps = ["build", "test", "register", "deploy_candidate", "canary_policy", "activate"]
    before = model_status(cfg, "iris")
    assert before["aliases"]["champion"] == retrained
    with AirflowClient.from_settings(cfg) as client:
        tries = {t["task_id"]: t["try_number"] for t in client.task_instances(dag_id, run_id)}
        cleared = client.clear_tasks(dag_id, run_id, steps)
        assert sorted(t["task_id"] for t in cleared) == sorted(steps)
        assert client.wait_run(dag_id, run_id, timeout=600)["state"] == "success"
        after = {t["task_id"]: (t["state"], t["try_number"]) for t in client.task_instances(dag_id, run_id)}
    assert {t: after[t] for t in steps} == {t: ("success", tries[t] + 1) for t in steps}
    assert after["approve"] == ("success", tries["approve"])  # the human is not asked again
    assert _state(model_status(cfg, "iris")) == _state(before)


def test_rerunning_a_retrain_task_registers_no_second_version(demo) -> None:
    """The demo's ``iris__retrain`` run trained v1; clearing its task finds that version (tagged with
    the run) instead of training and registering another, which would start another CI/CD run."""
    from pushbutton import registry as reg
    from pushbutton.airflow_client import AirflowClient

    cfg, report, _ = demo
    registry = reg.Registry(cfg.mlflow_url)
    before = [v.version for v in registry.versions("iris")]
    with AirflowClient.from_settings(cfg) as client:
        [run] = [r for r in client.list_runs("iris__retrain") if r["run_type"] == "manual"]  # the demo's
        tag = f"iris__retrain/{run['dag_run_id']}"  # (the closed loop's alert-triggered run tagged its own)
        tagged = [v.version for v in registry.versions("iris") if v.tags.get(reg.TRAIN_RUN) == tag]
        assert tagged == [report["versions"]["v1"]]
        cicd_before = {r["dag_run_id"] for r in client.list_runs("iris__cicd")}
        client.clear_tasks("iris__retrain", run["dag_run_id"], ["train_and_register"])
        assert client.wait_run("iris__retrain", run["dag_run_id"], timeout=300)["state"] == "success"
        cicd_after = {r["dag_run_id"] for r in client.list_runs("iris__cicd")}
    assert [v.version for v in registry.versions("iris")] == before
    assert cicd_after == cicd_before


def _state(status: dict) -> dict:
    """What a re-run must not change: everything in ``pushbutton status`` but the request counters
    and when each version's last CI/CD run started and ended (the re-run is that same run)."""
    serving = status["serving"]
    backends = {role: (b["service"], b["pid"], b["url"]) for role, b in serving["backends"].items()}
    versions = [
        {**v, "last_run": {k: x for k, x in v["last_run"].items() if k not in ("started", "ended")}}
        if v.get("last_run")
        else v
        for v in status["versions"]
    ]
    return {**status, "versions": versions, "serving": {**serving, "backends": backends}}


def test_one_click_on_approve_in_the_airflow_ui_releases_a_pushed_version(demo, tmp_path) -> None:
    """The promise of the product, in a real browser: push, then a person opens Browse → Required
    Actions, sees the test report and clicks Approve — no form to fill — and the version serves.
    The click comes the moment the request appears (the plugin holds it until the task settled)."""
    from pushbutton.actions import push
    from pushbutton.airflow_client import AirflowClient
    from tests.e2e.browser import airflow_ui

    cfg, _, _ = demo
    model_dir = tmp_path / "iris"
    shutil.copytree(REPO_ROOT / "models" / "iris", model_dir, ignore=shutil.ignore_patterns("__pycache__"))
    pushed = push(cfg, model_dir, trigger=True)
    version, dag_id, run_id = pushed["version"], pushed["pipeline"]["dag_id"], pushed["pipeline"]["run_id"]
    with AirflowClient.from_settings(cfg) as client, airflow_ui(cfg) as page:
        page.goto(f"{cfg.airflow_url}/required_actions")  # Browse → Required Actions
        client.wait_hitl(dag_id, run_id, timeout=600, poll=0.2)
        page.reload()
        page.get_by_role("link", name=f"Release iris v{version} to production?").click()
        page.get_by_text(f"Test report: iris v{version} — PASSED").wait_for()
        with page.expect_response(
            lambda r: r.url.endswith("/hitlDetails") and r.request.method == "PATCH"
        ) as sent:
            page.get_by_role("button", name="Approve", exact=True).click()
        assert sent.value.status == 200, sent.value.text()
        assert client.wait_run(dag_id, run_id, timeout=300)["state"] == "success"
        approve = next(t for t in client.task_instances(dag_id, run_id) if t["task_id"] == "approve")
    assert (approve["state"], approve["try_number"]) == ("success", 1)
    assert iris_answers(cfg) == {(200, version)}
