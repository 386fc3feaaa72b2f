"""KanikoImageBuildOperator's pod, read from the Seldon Connection (no API server: the pod it would
create, and the errors it fails with). The run against a stand-in API server is in
tests/integration/test_image_build.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from kubernetes.client import models as k8s

from operators.image_build import KanikoImageBuildOperator, termination
from pushbutton.kube.image import KANIKO_IMAGE

CONTEXT = "s3://builds/iris/4/context.tar.gz"


def seldon(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    extra = {"runtime": "seldon-v1", "namespace": "models", "kubernetes_conn_id": "kube_prod",
             "image_registry": "registry.example/models"} | extra  # fmt: skip
    extra = {k: v for k, v in extra.items() if v is not None}
    monkeypatch.setenv("AIRFLOW_CONN_PUSHBUTTON_SELDON", json.dumps({"conn_type": "http", "extra": extra}))


def operator(**kwargs: Any) -> KanikoImageBuildOperator:
    return KanikoImageBuildOperator(
        **({"task_id": "build", "model": "iris", "version": "4", "context_uri": CONTEXT} | kwargs)
    )


def built_pod(op: KanikoImageBuildOperator) -> k8s.V1Pod:
    op._configure()
    return op.build_pod_request_obj(dry_run=True)


def test_the_pod_is_kaniko_pushing_the_image_the_seldon_runtime_pulls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seldon(monkeypatch)
    op = operator(build_args={"MLFLOW_TRACKING_URI": "http://mlflow:5000"}, env_secret="mlflow-creds")
    pod = built_pod(op)
    assert op.destination == "registry.example/models/iris:4"  # image_ref of the seldon-v1 config
    assert (op.kubernetes_conn_id, op.namespace, pod.metadata.namespace) == ("kube_prod", "models", "models")
    assert pod.metadata.name.startswith("build-iris-4-")  # KPO's random suffix: a retry is a new pod
    assert pod.metadata.labels["pushbutton.io/model"] == "iris"
    assert pod.metadata.labels["pushbutton.io/version"] == "4"
    [container] = pod.spec.containers  # no second, empty "base" container beside Kaniko's
    assert (container.name, container.image, op.base_container_name) == ("kaniko", KANIKO_IMAGE, "kaniko")
    assert f"--context={CONTEXT}" in container.args
    assert "--destination=registry.example/models/iris:4" in container.args
    assert "--build-arg=MLFLOW_TRACKING_URI=http://mlflow:5000" in container.args
    assert container.env_from[0].secret_ref.name == "mlflow-creds"
    assert container.volume_mounts[0].mount_path == "/kaniko/.docker"
    assert pod.spec.volumes[0].secret.secret_name == "registry-credentials"
    assert pod.spec.restart_policy == "Never"


def test_image_template_and_env_key_choose_the_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    seldon(monkeypatch, image_template="{registry}/{model}:{version}-{env_key}", namespace=None)
    op = operator(env_key="abc123", namespace="builds")
    pod = built_pod(op)
    assert op.destination == "registry.example/models/iris:4-abc123"
    assert pod.metadata.namespace == "builds"  # the operator's namespace wins over the Connection's


def test_without_a_namespace_the_kubernetes_connections_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    seldon(monkeypatch, namespace=None)
    monkeypatch.setenv("AIRFLOW_CONN_KUBE_PROD",
                       json.dumps({"conn_type": "kubernetes", "extra": {"namespace": "ci-builds"}}))  # fmt: skip
    op = operator()
    op.kubernetes_conn_id = "kubernetes_default"
    _ = op.hook  # made before the Connection is read: _configure must not keep it
    assert built_pod(op).metadata.namespace == "ci-builds"
    assert op.hook.conn_id == "kube_prod"


def test_model_and_version_are_templated(monkeypatch: pytest.MonkeyPatch) -> None:
    seldon(monkeypatch)
    op = operator(model="{{ params.model }}", version="{{ params.version }}",
                  context_uri="s3://builds/{{ params.model }}/{{ params.version }}/context.tar.gz")  # fmt: skip
    op.render_template_fields({"params": {"model": "wine", "version": "7"}})
    pod = built_pod(op)
    assert op.destination == "registry.example/models/wine:7"
    assert "--context=s3://builds/wine/7/context.tar.gz" in pod.spec.containers[0].args


@pytest.mark.parametrize(
    ("extra", "kwargs", "expected"),
    [
        ({"runtime": "local"}, {}, "extra.runtime: 'local' serves no model images"),
        ({"image_registry": None}, {}, "extra.image_registry"),
        ({"image_template": "{registry}/{model}:latest"}, {}, "extra.image_template"),
        ({}, {"build_args": {"AWS_SECRET_ACCESS_KEY": "x"}}, "build_args.AWS_SECRET_ACCESS_KEY"),
        ({}, {"kaniko_image": "gcr.io/kaniko-project/executor:latest"}, "kaniko_image"),
        ({}, {"model": "Not_A_Name"}, "model 'Not_A_Name'"),
        ({}, {"version": "v4"}, "version 'v4'"),
    ],
)
def test_bad_configuration_fails_without_retry(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], kwargs: dict[str, Any], expected: str
) -> None:
    seldon(monkeypatch, **extra)
    with pytest.raises(AirflowFailException, match="fix") as raised:
        operator(**kwargs)._configure()
    assert expected in str(raised.value)


def status(container: k8s.V1ContainerStatus | None = None, **pod: Any) -> k8s.V1Pod:
    return k8s.V1Pod(status=k8s.V1PodStatus(container_statuses=[container] if container else None, **pod))


def test_termination_names_the_containers_reason_exit_code_and_message() -> None:
    terminated = k8s.V1ContainerStateTerminated(exit_code=1, reason="Error", message="error building image\n")
    kaniko = k8s.V1ContainerStatus(name="kaniko", image="k", image_id="", ready=False, restart_count=0,
                                   state=k8s.V1ContainerState(terminated=terminated))  # fmt: skip
    assert termination(status(kaniko, phase="Failed")) == "Error (exit code 1): error building image"
    # the container never ran: the pod's own reason (e.g. evicted before it started)
    evicted = status(phase="Failed", reason="Evicted", message="The node was low on resource: memory.")
    assert termination(evicted) == "pod Evicted: The node was low on resource: memory."
    killed = k8s.V1ContainerStatus(name="kaniko", image="k", image_id="", ready=False, restart_count=0,
                                   state=k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(
                                       exit_code=137, reason="Error")))  # fmt: skip
    assert (
        termination(status(killed, phase="Failed", reason="Evicted")) == "Error (exit code 137); pod Evicted"
    )
    assert termination(None) == "no termination reason reported"


def test_a_failed_context_fetch_is_named_though_kaniko_never_ran() -> None:
    failed = k8s.V1ContainerStateTerminated(exit_code=1, reason="Error",
                                            message="mc: <ERROR> Object does not exist.")  # fmt: skip
    fetch = k8s.V1ContainerStatus(name="fetch-context", image="mc", image_id="", ready=False, restart_count=0,
                                  state=k8s.V1ContainerState(terminated=failed))  # fmt: skip
    pod = k8s.V1Pod(status=k8s.V1PodStatus(phase="Failed", init_container_statuses=[fetch]))
    assert (
        termination(pod)
        == "init container fetch-context: Error (exit code 1): mc: <ERROR> Object does not exist."
    )


def test_an_image_build_needs_an_mlflow_the_pod_can_reach(monkeypatch: pytest.MonkeyPatch) -> None:
    seldon(monkeypatch, image_build={"context_uri": "s3://builds", "env_secret": "creds"})
    monkeypatch.setenv("AIRFLOW_CONN_PUSHBUTTON_MLFLOW", "http://127.0.0.1:5000")
    op = KanikoImageBuildOperator(task_id="b", model="iris", version="4")
    op._upload = lambda *a: pytest.fail("nothing may be uploaded first")  # type: ignore[method-assign]
    with pytest.raises(
        AirflowFailException, match=r"MLflow is http://127\.0\.0\.1:5000, which a build pod cannot"
    ):
        op._configure()


def test_an_uploaded_context_is_fetched_with_the_operators_secret_and_a_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pushbutton.kube.build import ContextObject

    seldon(monkeypatch, image_build={"context_uri": "s3://builds", "env_secret": "creds",
                                     "mlflow_tracking_uri": "http://mlflow.platform:5000",
                                     "build_timeout_seconds": 1200})  # fmt: skip
    op = KanikoImageBuildOperator(task_id="b", model="iris", version="4", env_secret="team-creds")
    source = ContextObject("http://minio.minio:9000", "builds", "iris/4/context.tar.gz", "c" * 64)
    op._upload = lambda build, version: source  # type: ignore[method-assign]
    pod = built_pod(op)
    assert pod.spec.active_deadline_seconds == 1200
    [fetch] = pod.spec.init_containers
    assert (
        fetch.env_from[0].secret_ref.name
        == "team-creds"
        == pod.spec.containers[0].env_from[0].secret_ref.name
    )
    args = pod.spec.containers[0].args
    assert "--build-arg=MLFLOW_TRACKING_URI=http://mlflow.platform:5000" in args
    assert "--build-arg=MLFLOW_S3_ENDPOINT_URL=http://minio.minio:9000" in args  # as the pod reaches it
