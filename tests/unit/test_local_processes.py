"""Process bookkeeping of the local runtime: unique service names, never signalling a stranger,
telling our own listening socket from another server's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pushbutton.procs import ProcInfo, _boot_id, _start_ticks, listens_in_group
from pushbutton.serving.microservice import service_name


def test_service_names_of_different_deployments_never_collide() -> None:
    # DNS-safe names hold dashes: joined with dashes, these two would share one process
    assert service_name("team-a", "iris", "1") != service_name("team", "a-iris", "1")
    assert service_name("models", "iris", "1") != service_name("models", "iris", "11")


@pytest.fixture
def group_leader() -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _record(pid: int, started: float) -> ProcInfo:
    return ProcInfo("svc-x", pid, pid, started, [], "", _boot_id())


def test_a_reused_pid_leading_another_group_is_not_our_group(group_leader: subprocess.Popen) -> None:
    ticks = _start_ticks(group_leader.pid)
    assert ticks is not None
    assert _record(group_leader.pid, ticks).group_alive()
    # the same pid with another start time: our group died and a stranger's leader got its pid
    stranger = _record(group_leader.pid, ticks - 1)
    assert not stranger.alive() and not stranger.group_alive()


def test_a_listening_socket_is_told_apart_by_process_group() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listens_in_group(os.getpgrp(), port) is True
        assert listens_in_group(os.getpgrp() + 1_000_000, port) is False  # no such group listens there
    assert listens_in_group(os.getpgrp(), port) is False  # closed: nobody listens


def test_a_running_version_keeps_serving_after_its_env_key_changes(tmp_path) -> None:
    """A platform upgrade changes every version's env key; the running process still serves the
    same artifacts, so it is reused (routable) rather than refused as a different build."""
    from pushbutton.serving.microservice import Microservice

    code = tmp_path / "code"
    code.mkdir()
    svc = Microservice(
        name=service_name("models", "iris", "1"), namespace="models", model="iris", version="1",
        model_uri="/r/iris/1/model", class_ref="predict:IrisClassifier", code_dir=str(code),
        env="/envs/old-key", host="127.0.0.1", http_port=1, metrics_port=2, pid=1, log="",
    )  # fmt: skip
    assert svc.serves("/r/iris/1/model", "predict:IrisClassifier", str(code))
    assert not svc.serves("/r/iris/2/model", "predict:IrisClassifier", str(code))
    assert not svc.serves("/r/iris/1/model", "predict:Other", str(code))
