"""The demo's monitoring steps on the shared demo stack: the traffic it sent is in the request log with
its answers, the monitor DAG wrote every declared indicator for the serving version, clean traffic
was not flagged and drifted traffic was, and the report is stored in the home and in MLflow."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pushbutton.cli import main as cli
from pushbutton.demo_monitoring import ROWS, ROWS_PER_REQUEST, SHIFTED
from pushbutton.monitoring.store import open_store

pytestmark = pytest.mark.e2e
DECLARED = {
    "feature_drift",
    "class_balance",
    "canary_skew",
    "accuracy",
    "error_rate",
    "latency",
    "log_loss",
    "petal_ratio",
}  # the last: iris's own function in models/iris/indicators.py


def window(facts: dict) -> tuple[datetime, datetime]:
    return (datetime.fromisoformat(facts["window"]["window_start"]),
            datetime.fromisoformat(facts["window"]["window_end"]))  # fmt: skip


def test_the_demo_traffic_is_logged_with_its_answers(demo) -> None:
    cfg, report, _ = demo
    v1 = report["versions"]["v1"]
    with open_store(cfg=cfg) as store:
        for phase in ("normal", "drifted"):
            start, end = window(report["monitoring"][phase])
            records = [r for r in store.records("iris", start, end) if r["request_id"].startswith("demo-")]
            assert len(records) == ROWS // ROWS_PER_REQUEST, phase
            assert all(r["complete"] and r["status"] == 200 and r["version"] == v1 for r in records)
            assert {r["predictor"] for r in records} == {"champion"}
            rows = store.rows("iris", start, end)
            assert len(rows) == ROWS and rows["prediction"].notna().all()
        labels = report["monitoring"]["labels"]
        assert (labels["matched"], labels["unknown"]) == (ROWS // ROWS_PER_REQUEST, 1)  # the made-up id


def test_every_request_the_demo_sent_through_the_gateway_is_logged_once(demo) -> None:
    cfg, report, _ = demo
    facts = report["monitoring"]["request_log"]
    release = 1000 + report["activation"]["requests"] + report["rollback"]["requests"]  # canary + loads
    assert facts["sent"] >= release + 2 * ROWS // ROWS_PER_REQUEST
    assert (facts["logged"], facts["missing"], facts["duplicated"]) == (facts["sent"], 0, 0)
    token = report["monitoring"]["token"]
    with open_store(cfg=cfg) as store:
        records = [
            r for r in store.records("iris", datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
            if r["request_id"].startswith(f"demo-{token}-")
        ]  # fmt: skip
    assert len({r["request_id"] for r in records}) == len(records) == facts["sent"]
    assert all(r["complete"] and r["status"] == 200 for r in records)


def test_the_monitor_wrote_every_indicator_and_flagged_only_the_drift(demo) -> None:
    cfg, report, _ = demo
    v1 = report["versions"]["v1"]
    facts = report["monitoring"]
    assert facts["normal"]["drift_flagged"] is False and facts["drifted"]["drift_flagged"] is True
    assert set(facts["drifted"]["drifted_features"]) == set(SHIFTED)
    with open_store(cfg=cfg) as store:
        results = store.indicators("iris", version=v1, predictor="champion", last=10)
    by_window = {
        phase: {r.indicator_id: r for r in results if (r.window_start, r.window_end) == window(facts[phase])}
        for phase in ("normal", "drifted")
    }
    for phase, found in by_window.items():
        assert set(found) == DECLARED, phase
        assert found["feature_drift"].sample_size == ROWS
        assert found["error_rate"].status == "ok" and found["error_rate"].flagged is False
    normal, drifted = by_window["normal"], by_window["drifted"]
    assert normal["accuracy"].status == "ok" and normal["accuracy"].value >= 0.85  # its labels came in
    assert drifted["accuracy"].status == "insufficient"  # no labels for the drifted traffic
    assert normal["canary_skew"].status == "missing_reference"  # only the champion serves
    # the class probabilities iris's predict_proba gives were logged beside the labels
    assert normal["log_loss"].status == "ok" and 0 < normal["log_loss"].value < 0.5
    # the data scientist's own indicator: the petals' shape moved only in the drifted traffic
    assert (normal["petal_ratio"].flagged, drifted["petal_ratio"].flagged) == (False, True)


def test_the_drift_report_is_in_the_home_and_in_mlflow(demo, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow import MlflowClient

    from pushbutton.registry import Registry

    cfg, report, stdout = demo
    path = Path(report["monitoring"]["drifted"]["report"])
    text = path.read_text()
    assert all(f"<h3>{name}</h3>" in text for name in SHIFTED) and "FLAGGED" in text
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert f"drift report: {path}" in stdout
    run_id = Registry(cfg.mlflow_url).get("iris", report["versions"]["v1"]).run_id
    logged = {Path(a.path).name for a in MlflowClient(cfg.mlflow_url).list_artifacts(run_id, "monitoring")}
    assert path.name in logged
    # v1's latest windows (the loop's drifted one among them): flagged; the latest report is the loop's last
    assert cli(["indicators", "iris", "--version", report["versions"]["v1"], "--last", "3"]) == 0
    out = capsys.readouterr().out
    latest = max((cfg.home / "monitoring" / "reports" / "iris").glob("*.html"))
    assert "FLAGGED" in out and f"latest drift report: {latest}" in out and latest.name >= path.name
