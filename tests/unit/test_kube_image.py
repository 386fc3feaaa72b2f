"""The model image's Dockerfile, its build context and the Kaniko build pod (rendered, never run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pushbutton.config import REPO_ROOT
from pushbutton.errors import RequirementsError, SpecError
from pushbutton.kube.image import (
    KANIKO_IMAGE,
    SECRET_BUILD_ARGS,
    build_context,
    image_problem,
    kaniko_pod,
    render_dockerfile,
)
from pushbutton.kube.render import serving_spec
from pushbutton.kube.schemas import validate_manifest
from pushbutton.serving.spec import Predictor
from pushbutton.spec import load_model_dir
from tests.prerequisites import missing

SCHEMAS = Path(os.environ.get("PUSHBUTTON_SCHEMAS_DIR", REPO_ROOT.parent / "shared" / "schemas"))
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def candidate() -> Predictor:
    model = load_model_dir(REPO_ROOT / "models" / "iris")
    return serving_spec(model, champion_version=3, candidate_percent=10).predictor("candidate")


@pytest.mark.parametrize(
    "ref",
    ["python:3.11.11-slim-bookworm", "registry.example:5000/team/iris:4", f"registry.example/iris@{DIGEST}"],
)
def test_pinned_images_pass(ref: str) -> None:
    assert image_problem(ref) is None


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ("python:latest", "tagged 'latest'"),
        ("registry.example:5000/team/iris", "has no tag"),
        ("registry.example/iris@sha256:zz", "malformed digest"),
        ("", "not an image reference"),
    ],
)
def test_unpinned_images_are_refused(ref: str, problem: str) -> None:
    found = image_problem(ref)
    assert found is not None and problem in found[0] and "exact tag" in found[1]


# the Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_pulls_the_model_at_build_time_and_serves_it_with_seldon(candidate: Predictor) -> None:
    text = render_dockerfile(candidate, requirements=["scikit-learn==1.9.1"])
    fetch, serve = text.split("\n\nFROM ", 1)  # the artifact stage, the serving stage
    assert "FROM python:3.11.11-slim-bookworm AS artifacts" in fetch
    assert "artifact_uri='models:/iris/4', dst_path='/opt/pushbutton/model'" in fetch
    assert serve.startswith("python:3.11.11-slim-bookworm\n")
    install = next(line for line in serve.splitlines() if line.startswith("RUN "))
    assert '"seldon-core==1.18.2"' in install and '"scikit-learn==1.9.1"' in install
    assert "COPY --from=artifacts /opt/pushbutton/model /opt/pushbutton/model" in serve
    assert 'MODEL_NAME="pushbutton_guard.Guarded"' in serve and 'PUSHBUTTON_WORKER_TIMEOUT="70"' in serve
    assert "pushbutton_serve --bind-host 0.0.0.0" in serve and "USER 8888" in serve


def test_dockerfile_credentials_stay_in_the_artifact_stage(candidate: Predictor) -> None:
    text = render_dockerfile(candidate, model_uri="s3://mlflow/1/abc/artifacts/model")
    fetch, serve = text.split("\n\nFROM ", 1)
    for name in SECRET_BUILD_ARGS:
        assert f"ARG {name}" in fetch and name not in serve
    assert '"boto3==' in fetch  # an s3:// model needs boto3 to be pulled


def test_dockerfile_refuses_a_latest_base_image(candidate: Predictor) -> None:
    with pytest.raises(SpecError) as caught:
        render_dockerfile(candidate, base_image="python:latest")
    [issue] = caught.value.issues
    assert (
        issue.field == "base_image"
        and "latest" in issue.message
        and issue.file == "Dockerfile of iris version 4"
    )


def test_dockerfile_refuses_a_base_image_of_another_python(candidate: Predictor) -> None:
    with pytest.raises(SpecError, match=r"runs Python 3\.12, not 3\.11"):
        render_dockerfile(candidate, base_image="python:3.12.8-slim")
    assert f"FROM python@{DIGEST}" in render_dockerfile(candidate, base_image=f"python@{DIGEST}")


def test_dockerfile_refuses_a_bad_requirement(candidate: Predictor) -> None:
    with pytest.raises(RequirementsError, match="invalid requirement 'scikit learn'"):
        render_dockerfile(candidate, requirements=["scikit learn"])


def test_build_context_holds_code_runtime_and_dockerfile(candidate: Predictor, tmp_path: Path) -> None:
    text = render_dockerfile(candidate)
    dest = build_context(REPO_ROOT / "models" / "iris", tmp_path / "ctx", text)
    assert (dest / "Dockerfile").read_text() == text
    assert (dest / "code" / "predict.py").is_file() and (dest / "code" / "model.yaml").is_file()
    assert {"pushbutton_serve.py", "pushbutton_guard.py", "pushbutton_sklearn.py"} <= {
        p.name for p in (dest / "runtime").iterdir()
    }
    assert not list(dest.rglob("__pycache__"))


# the Kaniko pod -------------------------------------------------------------------------------


def _pod(**kwargs: object) -> dict:
    args = {
        "name": "build-iris-4",
        "namespace": "builds",
        "context": "s3://contexts/iris-4.tar.gz",
        "destination": "registry.example/models/iris:4",
        "build_args": {"MLFLOW_TRACKING_URI": "http://mlflow.pushbutton:5000"},
    }
    return kaniko_pod(**(args | kwargs))


def test_kaniko_pod_builds_and_pushes_with_mounted_credentials() -> None:
    pod = _pod(env_secret="mlflow-credentials")
    assert (pod["apiVersion"], pod["kind"], pod["spec"]["restartPolicy"]) == ("v1", "Pod", "Never")
    [container] = pod["spec"]["containers"]
    assert container["image"] == KANIKO_IMAGE and image_problem(KANIKO_IMAGE) is None
    assert "--destination=registry.example/models/iris:4" in container["args"]
    assert "--context=s3://contexts/iris-4.tar.gz" in container["args"]
    assert "--build-arg=MLFLOW_TRACKING_URI=http://mlflow.pushbutton:5000" in container["args"]
    assert "--build-arg=AWS_SECRET_ACCESS_KEY" in container["args"]  # by name: Kaniko reads its env
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-credentials"}}]
    assert container["volumeMounts"][0]["mountPath"] == "/kaniko/.docker"
    [volume] = pod["spec"]["volumes"]
    assert volume["secret"]["secretName"] == "registry-credentials"
    assert volume["secret"]["items"] == [{"key": ".dockerconfigjson", "path": "config.json"}]


def test_kaniko_pod_without_env_secret_passes_no_secret_build_args() -> None:
    container = _pod()["spec"]["containers"][0]
    assert "envFrom" not in container and not any("AWS_" in a for a in container["args"])


def test_kaniko_pod_refuses_a_credential_as_build_arg() -> None:
    with pytest.raises(SpecError, match=r"build_args\.AWS_SECRET_ACCESS_KEY: a credential would be written"):
        _pod(build_args={"AWS_SECRET_ACCESS_KEY": "not-here"})


@pytest.mark.parametrize("field", ["destination", "kaniko_image"])
def test_kaniko_pod_refuses_latest(field: str) -> None:
    with pytest.raises(SpecError, match=f"{field}: image .* is tagged 'latest'"):
        _pod(**{field: "registry.example/x:latest"})


def test_kaniko_pod_matches_the_pod_schema() -> None:
    if not (SCHEMAS / "seldon-v1").is_dir():
        missing(f"the Seldon CRD schemas under {SCHEMAS}", "set PUSHBUTTON_SCHEMAS_DIR to ../shared/schemas")
    pod = _pod(env_secret="mlflow-credentials", service_account="builder")
    validate_manifest(pod, schemas_dir=SCHEMAS)
    pod["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(SpecError, match=r"\$\.spec\.containers\[0\]: .*'volumeMount' was unexpected"):
        validate_manifest(pod, schemas_dir=SCHEMAS)


def test_kubernetes_pod_operator_reads_the_pod() -> None:
    """``KubernetesPodOperator(pod_template_dict=...)`` deserializes the dict this way."""
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    pod = PodGenerator.deserialize_model_dict(_pod(env_secret="mlflow-credentials"))
    [container] = pod.spec.containers
    assert container.image == KANIKO_IMAGE and container.env_from[0].secret_ref.name == "mlflow-credentials"
    assert pod.spec.volumes[0].secret.items[0].path == "config.json"
    assert pod.metadata.labels["app.kubernetes.io/component"] == "image-build"
