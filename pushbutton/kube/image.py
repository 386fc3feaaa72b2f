"""Model images for Kubernetes: the Dockerfile, its build context, and the Kaniko pod that builds it.

The image serves one model version with seldon-core's python wrapper, exactly as the local runtime
does: the serving environment's requirements (``pushbutton.serving.envs.full_requirements``: the
seldon-core pin, ``mlflow-skinny`` at the platform's version, the model's and its graph nodes'), the
model directory as the working directory, pushbutton's runtime modules (launcher, schema guard,
built-in predict class) on ``PYTHONPATH``, and the version's MLflow model pulled at build time
into ``ARTIFACTS_DIR``. The pull runs in a first build stage that alone sees the MLflow/S3
credentials (build arguments the Kaniko pod resolves from a Secret), so they never reach the image.

Base and Kaniko images are pinned by exact tag or digest: ``latest`` (or no tag) is refused.
The Kaniko pod reads its registry credentials from a mounted ``kubernetes.io/dockerconfigjson``
Secret and takes secret build arguments from a Secret by name: no credential is written into it.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pushbutton.errors import SpecError, SpecIssue
from pushbutton.serving.spec import Predictor
from pushbutton.spec.model import GraphNode

ARTIFACTS_DIR = "/opt/pushbutton/model"
CODE_DIR = "/opt/pushbutton/code"
RUNTIME_DIR = "/opt/pushbutton/runtime"
DEFAULT_BASE_IMAGE = "python:3.11.11-slim-bookworm"
KANIKO_IMAGE = "gcr.io/kaniko-project/executor:v1.23.2"
REGISTRY_SECRET = "registry-credentials"
# build arguments of the artifact stage; the secret ones come from the pod's env Secret, by name only
BUILD_ARGS = ("MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL")
SECRET_BUILD_ARGS = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
_SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEY)", re.IGNORECASE)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
PIN_FIX = "pin it by an exact tag (e.g. python:3.11.11-slim-bookworm, registry/model:3) or @sha256:<digest>"


def image_problem(ref: str) -> tuple[str, str] | None:
    """``(problem, fix)`` when ``ref`` is not an image pinned by exact tag or digest, else None."""
    if not ref or any(c.isspace() for c in ref):
        return f"'{ref}' is not an image reference", PIN_FIX
    name, _, digest = ref.partition("@")
    if digest:
        return None if _DIGEST.match(digest) else (f"'{ref}' has a malformed digest", PIN_FIX)
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image '{ref}' has no tag, so it means whatever 'latest' is when pulled", PIN_FIX
    tag = last.rsplit(":", 1)[1]
    if tag == "latest":
        return f"image '{ref}' is tagged 'latest', which moves: the cluster could run another build", PIN_FIX
    if not _TAG.match(tag):
        return f"image '{ref}' has an invalid tag '{tag}'", PIN_FIX
    return None


def check_image(ref: str, where: str, field: str) -> None:
    problem = image_problem(ref)
    if problem:
        raise SpecError([SpecIssue(where, field, *problem)])


def _python_of(base_image: str) -> str | None:
    """``3.11`` for an official ``python:3.11.x-…`` base image, else None (unknown)."""
    name = base_image.partition("@")[0]
    repository, _, tag = name.rpartition(":")
    if repository.rsplit("/", 1)[-1] != "python":
        return None
    match = re.match(r"^(\d+\.\d+)", tag)
    return match.group(1) if match else None


def render_dockerfile(
    predictor: Predictor,
    *,
    requirements: Sequence[str] = (),
    model_uri: str | None = None,
    base_image: str = DEFAULT_BASE_IMAGE,
    python_version: str = "3.11",
) -> str:
    """The Dockerfile of ``predictor``'s model version; its context is ``build_context``'s layout
    (``code/``: the model directory, ``runtime/``: pushbutton's seldon runtime modules).

    ``requirements`` are the version's serving requirements (``pushbutton.lifecycle.serving_requirements``:
    the model's, its MLflow model's and every graph node's file);
    ``model_uri`` is what MLflow downloads at build time (default ``models:/<model>/<version>``;
    ``runs:/…`` and ``s3://…`` work too). ``MODEL_NAME`` defaults to the predict class (behind the
    schema guard when the model has an input schema); the SeldonDeployment sets it per graph node."""
    from pushbutton.kube.graph import interface_and_parameters
    from pushbutton.serving.envs import full_requirements, platform_mlflow_version
    from pushbutton.serving.microservice import LAUNCHER, WORKER_TIMEOUT_MARGIN

    model, version = predictor.model, predictor.version
    model_uri = f"models:/{model}/{version}" if model_uri is None else model_uri
    where = f"Dockerfile of {model} version {version}"
    check_image(base_image, where, "base_image")
    image_python = _python_of(base_image)
    if image_python and image_python != python_version:
        raise SpecError(
            [
                SpecIssue(
                    where,
                    "base_image",
                    f"'{base_image}' runs Python {image_python}, not {python_version}",
                    f"use a python:{python_version}.x base image",
                )
            ]
        )
    if not model_uri.strip():
        raise SpecError(
            [SpecIssue(where, "model_uri", "no MLflow model to pull", "pass e.g. models:/<model>/<version>")]
        )
    interface, _ = interface_and_parameters(GraphNode(), predictor, entry=True, where=where)
    packages = full_requirements(python_version, requirements)  # RequirementsError names a bad line
    fetch = [f"mlflow-skinny=={platform_mlflow_version()}"]
    if model_uri.startswith("s3://"):
        fetch.append(f"boto3=={importlib.metadata.version('boto3')}")
    download = (
        "import mlflow.artifacts as a; "
        f"a.download_artifacts(artifact_uri={model_uri!r}, dst_path={ARTIFACTS_DIR!r})"
    )
    env = {
        "PYTHONPATH": RUNTIME_DIR,
        "PYTHONUNBUFFERED": "1",
        "MODEL_NAME": interface,
        "SERVICE_TYPE": "MODEL",
        "PUSHBUTTON_WORKER_TIMEOUT": str(int(predictor.timeout_seconds + WORKER_TIMEOUT_MARGIN)),
    }
    serve = f'exec python -m {LAUNCHER} --bind-host 0.0.0.0 "$MODEL_NAME" --service-type "$SERVICE_TYPE"'
    lines = [
        f"# Generated by pushbutton for model {model} version {version}; render it again rather than edit it.",
        "# Stage 1 pulls the MLflow model; only it sees the credentials (build arguments).",
        f"FROM {base_image} AS artifacts",
        *(f"ARG {name}" for name in (*BUILD_ARGS, *SECRET_BUILD_ARGS)),
        "RUN " + json.dumps(["python", "-m", "pip", "install", "--no-cache-dir", *fetch]),
        "RUN " + json.dumps(["python", "-c", download]),
        "",
        f"FROM {base_image}",
        "RUN " + json.dumps(["python", "-m", "pip", "install", "--no-cache-dir", *packages]),
        f"COPY runtime/ {RUNTIME_DIR}/",
        f"COPY code/ {CODE_DIR}/",
        f"COPY --from=artifacts {ARTIFACTS_DIR} {ARTIFACTS_DIR}",
        f"WORKDIR {CODE_DIR}",
        "ENV " + " ".join(f"{k}={json.dumps(v)}" for k, v in env.items()),
        "USER 8888",
        "EXPOSE 9000 6000",
        f'CMD ["/bin/sh", "-c", {json.dumps(serve)}]',
    ]
    return "\n".join(lines) + "\n"


def build_context(model_dir: str | Path, dest: str | Path, dockerfile: str) -> Path:
    """Lay out the build context ``render_dockerfile`` expects in ``dest`` (``code/``,
    ``runtime/``, ``Dockerfile``); upload it (or a tarball of it) where Kaniko's ``--context`` reads."""
    from pushbutton.serving.microservice import RUNTIME_DIR as LOCAL_RUNTIME

    dest = Path(dest)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", ".venv", "mlruns")
    shutil.copytree(model_dir, dest / "code", ignore=ignore)
    shutil.copytree(LOCAL_RUNTIME, dest / "runtime", ignore=ignore)
    (dest / "Dockerfile").write_text(dockerfile, encoding="utf-8")
    return dest


def kaniko_pod(
    *,
    name: str,
    namespace: str,
    context: str,
    destination: str,
    dockerfile: str = "Dockerfile",
    build_args: Mapping[str, str] | None = None,
    env_secret: str | None = None,
    registry_secret: str = REGISTRY_SECRET,
    kaniko_image: str = KANIKO_IMAGE,
    service_account: str | None = None,
    labels: Mapping[str, str] | None = None,
    cpu: str = "1",
    memory: str = "2Gi",
    active_deadline_seconds: int | None = None,
) -> dict[str, Any]:
    """A V1Pod-shaped dict running Kaniko once (``KubernetesPodOperator(pod_template_dict=…)`` or
    a direct create): build ``context`` (``s3://…/context.tar.gz``, ``gs://…``, ``dir://…``,
    ``git://…``) and push ``destination``.

    ``build_args`` are plain values (e.g. ``MLFLOW_TRACKING_URI``); one whose name looks secret is
    refused. With ``env_secret`` the pod gets that Secret's keys as environment, and Kaniko passes
    ``SECRET_BUILD_ARGS`` on by name (resolved from that environment)."""
    where = f"Kaniko pod {namespace}/{name}"
    check_image(kaniko_image, where, "kaniko_image")
    check_image(destination, where, "destination")
    args = [f"--dockerfile={dockerfile}", f"--context={context}", f"--destination={destination}"]
    for key, value in (build_args or {}).items():
        if _SECRET_NAME.search(key):
            raise SpecError(
                [
                    SpecIssue(
                        where,
                        f"build_args.{key}",
                        "a credential would be written into the pod",
                        "put it in the Secret named by env_secret instead",
                    )
                ]
            )
        args.append(f"--build-arg={key}={value}")
    container: dict[str, Any] = {
        "name": "kaniko",
        "image": kaniko_image,
        "args": args,
        "volumeMounts": [{"name": "registry-credentials", "mountPath": "/kaniko/.docker", "readOnly": True}],
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
    }
    if env_secret:
        args += [f"--build-arg={key}" for key in SECRET_BUILD_ARGS]  # values from the Secret's env
        container["envFrom"] = [{"secretRef": {"name": env_secret}}]
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [
            {
                "name": "registry-credentials",
                "secret": {
                    "secretName": registry_secret,
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                },
            }
        ],
    }
    if service_account:
        spec["serviceAccountName"] = service_account
    if active_deadline_seconds:  # a hung build is stopped by the kubelet (pod reason DeadlineExceeded)
        spec["activeDeadlineSeconds"] = int(active_deadline_seconds)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "pushbutton",
                "app.kubernetes.io/component": "image-build",
                **(labels or {}),
            },
        },
        "spec": spec,
    }
