"""Waiting for Seldon without holding a worker: a deferrable trigger and a sensor.

``SeldonDeploymentAvailableTrigger`` polls the Kubernetes API from the triggerer (async client of the
cncf-kubernetes provider's ``AsyncKubernetesHook``) until Seldon reports the resource ready for the
awaited generation (a v1 ``SeldonDeployment``: ``status.state == Available``; a v2 ``Model``,
``Pipeline`` or ``Experiment``, ``kind=``: its ``Ready`` condition ``True``), failed, or the deadline passes.
``SeldonDeploymentSensor`` pokes in ``reschedule`` mode (the worker slot is freed between pokes),
or defers to the trigger with ``deferrable=True``. ``Failed`` and a timeout fail the task without
retry, naming the deployment and the operator's description. ``SeldonRolloutTrigger`` waits for
several resources at once: the release operators (``operators.rollout``) defer to it. The trigger and
the sensor above are for DAGs that split apply and wait themselves.
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

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self._wait())  # the API client is closed before the event goes out

    async def _wait(self) -> dict[str, Any]:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
        from kubernetes_asyncio import client

        wait = {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "generation": self.generation,
        }
        hook = AsyncKubernetesHook(conn_id=self.kubernetes_conn_id)
        async with hook.get_conn() as api_client:
            api = client.CustomObjectsApi(api_client)
            while True:
                event = await _read_outcome(api, wait)  # an API error: the task fails with the mapped reason
                if event is not None:
                    return event
                if self.deadline is not None and time.time() >= self.deadline:
                    return {"state": "timeout", "deployment": f"{self.kind} {self.namespace}/{self.name}",
                            "description": "not Available before the sensor's timeout"}  # fmt: skip
                await asyncio.sleep(self.poll_interval)


class SeldonRolloutTrigger(BaseTrigger):
    """Fires once every awaited Seldon resource is ready, or at the first that failed or is gone, or an
    API error, or past ``deadline``: the wait a deferring release step hands over
    (``pushbutton.kube.rollout.RolloutPending``: ``waits`` of kind, namespace, name, generation).

    ``carry`` (the step's undo steps and deadline) comes back in the event, so the resumed task has it
    whichever way its kwargs travel (``dag.test()`` replaces them with the event)."""

    def __init__(
        self,
        waits: list[dict[str, Any]],
        *,
        kubernetes_conn_id: str = DEFAULT_KUBE_CONN,
        poll_interval: float = 5.0,
        deadline: float | None = None,
        carry: dict[str, Any] | None = None,
    ):
        super().__init__()
        for wait in waits:
            _resource(wait["kind"])
        self.waits, self.kubernetes_conn_id = waits, kubernetes_conn_id
        self.poll_interval, self.deadline, self.carry = poll_interval, deadline, carry or {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"waits": self.waits, "kubernetes_conn_id": self.kubernetes_conn_id,
             "poll_interval": self.poll_interval, "deadline": self.deadline, "carry": self.carry},
        )  # fmt: skip

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            event = await self._wait()
        except Exception as exc:  # e.g. no Kubernetes Connection in the triggerer: the task still undoes
            what = ", ".join(f"{w['kind']} {w['namespace']}/{w['name']}" for w in self.waits)
            event = {
                "state": "error",
                "deployment": what,
                "description": f"the trigger could not wait: {exc!r}",
            }
        yield TriggerEvent({**event, "carry": self.carry})

    async def _wait(self) -> dict[str, Any]:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
        from kubernetes_asyncio import client

        pending = list(self.waits)
        hook = AsyncKubernetesHook(conn_id=self.kubernetes_conn_id)
        async with hook.get_conn() as api_client:
            api = client.CustomObjectsApi(api_client)
            while True:
                still = []
                for wait in pending:
                    event = await _read_outcome(api, wait)
                    if event is None:
                        still.append(wait)
                    elif event["state"] != "Available":
                        return event
                pending = still
                if not pending:
                    names = ", ".join(f"{w['kind']} {w['namespace']}/{w['name']}" for w in self.waits)
                    return {"state": "Available", "deployment": names, "description": "ready"}
                if self.deadline is not None and time.time() >= self.deadline:
                    what = f"{pending[0]['kind']} {pending[0]['namespace']}/{pending[0]['name']}"
                    return {"state": "timeout", "deployment": what,
                            "description": "not ready before the rollout's deadline (extra.apply_timeout_seconds)"}  # fmt: skip
                await asyncio.sleep(self.poll_interval)


async def _read_outcome(api: Any, wait: dict[str, Any]) -> dict[str, Any] | None:
    """One read of an awaited resource: its finished-wait event, or None while it is pending."""
    from pushbutton.kube.client import api_error

    kind, ns, name = wait["kind"], wait["namespace"], wait["name"]
    group, version, plural = _resource(kind)
    what = f"{kind} {ns}/{name}"
    try:
        obj = await api.get_namespaced_custom_object(group, version, ns, plural, name)
    except Exception as exc:
        if getattr(exc, "status", None) != 404:
            return {"state": "error", "deployment": what,
                    "description": str(api_error(exc, what, "read", f"{plural}.{group}"))}  # fmt: skip
        obj = None
    try:
        return _outcome(obj, wait.get("generation"), what, kind)
    except (TypeError, ValueError, AttributeError) as exc:  # a status this code cannot read
        return {"state": "error", "deployment": what, "description": f"unreadable status: {exc!r}"}


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
