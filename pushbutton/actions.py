"""What the CLI does on a running platform: push a model, ask Airflow to promote or roll back, answer
approvals, report a model's status. Lifecycle changes always run as Airflow DAG runs, so every one
has a run id, a user and a log."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pushbutton import registry as reg
from pushbutton.config import Settings
from pushbutton.errors import Conflict, NotFound, PushbuttonError, SpecError, SpecIssue, StackError
from pushbutton.webhook import cicd_run_id

if TYPE_CHECKING:
    from pushbutton.spec import Discovered, ModelSpec


def _client(settings: Settings) -> Any:
    from pushbutton.airflow_client import AirflowClient

    return AirflowClient.from_settings(settings)


DAG_WAIT_SECONDS = 180.0  # a brand-new model's stub is parsed within a DAG processor refresh or two


def push(settings: Settings, path: Path, trigger: bool = False) -> dict[str, Any]:
    """Validate, train, log and register a new version. Registration fires the MLflow webhook that
    starts ``<model>__cicd``; ``trigger`` also starts it through the REST API (same run id, so the
    two never produce two runs), after waiting until Airflow has parsed the DAG of a new model.

    A model directory under the models directory gets its DAG stub written first, so Airflow picks a
    new model up at its next refresh. With ``trigger``, an unreachable Airflow or a model whose
    pipeline can never exist fails before anything is trained; a trigger failing after registration
    is reported in ``pipeline.error`` next to the registered version. Whatever training and MLflow
    print goes to stderr, so stdout carries only the caller's JSON.

    A model directory under the models directory whose name an earlier model directory there
    already declares is refused before anything is trained (its pipeline is the other one's)."""
    from pushbutton.spec import load_model_dir
    from pushbutton.training import pusher, train_and_register

    model_dir = model_dir_of(path)
    spec = load_model_dir(model_dir)
    check_unique_name(settings.models_dir, model_dir)
    registry = reg.Registry(settings.mlflow_url)
    registry.ping()
    dag_id = f"{spec.name}__cicd"
    client = _reachable_client(settings) if trigger else None
    if not _sync_dag_stub(settings, model_dir) and client is not None:
        _expect_dag(settings, client, dag_id, model_dir)
    with contextlib.redirect_stdout(sys.stderr):
        result = train_and_register(
            spec, model_dir, registry, source="push", actor=pusher(model_dir)
        ).as_dict()
    run_id = cicd_run_id(result["version"], result["run_id"])
    result["pipeline"] = {"dag_id": dag_id, "run_id": run_id}
    if client is not None:
        try:
            client.wait_dag(dag_id, timeout=DAG_WAIT_SECONDS)
            client.trigger(dag_id, conf={"version": result["version"]}, run_id=run_id)
            result["pipeline"]["triggered_by"] = "rest-api"
        except Conflict:
            result["pipeline"]["triggered_by"] = "webhook"  # the webhook was first
        except PushbuttonError as exc:
            result["pipeline"]["error"] = (
                f"registered {spec.name} version {result['version']}, but triggering {dag_id} failed: "
                f"{exc}; MLflow's webhook may still start run {run_id}, else trigger it in the Airflow UI "
                f'with {{"version": "{result["version"]}"}}'
            )
    return result


def model_dir_of(path: Path) -> Path:
    """The model directory a PATH argument names: the directory itself, or the parent of its
    model.yaml. Any other existing file is a ``SpecError`` (it is not a spec to be parsed)."""
    from pushbutton.spec import SPEC_FILE

    path = Path(path)
    if path.name == SPEC_FILE:
        return path.parent
    if path.exists() and not path.is_dir():
        raise SpecError(
            [
                SpecIssue(
                    str(path),
                    "",
                    f"{path.name} is not a model spec: expected a model directory or its {SPEC_FILE}",
                    f"pass the model directory (or its {SPEC_FILE})",
                )
            ]
        )
    return path


def check_unique_name(models_dir: Path, model_dir: Path, discovered: list[Discovered] | None = None) -> None:
    """Raise the ``SpecError`` that ``discover(models_dir)`` gives ``model_dir`` when it lies under
    the models directory: the duplicate-name error when an earlier (sorted) model directory declares
    the same name, as the DAG factory decides which directory owns a name. ``discovered`` reuses a
    ``discover(models_dir)`` result; a directory outside the models directory is not checked."""
    from pushbutton.spec import discover

    models_dir, target = Path(models_dir).resolve(), Path(model_dir).resolve()
    if not target.is_relative_to(models_dir):
        return
    for found in discover(models_dir) if discovered is None else discovered:
        if found.error is not None and found.model_dir.resolve() == target:
            raise found.error


def _reachable_client(settings: Settings) -> Any:
    """An Airflow client whose API answers, checked before anything is trained."""
    try:
        client = _client(settings)
        client.health()
    except StackError as exc:
        raise StackError(
            f"Airflow's API at {settings.airflow_url} is not reachable, so push could not trigger the "
            f"pipeline ({exc}); start the stack with `pushbutton up`, or push with --no-trigger to "
            "register only"
        ) from exc
    return client


def _sync_dag_stub(settings: Settings, model_dir: Path) -> bool:
    """Write the DAG stubs when ``model_dir`` lies under the models directory; False if it does not."""
    from pushbutton.dagstubs import sync_stubs

    models_dir = Path(settings.models_dir).resolve()
    if not Path(model_dir).resolve().is_relative_to(models_dir):
        return False
    sync_stubs(models_dir, settings.stub_root)
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
            reasons = client.failure_reasons(dag_id, run["dag_run_id"])
            result["failed_tasks"] = list(reasons)
            result["reasons"] = reasons
    return result


def respond_approval(
    settings: Settings, model: str, approve: bool, run_id: str | None = None, comment: str | None = None
) -> dict[str, Any]:
    """Answer the pending Approve/Reject of ``<model>__cicd`` (the button in the Airflow UI);
    ``comment`` goes into the serving history (and a rejected version's reason)."""
    client = _client(settings)
    dag_id = f"{model}__cicd"
    pending = [
        h["task_instance"]
        for h in client.pending_hitl(dag_id=dag_id)
        if not run_id or h["task_instance"]["dag_run_id"] == run_id
    ]
    if not pending:
        try:
            client.get_dag(dag_id)
        except NotFound as exc:
            raise NotFound(
                f"unknown model '{model}': Airflow has no DAG {dag_id}; check the name (`pushbutton "
                "validate` lists the models) or push the model first"
            ) from exc
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
        {"comment": comment or "via pushbutton CLI"},
        map_index=item.get("map_index", -1),
    )
    return {"dag_id": dag_id, "run_id": item["dag_run_id"], "answer": choice}


# the retrain's lineage tags on a version (operators.training.MlflowTrainOperator.lineage_tags)
LINEAGE = ("pushbutton.trigger", "pushbutton.alert_id", "pushbutton.alert_rule", "pushbutton.parent_version",
           "pushbutton.data_window", "pushbutton.retrain_reason")  # fmt: skip


def model_status(settings: Settings, model: str) -> dict[str, Any]:
    """Versions with their status and aliases, each version's last CI/CD run (run id, state, failing
    task, one-line reason; asked from Airflow, which may be down: ``cicd.available`` says so and why),
    what the gateway serves, the serving history, each version's lineage (why it was trained) and the
    latest alerts."""
    from pushbutton.history import HistoryStore
    from pushbutton.serving.local import LocalRuntime

    registry = reg.Registry(settings.mlflow_url)
    registry.ping()
    spec, unreadable = find_model_spec(settings.models_dir, model)
    versions = registry.versions(model)
    if not versions:
        raise NotFound(
            f"model '{model}' has no registered version; push it with `pushbutton push <dir>`"
            + _unreadable_note(settings, model, spec, unreadable)
        )
    status: dict[str, Any] = {
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
                "pushed_by": v.tags.get(reg.ACTOR) or None,
                "tests": v.tags.get(reg.TESTS),
                "reason": v.tags.get(reg.REASON),
                "lineage": {k.removeprefix(reg.TAG): v.tags[k] for k in LINEAGE if v.tags.get(k)},
            }
            for v in versions
        ],
    }
    status["cicd"], runs = _cicd_runs(settings, model, versions)
    if status["cicd"]["available"]:
        for entry in status["versions"]:
            entry["last_run"] = runs.get(entry["version"])
    if spec is None:
        status["spec"] = _unreadable_note(settings, model, spec, unreadable).removeprefix("; ")
    namespace = spec.serving.namespace if spec else settings.namespace
    status["serving"] = LocalRuntime(settings).status(namespace, model)
    status["history"] = HistoryStore(settings.store).events(model, limit=20)
    status["monitoring"] = _monitoring(settings, model)
    return status


def _monitoring(settings: Settings, model: str) -> dict[str, Any]:
    """The latest indicator flags and drift report (``available: False`` and why, when the monitoring
    store cannot be read)."""
    from pushbutton.monitoring.store import StoreError, open_store
    from pushbutton.monitoring.table import latest_flags

    try:
        with open_store(cfg=settings) as store:
            alerts = [e.summary() for e in store.alerts(model, limit=10)]
            return {"available": True, **latest_flags(store, settings, model), "alerts": alerts}
    except StoreError as exc:
        return {"available": False, "why": str(exc)}


def _cicd_runs(
    settings: Settings, model: str, versions: list[reg.Version]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(what was asked and whether Airflow answered, version -> its last CI/CD run)."""
    from pushbutton.runs import last_runs

    dag_id = f"{model}__cicd"
    try:
        found = last_runs(_client(settings), model, versions)
    except PushbuttonError as exc:
        why = f"Airflow could not be asked for the {dag_id} runs: {exc}"
        return {"dag_id": dag_id, "available": False, "why": why}, {}
    return {"dag_id": dag_id, "available": True}, found


def follow_push(
    settings: Settings, result: dict[str, Any], timeout: float, emit: Any, clock: Any = None
) -> dict[str, Any]:
    """``push --wait``: follow the CI/CD run ``push`` started (``result["pipeline"]``) to its approval,
    its failure or ``timeout`` (``pushbutton.runs.follow``); ``emit`` gets the progress lines."""
    from pushbutton.runs import follow

    pipeline = result["pipeline"]
    return follow(
        _client(settings), pipeline["dag_id"], pipeline["run_id"], timeout=timeout, clock=clock, emit=emit
    )


def find_model_spec(models_dir: Path, model: str) -> tuple[ModelSpec | None, list[Path]]:
    """The spec named ``model`` under ``models_dir`` (None if none), and the specs that could not be
    read; a broken spec of another model never hides this one."""
    from pushbutton.errors import SpecError
    from pushbutton.spec import find_spec_dirs, load_spec

    unreadable: list[Path] = []
    for model_dir in find_spec_dirs(models_dir):
        try:
            spec = load_spec(model_dir)
        except SpecError:
            unreadable.append(model_dir / "model.yaml")
            continue
        if spec.name == model:
            return spec, []
    return None, unreadable


def _unreadable_note(settings: Settings, model: str, spec: ModelSpec | None, unreadable: list[Path]) -> str:
    if spec is not None:
        return ""
    note = f"; no spec named '{model}' under {settings.models_dir} (namespace '{settings.namespace}' assumed)"
    if unreadable:
        note += (
            f"; these specs could not be read (one may be '{model}'): "
            + ", ".join(map(str, unreadable))
            + " (fix: `pushbutton validate` them)"
        )
    return note
