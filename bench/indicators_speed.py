"""How long each built-in indicator takes over a window of N logged rows x 20 features (the issue's
goal: a whole monitor run — read + all indicators + write — within 10 s at 1M rows on 2 cores).

Synthetic window: 20 double features (drift injected into 4 of them), a 3-class prediction with
``proba_*`` columns, request ids, latency and status; a 5 000-row training reference; the previous
window; a second predictor answering the same requests (skew, paired); labels for 10% of the rows.
Each indicator is timed in this process after a warm-up on a small window (imports excluded); the
import costs are measured separately in fresh interpreters.

    flock /tmp/pushbutton-heavy.lock .venv/bin/python bench/indicators_speed.py --rows 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from indicators.base import Inputs  # noqa: E402
from indicators.registry import create  # noqa: E402

FEATURES = [f"f{i}" for i in range(20)]
REFERENCE_ROWS = 5000
CASES = [  # (label, type, params)
    ("drift ks (scipy)", "drift", {"method": "ks", "backend": "scipy"}),
    ("drift ks (alibi)", "drift", {"method": "ks", "backend": "alibi"}),
    ("drift ks (scipy, all rows)", "drift", {"method": "ks", "backend": "scipy", "max_rows": None}),
    ("drift ks (alibi, all rows)", "drift", {"method": "ks", "backend": "alibi", "max_rows": None}),
    ("drift cvm (scipy)", "drift", {"method": "cvm", "backend": "scipy"}),
    ("drift tabular (alibi)", "drift", {"method": "tabular", "backend": "alibi"}),
    ("drift classifier (scipy)", "drift", {"method": "classifier", "backend": "scipy"}),
    ("drift classifier (alibi)", "drift", {"method": "classifier", "backend": "alibi"}),
    ("prediction_stability", "prediction_stability", {}),
    ("class_frequency", "class_frequency", {}),
    ("skew (paired)", "skew", {}),
    ("label_metric", "label_metric", {"metric": "log_loss"}),
    ("error_rate", "error_rate", {}),
    ("latency", "latency", {}),
    ("custom", "custom", {"function": "outliers"}),
]
IMPORTS = {
    "indicators.registry (what spec validation loads)": "import indicators.registry",
    "numpy + pandas": "import numpy, pandas",
    "scipy.stats": "import scipy.stats",
    "all indicator modules (scipy backend)": "from indicators.registry import REGISTRY; [REGISTRY[t] for t in REGISTRY]",
    "alibi_detect.cd": "import alibi_detect.cd",
}


def window(rows: int, seed: int, shift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {name: rng.normal(0.0, 1.0, rows) for name in FEATURES}
    if shift:
        for name in FEATURES[:4]:
            data[name] += 0.5
    proba = rng.dirichlet([2.0, 2.0, 2.0], rows)
    data.update({f"proba_{k}": proba[:, k] for k in range(3)})
    data["prediction"] = proba.argmax(axis=1)
    data["request_id"] = np.char.add("r", np.arange(rows).astype(str))
    data["latency_ms"] = rng.gamma(2.0, 3.0, rows)
    data["status"] = np.where(rng.random(rows) < 0.002, 500, 200)
    return pd.DataFrame(data)


def inputs(rows: int, model_dir: Path) -> Inputs:
    current = window(rows, 1, shift=True)
    other = current[["request_id", "prediction"]].copy()
    flip = np.random.default_rng(2).random(rows) < 0.03
    other.loc[flip, "prediction"] = (other.loc[flip, "prediction"] + 1) % 3
    labelled = current.sample(frac=0.1, random_state=3)
    labels = pd.DataFrame({"request_id": labelled["request_id"], "row": 0, "label": labelled["prediction"]})
    return Inputs(
        current=current,
        reference=window(REFERENCE_ROWS, 4, shift=False),
        previous=window(rows, 5, shift=False),
        labels=labels,
        other=other,
        features=dict.fromkeys(FEATURES, "double"),
        task="classification",
        model_dir=model_dir,
    )


def import_seconds(code: str) -> float:
    timed = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", timed], capture_output=True, text=True, cwd=REPO, check=True)
    return round(float(out.stdout.strip().splitlines()[-1]), 2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--skip", nargs="*", default=[], help="case labels to leave out")
    args = parser.parse_args()
    report: dict[str, object] = {"imports_s": {name: import_seconds(code) for name, code in IMPORTS.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        (model_dir / "indicators.py").write_text(
            "def outliers(inputs):\n    return float((inputs.current['f0'].abs() > 3).mean())\n"
        )
        cases = [(label, t, p) for label, t, p in CASES if label not in args.skip]
        warm = inputs(2000, model_dir)
        for _, type_id, params in cases:
            create(type_id, params).compute(warm)  # imports and first-call costs out of the timings
        for rows in args.rows:
            data = inputs(rows, model_dir)
            timings: dict[str, dict[str, object]] = {}
            for label, type_id, params in cases:
                indicator = create(type_id, params)
                started = time.perf_counter()
                verdict = indicator.compute(data)
                timings[label] = {
                    "seconds": round(time.perf_counter() - started, 3),
                    "status": verdict.status,
                    "flagged": verdict.flagged,
                    "value": None if verdict.value is None else round(verdict.value, 4),
                }
            report[f"{rows}_rows"] = timings
            print(f"\n{rows:,} rows x {len(FEATURES)} features (reference {REFERENCE_ROWS:,} rows)")
            for label, found in timings.items():
                print(
                    f"  {label:<30} {found['seconds']:>7.3f} s  {found['status']:<12} value {found['value']}"
                )
    print("\nimports (fresh interpreter):")
    for name, seconds in report["imports_s"].items():  # type: ignore[union-attr]
        print(f"  {name:<50} {seconds:>6.2f} s")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
