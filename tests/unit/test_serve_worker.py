"""The launcher's gunicorn settings for a model's microservice: the worker timeout follows the model's
``serving.timeout_seconds``, and the worker heartbeat survives a shifted clock (libfaketime: the
``at-time`` tool), where gunicorn 20.1 took every worker for dead and killed it each second."""

from __future__ import annotations

import importlib.util
import sys
import time
import types

import pytest

from pushbutton.serving.microservice import (
    LAUNCHER,
    RUNTIME_DIR,
    WORKER_TIMEOUT_MARGIN,
    WORKER_TIMEOUT_VARIABLE,
)


@pytest.fixture
def launcher():
    spec = importlib.util.spec_from_file_location(LAUNCHER, RUNTIME_DIR / f"{LAUNCHER}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_worker_timeout_comes_from_the_environment(launcher) -> None:
    assert launcher.worker_timeout({WORKER_TIMEOUT_VARIABLE: "70"}) == 70
    for bad in ("", "0", "-5", "ten", "1.5"):
        assert launcher.worker_timeout({WORKER_TIMEOUT_VARIABLE: bad}) == launcher.DEFAULT_WORKER_TIMEOUT
    assert launcher.worker_timeout({}) == launcher.DEFAULT_WORKER_TIMEOUT
    assert launcher.DEFAULT_WORKER_TIMEOUT > 600  # longer than the longest serving.timeout_seconds
    assert WORKER_TIMEOUT_MARGIN > 0


def test_the_launcher_sets_gunicorn_s_timeout(launcher, monkeypatch) -> None:
    from gunicorn.app.base import BaseApplication
    from gunicorn.workers.workertmp import WorkerTmp

    for cls, name in ((BaseApplication, "do_load_config"), (WorkerTmp, "notify"), (WorkerTmp, "last_update")):
        monkeypatch.setattr(cls, name, getattr(cls, name))  # undone after the test
    monkeypatch.setenv(WORKER_TIMEOUT_VARIABLE, "75")
    seldon = types.ModuleType("seldon_core")  # seldon-core lives in the serving env only
    seldon.microservice = types.SimpleNamespace(_run_grpc_server=lambda *a, **k: None)
    monkeypatch.setitem(sys.modules, "seldon_core", seldon)

    class App(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", ["0.0.0.0:9000"])
            self.cfg.set("timeout", 5)  # seldon's default

        def load(self):  # pragma: no cover - never served
            return None

    launcher.install("127.0.0.1")
    app = App()
    assert (app.cfg.timeout, app.cfg.bind) == (75, ["127.0.0.1:9000"])


def test_a_worker_looks_alive_under_a_shifted_clock(launcher, monkeypatch) -> None:
    from gunicorn.config import Config
    from gunicorn.workers.workertmp import WorkerTmp

    for name in ("notify", "last_update"):
        monkeypatch.setattr(WorkerTmp, name, getattr(WorkerTmp, name))
    launcher.one_clock_heartbeat()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 7 * 24 * 3600)  # as at-time "next monday"
    tmp = WorkerTmp(Config())
    try:
        tmp.notify()
        assert abs(time.time() - tmp.last_update()) < 5  # gunicorn 20.1's arbiter: alive
    finally:
        tmp.close()
