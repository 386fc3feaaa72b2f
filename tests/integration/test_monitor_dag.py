"""`dag.test()` of a model's ``<model>__monitor`` DAG against the real SQL monitoring store and the tier's
shared MLflow: a version trained with its reference artifact, a window of logged (drifted) rows with
labels, and a custom indicator that raises — every other indicator is still written, drift is flagged,
and the drift report is stored in the home and as an MLflow artifact of the version."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pushbutton import registry as reg
from pushbutton.config import REPO_ROOT, Settings
from pushbutton.dagstubs import sync_stubs
from pushbutton.monitoring.records import InferenceRecord, Label
from pushbutton.monitoring.store import open_store
from tests.integration.platform import model_copy

pytestmark = pytest.mark.integration

MODEL = "monitor-iris"
END = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
START = END - timedelta(minutes=30)
CUSTOM = "def explode(inputs):\n    raise ZeroDivisionError('the custom indicator divided by zero')\n"
RUN = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from sqlalchemy import select
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.utils.session import create_session
    stubs, model, steps = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    bag = BundleDagBag(dag_folder=str(stubs / "models" / f"{model}.py"), bundle_path=stubs,
                       bundle_name="pushbutton-models")
    assert not bag.import_errors, bag.import_errors
    out = []
    for step in steps:
        if step.get("queue_retrain"):  # a retrain run waiting: the next request must be absorbed, not lost
            from airflow.api.common.trigger_dag import trigger_dag
            from airflow.utils.types import DagRunTriggeredByType
            trigger_dag(f"{model}__retrain", run_id="manual__queued-retrain", conf={},
                        triggered_by=DagRunTriggeredByType.TEST)
        run = bag.dags[f"{model}__monitor"].test(run_conf=step["conf"])
        out.append({"state": str(run.state), "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}})
    with create_session() as session:
        uri = f"pushbutton://{model}/retrain"
        events = session.scalars(select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                                 .where(AssetModel.uri == uri)).all()
        queued = session.scalars(select(AssetDagRunQueue.target_dag_id)).all()
    print(json.dumps({"runs": out, "events": [e.extra for e in events], "queued": sorted(set(queued))}))
    """
)


def logged(
    spec, data, estimator, version: str, shift: timedelta = timedelta(0), prefix: str = "req"
) -> list[InferenceRecord]:
    """100 single-row requests of the holdout's rows with petal_length_cm moved by +3 (≈ 1.7 std), answered
    by the model, in the window; two more in the previous window."""
    rows = data.x_holdout.sample(n=100, replace=True, random_state=3).copy()
    rows["petal_length_cm"] += 3.0
    answers = estimator.predict(rows)
    records = []
    for i in range(102):
        at = shift + (
            START + timedelta(seconds=15 * i) if i < 100 else START - timedelta(minutes=5 + i - 100)
        )
        row = rows.iloc[i % 100]
        records.append(InferenceRecord(
            request_id=f"{prefix}-{i:03d}", model=MODEL, predictor="champion", version=version, namespace="monitoring",
            model_id=MODEL, request_event_id=f"{prefix}q-{i}", response_event_id=f"{prefix}p-{i}", request_time=at,
            response_time=at + timedelta(milliseconds=4), latency_ms=4.0, status=200,
            names=tuple(spec.feature_names), inputs=[[float(row[f]) for f in spec.feature_names]],
            predictions=[int(answers[i % 100])], request_body="{}", response_body="{}",
        ))  # fmt: skip
    return records


def test_the_monitor_dag_writes_every_indicator_and_the_report(
    shared_stack: Settings, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    from pushbutton.data import split
    from pushbutton.spec import load_model_dir
    from pushbutton.stack import airflow_env, webhook_secret
    from pushbutton.training import fit, train_and_register

    models, stubs = tmp_path / "models", tmp_path / "stubs"
    extra = "  - id: exploding\n    type: custom\n    params: {function: explode}\n"
    own = (REPO_ROOT / "models" / "iris" / "indicators.py").read_text()  # iris's petal_ratio_shift stays
    model_dir = model_copy(REPO_ROOT / "models" / "iris", models / MODEL, name=MODEL, namespace="monitoring",
                           edits={"    params: {p99_ms: 500}\n": "    params: {p99_ms: 500}\n" + extra,
                                  "    above: 0.5\n    for: 2\n    cooldown: 2h\n": "    above: 0.2\n    for: 1\n    cooldown: 1m\n"},
                           files={"indicators.py": own + "\n\n" + CUSTOM})  # fmt: skip
    cfg = shared_stack.model_copy(update={"models_dir": models, "stubs_dir": stubs})
    spec = load_model_dir(model_dir)
    registry = reg.Registry(cfg.mlflow_url)
    trained = train_and_register(spec, model_dir, registry, source="test")
    run_id = trained.run_id
    client = MlflowClient(cfg.mlflow_url)
    assert {Path(a.path).name for a in client.list_artifacts(run_id, "reference")} == {
        "inputs.parquet", "predictions.parquet", "stats.json"}  # fmt: skip

    fitted = fit(spec, model_dir)
    records = logged(spec, split(spec, model_dir), fitted.estimator, trained.version)
    with open_store(cfg.monitoring) as store:
        store.ensure_model(MODEL, spec.schema_.inputs, spec.schema_.output)
        store.write_records(records)
        later = logged(
            spec, split(spec, model_dir), fitted.estimator, trained.version, timedelta(minutes=30), "next"
        )
        store.write_records(later[:100])  # the next window drifts the same way
        truth = [Label(r.request_id, r.predictions[0]) for r in records[:60]]  # the model was right
        store.write_labels(MODEL, truth)

    sync_stubs(models, stubs)
    env = airflow_env(cfg, webhook_secret(cfg))
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    window = {"window_start": START.isoformat(), "window_end": END.isoformat()}
    later = {"window_start": END.isoformat(), "window_end": (END + timedelta(minutes=30)).isoformat()}
    steps = [{"conf": window}, {"conf": window}, {"conf": later, "queue_retrain": True}]
    proc = subprocess.run([sys.executable, "-c", RUN, str(stubs), MODEL, json.dumps(steps)], env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    done = dict.fromkeys(("probe_serving", "compute_indicators", "write_indicators", "log_report",
                          "purge_request_log", "evaluate_alerts"), "success")  # fmt: skip
    first, again, busy = outcome["runs"]
    # drift fired the retrain rule: the asset event went out, with the alert in its extra
    assert first == {"state": "success", "tasks": {**done, "request_retrain": "success"}}
    # the same window again (a re-run): the same alert, already acted on — no second asset event
    assert again == {"state": "success", "tasks": {**done, "request_retrain": "skipped"}}
    # the next window fires again (cooldown 1m) while a retrain is queued: absorbed, not sent to be lost
    assert busy == {"state": "success", "tasks": {**done, "request_retrain": "skipped"}}
    [extra] = outcome["events"]
    assert (extra["rule"], extra["model"], extra["indicator"], extra["source"]) == (
        "drift-retrain", MODEL, "feature_drift", "rule")  # fmt: skip
    assert f"{MODEL}__retrain" in outcome["queued"]  # the scheduler will start the retrain on it
    with open_store(cfg.monitoring) as store:
        history = store.alerts(MODEL, rule="drift-retrain")
    assert [(e.at, e.state, e.outcome("retrain").outcome) for e in history] == [
        (END + timedelta(minutes=30), "firing", "absorbed"), (END, "firing", "requested")]  # fmt: skip
    assert f"{MODEL}__retrain: 1 run(s) queued or running" in history[0].outcome("retrain").detail
    assert history[1].id == extra["alert_id"] and history[1].value == extra["value"] > 0.2

    # the failing custom indicator is logged with its traceback, and only it failed
    assert "ZeroDivisionError: the custom indicator divided by zero" in proc.stdout + proc.stderr

    with open_store(cfg.monitoring) as store:
        results = {r.indicator_id: r for r in store.indicators(MODEL, last=2) if r.window_end == END}
    assert set(results) == {"feature_drift", "class_balance", "canary_skew", "accuracy", "error_rate",
                            "latency", "log_loss", "petal_ratio", "exploding"}  # fmt: skip
    assert {(r.predictor, r.version, r.window_start, r.window_end) for r in results.values()} == {
        ("champion", trained.version, START, END)}  # fmt: skip
    drift = results["feature_drift"]
    assert drift.flagged is True and drift.sample_size == 100
    assert drift.details["petal_length_cm"]["flagged"] is True
    assert drift.details["_meta"]["method"] == "ks"
    assert results["exploding"].status == "error" and "ZeroDivisionError" in results["exploding"].message
    assert (results["accuracy"].status, results["accuracy"].value, results["accuracy"].sample_size) == (
        "ok",
        1.0,
        60,
    )
    assert results["canary_skew"].status == "missing_reference"  # no other predictor answered
    assert (results["error_rate"].status, results["error_rate"].value) == ("ok", 0.0)

    report = cfg.home / "monitoring" / "reports" / MODEL / "20261130T100000Z.html"
    text = report.read_text()
    assert "petal_length_cm" in text and "FLAGGED" in text and "https://" not in text
    assert report.name in [Path(a.path).name for a in client.list_artifacts(run_id, "monitoring")]
