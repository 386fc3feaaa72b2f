"""What the release-path tests on the Kubernetes runtimes share (``tests/integration/test_kube_dag_path.py``
for seldon-v1, ``test_kube_v2_dag_path.py`` for seldon-v2): trained versions of a model copy, the
Connections choosing a runtime over a kubeconfig pointing at a STAND-IN API server
(``tests/kube_standin.py``), and the unchanged promotion DAGs run with ``dag.test()`` in an Airflow process
with the stack's environment."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from pushbutton import registry as reg
from pushbutton.config import REPO_ROOT, Settings
from tests.integration.platform import model_copy

RUN = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from airflow.dag_processing.dagbag import BundleDagBag
    from pushbutton.registry import Registry
    dags, model, steps = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    bag = BundleDagBag(dag_folder=str(dags / "pushbutton_promotions.py"), bundle_path=dags,
                       bundle_name="dags-folder")
    assert not bag.import_errors, bag.import_errors
    registry = Registry(os.environ["MLFLOW_TRACKING_URI"])
    out = []
    for dag_id, version in steps:
        run = bag.dags[dag_id].test(run_conf={"model": model, "version": version})
        aliases = {a: getattr(registry.by_alias(model, a), "version", None) for a in ("champion", "previous")}
        out.append({"state": str(run.state), "aliases": aliases,
                    "tasks": {ti.task_id: [str(ti.state), ti.try_number] for ti in run.get_task_instances()}})
    print(json.dumps(out))
    """
)


def trained_versions(
    cfg: Settings,
    target: Path,
    *,
    name: str,
    namespace: str,
    count: int = 3,
    edits: dict[str, str] | None = None,
) -> list[str]:
    """``count`` versions of a copy of ``models/iris`` (with text ``edits`` to its model.yaml) registered
    as ``name``, each with the gate's verdict (as the CI/CD test step writes it): the lifecycle takes them."""
    from pushbutton.spec import load_model_dir
    from pushbutton.training import train_and_register

    model_dir = model_copy(REPO_ROOT / "models" / "iris", target, name=name, namespace=namespace, edits=edits)
    registry = reg.Registry(cfg.mlflow_url)
    versions = [train_and_register(load_model_dir(model_dir), model_dir, registry, source="test").version
                for _ in range(count)]  # fmt: skip
    for version in versions:
        registry.set_tags(name, version, {reg.TESTS: "passed"})
    return versions


def kube_connections(url: str, extra: dict[str, Any]) -> dict[str, str]:
    """The Seldon Connection (``extra`` chooses the runtime) over a Kubernetes Connection whose kubeconfig
    points at the stand-in (what a team sets for a real cluster, apart from the server and the token)."""
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "standin",
        "clusters": [{"name": "standin", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "u"}}],
    }  # fmt: skip
    seldon = {"conn_type": "http", "host": "127.0.0.1", "port": 8000,
              "extra": {"kubernetes_conn_id": "kube_standin", **extra}}  # fmt: skip
    return {
        "AIRFLOW_CONN_KUBE_STANDIN": json.dumps(
            {"conn_type": "kubernetes", "extra": {"kube_config": kubeconfig}}
        ),
        "AIRFLOW_CONN_PUSHBUTTON_SELDON": json.dumps(seldon),
    }


def run_promotion_dags(
    cfg: Settings, connections: dict[str, str], model: str, steps: list[list[str]]
) -> tuple[list[dict[str, Any]], str]:
    """Run ``steps`` (``[dag_id, version]``) of ``pushbutton__promote``/``pushbutton__rollback`` with
    ``dag.test()`` in one Airflow process; each run's state, aliases and task states, and the logs."""
    from pushbutton.stack import airflow_env, webhook_secret

    env = {**airflow_env(cfg, webhook_secret(cfg)), **connections}
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", RUN, str(cfg.dags_dir), model, json.dumps(steps)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout + proc.stderr


def history(events: list[dict[str, Any]]) -> list[tuple[str, str, str | None, str]]:
    """The serving history, oldest first, as (action, version, previous version, actor)."""
    return [(e["action"], e["version"], e["previous_version"], e["actor"]) for e in events][::-1]
