"""Shared, generic fixtures: an isolated platform home, a guard against leaked processes, and the
order of the tiers (unit, then integration, then end-to-end; a failing tier stops the later ones)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pushbutton.config import Settings, settings
from pushbutton.procs import free_port
from tests.integration.platform import TEST_STACK_ENV
from tests.prerequisites import require_all

SESSION_MARKER = "PUSHBUTTON_TEST_SESSION"
TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "e2e")
_FAILED_TIERS: set[int] = set()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all-tiers",
        action="store_true",
        help="run the integration and e2e tiers even after a failure in an earlier tier",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Every process this session starts inherits the marker (the stack copies os.environ), so
    # leftovers are found even after they were re-parented or left their process group.
    os.environ[SESSION_MARKER] = uuid.uuid4().hex
    require_all()  # a bad PUSHBUTTON_TEST_REQUIRE_ALL stops the run before anything is collected


def tier(path: Path) -> int:
    """0 unit, 1 integration, 2 e2e (a test outside those folders counts as unit)."""
    try:
        folder = Path(path).resolve().relative_to(TESTS).parts[0]
    except ValueError:
        return 0
    return TIERS.index(folder) if folder in TIERS else 0


def run_order(items: Sequence[Any]) -> list[Any]:
    """Unit, integration, e2e (collection order within a tier). In e2e, the tests that start their own
    stack come before those sharing the demo stack (so two Airflows never run at once); of those,
    ``test_demo.py`` first (it checks the demo's exact history), and tests marked ``last`` at the end."""

    def key(indexed: tuple[int, Any]) -> tuple:
        index, item = indexed
        on_demo = "demo" in item.fixturenames
        last = item.get_closest_marker("last") is not None
        return (tier(item.path), on_demo, on_demo and Path(item.path).name != "test_demo.py", last, index)

    return [item for _, item in sorted(enumerate(items), key=key)]


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    items[:] = run_order(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    if report.failed:
        _FAILED_TIERS.add(tier(item.path))
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Fail fast between tiers: after a unit failure no Airflow boots (``--all-tiers`` to go on)."""
    earlier = sorted(t for t in _FAILED_TIERS if t < tier(item.path))
    if earlier and not item.config.getoption("--all-tiers"):
        item.session.shouldfail = (
            f"{TIERS[earlier[0]]} tests failed, so the {TIERS[tier(item.path)]} tier was not run "
            "(--all-tiers runs it anyway)"
        )
        return True  # not run; the session stops before the next test
    return None


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
    """Settings for a fresh ``PUSHBUTTON_HOME`` under tmp_path, with MLflow/Airflow/gateway on free
    ports and no time schedules."""
    monkeypatch.setenv("PUSHBUTTON_HOME", str(tmp_path / "home"))
    mlflow, airflow, gateway, logger = _distinct_free_ports(4)
    monkeypatch.setenv("PUSHBUTTON_MLFLOW_PORT", str(mlflow))
    monkeypatch.setenv("PUSHBUTTON_AIRFLOW_PORT", str(airflow))
    monkeypatch.setenv("PUSHBUTTON_GATEWAY_PORT", str(gateway))
    monkeypatch.setenv("PUSHBUTTON_LOGGER_PORT", str(logger))
    for variable, value in TEST_STACK_ENV.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.delenv("PUSHBUTTON_WEBHOOK_SECRET", raising=False)
    settings.cache_clear()
    yield settings()
    settings.cache_clear()
