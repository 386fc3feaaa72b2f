"""A throw-away PostgreSQL server (Debian's binaries) for integration tests, stopped by pid/group."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pushbutton.procs import ProcessGroup, free_port, wait_ready

BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(argv: list[str]) -> list[str]:
    """Run as the `postgres` user when we are root (PostgreSQL refuses to run as root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start PostgreSQL on a free port; yield its SQLAlchemy URL; stop it and delete its data afterwards."""
    if not (BIN / "initdb").exists():
        pytest.skip("PostgreSQL server binaries not installed (Debian package postgresql-15)")
    tmp = Path(tempfile.mkdtemp(prefix="pushbutton-pg-"))  # pytest's tmp tree is private to root
    data = tmp / "pgdata"
    data.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres")
        shutil.chown(data, "postgres")
    subprocess.run(_as_postgres([str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
                   check=True, capture_output=True)  # fmt: skip
    port = free_port()
    group = ProcessGroup(tmp / "run", tmp / "logs")
    (tmp / "logs").mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(tmp / "logs", "postgres")
    argv = [str(BIN / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(tmp)]
    info = group.start("postgres", _as_postgres(argv))
    try:

        def accepting() -> bool:
            probe = [str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
            return subprocess.run(probe, capture_output=True).returncode == 0

        wait_ready(info, accepting, timeout=60, what="PostgreSQL")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        group.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
