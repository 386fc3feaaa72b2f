"""`dag.test()` of a model's training DAG (``iris__retrain``) against a real MLflow server."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from pushbutton import registry as reg
from pushbutton.config import Settings
from pushbutton.dagstubs import sync_stubs

pytestmark = pytest.mark.integration

RUN = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from airflow.dag_processing.dagbag import BundleDagBag
    dags = Path(sys.argv[1])
    bag = BundleDagBag(dag_folder=str(dags / "models" / "iris.py"), bundle_path=dags, bundle_name="pushbutton-models")
    assert not bag.import_errors, bag.import_errors
    run = bag.dags["iris__retrain"].test()
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    print(json.dumps({"state": str(run.state), "tasks": states}))
    """
)


def test_retrain_dag_trains_and_registers_a_version(shared_stack: Settings) -> None:
    """On the tier's shared MLflow, where no other module registers ``iris``."""
    from pushbutton.stack import airflow_env, webhook_secret

    cfg = shared_stack
    sync_stubs(cfg.models_dir, cfg.stub_root)  # the stub bundle under the home, as `pushbutton up` does
    env = airflow_env(cfg, webhook_secret(cfg))
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(cfg.stub_root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    versions = reg.Registry(cfg.mlflow_url).versions("iris")
    assert result == {"state": "success", "tasks": {"train_and_register": "success"}}
    assert len(versions) == 1
    assert versions[0].tags["pushbutton.source"] == "retrain"
    assert versions[0].tags["pushbutton.actor"] == "dag:iris__retrain"
    assert versions[0].tags["pushbutton.retrain_reason"] == "manual"  # no reason given: the run type
