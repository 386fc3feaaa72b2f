"""KanikoImageBuildOperator through the cncf-kubernetes provider's KubernetesPodOperator, with the real
``kubernetes`` client over HTTP against a STAND-IN API server (kmock's KubernetesEmulator,
``tests/kube_standin.py``), not a cluster and not Kaniko: the test plays the kubelet (the pod's
phase Pending → Running → Succeeded, or Failed with the container's termination reason).

Polling, not streaming: the emulator serves no ``pods/{name}/log`` and no events, so these runs use
``get_logs=False`` (KPO then polls the container's state), ``log_events_on_startup=False`` and the
synchronous (non-deferrable) path. The task context is a minimal stand-in for the task runner's
(``ti`` with ``xcom_push``, ``run_id``, ``dag``): the operator is run by its ``execute``, not by
``dag.test()``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException

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


def build(**kwargs: Any) -> KanikoImageBuildOperator:
    return KanikoImageBuildOperator(
        task_id="build_image", model="iris", version="4", context_uri=CONTEXT,
        get_logs=False, log_events_on_startup=False,  # the emulator streams no logs and keeps no events
        startup_check_interval_seconds=0, base_container_status_polling_interval=0,  # each read moves the pod
        **kwargs,
    )  # fmt: skip


def run(op: KanikoImageBuildOperator) -> tuple[Any, dict[str, Any], BaseException | None]:
    """``execute`` with a minimal task context: (return value, XComs pushed, exception raised)."""
    xcoms: dict[str, Any] = {}
    ti = SimpleNamespace(dag_id="iris__images", task_id=op.task_id, map_index=-1, try_number=1,
                         xcom_push=lambda key, value: xcoms.__setitem__(key, value))  # fmt: skip
    try:
        return op.execute({"ti": ti, "run_id": "manual__1", "dag": SimpleNamespace()}), xcoms, None
    except AirflowException as exc:
        return None, xcoms, exc


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
