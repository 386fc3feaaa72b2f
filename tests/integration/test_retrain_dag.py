"""`dag.test()` of a model's training DAG (``iris__retrain``) against a real MLflow server."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from pushbutton import registry as reg
from pushbutton.dagstubs import sync_stubs
from tests.integration.platform import platform_settings

pytestmark = pytest.mark.integration

RUN = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from airflow.dag_processing.dagbag import BundleDagBag
    dags = Path(sys.argv[1])
    bag = BundleDagBag(dag_folder=str(dags / "models" / "iris.py"), bundle_path=dags, bundle_name="dags-folder")
    assert not bag.import_errors, bag.import_errors
    run = bag.dags["iris__retrain"].test()
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    print(json.dumps({"state": str(run.state), "tasks": states}))
    """
)


def test_retrain_dag_trains_and_registers_a_version(tmp_path_factory: pytest.TempPathFactory) -> None:
    from pushbutton.stack import airflow_env, down, up, webhook_secret

    with platform_settings(tmp_path_factory.mktemp("retrain")) as cfg:
        up(cfg, airflow=False)
        try:
            sync_stubs(cfg.models_dir, cfg.dags_dir)
            env = airflow_env(cfg, webhook_secret(cfg))
            airflow = [sys.executable, "-m", "airflow"]
            subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
            proc = subprocess.run(
                [sys.executable, "-c", RUN, str(cfg.dags_dir)],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            registry = reg.Registry(cfg.mlflow_url)
            versions = registry.versions("iris")
        finally:
            down(cfg)
    assert result == {"state": "success", "tasks": {"train_and_register": "success"}}
    assert len(versions) == 1
    assert versions[0].tags["pushbutton.source"] == "retrain"
    assert versions[0].tags["pushbutton.actor"] == "dag:iris__retrain"
    assert versions[0].tags["pushbutton.retrain_reason"] == "manual"  # no reason given: the run type
