"""The embedded stack: MLflow tracking server, model gateway and ``airflow standalone``.

Everything lives under ``settings.home``: ``mlflow/`` (SQLite store, artifacts), ``airflow/``
(AIRFLOW_HOME), ``gateway/``, ``logs/``, ``run/`` (pid files), ``secrets/`` (mode 0700/0600).
Every process started here carries ``PUSHBUTTON_STACK_HOME=<home>`` in its environment, so
``down`` can find what escaped its process group (Airflow task runners, model servers).
Secrets reach Airflow only through its environment (``AIRFLOW_CONN_*``, ``PUSHBUTTON_*``).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import importlib.util
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pushbutton import artifacts
from pushbutton.airflow_client import PASSWORD_FILE, is_healthy
from pushbutton.config import Settings
from pushbutton.errors import ServingError, StackError
from pushbutton.procs import (
    STACK_MARKER,
    ProcessGroup,
    ProcInfo,
    free_port,
    http_ok,
    kill_processes,
    process_cmdline,
    processes_with_env,
    require_port,
    tail,
)

MARKER = STACK_MARKER
ADMIN_USER = "admin"
WEBHOOK_NAME = "pushbutton-airflow"
WEBHOOK_EVENTS = ("model_version.created",)
WEBHOOK_PATH = "/pushbutton/webhooks/mlflow"
GATEWAY_MODULE = "pushbutton.serving.gateway"
LOGGER_MODULE = "pushbutton.monitoring.logger"
# the logger starts before the gateway (whose emitter sends to it) and stops after it
ORDER = ("mlflow", "logger", "gateway", "airflow")
READY_TIMEOUT = {"mlflow": 180.0, "logger": 60.0, "gateway": 60.0, "airflow": 420.0}
STOP_TIMEOUT = {"mlflow": 15.0, "logger": 15.0, "gateway": 15.0, "airflow": 40.0}
AIRFLOW_PARALLELISM = max(2, 2 * (os.cpu_count() or 1))
STUB_BUNDLE = "pushbutton-models"
MIN_FILE_PROCESS_INTERVAL = 600  # seconds; see airflow_config


@dataclass(frozen=True)
class Layout:
    """Paths under the platform home."""

    home: Path

    mlflow = property(lambda self: self.home / "mlflow")
    mlflow_db = property(lambda self: self.mlflow / "mlflow.db")
    artifacts = property(lambda self: self.mlflow / "artifacts")
    airflow = property(lambda self: self.home / "airflow")
    airflow_password_file = property(lambda self: self.airflow / PASSWORD_FILE)
    gateway_state = property(lambda self: self.home / "gateway" / "routes.json")
    logs = property(lambda self: self.home / "logs")
    run = property(lambda self: self.home / "run")
    secrets = property(lambda self: self.home / "secrets")

    def create(self) -> Layout:
        for path in (
            self.mlflow,
            self.artifacts,
            self.airflow,
            self.gateway_state.parent,
            self.logs,
            self.run,
        ):
            path.mkdir(parents=True, exist_ok=True)
        self.secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.secrets, 0o700)
        return self


def layout(settings: Settings) -> Layout:
    return Layout(Path(settings.home))


def process_group(settings: Settings) -> ProcessGroup:
    paths = layout(settings)
    return ProcessGroup(paths.run, paths.logs)


# -- secrets ---------------------------------------------------------------------------------


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    """Read a secret file, or create it once (mode 0600, never overwritten)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        value = path.read_text().strip()
        if not value:
            raise StackError(
                f"{path} is empty; delete it and run `pushbutton up` to generate it again"
            ) from None
        return value
    value = make()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def webhook_secret(settings: Settings) -> str:
    """HMAC secret of the MLflow webhook: PUSHBUTTON_WEBHOOK_SECRET, else ``secrets/webhook_secret``."""
    if settings.webhook_secret is not None and settings.webhook_secret.get_secret_value():
        return settings.webhook_secret.get_secret_value()
    return _secret_file(layout(settings).secrets / "webhook_secret", lambda: secrets.token_urlsafe(32))


def _mlflow_encryption_key(settings: Settings) -> str:
    # MLflow encrypts stored webhook secrets with this Fernet key; unset, every server process
    # draws a random one and secrets stored before a restart can no longer be decrypted.
    return _secret_file(
        layout(settings).secrets / "mlflow_webhook_key",
        lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    )


def _airflow_password(settings: Settings) -> Path:
    """Create the simple auth manager's password file ourselves, so the password never hits a log."""
    path = layout(settings).airflow_password_file
    alphabet = "abcdefghkmnpqrstuvwxyzABCDEFGHKMNPQRSTUVWXYZ23456789"  # Airflow's own alphabet
    _secret_file(path, lambda: json.dumps({ADMIN_USER: "".join(secrets.choice(alphabet) for _ in range(16))}))
    return path


# -- environments and commands ---------------------------------------------------------------


def settings_env(settings: Settings, *, include_secret: bool = False) -> dict[str, str]:
    """``PUSHBUTTON_*`` variables reproducing ``settings`` in a child process."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None or (name == "webhook_secret" and not include_secret):
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"PUSHBUTTON_{name.upper()}"] = str(value)
    return env


def _base_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PUSHBUTTON_WEBHOOK_SECRET", None)  # only Airflow gets the secret (see airflow_env)
    bin_dir = str(Path(sys.executable).parent)  # `airflow standalone` runs `airflow <component>` via PATH
    env["PATH"] = os.pathsep.join(
        [bin_dir, *(p for p in env.get("PATH", "").split(os.pathsep) if p != bin_dir)]
    )
    env.update(settings_env(settings))
    env.update({MARKER: str(settings.home), "PYTHONUNBUFFERED": "1", "MLFLOW_DISABLE_TELEMETRY": "true"})
    return env


def mlflow_command(settings: Settings) -> list[str]:
    paths = layout(settings)
    argv = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{paths.mlflow_db}",
        "--serve-artifacts", "--artifacts-destination", settings.artifacts_destination or str(paths.artifacts),
        "--host", settings.host, "--port", str(settings.mlflow_port),
        "--workers", "1",
    ]  # fmt: skip
    if settings.host not in ("127.0.0.1", "localhost", "0.0.0.0", "::1"):
        hosts = [settings.host, f"{settings.host}:{settings.mlflow_port}", "localhost:*", "127.0.0.1:*"]
        argv += ["--allowed-hosts", ",".join(hosts)]
    return argv


def mlflow_env(settings: Settings) -> dict[str, str]:
    env = _base_env(settings)
    env.update(
        {
            "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",  # the Airflow plugin listens on plain http
            "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",  # ... on a loopback/private address
            "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": _mlflow_encryption_key(settings),
            # a brand-new model's DAG may still be parsing: the plugin answers 503 + Retry-After 10
            "MLFLOW_WEBHOOK_REQUEST_MAX_RETRIES": "8",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no huey job runners (GenAI jobs) needed
        }
    )
    return env


def gateway_available() -> bool:
    try:
        return importlib.util.find_spec(GATEWAY_MODULE) is not None
    except ImportError:
        return False


def gateway_command(settings: Settings) -> list[str]:
    state = layout(settings).gateway_state
    return [sys.executable, "-m", GATEWAY_MODULE, "--host", settings.host,
            "--port", str(settings.gateway_port), "--state", str(state)]  # fmt: skip


def logger_command(settings: Settings) -> list[str]:
    """The request logger (``pushbutton.monitoring.logger``), writing to the monitoring store."""
    return [sys.executable, "-m", LOGGER_MODULE, "--host", settings.host, "--port", str(settings.logger_port),
            "--store", settings.monitoring, "--models-dir", str(settings.models_dir),
            "--workers", str(settings.logger_workers), "--status-dir", str(settings.home / "logger")]  # fmt: skip


def webhook_url(settings: Settings) -> str:
    return f"{settings.airflow_url}{WEBHOOK_PATH}"


def airflow_connections(settings: Settings, secret: str) -> dict[str, dict[str, Any]]:
    """Airflow Connections (id -> JSON form) the DAGs and the plugin use."""
    return {
        "pushbutton_mlflow": {
            "conn_type": "http", "schema": "http", "host": settings.host, "port": settings.mlflow_port,
            "extra": {"tracking_uri": settings.mlflow_url, "webhook_secret": secret},
        },
        "pushbutton_seldon": {
            "conn_type": "http", "schema": "http", "host": settings.host, "port": settings.gateway_port,
            "extra": {"runtime": "local", "namespace": settings.namespace},
        },
        "pushbutton_store": {"conn_type": "generic", "extra": {"url": settings.store}},
        # the request log, labels and indicator results (IndicatorStoreHook): a SQLAlchemy URL
        "pushbutton_monitoring": {"conn_type": "generic", "extra": {"url": settings.monitoring}},
        # the bearer token of POST /pushbutton/alerts/<source> (operators.alert_intake)
        "pushbutton_alerts": {"conn_type": "http", "password": alerts_token(secret)},
    }  # fmt: skip


def alerts_token(secret: str) -> str:
    """The embedded stack's alert-intake token, derived from its webhook secret (never stored apart)."""
    return hmac.new(secret.encode(), b"pushbutton-alerts", hashlib.sha256).hexdigest()


def airflow_config(settings: Settings) -> dict[str, str]:
    """``AIRFLOW__*`` settings of the embedded Airflow (no secrets in here)."""
    paths = layout(settings)
    url = settings.airflow_url
    return {
        "AIRFLOW_HOME": str(paths.airflow),
        "AIRFLOW_CONFIG": str(paths.airflow / "airflow.cfg"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{paths.airflow / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_dir),
        # two bundles: the repository's DAG files, and the generated per-model stubs (platform home)
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(dag_bundles(settings)),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.plugins_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(AIRFLOW_PARALLELISM),
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(paths.airflow_password_file),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__API__HOST": settings.host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
        # the task supervisor notices its task's exit after at most this many seconds (default 5):
        # shorter task turnaround, and parked HITL workers report back before a human answers
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        # new files (a new model's stub) are found within REFRESH_INTERVAL; a changed file (a stub is
        # rewritten when its model.yaml changes) is re-parsed at once, as the processor re-queues files
        # modified since their last parse; everything else is re-parsed only every
        # MIN_FILE_PROCESS_INTERVAL, so an idle stack with hundreds of models stays idle
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(MIN_FILE_PROCESS_INTERVAL),
        "AIRFLOW__DAG_PROCESSOR__FILE_PARSING_SORT_MODE": "modified_time",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(paths.logs / "airflow"),
        "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(
            paths.logs / "airflow" / "dag_processor"
        ),
    }


def dag_bundles(settings: Settings) -> list[dict[str, Any]]:
    """Airflow DAG bundles: ``dags-folder`` (the repository's ``dags/``: factory and promotion DAGs,
    importable by the stubs) and ``pushbutton-models`` (the generated stubs, under the platform home)."""
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    return [
        {"name": "dags-folder", "classpath": local, "kwargs": {}},
        {"name": STUB_BUNDLE, "classpath": local, "kwargs": {"path": str(settings.stub_root)}},
    ]


def airflow_env(settings: Settings, secret: str) -> dict[str, str]:
    """Full environment of ``airflow standalone``: config, Connections, platform settings."""
    env = _base_env(settings)
    env.update(airflow_config(settings))
    env.update(settings_env(settings, include_secret=True))
    env["PUSHBUTTON_WEBHOOK_SECRET"] = secret  # the plugin verifies webhook signatures with it
    env["MLFLOW_TRACKING_URI"] = settings.mlflow_url
    # the stubs (their own bundle) import the factory from the repository's dags/ on every host
    env["PYTHONPATH"] = os.pathsep.join([str(settings.dags_dir), *filter(None, [env.get("PYTHONPATH")])])
    for conn_id, conn in airflow_connections(settings, secret).items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    # internal log servers (scheduler/LocalExecutor, triggerer): free ports, never the 8793/8794 defaults
    env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port(settings.host))
    env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(free_port(settings.host))
    return env


def airflow_health(settings: Settings, timeout: float = 3.0) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{settings.airflow_url}/api/v2/monitor/health", timeout=timeout)
        return response.json() if response.is_success else None
    except (httpx.HTTPError, ValueError):
        return None


# -- components ------------------------------------------------------------------------------


@dataclass
class Component:
    name: str
    what: str
    url: str
    port: int
    setting: str
    check: Callable[[], bool]
    argv: Callable[[], list[str]]
    env: Callable[[], dict[str, str]]


def _components(settings: Settings, airflow: bool, secret: Callable[[], str]) -> list[Component]:
    paths = layout(settings)
    found = [
        Component("mlflow", "the MLflow tracking server", settings.mlflow_url, settings.mlflow_port,
                  "PUSHBUTTON_MLFLOW_PORT", http_ok(f"{settings.mlflow_url}/health"),
                  lambda: mlflow_command(settings), lambda: mlflow_env(settings)),
    ]  # fmt: skip
    if gateway_available():
        found.append(
            Component("logger", "the request logger", settings.logger_url, settings.logger_port,
                      "PUSHBUTTON_LOGGER_PORT", http_ok(f"{settings.logger_url}/health"),
                      lambda: logger_command(settings), lambda: _base_env(settings))
        )  # fmt: skip
        found.append(
            Component("gateway", "the model gateway", settings.gateway_url, settings.gateway_port,
                      "PUSHBUTTON_GATEWAY_PORT", http_ok(f"{settings.gateway_url}/health"),
                      lambda: gateway_command(settings), lambda: _base_env(settings))
        )  # fmt: skip
    if airflow:

        def airflow_ready() -> bool:
            report = airflow_health(settings)
            return bool(report) and is_healthy(report) and paths.airflow_password_file.exists()

        found.append(
            Component("airflow", "airflow standalone (API server)", settings.airflow_url, settings.airflow_port,
                      "PUSHBUTTON_AIRFLOW_PORT", airflow_ready,
                      lambda: [sys.executable, "-m", "airflow", "standalone"],
                      lambda: airflow_env(settings, secret()))
        )  # fmt: skip
    return found


@dataclass
class ComponentInfo:
    name: str
    url: str
    pid: int
    log: str
    started: bool  # by this call
    ready_seconds: float | None = None


@dataclass
class StackInfo:
    """What ``up`` found or started."""

    home: Path
    components: dict[str, ComponentInfo] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    webhook_id: str | None = None

    @property
    def log_dir(self) -> Path:
        return Layout(self.home).logs

    @property
    def credentials_file(self) -> Path:
        return Layout(self.home).airflow_password_file

    def describe(self) -> str:
        lines = [f"pushbutton stack in {self.home}"]
        for c in self.components.values():
            how = f"started, ready in {c.ready_seconds:.1f}s" if c.started else "already running"
            lines.append(f"  {c.name:8} {c.url:28} pid {c.pid:<8} ({how})")
        lines.append(f"  logs:    {self.log_dir}")
        if "airflow" in self.components:
            lines.append(f"  airflow: user '{ADMIN_USER}', password in {self.credentials_file}")
        if self.webhook_id:
            lines.append(f"  webhook: MLflow model_version.created -> Airflow plugin (id {self.webhook_id})")
        elif "mlflow" in self.components:
            lines.append("  webhook: unchanged (registered when MLflow or Airflow last started)")
        lines += [f"  note:    {n}" for n in self.notes]
        return "\n".join(lines)


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """Serialise ``up``/``down`` of one home."""
    paths = layout(settings).create()
    with (paths.run / "stack.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def up(settings: Settings, *, airflow: bool = True) -> StackInfo:
    """Start what is not running yet (MLflow, gateway, Airflow); a no-op for running components."""
    with _locked(settings):
        paths = layout(settings)
        group = process_group(settings)
        info = StackInfo(Path(settings.home))
        secret_cache: list[str] = []

        def secret() -> str:
            if not secret_cache:
                secret_cache.append(webhook_secret(settings))
            return secret_cache[0]

        components = _components(settings, airflow, secret)
        if not gateway_available():
            info.notes.append(f"gateway skipped: module {GATEWAY_MODULE} is not available")
        running = {c.name: p for c in components if (p := group.get(c.name)) is not None and p.alive()}
        to_start = [c for c in components if c.name not in running]
        try:
            for c in to_start:  # every port before anything starts
                require_port(settings.host, c.port, c.what, c.setting)
        except StackError as exc:
            if stack_processes(settings):
                raise StackError(
                    f"{exc}; leftovers of this stack are running: `pushbutton down` stops them"
                ) from exc
            raise
        secret()
        if any(c.name == "mlflow" for c in to_start):  # an s3:// artifacts destination: its bucket exists
            info.notes += artifacts.prepare(settings)
        if any(c.name == "airflow" for c in to_start):
            from pushbutton.dagstubs import remove_legacy_stubs, sync_stubs

            _airflow_password(settings)
            legacy = remove_legacy_stubs(settings.dags_dir)
            if legacy:
                info.notes.append(
                    f"removed {len(legacy)} DAG stub file(s) an older pushbutton generated in "
                    f"{settings.dags_dir / 'models'} (stubs now live in {settings.stub_root / 'models'})"
                )
            changed = sync_stubs(settings.models_dir, settings.stub_root)
            if changed:
                info.notes.append(
                    f"{len(changed)} DAG stub(s) written or removed in {settings.stub_root / 'models'}"
                )

        procs: dict[str, ProcInfo] = dict(running)
        started: list[str] = []
        t0: dict[str, float] = {}
        try:
            for c in to_start:  # launch all, then wait: the components start in parallel
                t0[c.name] = time.monotonic()
                procs[c.name] = group.start(c.name, c.argv(), env=c.env(), cwd=paths.home)
                started.append(c.name)
            for c, ready in _wait_all(components, procs, t0):
                p = procs[c.name]
                info.components[c.name] = ComponentInfo(c.name, c.url, p.pid, p.log, c.name in t0, ready)
                # (Re)register only when MLflow or Airflow starts now, so both use the same secret.
                if c.name == "mlflow" and {"mlflow", "airflow"} & set(t0):
                    info.webhook_id = register_webhook(settings, secret())
            info.components = {c.name: info.components[c.name] for c in components}
            if "gateway" in info.components:
                info.notes += _restore_models(settings)
        except BaseException:
            for name in reversed(started):
                group.stop(name, STOP_TIMEOUT[name])
            if not any((p := group.get(n)) and p.alive() for n in group.names()):
                kill_processes(stack_processes(settings))  # e.g. children of a component that died
            raise
        return info


def _wait_all(
    components: list[Component], procs: dict[str, ProcInfo], t0: dict[str, float]
) -> Iterator[tuple[Component, float | None]]:
    """Yield each component (with its start-up seconds) as soon as it is ready; fail like wait_ready."""
    pending, start, delay = list(components), time.monotonic(), 0.05
    while pending:
        for c in list(pending):
            proc, fresh = procs[c.name], c.name in t0
            if c.check():
                pending.remove(c)
                yield c, (time.monotonic() - t0[c.name]) if fresh else None
                continue
            # a component that was already running should be healthy at once
            budget = READY_TIMEOUT[c.name] if fresh else min(READY_TIMEOUT[c.name], 60.0)
            hint = (
                ""
                if fresh
                else "\n(it was already running; `pushbutton down` then `pushbutton up` restarts it)"
            )
            if not proc.alive():
                raise StackError(
                    f"{c.what} exited during start-up; last lines of {proc.log}:\n{tail(proc.log)}{hint}"
                )
            if time.monotonic() - t0.get(c.name, start) > budget:
                raise StackError(
                    f"{c.what} was not ready after {budget:.0f}s; last lines of {proc.log}:\n{tail(proc.log)}{hint}"
                )
        if pending:
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)


# -- MLflow webhook --------------------------------------------------------------------------


def register_webhook(settings: Settings, secret: str, client: Any = None) -> str:
    """Create or update (by name) the ``model_version.created`` webhook to the Airflow plugin."""
    if client is None:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=settings.mlflow_url, registry_uri=settings.mlflow_url)
    url = webhook_url(settings)
    ours, token = [], None
    while True:
        page = client.list_webhooks(max_results=100, page_token=token)
        ours += [w for w in page if w.name == WEBHOOK_NAME]
        token = page.token
        if not token:
            break
    try:
        if not ours:
            hook = client.create_webhook(
                WEBHOOK_NAME, url, list(WEBHOOK_EVENTS), description="pushbutton: new versions -> Airflow",
                secret=secret, status="ACTIVE",
            )  # fmt: skip
            return hook.webhook_id
        for extra in ours[1:]:
            client.delete_webhook(extra.webhook_id)
        # The secret is write-only over REST, so it is always set again (PUSHBUTTON_WEBHOOK_SECRET may change).
        hook = client.update_webhook(
            ours[0].webhook_id, url=url, events=list(WEBHOOK_EVENTS), secret=secret, status="ACTIVE"
        )
        return hook.webhook_id
    except Exception as exc:  # MlflowException and transport errors; the message never holds the secret
        raise StackError(
            f"registering the MLflow webhook to {url} failed: {exc}; see {layout(settings).logs / 'mlflow.log'}"
        ) from exc


# -- down, status, stray processes -----------------------------------------------------------


def stack_processes(settings: Settings) -> list[int]:
    """Live processes started by this stack (including ones that left their process group)."""
    return processes_with_env(MARKER, str(settings.home))


def _restore_models(settings: Settings) -> list[str]:
    """Start the model servers the gateway routes to again (they stop with the stack)."""
    from pushbutton.serving.local import LocalRuntime

    runtime = LocalRuntime(settings)
    try:
        results = runtime.restore()
    except ServingError as exc:
        return [f"serving not restored: {exc}"]
    finally:
        runtime.close()
    notes = []
    for r in results:
        if r["restarted"]:
            notes.append(f"serving {r['deployment']} again: {', '.join(r['restarted'])} restarted")
        notes += [f"serving {r['deployment']} is degraded: {e}" for e in r["errors"]]
    return notes


def _stop_models(settings: Settings) -> tuple[list[str], str | None]:
    try:
        from pushbutton.serving.local import LocalRuntime
    except ImportError:
        return [], None
    try:
        result = LocalRuntime(settings).stop_all()
    except Exception as exc:
        return [], f"stopping model servers failed: {exc!r}"
    return [f"model {n}" for n in result] if isinstance(result, list | tuple) else [], None


def down(settings: Settings) -> list[str]:
    """Stop Airflow, gateway, MLflow and model servers; kill stragglers; verify nothing is left."""
    if not Path(settings.home).is_dir():  # never started (or deleted under a running stack)
        strays = stack_processes(settings)
        kill_processes(strays)
        return [f"{len(strays)} leftover process(es)"] if strays else []
    with _locked(settings):
        group = process_group(settings)
        stopped: list[str] = []
        names = [n for n in reversed(ORDER) if n in group.names()]  # airflow, gateway, mlflow
        names += [n for n in group.names() if n not in ORDER]
        for name in names:
            if group.stop(name, STOP_TIMEOUT.get(name, 20.0)):
                stopped.append(name)
        models, problem = _stop_models(settings)
        stopped += models
        strays = stack_processes(settings)
        if strays:
            kill_processes(strays)
            stopped.append(f"{len(strays)} leftover process(es)")
        left = stack_processes(settings)
        if left or problem:
            listing = "; ".join(f"{pid}: {process_cmdline(pid)[:120]}" for pid in left)
            raise StackError(
                "the stack did not stop cleanly"
                + (f": {problem}" if problem else "")
                + (f"; still running (kill them by pid): {listing}" if left else "")
            )
        return stopped


def status(settings: Settings) -> dict[str, Any]:
    """``{"home", "components": {name: {running, pid, url, healthy, log}}, "notes"}``."""
    group = process_group(settings)
    urls = {"mlflow": settings.mlflow_url, "logger": settings.logger_url, "gateway": settings.gateway_url,
            "airflow": settings.airflow_url}  # fmt: skip
    names = [n for n in ORDER if n not in ("gateway", "logger") or gateway_available() or group.get(n)]
    report: dict[str, Any] = {"home": str(settings.home), "components": {}, "notes": []}
    for name in names:
        proc = group.get(name)
        running = bool(proc and proc.alive())
        if not running:
            healthy = False
        elif name == "airflow":
            health = airflow_health(settings)
            healthy = bool(health) and is_healthy(health)
        else:
            healthy = http_ok(f"{urls[name]}/health")()
        report["components"][name] = {
            "running": running,
            "pid": proc.pid if running and proc else None,
            "url": urls[name],
            "healthy": healthy,
            "log": str(layout(settings).logs / f"{name}.log"),
        }
    if "gateway" not in names:
        report["notes"].append(f"gateway not available ({GATEWAY_MODULE} missing)")
    report["logging"] = logging_status(settings, report["components"])
    return report


def logging_status(settings: Settings, components: dict[str, Any]) -> dict[str, Any]:
    """Request-logging health: the logger's counters (``GET /status``) and the gateway emitter's
    (received, spooled, dropped …); a component that is down or does not answer shows ``None``.
    A running logger is asked even when unhealthy: its ``/health`` fails while its store is down,
    which is when its counters (``store_up``, ``last_error``) matter most."""

    def counters(name: str) -> dict[str, Any] | None:
        url = {"logger": settings.logger_url, "gateway": settings.gateway_url}[name]
        if not components.get(name, {}).get("running"):
            return None
        try:
            answer = httpx.get(f"{url}/status", timeout=2.0)
        except httpx.HTTPError:
            return None
        return answer.json() if answer.is_success else None

    logger, gateway = counters("logger"), counters("gateway")
    emitter = (gateway or {}).get("logging") or {}
    return {
        "received": logger.get("received") if logger else None,
        "written": logger.get("written") if logger else None,
        "incomplete": logger.get("incomplete") if logger else None,
        "rejected": logger.get("rejected") if logger else None,
        "store_up": logger.get("store_up") if logger else None,
        "spooled": emitter.get("spooled"),
        "spool_pending": emitter.get("spool_pending"),
        "dropped": emitter.get("dropped_total"),
        "logger": logger,
        "emitter": emitter or None,
    }
