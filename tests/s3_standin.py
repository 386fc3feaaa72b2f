"""A STAND-IN for S3/MinIO shared by the integration tests: a moto server on a free port, in a process
group of its own and stopped with it. No MinIO can run in this environment; clients (boto3, minio) and
our code are real."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from pushbutton.procs import ProcessGroup, free_port, http_ok, wait_ready

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "stand-in",
    "AWS_SECRET_ACCESS_KEY": "stand-in-secret-value",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def moto_server(tmp: str | Path, name: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Yield the URL of a moto S3 server once it answers; stop its process group afterwards."""
    group, port = ProcessGroup(Path(tmp) / "run", Path(tmp) / "logs"), free_port()
    info = group.start(
        name, [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(info, http_ok(f"{url}/moto-api/"), timeout=60, what=f"moto S3 stand-in ({name})")
        yield url
    finally:
        group.stop_all()
