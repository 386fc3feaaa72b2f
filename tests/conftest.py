"""Shared, generic fixtures: an isolated platform home, and a guard against leaked processes."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest

from pushbutton.config import Settings, settings
from pushbutton.procs import free_port

SESSION_MARKER = "PUSHBUTTON_TEST_SESSION"


def pytest_configure(config: pytest.Config) -> None:
    # Every process this session starts inherits the marker (the stack copies os.environ), so
    # leftovers are found even after they were re-parented or left their process group.
    os.environ[SESSION_MARKER] = uuid.uuid4().hex


@pytest.fixture(scope="session", autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Fail the session if any process started by it is still alive at the end (and kill it)."""
    yield
    from pushbutton.procs import kill_processes, process_cmdline, processes_with_env

    marker = os.environ[SESSION_MARKER]
    deadline = time.monotonic() + 10.0
    while (left := processes_with_env(SESSION_MARKER, marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        listing = "\n".join(f"  {pid}: {process_cmdline(pid)[:160]}" for pid in left)
        kill_processes(left)
        pytest.fail(f"the test session left {len(left)} process(es) running (now killed):\n{listing}")


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@pytest.fixture
def platform_home(tmp_path, monkeypatch) -> Iterator[Settings]:
    """Settings for a fresh ``PUSHBUTTON_HOME`` under tmp_path, with MLflow/Airflow/gateway on free ports."""
    monkeypatch.setenv("PUSHBUTTON_HOME", str(tmp_path / "home"))
    mlflow, airflow, gateway = _distinct_free_ports(3)
    monkeypatch.setenv("PUSHBUTTON_MLFLOW_PORT", str(mlflow))
    monkeypatch.setenv("PUSHBUTTON_AIRFLOW_PORT", str(airflow))
    monkeypatch.setenv("PUSHBUTTON_GATEWAY_PORT", str(gateway))
    monkeypatch.delenv("PUSHBUTTON_WEBHOOK_SECRET", raising=False)
    settings.cache_clear()
    yield settings()
    settings.cache_clear()
