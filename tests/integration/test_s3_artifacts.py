"""MLflow artifacts in S3 (the MinIO path of the embedded stack), at the wire level.

STAND-IN: S3 is played by a moto server here (no MinIO can run in this environment). The MLflow
tracking server, its S3 client (boto3), the minio client of ``pushbutton.artifacts`` and our code are
real; only the object store is a stand-in. The bucket is created by ``pushbutton up`` (not by the test).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest

from pushbutton.config import REPO_ROOT
from tests.integration.platform import platform_settings
from tests.s3_standin import CREDENTIALS, moto_server

pytestmark = [pytest.mark.integration, pytest.mark.standin]
BUCKET = "pushbutton-artifacts"


@pytest.fixture(scope="module")
def s3_standin() -> Iterator[str]:
    """A moto S3 server on a free port, stopped by its process group afterwards."""
    with tempfile.TemporaryDirectory(prefix="pushbutton-moto-") as tmp:
        yield from moto_server(tmp, "moto-s3")


def _client(url: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("s3", endpoint_url=url, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")  # fmt: skip


def test_up_creates_the_bucket_and_every_artifact_lands_in_it(
    s3_standin: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from pushbutton import registry as reg
    from pushbutton.monitoring.reference import ARTIFACT_PATH, STATS_FILE
    from pushbutton.monitoring.report import REPORT_ARTIFACT_PATH, log_report
    from pushbutton.spec import load_model_dir
    from pushbutton.stack import down, up
    from pushbutton.training import train_and_register

    s3 = _client(s3_standin)
    assert BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]  # nobody but `up` creates it
    env = {
        **CREDENTIALS,
        "MLFLOW_S3_ENDPOINT_URL": s3_standin,
        "PUSHBUTTON_ARTIFACTS_DESTINATION": f"s3://{BUCKET}/mlflow",
    }
    home = tmp_path_factory.mktemp("s3")
    with platform_settings(home, **env) as cfg:
        first = up(cfg, airflow=False)
        try:
            assert f"artifact bucket s3://{BUCKET} at {s3_standin}: created" in first.notes
            model_dir = REPO_ROOT / "models" / "iris"
            registry = reg.Registry(cfg.mlflow_url)
            pushed = train_and_register(load_model_dir(model_dir), model_dir, registry, source="test")
            report = home / "report.html"
            report.write_text("<html><body>drift report</body></html>")
            logged = log_report(registry, "iris", [pushed.version], report)
        finally:
            down(cfg)
        # a second `up` finds the bucket (no note, no error) and serves the artifacts stored before
        second = up(cfg, airflow=False)
        try:
            assert not any("artifact bucket" in note for note in second.notes)
            release = reg.Registry(cfg.mlflow_url).download(
                "iris", pushed.version, cfg.home / "releases" / "iris" / pushed.version
            )
        finally:
            down(cfg)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="mlflow/").get("Contents", [])]
    assert any(k.endswith("/code/model.yaml") for k in keys)
    assert any(k.endswith("/MLmodel") for k in keys)
    assert any(k.endswith(f"/{ARTIFACT_PATH}/{STATS_FILE}") for k in keys)  # the monitoring reference
    assert logged and any(k.endswith(f"/{REPORT_ARTIFACT_PATH}/report.html") for k in keys)  # drift report
    assert not any((cfg.home / "mlflow" / "artifacts").rglob("*.*"))  # nothing under the home
    assert (release / "model" / "MLmodel").is_file() and (release / "code" / "model.yaml").is_file()


def test_bucket_creation_is_idempotent_on_the_wire(s3_standin: str) -> None:
    from pushbutton.artifacts import ensure_bucket

    env = {**CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": s3_standin}
    first = ensure_bucket("s3://pushbutton-idempotent/x", env)
    second = ensure_bucket("s3://pushbutton-idempotent/x", env)
    assert first and first.created and second and not second.created
    assert "pushbutton-idempotent" in [b["Name"] for b in _client(s3_standin).list_buckets()["Buckets"]]


def test_rejected_keys_are_reported_with_the_endpoint_and_no_secret() -> None:
    """moto with request authentication on (INITIAL_NO_AUTH_ACTION_COUNT=0): unknown keys are refused."""
    import os

    from pushbutton.artifacts import ArtifactStoreError, ensure_bucket

    with tempfile.TemporaryDirectory(prefix="pushbutton-moto-auth-") as tmp:
        for url in moto_server(tmp, "moto-s3-auth", env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}):
            with pytest.raises(ArtifactStoreError) as caught:
                ensure_bucket("s3://pushbutton-denied", {**CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": url})
            message = str(caught.value)
            assert f"S3 endpoint {url}" in message and "rejected the credentials" in message
            assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in message
