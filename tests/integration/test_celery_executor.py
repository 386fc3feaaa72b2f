"""The CI/CD DAG on a REAL Celery worker with a REAL Redis broker (Debian's ``redis-server``), serving on
the seldon-v1 runtime against the STAND-IN Kubernetes API server (kmock's KubernetesEmulator playing
Seldon's operator, ``tests/kube_standin.py``): no cluster, no Seldon.

The "scheduler" side is ``dag.test(use_executor=True)`` with Airflow's CeleryExecutor in a process of
its own (PostgreSQL metadata DB, the scheduler's platform home); ``airflow api-server`` serves the
Execution API and the HITL answer. The worker (``airflow celery worker``) has a home of its own
(``AIRFLOW_HOME``, ``PUSHBUTTON_HOME``, task logs, releases) and an unmigrated SQLite as its metadata DB:
it shares only the DAG files (repository dags, models, generated stubs), the Connections, the broker
and the Execution API. Its serving envs link to the tier's env root (a cache on the same host, keyed
by requirements; built on the worker when missing)."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pushbutton import registry as reg
from pushbutton.config import REPO_ROOT, Settings
from pushbutton.procs import ProcessGroup, free_port, http_ok, stop_group, wait_ready
from tests.integration.platform import model_copy
from tests.integration.postgres import postgres_server
from tests.integration.test_kube_dag_path import REGISTRY, OperatorStandin, connections, predictors
from tests.prerequisites import redis_server

pytestmark = [pytest.mark.integration, pytest.mark.standin]

MODEL, NS = "celery-iris", "celery-ns"
CELERY = "airflow.providers.celery.executors.celery_executor.CeleryExecutor"
SCHEDULER = textwrap.dedent(
    """
    import json, sys
    from airflow.dag_processing.dagbag import BundleDagBag
    from pushbutton.config import settings
    from pushbutton.dagstubs import sync_stubs
    cfg, model, version = settings(), sys.argv[1], sys.argv[2]
    sync_stubs(cfg.models_dir, cfg.stub_root)
    bag = BundleDagBag(dag_folder=str(cfg.stub_root), bundle_path=cfg.stub_root, bundle_name="pushbutton-models")
    assert not bag.import_errors, bag.import_errors
    run = bag.dags[model + "__cicd"].test(run_conf={"version": version}, use_executor=True)
    tis = {ti.task_id: {"state": str(ti.state), "try": ti.try_number, "queue": ti.queue} for ti in run.get_task_instances()}
    print(json.dumps({"state": str(run.state), "run_id": run.run_id, "tis": tis}))
    """
)


@pytest.fixture(scope="module")
def standin() -> Iterator[OperatorStandin]:
    server = OperatorStandin().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """redis-server on a free loopback port, nothing persisted; stopped by its pid at the end."""
    import redis

    binary, port = redis_server(), free_port()
    group = ProcessGroup(tmp_path / "redis-run", tmp_path / "redis-logs")
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(tmp_path), "--protected-mode", "yes"]  # fmt: skip
    info = group.start("redis", argv)
    try:

        def pong() -> bool:
            try:
                return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping())
            except redis.RedisError:
                return False

        wait_ready(info, pong, timeout=30, what="redis-server")
        yield f"redis://127.0.0.1:{port}"
    finally:
        group.stop_all()


def _celery_config(broker: str, jwt_secret: str) -> dict[str, str]:
    """What the scheduler, the API server and the worker agree on (nothing of a host in it)."""
    return {
        "AIRFLOW__CORE__EXECUTOR": CELERY,
        "AIRFLOW__CELERY__BROKER_URL": f"{broker}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"{broker}/1",  # the worker writes no SQL result table
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # the test answers the approval
    }


def test_cicd_runs_on_a_celery_worker_with_a_home_of_its_own(
    shared_stack: Settings,
    serving_envs: Path,
    standin: OperatorStandin,
    redis_url: str,
    tmp_path: Path,
) -> None:
    from pushbutton.spec import load_model_dir
    from pushbutton.stack import airflow_env, down, webhook_secret
    from pushbutton.training import train_and_register

    shared = tmp_path / "shared"  # the DAG files every host has: models and the generated stubs
    model_dir = model_copy(REPO_ROOT / "models" / "iris", shared / "models" / MODEL, name=MODEL, namespace=NS)
    scheduler = shared_stack.model_copy(
        update={"models_dir": shared / "models", "stubs_dir": shared / "stubs"}
    )
    worker = scheduler.model_copy(update={"home": tmp_path / "worker-home"})
    worker.home.mkdir()
    (worker.home / "envs").symlink_to(serving_envs, target_is_directory=True)

    registry = reg.Registry(scheduler.mlflow_url)
    version = train_and_register(load_model_dir(model_dir), model_dir, registry, source="test").version

    api_port = free_port()
    secret = webhook_secret(shared_stack)
    conns = connections(standin.url)
    seldon = json.loads(conns["AIRFLOW_CONN_PUSHBUTTON_SELDON"])  # the test microservice's gateway
    conns["AIRFLOW_CONN_PUSHBUTTON_SELDON"] = json.dumps(seldon | {"port": scheduler.gateway_port})
    common = _celery_config(redis_url, secrets.token_hex(32))
    api_url = f"http://127.0.0.1:{api_port}"
    sched_env = airflow_env(scheduler, secret) | common | conns
    with postgres_server() as metadata_db:
        sched_env |= {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db,
            # Airflow's async engine would otherwise pick asyncpg; psycopg 3 does both
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata_db.replace("+psycopg:", "+psycopg_async:"),
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": api_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        }
        # the worker: its own homes and log folder; the Connections and the Execution API it is given
        worker_env = airflow_env(worker, secret) | common | conns
        worker_env |= {k: v for k, v in sched_env.items() if k.startswith("AIRFLOW_CONN_")}
        worker_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"{api_url}/execution/"
        assert worker_env["AIRFLOW_HOME"] != sched_env["AIRFLOW_HOME"]
        assert worker_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///" + str(worker.home))

        migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=sched_env,
                                 capture_output=True, text=True, timeout=300)  # fmt: skip
        assert migrate.returncode == 0, migrate.stderr[-3000:]

        group = ProcessGroup(tmp_path / "run", tmp_path / "logs")
        try:
            api = group.start("api-server", [sys.executable, "-m", "airflow", "api-server"], env=sched_env)
            celery = group.start("celery-worker", [sys.executable, "-m", "airflow", "celery", "worker",
                                                   "--concurrency", "1", "--without-mingle",
                                                   "--without-gossip"], env=worker_env)  # fmt: skip
            # the release steps hand their wait for Seldon to the triggerer (no worker slot held)
            triggerer = group.start(
                "triggerer", [sys.executable, "-m", "airflow", "triggerer"], env=sched_env
            )
            wait_ready(
                api, http_ok(f"{api_url}/api/v2/monitor/health"), timeout=180, what="airflow api-server"
            )
            triggerer_log = tmp_path / "logs" / "triggerer.log"
            wait_ready(triggerer, lambda: "Starting the triggerer" in triggerer_log.read_text(errors="replace"),
                       timeout=120, what="airflow triggerer")  # fmt: skip
            worker_log = tmp_path / "logs" / "celery-worker.log"
            wait_ready(celery, lambda: "ready." in worker_log.read_text(errors="replace"), timeout=120,
                       what="celery worker")  # fmt: skip

            out, err = tmp_path / "dag-test.out", tmp_path / "dag-test.err"
            with out.open("wb") as stdout, err.open("wb") as stderr:
                run = subprocess.Popen([sys.executable, "-c", SCHEDULER, MODEL, version], env=sched_env,
                                       stdout=stdout, stderr=stderr, start_new_session=True)  # fmt: skip
            try:
                approved = _approve(api_url, f"{MODEL}__cicd", run, err, timeout=420)
                run.wait(timeout=300)
            finally:
                if run.poll() is None:
                    stop_group(run.pid)
            errors = err.read_text(errors="replace")[-5000:]
            assert run.returncode == 0, errors
            result = json.loads(out.read_text().strip().splitlines()[-1])
        finally:
            group.stop_all()
            down(worker)  # the test microservice the worker started (its own home's processes)

    tis = result["tis"]
    assert result["state"] == "success", (tis, errors)
    ran = ["build", "test", "build_image", "register", "deploy_candidate", "approve", "activate"]
    assert {t: tis[t]["state"] for t in ran} == dict.fromkeys(ran, "success")
    assert {tis[t]["state"] for t in ("discard_candidate", "fail_on_error")} == {"skipped"}
    # every task went through Celery: the worker logged each one under its Celery task id
    worker_log_text = (tmp_path / "logs" / "celery-worker.log").read_text(errors="replace")
    for task in ran:
        assert tis[task]["queue"] == "default", tis[task]
        line = rf"\[[0-9a-f-]{{36}}\] Executing workload in Celery: .*/task_id={task}/attempt=\d+\.log"
        assert re.search(line, worker_log_text), f"{task} did not run on the Celery worker"
    # the task logs, the release and its code are in the worker's home, none in the scheduler's
    run_logs = f"dag_id={MODEL}__cicd/run_id={result['run_id']}"
    assert {p.name for p in (worker.home / "logs" / "airflow" / run_logs).iterdir()} >= {
        f"task_id={t}" for t in ran
    }
    # on the scheduler's host only the triggerer's logs of the two waits for Seldon (it runs beside it)
    beside = scheduler.home / "logs" / "airflow" / run_logs
    found = (
        sorted(str(p.relative_to(beside)) for p in beside.rglob("*") if p.is_file())
        if beside.exists()
        else []
    )
    assert found and all(".trigger." in f for f in found), found
    assert {f.split("/")[0] for f in found} == {"task_id=deploy_candidate", "task_id=activate"}, found
    # deploy_candidate and activate deferred: the triggerer waited for Seldon, the worker resumed them
    for task in ("deploy_candidate", "activate"):
        task_log = "".join(
            p.read_text(errors="replace")
            for p in (worker.home / "logs" / "airflow" / run_logs / f"task_id={task}").iterdir()
        )
        assert "the task waits in the triggerer" in task_log and "ready; the step goes on" in task_log, task
    assert (worker.home / "releases" / MODEL / version / "code" / "model.yaml").is_file()
    assert not (scheduler.home / "releases" / MODEL).exists()
    # the stand-in API server got the SeldonDeployment: the candidate alone, then the champion
    served = [predictors(s["spec"]) for s in standin.server.served]
    image = f"{REGISTRY}/{MODEL}:{version}"
    assert served == [{"candidate": (100, image)}, {"champion": (100, image)}]
    assert standin.get(NS, MODEL)["status"]["state"] == "Available"
    assert registry.by_alias(MODEL, "champion").version == version
    # each deferred step recorded its history once (in the platform store the Connection names)
    from pushbutton.history import HistoryStore

    recorded = [
        (e["action"], e["version"], e["run_id"]) for e in HistoryStore(scheduler.store).events(MODEL)
    ][::-1]
    assert recorded == [
        ("deploy_candidate", version, result["run_id"]),
        ("activate", version, result["run_id"]),
    ]
    assert approved == "Approve"


def _approve(api_url: str, dag_id: str, run: subprocess.Popen, err: Path, timeout: float) -> str:
    """Answer the run's approval through the API server's HITL endpoint once it is parked."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=f"{api_url}/api/v2", timeout=30) as client:
        while time.monotonic() < deadline:
            if run.poll() is not None:
                pytest.fail(f"dag.test ended before the approval: {err.read_text(errors='replace')[-5000:]}")
            listed = client.get(
                f"/dags/{dag_id}/dagRuns/~/hitlDetails", params={"response_received": "false"}
            )
            listed.raise_for_status()
            for item in listed.json()["hitl_details"]:
                ti = item["task_instance"]
                if ti["task_id"] == "approve" and ti["state"] == "awaiting_input":
                    path = f"/dags/{dag_id}/dagRuns/{ti['dag_run_id']}/taskInstances/approve/-1/hitlDetails"
                    answer = client.patch(path, json={"chosen_options": ["Approve"], "params_input": {}})
                    assert answer.status_code == 200, answer.text
                    return answer.json()["chosen_options"][0]
            time.sleep(1)  # polling the API server for the parked task (no event to wait on)
    pytest.fail(f"no approval of {dag_id} became pending within {timeout:.0f} s")
