"""The demo's monitoring steps (after the release steps of ``pushbutton.demo``):

1. send normal traffic — rows drawn (seeded) from the model's own data set, a few per request, each
   request with its own ``Seldon-Puid`` — and wait until the request log holds every row;
2. send its labels as ``pushbutton labels MODEL FILE`` does (plus one label for a request that was never
   made: it is reported, not dropped);
3. run ``<model>__monitor`` over exactly that traffic's window (triggered: the demo's stack has no
   schedules): the drift indicator must not flag it;
4. send drifted traffic — the same kind of rows with ``SHIFTED`` features moved by ``SHIFT_STD``
   standard deviations of the training data — and run the monitor over that window: drift is flagged,
   and the drift report's path is printed;
5. at the very end of the demo (``finish``, after the closed loop): check that every request the gateway
   answered the demo — the release steps' load and the loop's traffic included, each sent with its own
   ``Seldon-Puid`` — is in the request log exactly once, paired with its response.

The facts go into the demo's report under ``monitoring``; a wrong verdict fails the demo.
"""

from __future__ import annotations

import csv
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from pushbutton.config import REPO_ROOT
from pushbutton.errors import PushbuttonError

ROWS = 300
ROWS_PER_REQUEST = 3
SHIFT_STD = 2.5
SHIFTED = ("sepal_length_cm", "petal_length_cm", "petal_width_cm")
DRIFT_ID = "feature_drift"
LOG_TIMEOUT = 60.0


class MonitoringDemo:
    def __init__(self, demo: Any, model: str):
        from pushbutton.data import load_frame
        from pushbutton.spec import load_model_dir

        self.demo, self.model, self.cfg = demo, model, demo.cfg
        model_dir = REPO_ROOT / "models" / model
        self.spec = load_model_dir(model_dir)
        self.frame = load_frame(self.spec, model_dir)
        self.token = demo.puids.token  # the ids of all the demo's requests share it

    def run(self) -> dict[str, Any]:
        facts: dict[str, Any] = {}
        with self.demo.step(
            f"normal traffic: {ROWS} rows of {self.model}'s own data through the gateway"
        ) as f:
            normal = self.send("normal", self.frame)
            f |= {"requests": normal["requests"], "rows": normal["rows"], "logged_rows": normal["logged"]}
        with self.demo.step(
            f"send their labels as `pushbutton labels {self.model} FILE` does (one id never logged)"
        ) as f:
            f |= self.labels(normal)
        with self.demo.step(f"run {self.model}__monitor over the normal window: no drift expected") as f:
            facts["normal"] = self.monitor(normal)
            f |= _short(facts["normal"])
        shifted = self.shifted()
        title = f"drifted traffic: {', '.join(SHIFTED)} shifted by +{SHIFT_STD} std"
        with self.demo.step(title) as f:
            drifted = self.send("drifted", shifted)
            f |= {"requests": drifted["requests"], "rows": drifted["rows"], "logged_rows": drifted["logged"]}
        with self.demo.step(f"run {self.model}__monitor over the drifted window: drift flagged") as f:
            facts["drifted"] = self.monitor(drifted)
            f |= _short(facts["drifted"])
        print(f"  drift report: {facts['drifted']['report']}", flush=True)
        facts["labels"] = normal.get("labels")
        facts["token"] = self.demo.puids.token
        self.demo.report["monitoring"] = facts
        if facts["normal"]["drift_flagged"] is not False:
            raise PushbuttonError(f"clean traffic was not judged 'no drift': {facts['normal']}")
        if facts["drifted"]["drift_flagged"] is not True:
            raise PushbuttonError(f"drifted traffic was not flagged: {facts['drifted']}")
        return facts

    def finish(self) -> dict[str, Any]:
        """The demo's last check, after everything it sent (the closed loop included)."""
        with self.demo.step("every request the demo sent through the gateway is in the request log") as f:
            found = self.everything_logged()
            f |= found
        self.demo.report["monitoring"]["request_log"] = found
        return found

    def shifted(self) -> Any:
        """The model's own rows with ``SHIFTED`` features moved by ``SHIFT_STD`` standard deviations."""
        shifted = self.frame.copy()
        for name in SHIFTED:
            shifted[name] = shifted[name] + SHIFT_STD * float(self.frame[name].std())
        return shifted

    def send(self, kind: str, frame: Any, rows_total: int = ROWS) -> dict[str, Any]:
        """``rows_total`` rows drawn (seeded by ``kind``) from ``frame`` in requests of ``ROWS_PER_REQUEST``
        rows; waits until the request log holds all of them (the gateway logs asynchronously)."""
        import zlib

        import numpy as np

        names = self.spec.feature_names
        seed = {"normal": 14, "drifted": 15}.get(kind, zlib.crc32(kind.encode()))
        picks = np.random.default_rng(seed).integers(0, len(frame), rows_total)
        rows = frame.iloc[picks]
        start = datetime.now(UTC)
        sent: list[tuple[str, int, Any]] = []  # (request id, row, true label)
        with httpx.Client(timeout=10) as client:
            for first in range(0, rows_total, ROWS_PER_REQUEST):
                part = rows.iloc[first : first + ROWS_PER_REQUEST]
                puid = f"demo-{self.token}-{kind}-{first // ROWS_PER_REQUEST:04d}"
                body = {"data": {"names": names, "ndarray": part[names].to_numpy().tolist()}}
                answer = client.post(self.demo.url, json=body, headers={"Seldon-Puid": puid})
                if answer.status_code != 200:
                    raise PushbuttonError(f"{kind} traffic: HTTP {answer.status_code}: {answer.text[:300]}")
                self.demo.puids.answered_by(puid)
                target = self.spec.data.target
                sent += [(puid, i, value) for i, value in enumerate(part[target].tolist())]
        end = datetime.now(UTC)
        logged = self.wait_logged(start, end, len(sent))
        return {"start": start, "end": end, "requests": len({s[0] for s in sent}), "rows": len(sent),
                "logged": logged, "sent": sent}  # fmt: skip

    def wait_logged(self, start: datetime, end: datetime, rows: int) -> int:
        from pushbutton.monitoring.store import open_store

        deadline = time.monotonic() + LOG_TIMEOUT
        with open_store(cfg=self.cfg) as store:
            while True:
                found = len(store.rows(self.model, start, end, columns=[]))
                if found >= rows or time.monotonic() > deadline:
                    break
                time.sleep(0.25)  # polling the store: the logger writes in batches
        if found < rows:
            raise PushbuttonError(
                f"the request log holds {found} of the {rows} rows sent within {LOG_TIMEOUT:.0f}s; is the "
                f"logger up? (`pushbutton status`; logs in {self.cfg.home / 'logs'})"
            )
        return found

    def everything_logged(self) -> dict[str, Any]:
        """Each request the gateway answered the demo (release steps and monitoring steps alike) is in
        the request log once per predictor that answered it, paired with its response; waits for the
        gateway's asynchronous logging up to ``LOG_TIMEOUT``."""
        from pushbutton.monitoring.store import open_store

        sent = set(self.demo.puids.answered)
        deadline = time.monotonic() + LOG_TIMEOUT
        with open_store(cfg=self.cfg) as store:
            while True:
                records = [
                    r for r in store.records(self.model, self.demo.started, datetime.now(UTC) + timedelta(minutes=1))
                    if r["request_id"] in sent and r["predictor"] != "shadow"
                ]  # fmt: skip
                found = {r["request_id"] for r in records}
                if found >= sent or time.monotonic() > deadline:
                    break
                time.sleep(0.25)  # polling the store: the logger writes in batches
        incomplete = sum(1 for r in records if not r["complete"])
        facts = {"sent": len(sent), "logged": len(found & sent), "missing": len(sent - found),
                 "duplicated": len(records) - len(found), "incomplete": incomplete}  # fmt: skip
        if facts["missing"] or facts["duplicated"] or incomplete:
            example = sorted(sent - found)[:3]
            raise PushbuttonError(
                f"the request log does not hold every request the demo sent exactly once with its answer: {facts}"
                f" (e.g. missing {example}; `pushbutton status` shows the logger's and the spool's counters)"
            )
        return facts

    def labels(self, traffic: dict[str, Any]) -> dict[str, Any]:
        from pushbutton.monitoring.labels import write_labels
        from pushbutton.monitoring.store import open_store

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "labels.csv"
            with path.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["request_id", "row", "label"])
                writer.writerows(traffic["sent"])
                writer.writerow([f"demo-{self.token}-never-sent", 0, 1])
            with open_store(cfg=self.cfg) as store:
                report = write_labels(store, self.model, path)
        print(f"  {report.describe()}\n  reported: {report.unknown_message()}", flush=True)
        traffic["labels"] = report.as_dict()
        return {"labels": report.labels, "matched": report.matched, "unknown": len(report.unknown)}

    def monitor(self, traffic: dict[str, Any]) -> dict[str, Any]:
        """Trigger the monitor DAG over the traffic's window, wait for it, read what it wrote."""
        from pushbutton.monitoring.store import open_store
        from pushbutton.monitoring.table import reports_root
        from pushbutton.monitoring.windows import Window

        dag_id = f"{self.model}__monitor"
        window = {"window_start": traffic["start"].isoformat(), "window_end": traffic["end"].isoformat()}
        run = self.demo.client.trigger(dag_id, conf=window, note="pushbutton demo: monitor")
        state = self.demo.client.wait_run(dag_id, run["dag_run_id"], timeout=600)["state"]
        if state != "success":
            reasons = self.demo.client.failure_reasons(dag_id, run["dag_run_id"])
            raise PushbuttonError(f"{dag_id} run {run['dag_run_id']} ended {state}: {reasons}")
        with open_store(cfg=self.cfg) as store:
            results = [r for r in store.indicators(self.model, last=5) if r.window_end == traffic["end"]]
        drift = [r for r in results if r.indicator_id == DRIFT_ID and r.predictor == "champion"]
        if not drift:
            raise PushbuttonError(f"{dag_id} wrote no {DRIFT_ID} result for the champion over {window}")
        return {
            "run": run["dag_run_id"],
            "window": window,
            "results": len(results),
            "drift_flagged": drift[0].flagged,
            "drift_value": drift[0].value,
            "drifted_features": sorted(
                k for k, v in drift[0].details.items() if isinstance(v, dict) and v.get("flagged")
            ),
            "indicators": {
                f"{r.indicator_id}/{r.predictor}/v{r.version}": {
                    "status": r.status,
                    "flagged": r.flagged,
                    "value": r.value,
                }
                for r in results
            },
            "report": str(
                reports_root(self.cfg) / self.model / f"{Window(traffic['start'], traffic['end']).stamp}.html"
            ),
        }


def _short(facts: dict[str, Any]) -> dict[str, Any]:
    return {"drift_flagged": facts["drift_flagged"], "drifted": ",".join(facts["drifted_features"]) or "none"}
