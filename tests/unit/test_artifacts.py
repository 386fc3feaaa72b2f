"""The s3:// artifacts bucket (pushbutton.artifacts): parsing, idempotence and the error messages.

The wire level (a real minio client against an S3 server) is tests/integration/test_s3_artifacts.py;
here the client is a fake, except for the unreachable endpoint (a closed loopback port: no server).
"""

from __future__ import annotations

from typing import Any

import pytest

from pushbutton.artifacts import ArtifactStoreError, ensure_bucket, parse_destination, prepare
from pushbutton.config import Settings
from pushbutton.procs import free_port

SECRET = "not-a-real-secret-but-must-not-leak"
ENV = {"MLFLOW_S3_ENDPOINT_URL": "http://minio.test:9000", "AWS_ACCESS_KEY_ID": "pb-user",
       "AWS_SECRET_ACCESS_KEY": SECRET}  # fmt: skip


class S3Answer(Exception):
    def __init__(self, code: str):
        super().__init__(code)
        self.code, self.message = code, f"the server says {code}"


class FakeS3:
    def __init__(self, buckets: set[str] | None = None, fail: Exception | None = None,
                 make_fails: Exception | None = None):  # fmt: skip
        self.buckets, self.fail, self.make_fails = set(buckets or ()), fail, make_fails
        self.made: list[str] = []

    def bucket_exists(self, bucket_name: str) -> bool:
        if self.fail:
            raise self.fail
        return bucket_name in self.buckets

    def make_bucket(self, bucket_name: str, location: str | None = None) -> None:
        if self.make_fails:
            raise self.make_fails
        self.made.append(bucket_name)
        self.buckets.add(bucket_name)


def test_a_missing_bucket_is_created_once_and_an_existing_one_is_left_alone() -> None:
    s3 = FakeS3()
    first = ensure_bucket("s3://mlflow/artifacts", ENV, client=s3)
    again = ensure_bucket("s3://mlflow/artifacts", ENV, client=s3)
    assert first and first.created and first.location.prefix == "artifacts"
    assert again and not again.created
    assert s3.made == ["mlflow"]
    assert "created" in first.describe() and "http://minio.test:9000" in first.describe()


def test_a_bucket_created_concurrently_by_the_same_account_is_fine() -> None:
    result = ensure_bucket("s3://mlflow", ENV, client=FakeS3(make_fails=S3Answer("BucketAlreadyOwnedByYou")))
    assert result and result.created


def test_other_destinations_need_no_bucket() -> None:
    assert ensure_bucket("/var/lib/mlflow/artifacts", ENV, client=FakeS3(fail=AssertionError())) is None
    settings = Settings(home="/tmp/pb-artifacts-test", artifacts_destination=None)
    assert prepare(settings, ENV) == []


@pytest.mark.parametrize("code", ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"])
def test_rejected_credentials_name_endpoint_and_fix_but_no_secret(code: str) -> None:
    with pytest.raises(ArtifactStoreError) as caught:
        ensure_bucket("s3://mlflow", ENV, client=FakeS3(fail=S3Answer(code)))
    message = str(caught.value)
    assert "http://minio.test:9000" in message and "rejected the credentials" in message
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in message and "(fix:" in message
    assert SECRET not in message


def test_a_bucket_of_another_account_is_refused_with_the_fix() -> None:
    with pytest.raises(ArtifactStoreError, match=r"belongs to another account.*choose another bucket"):
        ensure_bucket("s3://taken", ENV, client=FakeS3(make_fails=S3Answer("BucketAlreadyExists")))


def test_an_unreachable_endpoint_is_named_with_the_fix() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ArtifactStoreError) as caught:
        ensure_bucket("s3://mlflow", {**ENV, "MLFLOW_S3_ENDPOINT_URL": endpoint})
    message = str(caught.value)
    assert f"cannot reach the S3 endpoint {endpoint}" in message and "connection refused" in message
    assert "MLFLOW_S3_ENDPOINT_URL" in message and SECRET not in message


@pytest.mark.parametrize(
    ("destination", "env", "expected"),
    [
        ("s3://", ENV, "no bucket name"),
        ("s3://mlflow", {**ENV, "MLFLOW_S3_ENDPOINT_URL": "minio:9000"}, "not an endpoint URL"),
        ("s3://mlflow", {**ENV, "MLFLOW_S3_ENDPOINT_URL": "http://minio:9000/mlflow"}, "not an endpoint URL"),
        ("s3://mlflow", {**ENV, "MLFLOW_S3_ENDPOINT_URL": f"http://u:{SECRET}@minio:9000"}, "credentials in"),
        ("s3://mlflow", {"MLFLOW_S3_ENDPOINT_URL": "http://minio:9000"}, "AWS_ACCESS_KEY_ID and AWS_SECRET"),
        ("s3://Bad_Bucket", ENV, "bucket name of 3-63"),
    ],
)
def test_bad_configuration_is_refused_before_any_request(destination: str, env: dict, expected: str) -> None:
    with pytest.raises(ArtifactStoreError, match=expected) as caught:
        ensure_bucket(destination, env)  # a real minio client: nothing listens at minio:9000
    assert SECRET not in str(caught.value) and "fix" in str(caught.value)


def test_the_endpoint_defaults_to_aws_s3() -> None:
    location = parse_destination("s3://bucket/prefix/more", {})
    assert location is not None
    assert (location.bucket, location.prefix, location.endpoint) == (
        "bucket",
        "prefix/more",
        "https://s3.amazonaws.com",
    )


def test_up_creates_the_bucket_before_mlflow_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """stack.up's hook: an unreachable store stops `up` before any process starts."""
    from pushbutton import stack
    from pushbutton.errors import StackError

    started: list[str] = []
    monkeypatch.setattr(stack.ProcessGroup, "start", lambda self, name, *a, **k: started.append(name))
    monkeypatch.setattr(stack, "require_port", lambda *a, **k: None)
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "pb-user")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    settings = Settings(home=tmp_path, artifacts_destination="s3://mlflow", webhook_secret="w" * 32)
    with pytest.raises(StackError, match="cannot reach the S3 endpoint"):
        stack.up(settings, airflow=False)
    assert started == []
