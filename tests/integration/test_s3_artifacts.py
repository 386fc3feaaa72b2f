"""MLflow artifacts in S3 (the MinIO path of the embedded stack), at the wire level.

STAND-IN: S3 is played by a moto server here (no MinIO can run in this environment). The MLflow
tracking server, its S3 client (boto3) and our code are real; only the object store is a stand-in.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

from pushbutton.config import REPO_ROOT
from pushbutton.procs import ProcessGroup, free_port, http_ok, wait_ready
from tests.integration.platform import platform_settings

pytestmark = [pytest.mark.integration, pytest.mark.standin]
BUCKET = "pushbutton-artifacts"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "stand-in",
    "AWS_SECRET_ACCESS_KEY": "stand-in",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_standin():
    """A moto S3 server on a free port, stopped by its process group afterwards."""
    with tempfile.TemporaryDirectory(prefix="pushbutton-moto-") as tmp:
        group, port = ProcessGroup(Path(tmp) / "run", Path(tmp) / "logs"), free_port()
        info = group.start(
            "moto-s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(info, http_ok(f"{url}/moto-api/"), timeout=60, what="moto S3 stand-in")
            yield url
        finally:
            group.stop_all()


def test_model_artifacts_land_in_the_bucket(
    s3_standin: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import boto3

    from pushbutton import registry as reg
    from pushbutton.spec import load_model_dir
    from pushbutton.stack import down, up
    from pushbutton.training import train_and_register

    s3 = boto3.client("s3", endpoint_url=s3_standin, **{k.lower(): v for k, v in CREDENTIALS.items() if k != "AWS_DEFAULT_REGION"},
                      region_name="us-east-1")  # fmt: skip
    s3.create_bucket(Bucket=BUCKET)
    env = {
        **CREDENTIALS,
        "MLFLOW_S3_ENDPOINT_URL": s3_standin,
        "PUSHBUTTON_ARTIFACTS_DESTINATION": f"s3://{BUCKET}/mlflow",
    }
    with platform_settings(tmp_path_factory.mktemp("s3"), **env) as cfg:
        up(cfg, airflow=False)
        try:
            model_dir = REPO_ROOT / "models" / "iris"
            registry = reg.Registry(cfg.mlflow_url)
            pushed = train_and_register(load_model_dir(model_dir), model_dir, registry, source="test")
            release = registry.download(
                "iris", pushed.version, cfg.home / "releases" / "iris" / pushed.version
            )
        finally:
            down(cfg)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="mlflow/").get("Contents", [])]
    assert any(k.endswith("/code/model.yaml") for k in keys)
    assert any(k.endswith("/MLmodel") for k in keys)
    assert not (cfg.home / "mlflow" / "artifacts").exists() or not any(
        (cfg.home / "mlflow" / "artifacts").rglob("MLmodel")
    )
    assert (release / "model" / "MLmodel").is_file() and (release / "code" / "model.yaml").is_file()
