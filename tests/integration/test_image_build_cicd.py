"""The CI/CD DAG's ``build_image`` task (``SeldonImageBuildOperator``) with the Seldon Connection's
``extra.image_build`` set: the version's code is read from the tier's real MLflow, its build context is
packed and uploaded to S3, and the Kaniko pod (with the init container fetching it) is run through the
cncf-kubernetes provider's ``KubernetesPodOperator``.

STAND-INS: S3 is a moto server (``tests/s3_standin.py``), not MinIO; the API server is kmock's
KubernetesEmulator (``tests/kube_standin.py``) and the test plays the kubelet (no Kaniko runs, so no
image is pushed). As in ``test_image_build.py`` the pod is polled, not streamed (the emulator serves no
logs), and the operator runs by ``execute`` with a minimal task context."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException

from operators.lifecycle import SeldonImageBuildOperator
from pushbutton.config import Settings, settings
from tests.kube_paths import kube_connections, trained_versions
from tests.kube_standin import PodStandin, pod_status
from tests.s3_standin import CREDENTIALS, moto_server

pytestmark = [pytest.mark.integration, pytest.mark.standin]

MODEL, NS, REGISTRY = "image-iris", "image-builds", "registry.example/models"
BUILD = {"context_uri": "s3://builds/contexts", "env_secret": "build-credentials",
         "s3_endpoint": "http://minio.minio:9000", "mlflow_tracking_uri": "http://mlflow.platform:5000"}  # fmt: skip
POLL = {"get_logs": False, "log_events_on_startup": False, "startup_check_interval_seconds": 0,
        "base_container_status_polling_interval": 0, "on_finish_action": "keep_pod"}  # fmt: skip


@pytest.fixture(scope="module")
def pods() -> Iterator[PodStandin]:
    server = PodStandin().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="pushbutton-moto-build-") as tmp:
        yield from moto_server(tmp, "moto-s3-builds")


@pytest.fixture()
def worker(shared_stack: Settings, pods: PodStandin, s3: str, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Settings:  # fmt: skip
    """A worker's environment: the Connections (Seldon v1 with image_build, Kubernetes at the stand-in,
    MLflow of the tier), S3 keys and endpoint, and a home of its own (its release downloads)."""
    seldon = {"runtime": "seldon-v1", "namespace": NS, "image_registry": REGISTRY, "image_build": BUILD}
    for key, value in kube_connections(pods.url, seldon).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRFLOW_CONN_PUSHBUTTON_MLFLOW", shared_stack.mlflow_url)
    for key, value in {**CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": s3}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PUSHBUTTON_HOME", str(tmp_path / "worker-home"))
    settings.cache_clear()
    yield shared_stack
    settings.cache_clear()


def run(op: SeldonImageBuildOperator) -> tuple[Any, dict[str, Any], BaseException | None]:
    xcoms: dict[str, Any] = {}
    ti = SimpleNamespace(dag_id=f"{MODEL}__cicd", task_id=op.task_id, map_index=-1, try_number=1,
                         xcom_push=lambda key, value: xcoms.__setitem__(key, value))  # fmt: skip
    context = {"ti": ti, "run_id": "manual__build", "dag": SimpleNamespace()}
    try:
        return op.execute(context), xcoms, None  # type: ignore[arg-type]
    except AirflowException as exc:
        return None, xcoms, exc


def s3_object(url: str, key: str) -> tuple[bytes, dict[str, str]]:
    import boto3

    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
    found = client.get_object(Bucket="builds", Key=key)
    return found["Body"].read(), found["Metadata"]


def test_build_image_uploads_the_context_and_runs_kaniko_from_it(
    worker: Settings, pods: PodStandin, s3: str, tmp_path: Path
) -> None:
    [version] = trained_versions(worker, tmp_path / MODEL, name=MODEL, namespace=NS, count=1)
    image = f"{REGISTRY}/{MODEL}:{version}"
    pods.script(NS, pod_status("Pending"), pod_status("Running"), pod_status("Succeeded"))
    op = SeldonImageBuildOperator(task_id="build_image", model=MODEL, version=version, pod_options=POLL)
    result, xcoms, error = run(op)
    assert error is None and result == image and xcoms["image"] == image

    key = f"contexts/{MODEL}/{version}/context.tar.gz"
    data, metadata = s3_object(s3, key)
    digest = hashlib.sha256(data).hexdigest()
    assert metadata["sha256"] == digest  # what the init container checks
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = set(tar.getnames())
        dockerfile = tar.extractfile("Dockerfile").read().decode()  # type: ignore[union-attr]
        spec = tar.extractfile("code/model.yaml").read().decode()  # type: ignore[union-attr]
    assert {"code/predict.py", "code/requirements.txt"} <= names and f"name: {MODEL}" in spec
    assert any(n.startswith("runtime/") and n.endswith(".py") for n in names)  # pushbutton's seldon runtime
    assert "FROM python:3.11.11-slim-bookworm AS artifacts" in dockerfile
    assert "scikit-learn==" in dockerfile and f"models:/{MODEL}/{version}" in dockerfile

    [pod] = pods.pods(NS)
    assert (
        pod["status"]["phase"] == "Succeeded"
        and pod["metadata"]["labels"]["pushbutton.io/version"] == version
    )
    [fetch] = pod["spec"]["initContainers"]
    assert fetch["image"].startswith("minio/mc:RELEASE.") and fetch["envFrom"] == [
        {"secretRef": {"name": "build-credentials"}}
    ]
    assert {"name": "CONTEXT_ENDPOINT", "value": "http://minio.minio:9000"} in fetch[
        "env"
    ]  # as the pod sees S3
    env = {e["name"]: e.get("value") for e in fetch["env"]}
    assert (env["CONTEXT_OBJECT"], env["CONTEXT_SHA256"]) == (
        f"builds/{key}",
        digest,
    )  # what mc fetches, checks
    [kaniko] = pod["spec"]["containers"]
    assert "--context=tar:///workspace/context.tar.gz" in kaniko["args"]
    assert f"--destination={image}" in kaniko["args"]
    assert "--build-arg=MLFLOW_TRACKING_URI=http://mlflow.platform:5000" in kaniko["args"]
    assert "--build-arg=AWS_SECRET_ACCESS_KEY" in kaniko["args"]  # by name: the value is the Secret's
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in json.dumps(pod)  # no key written into the pod

    # a re-run (a retry, a cleared task) uploads the same bytes and builds the same image again
    pods.script(NS, pod_status("Pending"), pod_status("Running"), pod_status("Succeeded"))
    again, _, error = run(SeldonImageBuildOperator(task_id="build_image", model=MODEL, version=version,
                                                   pod_options=POLL))  # fmt: skip
    assert error is None and again == image
    assert s3_object(s3, key)[0] == data


def test_an_unreachable_s3_fails_before_any_pod_is_created(
    worker: Settings, pods: PodStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pushbutton.procs import free_port

    [version] = trained_versions(worker, tmp_path / MODEL, name=MODEL, namespace=NS, count=1)
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", closed)
    before = len(pods.requests("POST"))
    _, xcoms, error = run(SeldonImageBuildOperator(task_id="build_image", model=MODEL, version=version,
                                                   pod_options=POLL))  # fmt: skip
    assert error is not None and "AirflowFailException" not in type(error).__name__  # may work on retry
    assert f"cannot reach the S3 endpoint {closed}" in str(error) and "connection refused" in str(error)
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in str(error)
    assert len(pods.requests("POST")) == before and "image" not in xcoms


def test_without_image_build_the_task_builds_nothing(
    worker: Settings, pods: PodStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    seldon = {"runtime": "seldon-v1", "namespace": NS, "image_registry": REGISTRY}
    for key, value in kube_connections(pods.url, seldon).items():
        monkeypatch.setenv(key, value)
    before = len(pods.requests("POST"))
    op = SeldonImageBuildOperator(task_id="build_image", model=MODEL, version="1", pod_options=POLL)
    assert "no extra.image_build" in (op.nothing_to_build() or "")
    result, xcoms, error = run(op)
    assert (result, xcoms, error) == (None, {}, None)
    assert len(pods.requests("POST")) == before
