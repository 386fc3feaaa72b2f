"""``python -m pushbutton.demo --home``: only a home the demo created (or an empty one) is wiped, and
never one with a stack running. Nothing is started or stopped: ``up`` fails the test if called and
``down`` is a no-op (the running "stack" below is this test process's own pid file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import pushbutton.stack
from pushbutton import demo
from pushbutton.config import Settings, settings
from pushbutton.procs import _boot_id, _start_ticks


@pytest.fixture
def no_stack(monkeypatch: pytest.MonkeyPatch):
    def called(*args, **kwargs):
        raise AssertionError("the demo started a stack")

    monkeypatch.setattr(pushbutton.stack, "up", called)
    monkeypatch.setattr(pushbutton.stack, "down", lambda *args, **kwargs: [])  # never signal ourselves
    monkeypatch.setenv("PUSHBUTTON_HOME", "restored-after-the-test")  # main() sets it
    settings.cache_clear()
    yield
    settings.cache_clear()


def test_a_home_the_demo_did_not_create_is_refused_and_kept(tmp_path: Path, no_stack, capsys) -> None:
    home = tmp_path / "real-home"
    (home / "mlflow").mkdir(parents=True)
    (home / "mlflow" / "mlflow.db").write_text("a real registry")
    assert demo.main(["--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --home {home} is not empty and was not created by the demo")
    assert "choose another --home, or remove that directory yourself" in err
    assert (home / "mlflow" / "mlflow.db").read_text() == "a real registry"


def test_a_demo_home_with_a_stack_running_is_refused_and_kept(tmp_path: Path, no_stack, capsys) -> None:
    home = tmp_path / "demo-home"
    (home / "run").mkdir(parents=True)
    (home / demo.HOME_MARKER).write_text("")
    me = os.getpid()  # a pid file of a live process, as `pushbutton up` writes them
    record = {"name": "mlflow", "pid": me, "pgid": os.getpgid(me), "started": _start_ticks(me)}
    record |= {"argv": ["mlflow"], "log": str(home / "logs" / "mlflow.log"), "boot": _boot_id()}
    (home / "run" / "mlflow.json").write_text(json.dumps(record))
    assert demo.main(["--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert f"a pushbutton stack is running in {home} (pids {me})" in err
    assert f"PUSHBUTTON_HOME={home} pushbutton down" in err and "choose another --home" in err
    assert (home / "run" / "mlflow.json").is_file()


@pytest.mark.parametrize("state", ["missing", "empty", "made-by-the-demo"])
def test_a_missing_empty_or_demo_made_home_is_made_fresh(tmp_path: Path, state: str) -> None:
    home = tmp_path / "home"
    if state != "missing":
        home.mkdir()
    if state == "made-by-the-demo":
        (home / demo.HOME_MARKER).write_text("")
        (home / "logs").mkdir()
        (home / "logs" / "mlflow.log").write_text("old run")
    demo.fresh_home(Settings(home=home))
    assert sorted(p.name for p in home.iterdir()) == [demo.HOME_MARKER]
