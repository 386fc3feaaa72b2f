"""A throw-away PostgreSQL server (Debian's binaries) for integration tests, stopped by pid/group."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pushbutton.procs import ProcessGroup, free_port, wait_ready
from tests.prerequisites import missing

SERVER_BINARIES = ("initdb", "postgres", "pg_isready")
DEBIAN_LAYOUT = Path("/usr/lib/postgresql")  # postgresql-<major>: /usr/lib/postgresql/<major>/bin


def _major(bindir: Path) -> float:
    return float(bindir.parent.name) if bindir.parent.name.replace(".", "", 1).isdigit() else 0.0


def server_bindirs(layout: Path = DEBIAN_LAYOUT) -> list[Path]:
    """Where PostgreSQL's server binaries may be: ``pg_config --bindir``, Debian's per-version
    directories (newest first), then ``initdb`` on PATH."""
    found: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        answer = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if answer.returncode == 0 and answer.stdout.strip():
            found.append(Path(answer.stdout.strip()))
    found += sorted(layout.glob("*/bin"), key=_major, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        found.append(Path(initdb).parent)
    return found


def postgres_bindir() -> Path:
    """The first directory holding every server binary; a missing server skips (fails under CI)."""
    for bindir in server_bindirs():
        if all((bindir / name).is_file() for name in SERVER_BINARIES):
            return bindir
    return missing(
        f"PostgreSQL server binaries ({', '.join(SERVER_BINARIES)})",
        "install Debian's postgresql package (apt-get install postgresql; .ci/run does)",
    )


def _as_postgres(argv: list[str]) -> list[str]:
    """Run as the `postgres` user when we are root (PostgreSQL refuses to run as root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start PostgreSQL on a free port; yield its SQLAlchemy URL; stop it and delete its data afterwards."""
    bindir = postgres_bindir()
    tmp = Path(tempfile.mkdtemp(prefix="pushbutton-pg-"))  # pytest's tmp tree is private to root
    data = tmp / "pgdata"
    data.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres")
        shutil.chown(data, "postgres")
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
                   check=True, capture_output=True)  # fmt: skip
    port = free_port()
    group = ProcessGroup(tmp / "run", tmp / "logs")
    (tmp / "logs").mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(tmp / "logs", "postgres")
    argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(tmp)]
    info = group.start("postgres", _as_postgres(argv))
    try:

        def accepting() -> bool:
            probe = [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
            return subprocess.run(probe, capture_output=True).returncode == 0

        wait_ready(info, accepting, timeout=60, what="PostgreSQL")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        group.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
