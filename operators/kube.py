"""Waiting for Seldon without holding a worker: a deferrable trigger and a sensor.

``SeldonDeploymentAvailableTrigger`` polls the Kubernetes API from the triggerer (async client of the
cncf-kubernetes provider's ``AsyncKubernetesHook``) until Seldon reports the resource ready for the
awaited generation (a v1 ``SeldonDeployment``: ``status.state == Available``; a v2 ``Model``,
``Pipeline`` or ``Experiment``, ``kind=``: its ``Ready`` condition ``True``), failed, or the deadline passes.
``SeldonDeploymentSensor`` pokes in ``reschedule`` mode (the worker slot is freed between pokes),
or defers to the trigger with ``deferrable=True``. ``Failed`` and a timeout fail the task without
retry, naming the deployment and the operator's description. The lifecycle's own ``apply`` waits
(bounded) by itself; these are for DAGs that split apply and wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowFailException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from operators.hooks import SeldonHook

DEFAULT_KUBE_CONN = "kubernetes_default"


V1_KIND = "SeldonDeployment"
V2_KINDS = ("Model", "Pipeline", "Experiment")


def _resource(kind: str) -> tuple[str, str, str]:
    """(group, version, plural) of a Seldon kind; ``AirflowFailException`` for any other kind."""
    from pushbutton.kube import client, runtime_v2

    if kind == V1_KIND:
        return client.GROUP, client.VERSION, client.PLURAL
    if kind in V2_KINDS:
        return runtime_v2.GROUP, runtime_v2.VERSION, runtime_v2.PLURALS[kind]
    raise AirflowFailException(
        f"kind '{kind}' is not a Seldon resource; use one of {V1_KIND}, {', '.join(V2_KINDS)}"
    )


def _outcome(
    obj: dict[str, Any] | None, generation: int | None, what: str, kind: str = V1_KIND
) -> dict[str, Any] | None:
    """The event for a finished wait (None: keep waiting)."""
    from pushbutton.kube.runtime import AVAILABLE, FAILED, availability
    from pushbutton.kube.runtime_v2 import readiness

    if obj is None:
        return {"state": "missing", "deployment": what, "description": f"{what} does not exist"}
    state, description = (availability if kind == V1_KIND else readiness)(obj, generation)
    if state in (AVAILABLE, FAILED):
        return {"state": state, "deployment": what, "description": description}
    return None


def raise_unless_available(event: dict[str, Any]) -> dict[str, Any]:
    """The task's answer to a finished wait: the event when Available, else ``AirflowFailException``."""
    if event.get("state") == "Available":
        return event
    raise AirflowFailException(
        f"{event.get('deployment')} is not Available ({event.get('state')}): {event.get('description')}; "
        "the previous spec is still what the lifecycle restores — check `kubectl describe` of it"
    )


class SeldonDeploymentAvailableTrigger(BaseTrigger):
    """Fires once the Seldon resource is ready (or failed, missing, or past ``deadline``)."""

    def __init__(
        self,
        namespace: str,
        name: str,
        *,
        generation: int | None = None,
        kubernetes_conn_id: str = DEFAULT_KUBE_CONN,
        poll_interval: float = 5.0,
        deadline: float | None = None,
        kind: str = V1_KIND,
    ):
        super().__init__()
        self.kind = kind
        self.namespace, self.name, self.generation = namespace, name, generation
        self.kubernetes_conn_id, self.poll_interval, self.deadline = (
            kubernetes_conn_id,
            poll_interval,
            deadline,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "namespace": self.namespace,
                "name": self.name,
                "generation": self.generation,
                "kubernetes_conn_id": self.kubernetes_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "kind": self.kind,
            },
        )

    async def _read(self, api: Any) -> dict[str, Any] | None:
        group, version, plural = _resource(self.kind)
        try:
            return await api.get_namespaced_custom_object(group, version, self.namespace, plural, self.name)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self._wait())  # the API client is closed before the event goes out

    async def _wait(self) -> dict[str, Any]:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
        from kubernetes_asyncio import client

        from pushbutton.kube.client import api_error

        what = f"{self.kind} {self.namespace}/{self.name}"
        group, _, plural = _resource(self.kind)
        crd = f"{plural}.{group}"
        hook = AsyncKubernetesHook(conn_id=self.kubernetes_conn_id)
        async with hook.get_conn() as api_client:
            api = client.CustomObjectsApi(api_client)
            while True:
                try:
                    event = _outcome(await self._read(api), self.generation, what, self.kind)
                except Exception as exc:  # transport or API error: the task fails with the mapped reason
                    return {
                        "state": "error",
                        "deployment": what,
                        "description": str(api_error(exc, what, "read", crd)),
                    }
                if event is not None:
                    return event
                if self.deadline is not None and time.time() >= self.deadline:
                    return {"state": "timeout", "deployment": what,
                            "description": "not Available before the sensor's timeout"}  # fmt: skip
                await asyncio.sleep(self.poll_interval)


class SeldonDeploymentSensor(BaseSensorOperator):
    """Wait until a SeldonDeployment is Available, or a Seldon v2 resource (``kind``) is Ready:
    reschedule-mode pokes, or deferred to the trigger. ``deployment`` names the resource."""

    template_fields: Sequence[str] = ("namespace", "deployment", "generation", "kind")

    def __init__(
        self,
        *,
        namespace: str,
        deployment: str,
        generation: int | None = None,
        seldon_conn_id: str = SeldonHook.default_conn_name,
        deferrable: bool = False,
        kind: str = V1_KIND,
        **kwargs: Any,
    ):
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", 10)
        kwargs.setdefault("timeout", 600)
        super().__init__(**kwargs)
        self.namespace, self.deployment, self.generation = namespace, deployment, generation
        self.seldon_conn_id, self.deferrable, self.kind = seldon_conn_id, deferrable, kind

    def _objects(self) -> Any:
        """The runtime's client of ``kind`` (the Connection's runtime must serve that kind)."""
        from pushbutton.kube.runtime import KubernetesRuntime
        from pushbutton.kube.runtime_v2 import SeldonV2Runtime

        _resource(self.kind)
        runtime = SeldonHook(self.seldon_conn_id).get_conn()
        if self.kind == V1_KIND and isinstance(runtime, KubernetesRuntime):
            return runtime.deployments
        if self.kind in V2_KINDS and isinstance(runtime, SeldonV2Runtime):
            return runtime.resources[self.kind]
        wanted = "seldon-v1" if self.kind == V1_KIND else "seldon-v2"
        raise AirflowFailException(
            f"connection {self.seldon_conn_id} does not serve {self.kind}s (extra.runtime is not '{wanted}'); "
            f"set extra.runtime to '{wanted}' or wait for the kind that runtime serves"
        )

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        from pushbutton.kube.runtime import seldon_v1_config
        from pushbutton.kube.runtime_v2 import seldon_v2_config

        conn = SeldonHook(self.seldon_conn_id).get_connection(self.seldon_conn_id)
        parse = seldon_v1_config if self.kind == V1_KIND else seldon_v2_config
        config = parse(conn.extra_dejson, f"connection {self.seldon_conn_id}")
        self.defer(
            trigger=SeldonDeploymentAvailableTrigger(
                self.namespace,
                self.deployment,
                generation=self._generation(),
                kubernetes_conn_id=config.kubernetes_conn_id,
                poll_interval=float(self.poke_interval),
                deadline=time.time() + float(self.timeout),
                kind=self.kind,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)),
        )

    def _generation(self) -> int | None:
        return int(self.generation) if self.generation not in (None, "", "None") else None

    def poke(self, context: Context) -> bool:
        from pushbutton.errors import PushbuttonError

        objects = self._objects()
        what = objects.what(self.namespace, self.deployment)
        try:
            obj = objects.get(self.namespace, self.deployment)
        except PushbuttonError as exc:  # an API outage: poke again (the sensor's timeout bounds it)
            self.log.warning("%s", exc)
            return False
        event = _outcome(obj, self._generation(), what, self.kind)
        if event is None:
            self.log.info("%s: not ready yet (%s)", what, (obj or {}).get("status") or "no status")
            return False
        raise_unless_available(event)
        return True

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        return raise_unless_available(event)
