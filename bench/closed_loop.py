"""Benchmark: the closed loop on the embedded stack with a one-minute monitor schedule, nothing triggered
by hand but the bad release's approval.

A copy of ``models/iris`` with ``monitor: "* * * * *"`` serves v1 (trained, approved). A load thread
sends ``--rate`` requests/s of iris rows through the gateway the whole time and posts each answer's
label to the logger (``POST /labels/iris``) a few seconds later, counting every failed request.

1. drift onset: the load switches to drifted rows → the scheduled monitor fires ``drift-retrain``
   (two windows) → ``iris__retrain`` runs on the asset event → its CI/CD deploys the canary. Measured:
   onset → alert, alert → canary serving (goal: onset → canary ≤ 5 min). The load returns to normal
   rows once the canary serves (a retrain on the same data set cannot fix the drift; the canary would
   otherwise be judged on drifted traffic).
2. the ``auto`` policy promotes the canary after two scheduled windows: canary → champion.
3. a broken version (answers the next class, gate lowered) is approved by hand: activation → previous
   champion serving again (goal ≤ 2 min), by ``accuracy-collapse`` on the labels of the next window.
4. a storm: 50 Alertmanager alerts (distinct fingerprints, ``action: retrain``) for ``diabetes`` to the
   plugin's ``/pushbutton/alerts/alertmanager`` within seconds: retrain runs started (goal: 1).

    .venv/bin/python bench/closed_loop.py [--rate 20] [--report closed_loop.json]

Prints the command line and a JSON summary; stops the stack it started (its own temporary home).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL = "iris"


class Load(threading.Thread):
    """Open-loop requests at ``rate``/s (rows from ``frame``, switchable), labels posted in batches."""

    def __init__(self, cfg: Any, spec: Any, frame: Any, rate: float):
        super().__init__(daemon=True)
        self.cfg, self.spec, self.frame, self.rate = cfg, spec, frame, rate
        self.url = f"{cfg.gateway_url}/seldon/{cfg.namespace}/{MODEL}/api/v1.0/predictions"
        self.rows = frame
        self.sent = self.failed = 0
        self.by_version: dict[str, int] = {}
        self.labels: list[dict[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        names, target = self.spec.feature_names, self.spec.data.target
        with httpx.Client(timeout=30) as client:
            n, next_at, flushed = 0, time.monotonic(), time.monotonic()
            while not self.stop.is_set():
                row = self.rows.iloc[n % len(self.rows)]
                n += 1
                try:
                    answer = client.post(self.url, json={"data": {"names": names, "ndarray": [
                        [float(row[f]) for f in names]]}})  # fmt: skip
                    ok = answer.status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.sent += 1
                if not ok:
                    self.failed += 1
                else:
                    version = answer.headers.get("X-Pushbutton-Version", "?")
                    self.by_version[version] = self.by_version.get(version, 0) + 1
                    puid = answer.headers.get("Seldon-Puid")
                    if puid:
                        self.labels.append({"request_id": puid, "row": 0, "label": int(row[target])})
                if time.monotonic() - flushed > 3 and self.labels:
                    batch, self.labels = self.labels, []
                    client.post(f"{self.cfg.logger_url}/labels/{MODEL}", json={"labels": batch})
                    flushed = time.monotonic()
                next_at += 1 / self.rate
                time.sleep(max(0.0, next_at - time.monotonic()))


def wait(what: str, check: Any, timeout: float, poll: float = 1.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        found = check()
        if found:
            return time.monotonic() - started
        time.sleep(poll)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s")


def answered_by(cfg: Any, version: str, n: int = 20) -> float:
    url = f"{cfg.gateway_url}/seldon/{cfg.namespace}/{MODEL}/api/v1.0/predictions"
    body = {"data": {"names": ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"],
                     "ndarray": [[5.1, 3.5, 1.4, 0.2]]}}  # fmt: skip
    with httpx.Client(timeout=10) as client:
        versions = [client.post(url, json=body).headers.get("X-Pushbutton-Version") for _ in range(n)]
    return versions.count(version) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second of the load")
    parser.add_argument("--report", type=Path, help="write the JSON summary here too")
    args = parser.parse_args(argv)
    print("command:", shlex.join([sys.executable, *sys.argv]), flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="pushbutton-closed-loop-"))
    models = tmp / "models"
    shutil.copytree(REPO / "models", models, ignore=shutil.ignore_patterns("__pycache__"))
    spec_file = models / MODEL / "model.yaml"
    spec_file.write_text(spec_file.read_text().replace('monitor: "*/30 * * * *"', 'monitor: "* * * * *"'))
    os.environ.update({"PUSHBUTTON_HOME": str(tmp / "home"), "PUSHBUTTON_MODELS_DIR": str(models),
                       "PUSHBUTTON_SCHEDULES": "on", "PUSHBUTTON_POLICY_POKE_SECONDS": "5"})  # fmt: skip

    from pushbutton.config import settings
    from pushbutton.data import load_frame
    from pushbutton.demo import Demo
    from pushbutton.demo_loop import ClosedLoopDemo
    from pushbutton.demo_monitoring import MonitoringDemo
    from pushbutton.monitoring.store import open_store
    from pushbutton.stack import alerts_token, down, up, webhook_secret

    settings.cache_clear()
    cfg = settings()
    out: dict[str, Any] = {"rate": args.rate}
    try:
        up(cfg)
        demo = Demo(cfg)
        run = demo.client.trigger(f"{MODEL}__retrain", note="bench: v1")
        demo.client.wait_run(f"{MODEL}__retrain", run["dag_run_id"], timeout=300)
        from pushbutton.registry import Registry

        registry = Registry(cfg.mlflow_url)
        v1 = demo.trained_by(registry, run["dag_run_id"])
        cicd = demo.pipeline_run(v1)
        demo.approval(cicd)
        demo.answer(cicd, "Approve")
        demo.finish(cicd)
        monitoring = MonitoringDemo(demo, MODEL)
        loop = ClosedLoopDemo(demo, monitoring)
        spec = monitoring.spec
        load = Load(cfg, spec, load_frame(spec, models / MODEL), args.rate)
        load.start()
        time.sleep(65)  # one clean scheduled window first

        onset = time.monotonic()
        load.rows = monitoring.shifted()
        alert_s = wait("drift-retrain fires", lambda: _firing(cfg, "drift-retrain"), 600, 2)
        retrained = wait_version(loop, registry, v1)
        load.rows = load.frame
        wait(f"v{retrained} answers (canary)", lambda: answered_by(cfg, retrained) > 0, 600, 2)
        out["drift_onset_to_alert_s"] = round(alert_s, 1)
        out["drift_onset_to_canary_serving_s"] = round(time.monotonic() - onset, 1)
        out["alert_to_canary_serving_s"] = round(out["drift_onset_to_canary_serving_s"] - alert_s, 1)
        promoted = time.monotonic()
        wait("the policy promotes the canary", lambda: loop.champion() == retrained, 900, 2)
        out["canary_to_champion_s"] = round(time.monotonic() - promoted, 1)

        broken = loop.push_broken()
        run_b = demo.pipeline_run(broken)
        demo.approval(run_b)
        demo.answer(run_b, "Approve")
        demo.finish(run_b)
        activated = time.monotonic()
        wait("automatic rollback", lambda: answered_by(cfg, retrained) == 1.0, 600, 2)
        out["bad_activation_to_previous_serving_s"] = round(time.monotonic() - activated, 1)

        out["storm"] = storm(cfg, demo, alerts_token(webhook_secret(cfg)))
        load.stop.set()
        load.join(timeout=30)
        out |= {"requests": load.sent, "failed": load.failed, "by_version": load.by_version}
        with open_store(cfg=cfg) as store:
            out["alert_history"] = [e.summary() for e in store.alerts(MODEL, limit=20)]
    finally:
        out["stopped"] = down(cfg)
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=2))
    if args.report:
        args.report.write_text(json.dumps(out, indent=2))
    return 0


def _firing(cfg: Any, rule: str) -> bool:
    from pushbutton.monitoring.store import open_store

    with open_store(cfg=cfg) as store:
        found = store.alerts(MODEL, rule=rule, limit=1)
    return bool(found) and found[0].state == "firing"


def wait_version(loop: Any, registry: Any, after: str) -> str:
    run = loop.asset_run(timeout=300)
    loop.demo.client.wait_run(f"{MODEL}__retrain", run["dag_run_id"], timeout=300)
    return loop.demo.trained_by(registry, run["dag_run_id"])


def storm(cfg: Any, demo: Any, token: str, model: str = "diabetes") -> dict[str, Any]:
    """50 Alertmanager alerts asking ``model`` (not iris: its drift retrain is within the cooldown) for a
    retrain within seconds: how many retrain runs start."""
    before = {r["dag_run_id"] for r in demo.client.list_runs(f"{model}__retrain")}
    url = f"{cfg.airflow_url}/pushbutton/alerts/alertmanager"
    statuses = []
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
        for n in range(50):
            body = {"version": "4", "status": "firing", "commonLabels": {"model": model}, "alerts": [
                {"status": "firing", "labels": {"alertname": "BenchStorm", "action": "retrain"},
                 "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "fingerprint": f"storm-{n}"}]}  # fmt: skip
            statuses.append(client.post(url, json=body).status_code)

    def new_runs() -> list[dict[str, Any]]:
        return [r for r in demo.client.list_runs(f"{model}__retrain") if r["dag_run_id"] not in before]

    wait("a retrain run for the storm", new_runs, 120, 1)
    time.sleep(30)  # an observation window: any further run the storm caused would appear in it
    runs = new_runs()
    return {"alerts": 50, "http_200": statuses.count(200), "retrain_runs_started": len(runs)}


if __name__ == "__main__":
    sys.exit(main())
