"""How long Airflow takes to parse the DAGs of N models (goal: 500 models in <= 10 s on 2 cores).

Generates N model specs (copies of models/iris under distinct names), writes the per-model DAG
stubs, then parses the DAG folder with Airflow's bundle-aware DagBag in a fresh interpreter (as the
dag processor does) and reports wall time, DAG count, import errors and peak memory.

    .venv/bin/python bench/dag_parse.py --models 100 500
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pushbutton.dagstubs import sync_stubs  # noqa: E402

PARSE = """
import json, resource, sys, time
from pathlib import Path
started = time.perf_counter()
from airflow.dag_processing.dagbag import BundleDagBag
imported = time.perf_counter()
dags = Path(sys.argv[1])
bag = BundleDagBag(dag_folder=str(dags), bundle_path=dags, bundle_name="pushbutton-models")
done = time.perf_counter()
print(json.dumps({
    "import_airflow_s": round(imported - started, 3),
    "parse_s": round(done - imported, 3),
    "dags": len(bag.dags),
    "import_errors": len(bag.import_errors),
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
"""


def generate(root: Path, count: int) -> tuple[Path, Path, Path]:
    """N models, a copy of dags/ (the factory the stubs import) and the stub bundle (as `up` makes it)."""
    models, dags, stubs = root / "models", root / "dags", root / "home" / "dags"
    models.mkdir(parents=True)
    dags.mkdir()
    source = REPO / "models" / "iris"
    text = (source / "model.yaml").read_text()
    for i in range(count):
        target = models / f"model-{i:04d}"
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        (target / "model.yaml").write_text(text.replace("name: iris", f"name: model-{i:04d}"))
    for factory in (REPO / "dags").glob("*.py"):
        shutil.copy(factory, dags / factory.name)
    sync_stubs(models, stubs)
    return models, dags, stubs


def measure(count: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="pushbutton-bench-") as tmp:
        models, dags, stubs = generate(Path(tmp), count)
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(Path(tmp) / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "0",
            "PUSHBUTTON_MODELS_DIR": str(models),
            "PUSHBUTTON_DAGS_DIR": str(dags),
            "PUSHBUTTON_HOME": str(Path(tmp) / "home"),
            "PYTHONPATH": str(dags),  # as `pushbutton up` runs Airflow: stubs import the factory
        }
        proc = subprocess.run(
            [sys.executable, "-c", PARSE, str(stubs)], env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = 3 * count  # cicd, monitor, retrain per model (the stub bundle)
    return {
        "models": count,
        "expected_dags": expected,
        **result,
        "per_model_ms": round(1000 * result["parse_s"] / count, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[100, 500])
    args = parser.parse_args()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}  (cpus: {os.cpu_count()})")
    failed = False
    for count in args.models:
        result = measure(count)
        print(json.dumps(result))
        failed |= result["dags"] != result["expected_dags"] or result["import_errors"] != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
