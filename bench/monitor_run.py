"""One model's monitor run over a window of N logged rows x 20 features in the embedded SQL store (issue
14 §6): read + aggregate + every built-in indicator + drift report + write, as ``<model>__monitor``'s
``compute_indicators`` and ``write_indicators`` do it (``pushbutton.monitoring.runtime.run_model``).

Per N, in a fresh SQLite file: a classifier with 20 double features (drift injected into 4), answered
by a champion (90% of requests) and a canary candidate (10%: ``skew`` compares them), 10 rows per
request, probabilities of 3 classes, labels for 20% of the requests, the previous window of the same
size (``prediction_stability``), a 5 000-row training reference. Declared: ``drift`` (ks), ``drift``
(tabular), ``prediction_stability``, ``class_frequency``, ``skew``, ``label_metric``, ``error_rate``,
``latency``. Filling the store is not timed. A warm-up run on a small window first pays the imports
(pandas, scipy, alibi-detect: measured apart, in fresh interpreters); the figure is the warm run.

    flock /tmp/pushbutton-heavy.lock .venv/bin/python bench/monitor_run.py --rows 100000 1000000

Prints one JSON line per N (``--report FILE`` writes them all). Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from pushbutton.monitoring.records import InferenceRecord, Label  # noqa: E402

MODEL = "bench"
FEATURES = [f"f{i:02d}" for i in range(20)]
DRIFTED = FEATURES[:4]
ROWS_PER_REQUEST = 10
END = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
LENGTH = timedelta(minutes=30)
INDICATORS = [
    {"id": "feature_drift", "type": "drift", "params": {"method": "ks"}},
    {"id": "tabular_drift", "type": "drift", "params": {"method": "tabular", "correction": "fdr"}},
    {"id": "stability", "type": "prediction_stability"},
    {"id": "class_balance", "type": "class_frequency"},
    {"id": "canary_skew", "type": "skew"},
    {"id": "accuracy", "type": "label_metric", "params": {"metric": "accuracy", "threshold": 0.5}},
    {"id": "error_rate", "type": "error_rate"},
    {"id": "latency", "type": "latency"},
]
IMPORTS = {
    "pandas+sqlalchemy (store)": "import pushbutton.monitoring.store.sql",
    "indicators (numpy, pandas, scipy)": "import indicators.drift, indicators.label_metric, indicators.skew",
    "alibi-detect": "import alibi_detect.cd",
}


def spec():
    from pushbutton.spec.model import ModelSpec

    data = yaml.safe_load((REPO / "models" / "iris" / "model.yaml").read_text())
    data["name"] = MODEL
    data["schema"]["inputs"] = [{"name": f, "type": "double"} for f in FEATURES]
    data["schema"]["output"] = {"name": "y", "type": "long"}
    data["indicators"] = INDICATORS
    data.pop("alerts", None)
    return ModelSpec.model_validate(data)


def records(count_rows: int, start: datetime, seed: int, drift: bool) -> list[InferenceRecord]:
    rng = np.random.default_rng(seed)
    requests = count_rows // ROWS_PER_REQUEST
    values = rng.normal(0.0, 1.0, (count_rows, len(FEATURES)))
    if drift:
        values[:, : len(DRIFTED)] += 0.5
    answers = rng.integers(0, 3, count_rows)
    proba = rng.dirichlet(np.ones(3), count_rows).round(4)
    step = LENGTH / requests
    out = []
    for i in range(requests):
        at = start + i * step
        rows = slice(i * ROWS_PER_REQUEST, (i + 1) * ROWS_PER_REQUEST)
        out.append(InferenceRecord(
            request_id=f"{seed}-{i}", model=MODEL, predictor="candidate" if i % 10 == 0 else "champion",
            version="2" if i % 10 == 0 else "1", model_id=MODEL, request_event_id=f"q{seed}-{i}",
            response_event_id=f"p{seed}-{i}", request_time=at, response_time=at, latency_ms=float(rng.gamma(2, 3)),
            status=500 if i % 200 == 7 else 200, names=tuple(FEATURES), inputs=values[rows].tolist(),
            predictions=answers[rows].tolist(), classes=("0", "1", "2"), probabilities=proba[rows].tolist(),
        ))  # fmt: skip
    return out


def fill(store, rows: int) -> None:
    chunk = 20_000
    for window_end, seed, drift in ((END - LENGTH, 1, False), (END, 2, True)):
        batch = records(rows, window_end - LENGTH, seed, drift)
        for first in range(0, len(batch), chunk // ROWS_PER_REQUEST):
            store.write_records(batch[first : first + chunk // ROWS_PER_REQUEST])
        if drift:
            labelled = [Label(r.request_id, r.predictions[0], 0) for r in batch[::5]]  # both predictors
            store.write_labels(MODEL, labelled)


def reference():
    from pushbutton.monitoring.reference import Lookup, Reference

    rng = np.random.default_rng(0)
    inputs = pd.DataFrame(rng.normal(0.0, 1.0, (5000, len(FEATURES))), columns=FEATURES)
    predictions = inputs.assign(prediction=rng.integers(0, 3, 5000), label=rng.integers(0, 3, 5000))
    found = Lookup(Reference(inputs, predictions, {"origin": "training"}), "cache")
    return lambda version: found


def monitor(store, model_spec, references, report_dir: Path) -> dict:
    from pushbutton.monitoring.runtime import run_model
    from pushbutton.monitoring.windows import Window

    started = time.perf_counter()
    run = run_model(
        store, model_spec, Window(END - LENGTH, END), references=references, report_dir=report_dir
    )
    clock = time.perf_counter()
    written = store.write_indicators(run.results)
    run.seconds["write"] = time.perf_counter() - clock
    total = time.perf_counter() - started
    return {"seconds": round(total, 2), "parts": {k: round(v, 2) for k, v in run.seconds.items()},
            "rows": run.rows, "results": written, "statuses": run.summary()["statuses"],
            "flagged": sorted({r.indicator_id for r in run.flagged})}  # fmt: skip


def import_seconds() -> dict:
    out = {}
    for name, statement in IMPORTS.items():
        code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
        )
        out[name] = round(float(proc.stdout.strip()), 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--report", type=Path, help="write the figures as JSON")
    args = parser.parse_args()

    from pushbutton.monitoring.store.sql import SqlStore

    model_spec, references = spec(), reference()
    figures: dict = {"imports_s": import_seconds(), "runs": []}
    print(json.dumps({"imports_s": figures["imports_s"]}), flush=True)
    with tempfile.TemporaryDirectory(prefix="pushbutton-monitor-run-") as tmp:
        for n in [2_000, *args.rows]:
            store = SqlStore(f"sqlite:///{Path(tmp) / f'{n}.db'}")
            store.ensure_model(MODEL, [(f, "double") for f in FEATURES], ("y", "long"))
            clock = time.perf_counter()
            fill(store, n)
            filled = time.perf_counter() - clock
            result = {"rows_in_window": n, "features": len(FEATURES), "fill_s": round(filled, 1),
                      **monitor(store, model_spec, references, Path(tmp) / "reports")}  # fmt: skip
            store.close()
            if n == 2_000:
                continue  # the warm-up: imports
            figures["runs"].append(result)
            print(json.dumps(result), flush=True)
    if len(figures["runs"]) >= 2:
        a, b = figures["runs"][0], figures["runs"][-1]
        figures["growth"] = round(
            (b["seconds"] / a["seconds"]) / (b["rows_in_window"] / a["rows_in_window"]), 2
        )
        print(json.dumps({"growth_vs_linear": figures["growth"]}), flush=True)
    if args.report:
        args.report.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
