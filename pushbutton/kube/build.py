"""Model images built on the cluster for the Seldon v1 runtime: the Seldon Connection's
``extra.image_build``, and the build context a Kaniko pod reads.

With ``extra.image_build`` set, every CI/CD run builds the released version's image before the
version is registered as candidate (the DAG's ``build_image`` task). The worker lays out the context
(``pushbutton.kube.image.build_context``: the version's code as registered in MLflow, pushbutton's
runtime modules, and the rendered Dockerfile, which installs every graph node's requirements), packs
it reproducibly (same files, same bytes: a re-run uploads the same object) and puts it at
``<context_uri>/<model>/<version>/context.tar.gz`` in S3 or MinIO. The Kaniko pod's init container
(``minio/mc``) copies it into an ``emptyDir`` with the keys of ``env_secret`` and checks its sha256, and
Kaniko builds from ``tar://``. Kaniko's own ``s3://`` context would need its S3 settings right for an
in-cluster MinIO (``S3_ENDPOINT``, path-style addressing, which has been reported to break with some
Kaniko releases); the init container does not depend on that and verifies what it fetched. Without ``extra.image_build`` the images are built elsewhere (your CI pushes
``image_template``) and ``build_image`` does nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pushbutton.kube.image import DEFAULT_BASE_IMAGE, KANIKO_IMAGE, REGISTRY_SECRET, image_problem

FETCH_IMAGE = "minio/mc:RELEASE.2025-08-13T08-35-41Z"
_PREFIX = re.compile(r"^[A-Za-z0-9._/-]*$")
LOOPBACK = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
WORKSPACE = "/workspace"
CONTEXT_FILE = "context.tar.gz"


def _endpoint_problem(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return (
            f"'{value}' is not an endpoint URL; give scheme, host and port only, e.g. http://minio.minio:9000"
        )
    if parts.username or parts.password:
        return "credentials do not belong in the URL; put them in the Secret named by env_secret"
    return None


class ImageBuildConfig(BaseModel):
    """``extra.image_build`` of a ``seldon-v1`` Seldon Connection: where build contexts go and how the
    Kaniko pod runs. No credential is written here: the pod reads them from ``env_secret``."""

    model_config = ConfigDict(extra="forbid")

    context_uri: str = Field(description="s3://<bucket>[/<prefix>] for build contexts, e.g. s3://builds")
    env_secret: str = Field(
        min_length=1,
        description="Secret in the build namespace with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        "(and MLflow credentials, if the tracking server needs them)",
    )
    s3_endpoint: str | None = Field(
        None,
        description="S3/MinIO as the build pod reaches it (default: the worker's MLFLOW_S3_ENDPOINT_URL)",
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow as the build pod reaches it (default: the platform's MLflow Connection)"
    )
    registry_secret: str = Field(REGISTRY_SECRET, min_length=1)
    service_account: str | None = None
    base_image: str = DEFAULT_BASE_IMAGE
    kaniko_image: str = KANIKO_IMAGE
    fetch_image: str = FETCH_IMAGE
    cpu: str = "1"
    memory: str = "2Gi"
    startup_timeout_seconds: int = Field(600, gt=0, le=3600)
    build_timeout_seconds: int = Field(3600, gt=0, le=6 * 3600)  # the pod's activeDeadlineSeconds

    @field_validator("context_uri")
    @classmethod
    def _context(cls, value: str) -> str:
        from minio.helpers import check_bucket_name

        parts = urlsplit(value)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(
                f"'{value}' is not an s3:// location; write s3://<bucket>[/<prefix>], e.g. s3://builds"
            )
        try:
            check_bucket_name(parts.netloc, strict=True)
        except ValueError as exc:
            raise ValueError(f"{exc}; use 3-63 lowercase letters, digits, dots and hyphens") from None
        if not _PREFIX.match(parts.path) or parts.query or parts.fragment:
            raise ValueError(
                f"'{value}' has a prefix other than letters, digits, '.', '_', '-' and '/'; use e.g. s3://builds/contexts"
            )
        return value.rstrip("/")

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _tracking(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{value}' is not an MLflow URL; give e.g. http://mlflow.platform:5000")
        if parts.username or parts.password:
            raise ValueError(
                "credentials do not belong in the URL; put MLFLOW_TRACKING_USERNAME/PASSWORD in env_secret"
            )
        return value.rstrip("/")

    @field_validator("s3_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        problem = value and _endpoint_problem(value)
        if problem:
            raise ValueError(problem)
        return value.rstrip("/") if value else value

    @field_validator("base_image", "kaniko_image", "fetch_image")
    @classmethod
    def _pinned(cls, value: str) -> str:
        problem = image_problem(value)
        if problem:
            raise ValueError(problem[0])
        return value

    @property
    def bucket(self) -> str:
        return urlsplit(self.context_uri).netloc

    def key(self, model: str, version: str) -> str:
        prefix = urlsplit(self.context_uri).path.strip("/")
        return "/".join(p for p in (prefix, model, str(version), CONTEXT_FILE) if p)


@dataclass(frozen=True)
class ContextObject:
    """Where a packed build context was uploaded, and what the init container fetches."""

    endpoint: str  # as the build pod reaches it
    bucket: str
    key: str
    sha256: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def pack_context(context_dir: str | Path, dest: str | Path) -> str:
    """Pack ``context_dir`` into the gzipped tarball ``dest``, reproducibly (sorted entries, no
    timestamps, owners or modes beyond executable bits); returns its sha256."""
    context_dir, dest = Path(context_dir), Path(dest)
    with (
        dest.open("wb") as out,
        gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=0) as zipped,  # no name in the header
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in sorted(context_dir.rglob("*")):
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue
            info = tar.gettarinfo(str(path), arcname=path.relative_to(context_dir).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644
            if path.is_file():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    digest = hashlib.sha256()
    with dest.open("rb") as packed:
        for chunk in iter(lambda: packed.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def upload_context(
    config: ImageBuildConfig, model: str, version: str, tarball: str | Path, sha256: str,
    env: Mapping[str, str] | None = None,
) -> ContextObject:  # fmt: skip
    """Put the packed context at ``config.key(model, version)``, creating the bucket if it is missing.
    The worker reaches S3/MinIO at ``MLFLOW_S3_ENDPOINT_URL`` with ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` from its environment; ``ArtifactStoreError`` names the endpoint and fix."""
    from pushbutton.artifacts import (
        ENDPOINT_VARIABLE,
        ensure_bucket,
        explain,
        minio_client,
        parse_destination,
    )

    env = os.environ if env is None else env
    location = parse_destination(config.context_uri, env)
    assert location is not None  # context_uri is s3:// (validated)
    client = minio_client(location, env)
    ensure_bucket(config.context_uri, env, client=client)
    key = config.key(model, version)
    try:
        client.fput_object(  # type: ignore[attr-defined]
            config.bucket, key, str(tarball), content_type="application/gzip", metadata={"sha256": sha256}
        )
    except Exception as exc:
        raise explain(exc, location, f"S3 endpoint {location.endpoint} ({ENDPOINT_VARIABLE})") from None
    return ContextObject(config.s3_endpoint or location.endpoint, config.bucket, key, sha256)


def fetch_container(source: ContextObject, env_secret: str, image: str = FETCH_IMAGE) -> dict[str, object]:
    """The init container copying the context into the shared ``workspace`` volume; the keys come from
    ``env_secret`` into the shell's environment, never into the pod spec."""
    target = f"{WORKSPACE}/{CONTEXT_FILE}"
    script = (  # values come from the environment, so nothing in them is shell syntax
        'mc --config-dir /tmp/mc alias set context "$CONTEXT_ENDPOINT" "$AWS_ACCESS_KEY_ID" '
        '"$AWS_SECRET_ACCESS_KEY" >/dev/null && '
        f'mc --config-dir /tmp/mc cp "context/$CONTEXT_OBJECT" {target} && '
        # the object is the one this run uploaded (a concurrent re-upload of other code fails the build)
        f'echo "$CONTEXT_SHA256  {target}" | sha256sum -c -'
    )
    return {
        "name": "fetch-context",
        "image": image,
        "command": ["/bin/sh", "-c", script],
        "env": [
            {"name": "CONTEXT_ENDPOINT", "value": source.endpoint},
            {"name": "CONTEXT_OBJECT", "value": f"{source.bucket}/{source.key}"},
            {"name": "CONTEXT_SHA256", "value": source.sha256},
        ],
        "envFrom": [{"secretRef": {"name": env_secret}}],
        "volumeMounts": [
            {"name": "workspace", "mountPath": WORKSPACE},
            {"name": "mc-config", "mountPath": "/tmp/mc"},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    }


CONTEXT_ARG = f"--context=tar://{WORKSPACE}/{CONTEXT_FILE}"


def attach_context(pod: dict, source: ContextObject, env_secret: str, image: str = FETCH_IMAGE) -> dict:
    """``pod`` (``image.kaniko_pod``'s, rendered with ``context=tar://…``) with the init container
    fetching ``source`` and the volumes it shares with Kaniko."""
    spec = pod["spec"]
    spec["initContainers"] = [fetch_container(source, env_secret, image)]
    spec["volumes"] += [{"name": "workspace", "emptyDir": {}}, {"name": "mc-config", "emptyDir": {}}]
    [kaniko] = [c for c in spec["containers"] if c["name"] == "kaniko"]
    kaniko["volumeMounts"].append({"name": "workspace", "mountPath": WORKSPACE, "readOnly": True})
    if CONTEXT_ARG not in kaniko["args"]:
        raise ValueError(f"the Kaniko pod does not build {CONTEXT_ARG[len('--context=') :]}")
    return pod


@dataclass(frozen=True)
class PackedVersion:
    """A version's build context, packed: what to upload, and the env key its image tag may name."""

    tarball: Path
    sha256: str
    env_key: str
    dockerfile: str


def pack_version(
    registry: Any, serving_python: str, model: str, version: str, config: ImageBuildConfig, workdir: Path
) -> PackedVersion:
    """Download ``model`` version ``version`` into ``workdir`` (its own copy: the test step beside it
    runs in the release directory and may write there), render its Dockerfile with the same
    requirements its serving environment has (the model's, its MLflow model's, every graph node's) and
    pack the context. The env key must be the one ``build`` recorded on the version (``ConfigError``
    otherwise: the image tag would not be the image the SeldonDeployment pulls)."""
    from pushbutton import registry as reg
    from pushbutton.errors import ConfigError
    from pushbutton.kube.image import build_context, render_dockerfile
    from pushbutton.lifecycle import serving_requirements
    from pushbutton.serving.envs import env_key, python_version
    from pushbutton.serving.spec import Release, predictor
    from pushbutton.spec import load_spec

    directory = registry.download(model, str(version), workdir / "release")
    code, artifacts = directory / "code", directory / "model"
    spec = load_spec(code)
    requirements = serving_requirements(spec, code, str(artifacts))
    python = python_version(serving_python)
    key = env_key(python, requirements)
    built = registry.get(model, str(version)).tags.get(reg.BUILD)
    if built and built != key:
        raise ConfigError(
            f"{model} v{version}: `build` made serving environment {built}, but this worker computes {key} "
            f"for the image (Python {python}) (fix: give every worker the same PUSHBUTTON_SERVING_PYTHON "
            "and pushbutton/MLflow versions, then run the CI/CD DAG again)"
        )
    release = Release(str(version), str(artifacts), key, str(code))
    dockerfile = render_dockerfile(
        predictor(spec, "candidate", release),
        requirements=requirements,
        model_uri=f"models:/{model}/{version}",
        base_image=config.base_image,
        python_version=python,
    )
    shutil.rmtree(workdir / "context", ignore_errors=True)  # a second packing in the same directory
    context = build_context(code, workdir / "context", dockerfile)
    tarball = workdir / CONTEXT_FILE
    return PackedVersion(tarball, pack_context(context, tarball), key, dockerfile)
