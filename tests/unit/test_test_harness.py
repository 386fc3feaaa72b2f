"""The test suite's own machinery: prerequisites that skip locally and fail under CI, where PostgreSQL
is found, the order of the tiers, and a child process stopped with its whole group on a timeout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import TESTS, run_order
from tests.integration import postgres
from tests.prerequisites import REQUIRE_ALL, missing, require_all
from tests.subprocesses import run_in_own_group


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_a_missing_prerequisite_skips_the_test_locally(monkeypatch, value: str) -> None:
    monkeypatch.setenv(REQUIRE_ALL, value)
    with pytest.raises(pytest.skip.Exception, match=r"Chromium not found \(fix: apt-get install"):
        missing("Chromium", "apt-get install chromium")


@pytest.mark.parametrize("value", ["1", "true", "yes", " 1 "])
def test_under_ci_a_missing_prerequisite_fails_the_test(monkeypatch, value: str) -> None:
    monkeypatch.setenv(REQUIRE_ALL, value)
    with pytest.raises(pytest.fail.Exception, match=f"Chromium not found .*{REQUIRE_ALL} is set"):
        missing("Chromium", "apt-get install chromium")


def test_a_bad_require_all_value_stops_the_run_with_its_fix() -> None:
    with pytest.raises(
        pytest.UsageError, match=r"PUSHBUTTON_TEST_REQUIRE_ALL='maybe' is invalid \(fix: set it to 1"
    ):
        require_all({REQUIRE_ALL: "maybe"})
    assert require_all({}) is False


def test_postgresql_is_found_in_any_debian_version_newest_first(tmp_path: Path, monkeypatch) -> None:
    layout = tmp_path / "usr-lib-postgresql"
    for version, binaries in (
        ("13", postgres.SERVER_BINARIES),
        ("16", ("pg_isready",)),
        ("17", postgres.SERVER_BINARIES),
    ):
        (layout / version / "bin").mkdir(parents=True)
        for name in binaries:
            (layout / version / "bin" / name).touch()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no pg_config, no initdb on PATH
    found = postgres.server_bindirs(layout)
    assert found == [layout / "17" / "bin", layout / "16" / "bin", layout / "13" / "bin"]
    monkeypatch.setattr(postgres, "server_bindirs", lambda: [layout / "16" / "bin", *found[2:]])
    assert postgres.postgres_bindir() == layout / "13" / "bin"  # 16 lacks the server binaries
    monkeypatch.setattr(postgres, "server_bindirs", lambda: [layout / "16" / "bin"])
    monkeypatch.setenv(REQUIRE_ALL, "1")
    with pytest.raises(
        pytest.fail.Exception,
        match=r"PostgreSQL server binaries \(initdb, postgres, pg_isready\) not found .*apt-get install postgresql",
    ):
        postgres.postgres_bindir()


def test_pg_config_names_the_first_place_to_look(tmp_path: Path, monkeypatch) -> None:
    bindir = tmp_path / "pg" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "pg_config").write_text(f"#!/bin/sh\necho {bindir}\n")
    (bindir / "pg_config").chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    assert postgres.server_bindirs(tmp_path / "no-debian-layout") == [bindir]


def item(path: str, *fixtures: str, last: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        path=TESTS / path,
        fixturenames=list(fixtures),
        get_closest_marker=lambda name: object() if last and name == "last" else None,
        name=path,
    )


def test_tiers_run_unit_then_integration_then_e2e_and_the_demo_stack_last() -> None:
    collected = [  # pytest collects alphabetically: e2e first
        item("e2e/test_a_commands.py", "demo"),
        item("e2e/test_a_commands.py", "demo", last=True),
        item("e2e/test_demo.py", "demo"),
        item("e2e/test_stack_e2e.py", "platform_home"),
        item("integration/test_lifecycle.py", "shared_stack"),
        item("unit/test_webhook.py"),
        item("unit/test_gate.py"),
    ]
    assert [i.name for i in run_order(collected)] == [
        "unit/test_webhook.py",
        "unit/test_gate.py",
        "integration/test_lifecycle.py",
        "e2e/test_stack_e2e.py",  # starts its own Airflow: before the demo stack is up
        "e2e/test_demo.py",  # checks the demo's exact history: first on it
        "e2e/test_a_commands.py",
        "e2e/test_a_commands.py",  # marked last: e.g. the log scan after everything else
    ]
    assert run_order(collected)[-1].get_closest_marker("last") is not None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_a_child_that_outlives_its_timeout_is_stopped_with_its_grandchildren(tmp_path: Path) -> None:
    """What the demo fixture relies on: the demo and whatever it started in its group are gone."""
    pids = tmp_path / "pids"
    script = f"import os, subprocess, time; p = subprocess.Popen(['sleep', '300']); open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{p.pid}}'); time.sleep(300)"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_in_own_group([sys.executable, "-c", script], timeout=3, output=tmp_path / "out.log", grace=5)
    assert time.monotonic() - started < 15
    child, grandchild = (int(p) for p in pids.read_text().split())
    assert not _alive(child) and not _alive(grandchild)


def test_a_child_that_finishes_gives_its_exit_code_and_output(tmp_path: Path) -> None:
    code = run_in_own_group([sys.executable, "-c", "print('done'); raise SystemExit(3)"], timeout=60,
                            output=tmp_path / "out.log", env={**os.environ, "X": "1"})  # fmt: skip
    assert code == 3 and (tmp_path / "out.log").read_text() == "done\n"
