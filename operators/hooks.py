"""One Hook per external system; each owns its Airflow Connection and hands out the core client.

Connections (set by ``pushbutton up`` as ``AIRFLOW_CONN_*`` env vars, or in the Airflow UI):
``pushbutton_mlflow`` (http, host/port of the tracking server; extra ``webhook_secret``),
``pushbutton_seldon`` (http, host/port of the gateway; extra ``runtime``: ``local``, ``seldon-v1`` or
``seldon-v2``, ``namespace``; for ``seldon-v1`` also ``kubernetes_conn_id``, ``image_registry``, ... see
``pushbutton.kube.runtime.SeldonV1Config``; for ``seldon-v2`` ``storage_template``, ... see
``pushbutton.kube.runtime_v2.SeldonV2Config``),
``pushbutton_store`` (extra ``url``: SQLAlchemy URL of the platform store).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from pushbutton.history import HistoryStore
    from pushbutton.registry import Registry


def _url(conn: Any, default_port: int) -> str:
    scheme = conn.schema or "http"
    return f"{scheme}://{conn.host or '127.0.0.1'}:{conn.port or default_port}"


def refuse_local_runtime_on_distributed_workers(conn_id: str) -> None:
    """The ``local`` runtime needs one host: ``SpecError`` under a Celery/Kubernetes executor
    (``pushbutton.executors``), unless ``PUSHBUTTON_WORKERS_ON_ONE_HOST=1``."""
    import os

    from airflow.sdk.configuration import conf

    from pushbutton.executors import check_local_runtime

    check_local_runtime(conf.get("core", "executor", fallback="LocalExecutor"), os.environ, conn_id)


class MlflowRegistryHook(BaseHook):
    """The MLflow tracking server and its model registry."""

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "pushbutton_mlflow"
    conn_type = "http"
    hook_name = "MLflow Registry (pushbutton)"

    def __init__(self, mlflow_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id

    def tracking_uri(self) -> str:
        return _url(self.get_connection(self.mlflow_conn_id), 5000)

    def get_conn(self) -> Registry:
        from pushbutton.registry import Registry

        return Registry(self.tracking_uri())


class SeldonHook(BaseHook):
    """Where models serve: the local seldon-core runtime and gateway, or Seldon Core v1/v2 on Kubernetes."""

    conn_name_attr = "seldon_conn_id"
    default_conn_name = "pushbutton_seldon"
    conn_type = "http"
    hook_name = "Seldon (pushbutton)"

    def __init__(self, seldon_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.seldon_conn_id = seldon_conn_id

    def get_conn(self) -> Any:
        from pushbutton.config import settings
        from pushbutton.errors import SpecError, SpecIssue
        from pushbutton.serving.local import LocalRuntime

        conn = self.get_connection(self.seldon_conn_id)
        runtime = conn.extra_dejson.get("runtime", "local")
        if runtime not in ("local", "seldon-v1", "seldon-v2"):
            raise SpecError(
                [
                    SpecIssue(
                        f"connection {self.seldon_conn_id}",
                        "extra.runtime",
                        f"runtime '{runtime}' is not a runtime",
                        "set extra.runtime to 'local', 'seldon-v1' or 'seldon-v2'",
                    )
                ]
            )
        cfg = settings().model_copy(
            update={"host": conn.host or "127.0.0.1", "gateway_port": conn.port or 8000}
        )
        if runtime == "local":
            refuse_local_runtime_on_distributed_workers(self.seldon_conn_id)
            return LocalRuntime(cfg)
        # seldon-v1: SeldonDeployments through the cncf-kubernetes provider's KubernetesHook (its
        # Connection: in-cluster or kubeconfig); test microservices stay local (host/port: the gateway)
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        from pushbutton.kube.runtime import KubernetesRuntime, seldon_v1_config

        where = f"connection {self.seldon_conn_id}"
        if runtime == "seldon-v2":  # Models/Pipelines/Experiments (pushbutton.kube.runtime_v2)
            from pushbutton.kube.runtime_v2 import SeldonV2Runtime, seldon_v2_config

            config_v2 = seldon_v2_config(conn.extra_dejson, where)
            api_client = KubernetesHook(conn_id=config_v2.kubernetes_conn_id).get_conn()
            runtime_v2 = SeldonV2Runtime.from_config(api_client, config_v2, tester=LocalRuntime(cfg))
            runtime_v2.kubernetes_conn_id = (
                config_v2.kubernetes_conn_id
            )  # a deferred wait's trigger reads with it
            return runtime_v2
        config = seldon_v1_config(conn.extra_dejson, where)
        api_client = KubernetesHook(conn_id=config.kubernetes_conn_id).get_conn()
        runtime_v1 = KubernetesRuntime.from_config(api_client, config, tester=LocalRuntime(cfg))
        runtime_v1.kubernetes_conn_id = config.kubernetes_conn_id
        return runtime_v1


class PushbuttonStoreHook(BaseHook):
    """The platform SQL store (serving history now; indicators later)."""

    conn_name_attr = "store_conn_id"
    default_conn_name = "pushbutton_store"
    conn_type = "generic"
    hook_name = "Pushbutton store"

    def __init__(self, store_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.store_conn_id = store_conn_id

    def get_conn(self) -> HistoryStore:
        from pushbutton.config import settings
        from pushbutton.history import HistoryStore

        try:
            url = self.get_connection(self.store_conn_id).extra_dejson.get("url")
        except Exception:  # connection not defined: fall back to the platform default store
            url = None
        return HistoryStore(url or settings().store)
