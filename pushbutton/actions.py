"""What the CLI does on a running platform: push a model, ask Airflow to promote or roll back, answer
approvals, report a model's status. Lifecycle changes always run as Airflow DAG runs, so every one
has a run id, a user and a log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pushbutton import registry as reg
from pushbutton.config import Settings
from pushbutton.errors import Conflict, NotFound
from pushbutton.webhook import cicd_run_id


def _client(settings: Settings) -> Any:
    from pushbutton.airflow_client import AirflowClient

    return AirflowClient.from_settings(settings)


DAG_WAIT_SECONDS = 180.0  # a brand-new model's stub is parsed within a DAG processor refresh or two


def push(settings: Settings, path: Path, trigger: bool = False) -> dict[str, Any]:
    """Validate, train, log and register a new version. Registration fires the MLflow webhook that
    starts ``<model>__cicd``; ``trigger`` also starts it through the REST API (same run id, so the
    two never produce two runs), after waiting until Airflow has parsed the DAG of a new model.

    A model directory under the models directory gets its DAG stub written first, so Airflow picks a
    new model up at its next refresh. With ``trigger``, a model whose pipeline can never exist fails
    before anything is trained."""
    from pushbutton.spec import load_model_dir
    from pushbutton.training import train_and_register

    model_dir = path.parent if path.name == "model.yaml" else path
    spec = load_model_dir(model_dir)
    registry = reg.Registry(settings.mlflow_url)
    registry.ping()
    dag_id = f"{spec.name}__cicd"
    client = _client(settings) if trigger else None
    if not _sync_dag_stub(settings, model_dir) and client is not None:
        _expect_dag(settings, client, dag_id, model_dir)
    result = train_and_register(spec, model_dir, registry, source="push").as_dict()
    result["pipeline"] = {"dag_id": dag_id, "run_id": cicd_run_id(result["version"])}
    if client is not None:
        client.wait_dag(dag_id, timeout=DAG_WAIT_SECONDS)
        try:
            client.trigger(dag_id, conf={"version": result["version"]}, run_id=cicd_run_id(result["version"]))
            result["pipeline"]["triggered_by"] = "rest-api"
        except Conflict:
            result["pipeline"]["triggered_by"] = "webhook"  # the webhook was first
    return result


def _sync_dag_stub(settings: Settings, model_dir: Path) -> bool:
    """Write the DAG stubs when ``model_dir`` lies under the models directory; False if it does not."""
    from pushbutton.dagstubs import sync_stubs

    models_dir = Path(settings.models_dir).resolve()
    if not Path(model_dir).resolve().is_relative_to(models_dir):
        return False
    sync_stubs(models_dir, settings.dags_dir)
    return True


def _expect_dag(settings: Settings, client: Any, dag_id: str, model_dir: Path) -> None:
    """A model outside the models directory: its CI/CD DAG must already exist (same name)."""
    try:
        client.get_dag(dag_id)
    except NotFound as exc:
        raise NotFound(
            f"{model_dir} is not under the models directory {Path(settings.models_dir).resolve()} and "
            f"Airflow has no DAG {dag_id}, so nothing would run its pipeline: move the model directory "
            "under the models directory (or set PUSHBUTTON_MODELS_DIR), or push with --no-trigger to "
            "register only"
        ) from exc


def request_promotion(
    settings: Settings, action: str, model: str, version: str, wait: bool = True
) -> dict[str, Any]:
    """Run ``pushbutton__promote`` / ``pushbutton__rollback`` for ``model`` and (optionally) wait."""
    client = _client(settings)
    dag_id = f"pushbutton__{action}"
    run = client.trigger(dag_id, conf={"model": model, "version": version}, note=f"pushbutton {action} (CLI)")
    result = {"dag_id": dag_id, "run_id": run["dag_run_id"], "state": run.get("state", "queued")}
    if wait:
        final = client.wait_run(dag_id, run["dag_run_id"], timeout=600)
        result["state"] = final["state"]
        if final["state"] != "success":
            failed = [
                t for t in client.task_instances(dag_id, run["dag_run_id"]) if t.get("state") == "failed"
            ]
            result["failed_tasks"] = [t["task_id"] for t in failed]
    return result


def respond_approval(
    settings: Settings, model: str, approve: bool, run_id: str | None = None
) -> dict[str, Any]:
    """Answer the pending Approve/Reject of ``<model>__cicd`` (the button in the Airflow UI)."""
    client = _client(settings)
    dag_id = f"{model}__cicd"
    pending = [
        h["task_instance"]
        for h in client.pending_hitl(dag_id=dag_id)
        if not run_id or h["task_instance"]["dag_run_id"] == run_id
    ]
    if not pending:
        raise NotFound(f"no approval is waiting in {dag_id}" + (f" run {run_id}" if run_id else ""))
    if len(pending) > 1:
        runs = ", ".join(t["dag_run_id"] for t in pending)
        raise Conflict(f"{len(pending)} approvals wait in {dag_id} ({runs}); pass --run-id")
    item = pending[0]
    choice = "Approve" if approve else "Reject"
    client.respond_hitl(
        dag_id,
        item["dag_run_id"],
        item["task_id"],
        [choice],
        {"comment": "via pushbutton CLI"},
        map_index=item.get("map_index", -1),
    )
    return {"dag_id": dag_id, "run_id": item["dag_run_id"], "answer": choice}


def model_status(settings: Settings, model: str) -> dict[str, Any]:
    """Versions with their status and aliases, what the gateway serves, and the serving history."""
    from pushbutton.history import HistoryStore
    from pushbutton.serving.local import LocalRuntime
    from pushbutton.spec import find_spec_dirs, load_spec

    registry = reg.Registry(settings.mlflow_url)
    registry.ping()
    versions = registry.versions(model)
    if not versions:
        raise NotFound(f"model '{model}' has no registered version; push it with `pushbutton push <dir>`")
    namespace = settings.namespace
    for model_dir in find_spec_dirs(settings.models_dir):
        spec = load_spec(model_dir)
        if spec.name == model:
            namespace = spec.serving.namespace
    return {
        "model": model,
        "aliases": {  # MLflow's version search does not return aliases: ask for each
            alias: found.version
            for alias in (reg.CHAMPION, reg.CANDIDATE, reg.PREVIOUS)
            if (found := registry.by_alias(model, alias)) is not None
        },
        "versions": [
            {
                "version": v.version,
                "status": v.status,
                "tests": v.tags.get(reg.TESTS),
                "reason": v.tags.get(reg.REASON),
            }
            for v in versions
        ],
        "serving": LocalRuntime(settings).status(namespace, model),
        "history": HistoryStore(settings.store).events(model, limit=20),
    }
