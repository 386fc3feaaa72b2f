"""The Seldon Connection's ``extra.image_build`` and the build context the CI/CD ``build_image`` task
uploads: validated settings with fixes, a reproducible tarball, and the Kaniko pod fetching it. The
upload and the pod run against stand-ins are in tests/integration/test_image_build_cicd.py."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from operators.lifecycle import SeldonImageBuildOperator
from pushbutton.errors import SpecError
from pushbutton.kube.build import (
    CONTEXT_ARG,
    ContextObject,
    ImageBuildConfig,
    attach_context,
    pack_context,
)
from pushbutton.kube.image import kaniko_pod
from pushbutton.kube.runtime import seldon_v1_config

REPO = Path(__file__).resolve().parents[2]
BASE = {"runtime": "seldon-v1", "image_registry": "registry.example/models"}


def config(**build: Any) -> ImageBuildConfig:
    found = seldon_v1_config({**BASE, "image_build": {"context_uri": "s3://builds", "env_secret": "creds",
                                                      **build}}, "connection pushbutton_seldon")  # fmt: skip
    assert found.image_build is not None
    return found.image_build


def test_the_context_key_is_per_model_and_version() -> None:
    assert config().key("iris", "4") == "iris/4/context.tar.gz"
    built = config(context_uri="s3://builds/team-a/contexts/")
    assert (built.bucket, built.key("iris", "4")) == ("builds", "team-a/contexts/iris/4/context.tar.gz")
    assert seldon_v1_config(BASE, "c").image_build is None  # unset: images are built elsewhere


@pytest.mark.parametrize(
    ("build", "field", "says"),
    [
        ({"context_uri": "https://builds.example"}, "context_uri", "not an s3:// location"),
        ({"context_uri": "s3://Builds_A"}, "context_uri", "invalid bucket name"),
        ({"env_secret": ""}, "env_secret", "at least 1 character"),
        ({"s3_endpoint": "http://key:secret@minio:9000"}, "s3_endpoint", "credentials do not belong"),
        ({"s3_endpoint": "minio:9000"}, "s3_endpoint", "not an endpoint URL"),
        ({"base_image": "python:latest"}, "base_image", "tagged 'latest'"),
        ({"fetch_image": "minio/mc"}, "fetch_image", "has no tag"),
        ({"startup_timeout_seconds": 0}, "startup_timeout_seconds", "greater than 0"),
        ({"contextUri": "s3://b"}, "contextUri", "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_name_the_field_and_the_fix(build: dict[str, Any], field: str, says: str) -> None:
    with pytest.raises(SpecError) as caught:
        config(**build)
    [issue] = caught.value.issues
    assert issue.field == f"extra.image_build.{field}" and says in issue.message
    assert issue.fix and issue.file == "connection pushbutton_seldon"
    assert "key:secret" not in str(caught.value)  # a URL with credentials is not echoed


def test_the_context_packs_to_the_same_bytes_whatever_the_file_times(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    (context / "code" / "tests").mkdir(parents=True)
    (context / "Dockerfile").write_text("FROM python:3.11.11-slim-bookworm\n")
    (context / "code" / "predict.py").write_text("class Model: ...\n")
    (context / "code" / "tests" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(context / "code" / "tests" / "run.sh", 0o750)
    first = pack_context(context, tmp_path / "a.tar.gz")
    for path in context.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    assert pack_context(context, tmp_path / "b.tar.gz") == first
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    with tarfile.open(fileobj=io.BytesIO((tmp_path / "a.tar.gz").read_bytes()), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"Dockerfile", "code", "code/predict.py", "code/tests", "code/tests/run.sh"}
    assert members["code/tests/run.sh"].mode == 0o755 and members["code/predict.py"].mode == 0o644
    assert {m.mtime for m in members.values()} == {0} and {m.uid for m in members.values()} == {0}
    (context / "code" / "predict.py").write_text("class Model: pass\n")
    assert pack_context(context, tmp_path / "c.tar.gz") != first  # other code, another object


def test_the_pod_fetches_the_context_with_the_secrets_keys_and_kaniko_reads_it() -> None:
    pod = kaniko_pod(name="build-iris-4", namespace="models", context=CONTEXT_ARG.removeprefix("--context="),
                     destination="registry.example/models/iris:4", env_secret="creds")  # fmt: skip
    source = ContextObject("http://minio.minio:9000", "builds", "iris/4/context.tar.gz", "ab" * 32)
    attach_context(pod, source, "creds")
    [fetch] = pod["spec"]["initContainers"]
    assert fetch["envFrom"] == [{"secretRef": {"name": "creds"}}]
    assert fetch["env"] == [{"name": "CONTEXT_ENDPOINT", "value": "http://minio.minio:9000"},
                            {"name": "CONTEXT_OBJECT", "value": "builds/iris/4/context.tar.gz"},
                            {"name": "CONTEXT_SHA256", "value": "ab" * 32}]  # fmt: skip
    script = fetch["command"][2]
    assert '"$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"' in script  # the shell's, from the Secret
    assert '"context/$CONTEXT_OBJECT" /workspace/context.tar.gz' in script
    assert "sha256sum -c -" in script
    [kaniko] = pod["spec"]["containers"]
    assert {"name": "workspace", "mountPath": "/workspace", "readOnly": True} in kaniko["volumeMounts"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["workspace"] == {"name": "workspace", "emptyDir": {}}
    assert "registry-credentials" in volumes
    other = kaniko_pod(name="b", namespace="m", context="s3://x/c.tar.gz", destination="r/m:1")
    with pytest.raises(ValueError, match=r"does not build tar:///workspace/context\.tar\.gz"):
        attach_context(other, source, "creds")


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"runtime": "local"}, "local runtime serves from the serving environment"),
        ({}, "local runtime serves from the serving environment"),
        ({"runtime": "seldon-v2"}, "Seldon Core v2 loads the model from its storage URI"),
        (BASE, "no extra.image_build"),
        ({**BASE, "image_build": {"context_uri": "s3://builds", "env_secret": "c"}}, None),
        (
            {**BASE, "image_build": {}},
            None,
        ),  # asked for, however empty: the build task explains what is missing
    ],
)
def test_build_image_builds_only_when_the_connection_asks(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], reason: str | None
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_PUSHBUTTON_SELDON", json.dumps({"conn_type": "http", "extra": extra}))
    found = SeldonImageBuildOperator(task_id="build_image", model="iris", version="4").nothing_to_build()
    assert found is None if reason is None else reason in (found or "")


def test_the_object_and_digest_reach_the_script_as_environment_not_as_shell_text() -> None:
    source = ContextObject("http://m:9000", "builds", 'p/$(id)/"x`/context.tar.gz', "d" * 64)
    [fetch] = attach_context(kaniko_pod(name="b", namespace="m", context=CONTEXT_ARG.removeprefix("--context="),
                                        destination="r/m:1"), source, "creds")["spec"]["initContainers"]  # fmt: skip
    script = fetch["command"][2]
    assert "$(id)" not in script and "d" * 64 not in script
    assert {"name": "CONTEXT_OBJECT", "value": 'builds/p/$(id)/"x`/context.tar.gz'} in fetch["env"]
    assert '"context/$CONTEXT_OBJECT"' in script and 'echo "$CONTEXT_SHA256  ' in script
    assert "command -v" not in script  # the check cannot be skipped


@pytest.mark.parametrize(
    ("build", "says"),
    [
        ({"context_uri": "s3://builds/$(id)"}, "has a prefix other than"),
        ({"mlflow_tracking_uri": "http://user:pw@mlflow:5000"}, "credentials do not belong"),
        ({"mlflow_tracking_uri": "mlflow:5000"}, "not an MLflow URL"),
        ({"build_timeout_seconds": 0}, "greater than 0"),
    ],
)
def test_more_bad_settings(build: dict[str, Any], says: str) -> None:
    with pytest.raises(SpecError, match=re.escape(says)) as caught:
        config(**build)
    assert "pw@" not in str(caught.value)


def test_the_image_is_packed_only_for_the_environment_build_recorded(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pushbutton.errors import ConfigError
    from pushbutton.kube.build import pack_version

    code = tmp_path / "release" / "code"
    shutil.copytree(REPO / "models" / "iris", code, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "release" / "model").mkdir()

    class Registry:
        tag = ""

        def download(self, model: str, version: str, dest: Path) -> Path:
            assert dest == tmp_path / "release"  # its own copy, not the release directory the test uses
            return dest

        def get(self, model: str, version: str) -> SimpleNamespace:
            return SimpleNamespace(tags={"pushbutton.build_hash": self.tag} if self.tag else {})

    registry = Registry()
    packed = pack_version(registry, sys.executable, "iris", "3", config(), tmp_path)
    assert packed.tarball.is_file() and "FROM python:3.11.11-slim-bookworm" in packed.dockerfile
    registry.tag = packed.env_key
    assert pack_version(registry, sys.executable, "iris", "3", config(), tmp_path).sha256 == packed.sha256
    registry.tag = "0123456789abcdef"
    with pytest.raises(
        ConfigError, match=r"`build` made serving environment 0123456789abcdef, but this worker"
    ):
        pack_version(registry, sys.executable, "iris", "3", config(), tmp_path)
