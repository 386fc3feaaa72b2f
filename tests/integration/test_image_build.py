"""KanikoImageBuildOperator through the cncf-kubernetes provider's KubernetesPodOperator, with the real
``kubernetes`` client (and, on the deferrable path, the async ``kubernetes_asyncio`` client) over HTTP
against a STAND-IN API server (kmock's KubernetesEmulator, ``tests/kube_standin.py``), not a cluster and
not Kaniko: the test plays the kubelet (the pod's phase Pending → Running → Succeeded, or Failed with the
container's termination reason, and what the ``kaniko`` container wrote, served on ``pods/{name}/log``).

Three ways to run: polling (``get_logs=False``: KPO polls the container's state), streaming (the
default ``get_logs=True``: KPO follows ``pods/{name}/log?follow=true&timestamps=true`` into the task's
log) and deferrable (``execute`` defers to ``KubernetesPodTrigger``, whose ``run()`` the test drives on
an event loop in place of a triggerer; a new operator instance resumes with the event, as a worker
does). The emulator keeps no events, so every run has ``log_events_on_startup=False``. The task context
is a minimal stand-in for the task runner's (``ti`` with ``xcom_push``, ``run_id``, ``dag``): the
operator is run by its ``execute``/``resume_execution``, not by ``dag.test()``."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Iterator, MutableMapping
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from airflow.triggers.base import TriggerEvent
from structlog.testing import capture_logs

from operators.image_build import KanikoImageBuildOperator
from tests.kube_standin import PodStandin, pod_status

pytestmark = [pytest.mark.integration, pytest.mark.standin]

CONTEXT = "s3://builds/iris/4/context.tar.gz"
IMAGE = "registry.example/models/iris:4"


@pytest.fixture(scope="module")
def standin() -> Iterator[PodStandin]:
    server = PodStandin().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def namespace(standin: PodStandin, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A namespace of its own per test (the emulator ignores label selectors), reached only through
    the Seldon Connection's ``kubernetes_conn_id`` (a kubeconfig pointing at the stand-in)."""
    ns = request.node.name.replace("_", "-")[:40].strip("-").lower()
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "standin",
        "clusters": [{"name": "standin", "cluster": {"server": standin.url}}],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "u"}}],
    }  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_KUBE_STANDIN",
                       json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": kubeconfig}}))  # fmt: skip
    extra = {"runtime": "seldon-v1", "namespace": ns, "kubernetes_conn_id": "kube_standin",
             "image_registry": "registry.example/models"}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_PUSHBUTTON_SELDON", json.dumps({"conn_type": "http", "extra": extra}))
    return ns


# what Kaniko writes (its own format: ``LEVEL[seconds since start] message``), then a failure's last line
KANIKO_LOG = (
    "INFO[0000] Retrieving image manifest docker.io/seldonio/seldon-core-s2i-python3:1.18.2",
    "INFO[0004] Executing 0 build triggers",
    "INFO[0031] RUN pip install -r requirements.txt",
)
PUSHED = f"INFO[0058] Pushed {IMAGE}@sha256:0f3c"
BUILD_ERROR = "error building image: error building stage: RUN pip install: exit status 1"
POD_MANAGER_LOG = "airflow.providers.cncf.kubernetes.utils.pod_manager.PodManager"  # follows the log (sync)
OPERATOR_LOG = "airflow.task.operators.operators.image_build.KanikoImageBuildOperator"  # reads it on resume


def build(**kwargs: Any) -> KanikoImageBuildOperator:
    options: dict[str, Any] = {
        "get_logs": False,  # polling; the streaming tests pass get_logs=True (KPO's default)
        "log_events_on_startup": False,  # the emulator keeps no events
        "startup_check_interval_seconds": 0, "base_container_status_polling_interval": 0,  # each read moves the pod
        "poll_interval": 0,  # the trigger's (deferrable)
        "context_uri": CONTEXT,
    }  # fmt: skip
    return KanikoImageBuildOperator(task_id="build_image", model="iris", version="4", **(options | kwargs))


def task_context(xcoms: dict[str, Any]) -> Any:
    """A minimal task context whose ``ti.xcom_push`` writes into ``xcoms``."""
    ti = SimpleNamespace(dag_id="iris__images", task_id="build_image", map_index=-1, try_number=1,
                         xcom_push=lambda key, value: xcoms.__setitem__(key, value))  # fmt: skip
    return {"ti": ti, "run_id": "manual__1", "dag": SimpleNamespace()}


def run(op: KanikoImageBuildOperator) -> tuple[Any, dict[str, Any], BaseException | None]:
    """``execute`` with a minimal task context: (return value, XComs pushed, exception raised)."""
    xcoms: dict[str, Any] = {}
    try:
        return op.execute(task_context(xcoms)), xcoms, None
    except AirflowException as exc:
        return None, xcoms, exc


@pytest.fixture()
def task_log() -> Iterator[list[MutableMapping[str, Any]]]:
    """What the task logged (Airflow's loggers are structlog's, not stdlib's, so not ``caplog``): each
    event with its ``logger`` name, as the task runner would write it to the task's log."""

    def name(logger: Any, _: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.setdefault("logger", event.pop("logger_name", None) or getattr(logger, "name", None))
        return event

    with capture_logs(processors=[name]) as events:
        yield events


def kaniko_lines(events: list[MutableMapping[str, Any]], logger: str) -> list[str]:
    """What ``logger`` wrote about the ``kaniko`` container, in order. (KPO's ``PodLogsConsumer`` turns
    the newline ending the kubelet's last line into an empty continuation line: that newline goes.)"""
    return [
        str(e["event"]).removesuffix("\n")
        for e in events
        if e.get("logger") == logger and str(e["event"]).startswith("[kaniko]")
    ]


def test_a_succeeded_build_returns_the_image(standin: PodStandin, namespace: str) -> None:
    standin.script(namespace, pod_status("Pending"), pod_status("Running"), pod_status("Succeeded"))
    result, xcoms, error = run(build(on_finish_action="keep_pod"))
    assert error is None and result == IMAGE and xcoms["image"] == IMAGE
    [pod] = standin.pods(namespace)  # kept: what was created, as the API server stored it
    assert pod["metadata"]["name"] == xcoms["pod_name"] and pod["metadata"]["name"].startswith(
        "build-iris-4-"
    )
    assert pod["status"]["phase"] == "Succeeded"
    [container] = pod["spec"]["containers"]
    assert container["name"] == "kaniko" and f"--destination={IMAGE}" in container["args"]
    assert f"--context={CONTEXT}" in container["args"]
    assert pod["metadata"]["labels"]["dag_id"] == "iris__images"  # KPO's labels, to find it again
    reads = standin.requests("GET")
    path = f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}"
    assert reads.count(f"GET {path}") >= 3  # polled through Pending and Running to Succeeded
    assert f"POST /api/v1/namespaces/{namespace}/pods" in standin.requests("POST")
    assert f"DELETE {path}" not in standin.requests("DELETE")


def test_a_failed_build_fails_the_task_naming_the_pod_and_the_reason(
    standin: PodStandin, namespace: str
) -> None:
    failed = pod_status("Failed", reason="Error", exit_code=1,
                        message="error building image: RUN pip install: exit status 1")  # fmt: skip
    standin.script(namespace, pod_status("Pending"), pod_status("Running"), failed)
    result, xcoms, error = run(build())
    assert result is None and "image" not in xcoms
    assert error is not None
    message = str(error)
    assert f"pod {namespace}/{xcoms['pod_name']} ended Failed" in message
    assert "container kaniko: Error (exit code 1): error building image: RUN pip install" in message
    assert IMAGE in message
    # on_finish_action's default: the failed pod is deleted (after being marked as checked)
    assert f"DELETE /api/v1/namespaces/{namespace}/pods/{xcoms['pod_name']}" in standin.requests("DELETE")
    assert standin.pods(namespace) == []


def test_a_pod_evicted_while_running_fails_with_the_pods_reason(standin: PodStandin, namespace: str) -> None:
    evicted = pod_status("Running") | {"phase": "Failed", "reason": "Evicted",
                                        "message": "The node was low on resource: ephemeral-storage."}  # fmt: skip
    evicted["containerStatuses"] = [
        {**evicted["containerStatuses"][0], "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}
    ]
    standin.script(namespace, pod_status("Pending"), pod_status("Running"), evicted)
    _, xcoms, error = run(build(on_finish_action="keep_pod"))
    assert error is not None and f"pod {namespace}/{xcoms['pod_name']} ended Failed" in str(error)
    assert "container kaniko: Error (exit code 137); pod Evicted: The node was low on resource" in str(error)
    [pod] = standin.pods(namespace)
    assert pod["metadata"]["labels"]["already_checked"] == "True"  # a retry will not reattach to it


# streaming: get_logs=True follows pods/{name}/log into the task's log --------------------------------


def test_kanikos_log_reaches_the_task_log(
    standin: PodStandin, namespace: str, task_log: list[MutableMapping[str, Any]]
) -> None:
    standin.script(namespace, pod_status("Pending"), pod_status("Running"), pod_status("Succeeded"))
    standin.script_logs(namespace, *KANIKO_LOG, PUSHED)
    result, xcoms, error = run(build(get_logs=True))
    assert error is None and result == IMAGE and xcoms["image"] == IMAGE
    # each line once, in order, the kubelet's timestamp taken off (KPO parses it to resume from)
    assert kaniko_lines(task_log, POD_MANAGER_LOG) == [f"[kaniko] {line}" for line in (*KANIKO_LOG, PUSHED)]
    [read] = standin.log_reads(namespace)
    assert read == {"container": "kaniko", "follow": "True", "timestamps": "True"}
    assert f"GET /api/v1/namespaces/{namespace}/pods/{xcoms['pod_name']}/log" in standin.requests("GET")


def test_a_failed_build_logs_kanikos_error_and_fails_naming_the_pod_and_the_reason(
    standin: PodStandin, namespace: str, task_log: list[MutableMapping[str, Any]]
) -> None:
    failed = pod_status("Failed", reason="Error", exit_code=1, message=BUILD_ERROR)
    standin.script(namespace, pod_status("Pending"), pod_status("Running"), failed)
    standin.script_logs(namespace, *KANIKO_LOG, BUILD_ERROR)
    result, xcoms, error = run(build(get_logs=True))
    assert result is None and "image" not in xcoms and error is not None
    # the cause, in the task's log
    assert kaniko_lines(task_log, POD_MANAGER_LOG) == [
        f"[kaniko] {line}" for line in (*KANIKO_LOG, BUILD_ERROR)
    ]
    message = str(error)
    assert f"pod {namespace}/{xcoms['pod_name']} ended Failed" in message
    assert f"container kaniko: Error (exit code 1): {BUILD_ERROR}" in message
    assert standin.pods(namespace) == []  # on_finish_action's default deletes it


# deferrable: execute defers, the trigger runs (here, not in a triggerer), a new instance resumes -----


def defer(op: KanikoImageBuildOperator, xcoms: dict[str, Any]) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(task_context(xcoms))
    return deferred.value


def fire(deferred: TaskDeferred) -> TriggerEvent:
    """What a triggerer does with the deferral: rebuild the trigger from its serialized form, run it
    until its first event (bounded: a trigger that never fires fails the test, not hangs it)."""
    classpath, kwargs = deferred.trigger.serialize()
    module, _, name = classpath.rpartition(".")
    trigger = getattr(importlib.import_module(module), name)(**kwargs)

    async def first() -> TriggerEvent:
        async for event in trigger.run():
            return event
        raise AssertionError(f"{classpath} ended without an event")

    return asyncio.run(asyncio.wait_for(first(), timeout=60))


def resume(deferred: TaskDeferred, event: TriggerEvent, xcoms: dict[str, Any], **options: Any) -> Any:
    """What a worker does after the event: a NEW operator instance from the same arguments (the deferred
    one's state is gone), ``resume_execution`` with the method and the event."""
    op = build(**({"deferrable": True, "get_logs": True} | options))
    assert op.destination is None and op.kubernetes_conn_id != "kube_standin"  # nothing carried over
    return op.resume_execution(deferred.method_name, {**(deferred.kwargs or {}), "event": event.payload},
                               task_context(xcoms))  # fmt: skip


def test_a_deferred_build_resumes_on_a_new_instance_and_returns_the_image(
    standin: PodStandin, namespace: str, task_log: list[MutableMapping[str, Any]]
) -> None:
    standin.script(namespace, pod_status("Pending"), pod_status("Running"), pod_status("Succeeded"))
    standin.script_logs(namespace, *KANIKO_LOG, PUSHED)
    xcoms: dict[str, Any] = {}
    deferred = defer(build(deferrable=True, get_logs=True), xcoms)
    assert deferred.method_name == "trigger_reentry"
    [pod] = standin.pods(namespace)
    assert pod["metadata"]["name"] == xcoms["pod_name"] and pod["metadata"]["namespace"] == namespace
    assert "status" not in pod  # deferred before the kubelet said anything: no worker waits for it

    event = fire(deferred)
    assert event.payload["status"] == "success" and event.payload["name"] == xcoms["pod_name"]
    assert event.payload["namespace"] == namespace
    path = f"/api/v1/namespaces/{namespace}/pods/{xcoms['pod_name']}"
    assert standin.requests("GET").count(f"GET {path}") >= 3  # the trigger polled it (async client)

    result = resume(deferred, event, xcoms)
    assert result == IMAGE and xcoms["image"] == IMAGE
    # the resumed task reads the whole log at once (no timestamps: KPO's _write_logs)
    assert kaniko_lines(task_log, OPERATOR_LOG) == [
        f"[kaniko] logs: {line}" for line in (*KANIKO_LOG, PUSHED)
    ]
    [read] = standin.log_reads(namespace)  # the trigger read none (no logging_interval)
    assert read == {"container": "kaniko", "follow": "True", "timestamps": "False"}
    assert f"DELETE {path}" in standin.requests("DELETE")
    assert standin.pods(namespace) == []


def test_a_deferred_build_that_fails_fails_the_resumed_task_naming_the_pod_and_the_reason(
    standin: PodStandin, namespace: str
) -> None:
    failed = pod_status("Failed", reason="Error", exit_code=1, message=BUILD_ERROR)
    standin.script(namespace, pod_status("Pending"), pod_status("Running"), failed)
    standin.script_logs(namespace, *KANIKO_LOG, BUILD_ERROR)
    xcoms: dict[str, Any] = {}
    deferred = defer(build(deferrable=True, get_logs=True, on_finish_action="keep_pod"), xcoms)
    event = fire(deferred)
    assert event.payload["status"] == "failed" and event.payload["name"] == xcoms["pod_name"]

    with pytest.raises(AirflowException) as failure:
        resume(deferred, event, xcoms, on_finish_action="keep_pod")
    assert "image" not in xcoms
    message = str(failure.value)
    assert f"pod {namespace}/{xcoms['pod_name']} ended Failed" in message
    assert f"container kaniko: Error (exit code 1): {BUILD_ERROR}" in message and IMAGE in message
    [pod] = standin.pods(namespace)  # the new instance's own on_finish_action: keep_pod
    assert pod["metadata"]["labels"]["already_checked"] == "True"


def test_a_deferred_build_of_an_uploaded_context_resumes_with_the_image_it_pushed(
    standin: PodStandin, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator packs and uploads the context itself (no ``context_uri``) and the image template
    names the requirements' ``env_key``, which only packing derives: the resumed instance (which uploads
    nothing) must still report the image the pod pushed, not one without the env key."""
    from pushbutton.kube.build import ContextObject

    extra = {"runtime": "seldon-v1", "namespace": namespace, "kubernetes_conn_id": "kube_standin",
             "image_registry": "registry.example/models", "image_template": "{registry}/{model}:{version}-{env_key}",
             "image_build": {"context_uri": "s3://builds", "env_secret": "build-env",
                             "s3_endpoint": "http://minio:9000", "mlflow_tracking_uri": "http://mlflow:5000"}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_PUSHBUTTON_SELDON", json.dumps({"conn_type": "http", "extra": extra}))
    uploads: list[str] = []

    def upload(self: KanikoImageBuildOperator, build: Any, version: str) -> ContextObject:
        """``_upload`` without MLflow and S3 (test_image_build_cicd.py runs the real one): what packing
        derives (the env key) and where the context went."""
        uploads.append(version)
        self.env_key = self.env_key or "py311-0123abcd"
        return ContextObject(endpoint="http://minio:9000", bucket="builds", key=f"iris/{version}/context.tar.gz",
                             sha256="0" * 64)  # fmt: skip

    monkeypatch.setattr(KanikoImageBuildOperator, "_upload", upload)
    standin.script(namespace, pod_status("Pending"), pod_status("Running"), pod_status("Succeeded"))
    options = {"context_uri": None, "deferrable": True}
    xcoms: dict[str, Any] = {}
    deferred = defer(build(**options), xcoms)
    [pod] = standin.pods(namespace)
    [kaniko] = [c for c in pod["spec"]["containers"] if c["name"] == "kaniko"]
    pushed = "registry.example/models/iris:4-py311-0123abcd"
    assert f"--destination={pushed}" in kaniko["args"]

    result = resume(deferred, fire(deferred), xcoms, **options)
    assert uploads == ["4"]  # once, before deferring; the resumed task uploads nothing
    assert result == pushed and xcoms["image"] == pushed
