"""Training for Airflow: ``MlflowTrainOperator`` (the ``<model>__retrain`` DAG's ``train_and_register``)
trains through the model's entry point in a child process without the worker's secrets, logs the run
and registers a new version with its lineage (trigger, alert, parent version, data window, rows). A
``sql:`` or object storage data source is fetched here for the run's data window and checked before
anything is trained (``pushbutton.data.remote``); a retried or cleared task finds the version its run
registered instead of training again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from operators.hooks import MlflowRegistryHook
from operators.lifecycle import _final


class MlflowTrainOperator(BaseOperator):
    """Train through the model's entry point, log the run and register a new version in MLflow.

    The model's code runs in a child process without the worker's secrets (``pushbutton.train_job``).

    Registration fires the registry webhook, which starts the model's CI/CD DAG.
    """

    template_fields: Sequence[str] = ("model_dir", "source", "reason", "version_tags")

    def __init__(
        self,
        *,
        model_dir: str,
        source: str = "retrain",
        reason: str = "",
        version_tags: dict[str, str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.model_dir = model_dir
        self.source = source
        self.reason = reason
        self.version_tags = version_tags or {}

    def retrain_reason(self, context: Context) -> str:
        """The given reason, else the alert that asked (asset-triggered runs), else how the run started
        (``scheduled``, ``manual``)."""
        if self.reason.strip():
            return self.reason.strip()
        alert = self.triggering_alert(context)
        if alert:
            return f"alert {alert.get('rule')} ({alert.get('source')}): {alert.get('message', '')}"[:240]
        run_type = context["dag_run"].run_type
        return str(getattr(run_type, "value", run_type))

    @staticmethod
    def triggering_alert(context: Context) -> dict[str, Any] | None:
        """The ``extra`` of the newest retrain asset event that started this run (the alert), if any."""
        events = context.get("triggering_asset_events") or {}
        found = [
            e for key in events for e in events[key] if (getattr(e, "extra", None) or {}).get("alert_id")
        ]
        if not found:
            return None
        newest = max(found, key=lambda e: str(getattr(e, "timestamp", "")))
        return dict(newest.extra)

    def lineage_tags(self, context: Context, name: str, registry: Any) -> dict[str, str]:
        """Why and from what this version was trained: trigger, alert, parent version, data window."""
        from pushbutton.registry import CHAMPION

        alert = self.triggering_alert(context)
        run_type = context["dag_run"].run_type
        trigger = "alert" if alert else str(getattr(run_type, "value", run_type))
        parent = registry.by_alias(name, CHAMPION)
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        tags = {"pushbutton.trigger": trigger, "pushbutton.parent_version": parent.version if parent else ""}
        if start is not None and end is not None:
            tags["pushbutton.data_window"] = f"{start.isoformat()}/{end.isoformat()}"
        if alert:
            tags["pushbutton.alert_id"] = str(alert.get("alert_id", ""))
            tags["pushbutton.alert_rule"] = str(alert.get("rule", ""))
        return tags

    def execute(self, context: Context) -> dict[str, Any]:
        import tempfile

        from pushbutton.registry import TRAIN_RUN
        from pushbutton.spec import load_spec
        from pushbutton.train_job import train_in_child

        hook = MlflowRegistryHook()
        registry = hook.get_conn()
        run_id = self.run_id_tag(context)
        spec = _final(lambda: load_spec(Path(self.model_dir)))
        name = spec.name
        done = [v for v in _final(lambda: registry.versions(name)) if v.tags.get(TRAIN_RUN) == run_id]
        if done:  # a retry or a cleared task: this run registered its version already
            self.log.info(
                "run %s already registered %s v%s; not training again", run_id, name, done[-1].version
            )
            return {"name": name, "version": done[-1].version, "run_id": done[-1].run_id, "unchanged": True}
        with tempfile.TemporaryDirectory(prefix="pushbutton-data-") as tmp:
            fetched = self.fetch_data(spec, context, Path(tmp), registry)
            lineage = self.lineage_tags(context, name, registry)
            if fetched is not None:
                lineage |= {
                    "pushbutton.training_rows": str(fetched.rows),
                    "pushbutton.data_window": fetched.window,
                }
            return _final(
                lambda: train_in_child(
                    Path(self.model_dir),
                    hook.tracking_uri(),
                    source=self.source,
                    actor=f"dag:{context['dag'].dag_id}",
                    extra_tags={
                        **lineage,
                        **self.version_tags,
                        "pushbutton.retrain_reason": self.retrain_reason(context),
                        TRAIN_RUN: run_id,
                    },
                    on_start=lambda proc: setattr(self, "_child", proc),
                    data_file=fetched.path if fetched is not None else None,
                )
            )

    def fetch_data(self, spec: Any, context: Context, directory: Path, registry: Any = None) -> Any:
        """A ``sql:`` or object storage source, fetched here (the Connections stay in the worker) for the
        run's data window (the ``window_start``/``window_end`` params, else the data interval) and checked
        before training (its class balance against the champion's reference, when there is one);
        ``None`` for a file in the model directory (checked by ``validate`` at push)."""
        from pushbutton.data import remote

        if not remote.is_remote(spec):
            return None
        start, end = self.data_window(context)
        window = f"{start.isoformat() if start else ''}/{end.isoformat() if end else ''}"
        where = f"{spec.name}: data.source {spec.data.source} ({window or 'no window'})"
        try:
            frame = self._read(spec, start, end, where)
            remote.check(spec, frame, where)
            if registry is not None:
                self.check_balance(spec, frame, registry, where)
        except remote.DataCheckFailed as exc:
            raise AirflowFailException(str(exc)) from exc
        self.log.info("%s: %d rows for the window %s", spec.name, len(frame), window)
        return remote.save(frame, directory, window)

    def check_balance(self, spec: Any, frame: Any, registry: Any, where: str) -> None:
        """The window's class shares against the champion's reference (its holdout labels)."""
        from pushbutton.config import settings
        from pushbutton.data import remote
        from pushbutton.monitoring.reference import LABEL, ReferenceStore
        from pushbutton.registry import CHAMPION

        champion = registry.by_alias(spec.name, CHAMPION)
        if champion is None or spec.task != "classification":
            return
        store = ReferenceStore(settings().home / "monitoring" / "reference", registry)
        found = store.get(spec.name, champion.version)
        if found.reference is None or LABEL not in found.reference.predictions.columns:
            self.log.warning("%s: no reference for v%s (%s): label balance not checked", spec.name,
                             champion.version, found.why or found.origin)  # fmt: skip
            return
        labels = found.reference.predictions[LABEL]
        remote.check_balance(spec, frame, labels, f"the reference of v{champion.version} (champion)", where)

    def _read(self, spec: Any, start: Any, end: Any, where: str) -> Any:
        from airflow.sdk import BaseHook, ObjectStoragePath

        from pushbutton.data import remote

        scheme, _, rest = spec.data.source.partition(":")
        if scheme == "sql":
            try:
                conn = BaseHook.get_connection(rest)
            except Exception as exc:
                raise remote.DataCheckFailed(f"{where}: the Airflow Connection '{rest}' is not defined "
                                             "(fix: create it, e.g. AIRFLOW_CONN_" + rest.upper() + ")") from exc  # fmt: skip
            return remote.fetch_sql(sqlalchemy_url(conn), spec.data.query, start, end, where)
        path = ObjectStoragePath(spec.data.source, conn_id=spec.data.conn_id)
        try:
            return remote.read_object(path.open("rb"), spec.data.source)
        except FileNotFoundError as exc:
            raise remote.DataCheckFailed(
                f"{where}: the object does not exist (fix: check data.source)"
            ) from exc

    @staticmethod
    def data_window(context: Context) -> tuple[Any, Any]:
        from datetime import datetime

        params = context.get("params") or {}
        found = []
        for key, default in (("window_start", "data_interval_start"), ("window_end", "data_interval_end")):
            value = params.get(key)
            found.append(datetime.fromisoformat(value) if value else context.get(default))
        return found[0], found[1]

    @staticmethod
    def run_id_tag(context: Context) -> str:
        """``<dag_id>/<run_id>``: what makes a re-run of this task find the version it registered."""
        return f"{context['dag'].dag_id}/{context['run_id']}"

    def on_kill(self) -> None:
        child = getattr(self, "_child", None)
        if child is not None and child.poll() is None:
            child.kill()


def sqlalchemy_url(conn: Any) -> str:
    """A SQLAlchemy URL for an Airflow Connection: ``extra.sqlalchemy_url`` when set, else built from it
    (``sqlite``: the host is the file; ``postgres``: psycopg 3)."""
    explicit = (conn.extra_dejson or {}).get("sqlalchemy_url")
    if explicit:
        return str(explicit)
    if conn.conn_type == "sqlite":
        return f"sqlite:///{conn.host}"
    uri = conn.get_uri()
    for old, new in (("postgres://", "postgresql+psycopg://"), ("postgresql://", "postgresql+psycopg://")):
        if uri.startswith(old):
            return new + uri.removeprefix(old)
    return uri
