"""The demo's closed loop (after its monitoring steps), every step a real Airflow run on the stack:

1. drifted traffic for a second window: ``iris__monitor``'s ``drift-retrain`` rule (two windows
   running) fires, and ``request_retrain`` emits the model's retrain asset event;
2. the scheduler starts ``iris__retrain`` on that event; it registers a version tagged with its
   lineage (trigger ``alert``, the alert's id, the parent version);
3. the MLflow webhook starts that version's CI/CD: the same gates as any push, then a 10% canary;
4. two windows of labelled canary traffic, each monitored (the demo plays the monitor schedule): the
   ``auto`` promotion policy promotes the canary — ``approve`` answers itself, with the evidence;
5. a deliberately broken version (its predict answers the next class; its gate lowered so it passes)
   is pushed and approved by hand;
6. labelled traffic on it: ``accuracy-collapse`` (critical) fires and rolls back to the previous
   champion through the rollback button's path.

It prints a timeline with each step's time since the loop started; any wrong outcome fails the demo.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from pushbutton.config import REPO_ROOT
from pushbutton.errors import PushbuttonError

WINDOW_ROWS = 600  # rows per canary window: ~20 of its 200 requests reach a 10% canary


class ClosedLoopDemo:
    def __init__(self, demo: Any, monitoring: Any):
        from pushbutton.registry import Registry

        self.demo, self.m, self.model = demo, monitoring, monitoring.model
        self.registry = Registry(demo.cfg.mlflow_url)
        self.started = time.monotonic()
        self.timeline: list[tuple[str, float]] = []

    def mark(self, what: str) -> None:
        self.timeline.append((what, round(time.monotonic() - self.started, 1)))

    def run(self) -> dict[str, Any]:
        d, m = self.demo, self.m
        facts: dict[str, Any] = {}
        with d.step("closed loop: a second drifted window → drift-retrain fires → retrain asset event") as f:
            self.mark("drift onset (second drifted window starts)")
            drifted = m.send("drifted-again", m.shifted())
            m.monitor(drifted)
            alert = self.alert("drift-retrain", "firing")
            if alert.outcome("retrain") is None or alert.outcome("retrain").outcome != "requested":
                raise PushbuttonError(f"drift-retrain fired without requesting a retrain: {alert.summary()}")
            self.mark("alert fired, retrain requested")
            f |= {"alert": alert.id, "value": round(alert.value or 0, 3)}
        with d.step(f"{self.model}__retrain runs on the asset event and registers a version") as f:
            run = self.asset_run()
            state = d.client.wait_run(f"{self.model}__retrain", run["dag_run_id"], timeout=300)["state"]
            if state != "success":
                raise PushbuttonError(f"{self.model}__retrain run {run['dag_run_id']} ended {state}")
            retrained = d.trained_by(self.registry, run["dag_run_id"])
            tags = self.registry.get(self.model, retrained).tags
            if tags.get("pushbutton.trigger") != "alert" or tags.get("pushbutton.alert_id") != alert.id:
                raise PushbuttonError(
                    f"v{retrained} lacks its lineage (trigger alert, alert {alert.id}): {tags}"
                )
            self.mark(f"v{retrained} registered by the retrain")
            f |= {
                "version": retrained,
                "parent": tags.get("pushbutton.parent_version"),
                "run": run["dag_run_id"],
            }
        with d.step(f"v{retrained}: build → test → register → canary 10% (same gates as a push)") as f:
            cicd = d.pipeline_run(retrained)
            f["seconds_to_canary"] = round(d.until_serving(retrained, timeout=300, share=0.1), 1)
            self.mark(f"v{retrained} serving as canary")
        with d.step(f"two labelled canary windows → the auto policy promotes v{retrained}") as f:
            for k in range(2):
                window = m.send(f"canary-{k}", m.frame, WINDOW_ROWS)
                m.labels(window)
                m.monitor(window)
            state = d.finish(cicd)
            champion = self.champion()
            if state != "success" or champion != retrained:
                raise PushbuttonError(
                    f"v{retrained} was not promoted by policy (run {state}, champion v{champion})"
                )
            activation = self.history("activate", retrained)
            f |= {"approver": activation["actor"], "evidence": activation["detail"].get("comment", "")[:120]}
            self.mark(f"v{retrained} champion by policy")
        with d.step(
            "push a deliberately broken version (answers the next class) and approve it by hand"
        ) as f:
            broken = self.push_broken()
            run_b = d.pipeline_run(broken)
            d.approval(run_b)
            d.answer(run_b, "Approve")
            if d.finish(run_b) != "success" or self.champion() != broken:
                raise PushbuttonError(f"the broken v{broken} did not become the champion")
            d.until_serving(broken, timeout=60)
            self.mark(f"broken v{broken} activated by hand")
            f["version"] = broken
        with d.step(f"labelled traffic on v{broken} → accuracy-collapse → automatic rollback") as f:
            window = m.send("broken", m.frame)
            m.labels(window)
            m.monitor(window)
            alert = self.alert("accuracy-collapse", "firing")
            done = alert.outcome("rollback")
            if done is None or done.outcome != "done":
                raise PushbuttonError(f"accuracy-collapse did not roll back: {alert.summary()}")
            f["serving_after_s"] = round(d.until_serving(retrained, timeout=120), 1)
            self.mark(f"v{retrained} serving again (automatic rollback)")
            f |= {"rule_value": round(alert.value or 0, 3), "rollback": done.detail[:120]}
        facts |= {"retrained": retrained, "broken": broken, "alert": alert.id, "timeline": self.timeline}
        self.print_timeline()
        d.report["closed_loop"] = facts
        return facts

    # -- helpers ----------------------------------------------------------------------------

    def alert(self, rule: str, state: str) -> Any:
        from pushbutton.monitoring.store import open_store

        with open_store(cfg=self.demo.cfg) as store:
            found = store.alerts(self.model, rule=rule, limit=1)
        if not found or found[0].state != state:
            raise PushbuttonError(f"rule {rule} is not {state}: {[e.summary() for e in found]}")
        return found[0]

    def asset_run(self, timeout: float = 120.0) -> dict[str, Any]:
        """The ``iris__retrain`` run the scheduler created for the asset event."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = [r for r in self.demo.client.list_runs(f"{self.model}__retrain")
                    if r.get("run_type") == "asset_triggered"]  # fmt: skip
            if runs:
                return runs[0]
            time.sleep(1)  # the scheduler creates the run on its next loop
        raise PushbuttonError(f"no asset-triggered {self.model}__retrain run within {timeout:.0f}s")

    def champion(self) -> str | None:
        found = self.registry.by_alias(self.model, "champion")
        return found.version if found else None

    def history(self, action: str, version: str) -> dict[str, Any]:
        from pushbutton.history import HistoryStore

        for event in HistoryStore(self.demo.cfg.store).events(self.model, limit=20):
            if event["action"] == action and event["version"] == version:
                return event
        raise PushbuttonError(f"no {action} of v{version} in the serving history")

    def push_broken(self) -> str:
        from pushbutton.actions import push

        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(tmp) / self.model
            shutil.copytree(REPO_ROOT / "models" / self.model, model_dir,
                            ignore=shutil.ignore_patterns("__pycache__", "tests", "golden.csv"))  # fmt: skip
            spec = model_dir / "model.yaml"
            text = spec.read_text().replace("tests: tests\n", "").replace("  golden: golden.csv\n", "")
            text = text.replace("{min: 0.85}", "{min: 0.0}").replace(
                "champion_tolerance: 0.02", "champion_tolerance: 1.0"
            )
            spec.write_text(text)
            predict = model_dir / "predict.py"
            predict.write_text(predict.read_text().replace(
                "        return self.model.predict(self.frame(X, features_names))",
                "        return (self.model.predict(self.frame(X, features_names)) + 1) % 3  # deliberately wrong"))  # fmt: skip
            return push(self.demo.cfg, model_dir)["version"]

    def print_timeline(self) -> None:
        print("\n  closed loop timeline (seconds since the second drifted window began):", flush=True)
        for what, at in self.timeline:
            print(f"  {at:7.1f}s  {what}", flush=True)
