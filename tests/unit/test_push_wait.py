"""`pushbutton push --wait`: follow the CI/CD run step by step (stderr), end at the approval (the test
report and how to answer it; exit 0) or at the failure (failing step and its one-line reason; exit 1),
or give up after --timeout (exit 124); stdout stays the push's JSON. Airflow is a scripted fake whose
state follows a fake clock: no real sleeps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import pushbutton.config
import pushbutton.training
from pushbutton import actions, runs
from pushbutton import registry as reg
from pushbutton.airflow_client import AirflowClient
from pushbutton.cli import main
from pushbutton.config import REPO_ROOT, Settings
from pushbutton.errors import NotFound

DAG, RUN = "iris__cicd", "registered__v7__5e1f0c2a"
REPORT = "## iris v7\n\n| check | result |\n|---|---|\n| accuracy ≥ 0.9 | 0.97 ✓ |"
MISSING = "requirements.txt:3: package 'nosuch-pkg' does not exist on the package index (fix: remove it)"


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def ti(task: str, state: str, end: float | None = None, seconds: float | None = None, tries: int = 1) -> dict:
    return {
        "task_id": task,
        "state": state,
        "end_date": None if end is None else f"2026-11-30T10:00:{end:04.1f}Z",
        "duration": seconds,
        "try_number": tries,
        "map_index": -1,
    }


class ScriptedAirflow:
    """Airflow whose run is at ``script[i]`` from fake time ``i * 2`` on: (run state, task instances)."""

    base_url = "http://airflow.test"
    task_ui_url = AirflowClient.task_ui_url

    def __init__(self, clock: FakeClock, script: list[tuple[str | None, list[dict]]], hitl: bool = False):
        self.clock, self.script, self.hitl = clock, script, hitl
        self.calls: list[str] = []

    def _now(self) -> tuple[str | None, list[dict]]:
        return self.script[min(int(self.clock.t // 2), len(self.script) - 1)]

    def get_run(self, dag_id: str, run_id: str) -> dict:
        state, _ = self._now()
        if state is None:
            raise NotFound("no such run yet")
        return {"dag_run_id": run_id, "state": state}

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self._now()[1]

    def list_runs(self, dag_id: str, state: Any = None) -> list[dict]:
        return [{"dag_run_id": "registered__v6__0badc0de", "state": "running"}]

    def pending_hitl(self, dag_id: str) -> list[dict]:
        approve = next((t for t in self._now()[1] if t["task_id"] == "approve"), None)
        if not self.hitl or approve is None or approve["state"] != "awaiting_input":
            return []
        request = {"dag_run_id": RUN, "task_id": "approve", "map_index": -1}
        return [{"task_instance": request, "subject": "Release iris v7 to production?", "body": REPORT}]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> dict:
        self.calls.append(f"log {task_id} {try_number}")
        value = MISSING + "\nInstaller output (tail):\n…" if task_id == "build" else "step 'build' failed"
        detail = [{"exc_type": "AirflowFailException", "exc_value": value}]
        return {
            "content": [{"level": "error", "event": "Task failed with exception", "error_detail": detail}]
        }


TO_APPROVAL = [
    (None, []),  # the webhook's run does not exist yet
    ("queued", []),
    ("running", [ti("build", "success", 12.3, 12.3), ti("test", "running")]),
    (
        "running",
        [
            ti("build", "success", 12.3, 12.3),
            ti("test", "success", 52.0, 40.1),
            ti("register", "success", 53.0, 0.4),
            ti("deploy_candidate", "success", 58.0, 5.2),
            ti("approve", "awaiting_input"),
        ],
    ),
]


def follow(airflow: ScriptedAirflow, clock: FakeClock, timeout: float = 600) -> tuple[dict, list[str]]:
    lines: list[str] = []
    outcome = runs.follow(airflow, DAG, RUN, timeout=timeout, poll=2, clock=clock, emit=lines.append)
    return outcome, lines


def test_following_to_the_approval_prints_each_step_then_the_report_and_how_to_answer() -> None:
    clock = FakeClock()
    outcome, lines = follow(ScriptedAirflow(clock, TO_APPROVAL, hitl=True), clock)
    assert outcome["state"] == "awaiting_approval" and clock.t == 6 and clock.sleeps == [2, 2, 2]
    assert [(s["task"], s["state"], s["seconds"]) for s in outcome["steps"]] == [
        ("build", "success", 12.3),
        ("test", "success", 40.1),
        ("register", "success", 0.4),
        ("deploy_candidate", "success", 5.2),
    ]
    steps = [line.split() for line in lines if line.startswith("  ") and line.split()[0] in ("build", "test")]
    assert steps == [["build", "success", "12.3s"], ["test", "success", "40.1s"]]  # each once
    assert (
        "  queued: iris__cicd runs one run at a time and registered__v6__0badc0de is still running" in lines
    )
    assert REPORT in lines
    url = f"http://airflow.test/dags/{DAG}/runs/{RUN}/tasks/approve/required_actions"
    assert outcome["approval"]["url"] == url and f"or in the Airflow UI: {url}" in lines
    assert f"approve: pushbutton approve iris --run-id {RUN}" in lines


FAILS_AT_BUILD = [
    ("running", [ti("build", "running")]),
    ("running", [ti("build", "up_for_retry", 9.0, 9.0)]),  # e.g. the index was unreachable
    ("running", [ti("build", "failed", 30.0, 4.0, tries=2)]),
    ("failed", [ti("build", "failed", 30.0, 4.0, tries=2), ti("test", "upstream_failed"),
                ti("fail_on_error", "failed", 33.0, 1.5)]),
]  # fmt: skip


def test_following_to_a_failure_names_the_step_and_its_one_line_reason() -> None:
    clock = FakeClock()
    airflow = ScriptedAirflow(clock, FAILS_AT_BUILD)
    outcome, lines = follow(airflow, clock)
    assert (outcome["state"], outcome["failed_task"], outcome["reason"]) == ("failed", "build", MISSING)
    assert [(s["task"], s["state"], s["try"]) for s in outcome["steps"]] == [
        ("build", "up_for_retry", 1),
        ("build", "failed", 2),
        ("fail_on_error", "failed", 1),
    ]
    assert lines[1].split() == ["build", "failed", "9.0s", "try", "1", "(will", "retry)"]
    assert lines[2].split() == ["build", "failed", "4.0s", "try", "2"]
    assert f"✗ iris: step 'build' failed: {MISSING}" in lines
    assert f"  its log: http://airflow.test/dags/{DAG}/runs/{RUN}/tasks/build" in lines
    assert airflow.calls == ["log build 2"]  # the last try's log, not the watcher's


def test_following_gives_up_after_the_timeout_without_sleeping_for_real() -> None:
    clock = FakeClock()
    outcome, lines = follow(
        ScriptedAirflow(clock, [("running", [ti("build", "running")])]), clock, timeout=10
    )
    assert (outcome["state"], outcome["run_state"], clock.t) == ("timeout", "running", 10)
    assert lines[-1].startswith(
        "… stopped following after 10s: iris__cicd run registered__v7__5e1f0c2a is running"
    )
    assert "(build=running)" in lines[-1] and "`pushbutton status iris`" in lines[-1]


# -- the CLI ------------------------------------------------------------------------------------


class Trained:
    def as_dict(self) -> dict:
        return {"name": "iris", "version": "7", "run_id": "5e1f0c2a9b8d4e7f"}


class PushingAirflow(ScriptedAirflow):
    """Also what ``push`` itself asks: health, the DAG, the trigger."""

    def health(self) -> dict:
        return {}

    def wait_dag(self, dag_id: str, timeout: float) -> dict:
        return {"dag_id": dag_id}

    def trigger(self, dag_id: str, conf: dict, run_id: str) -> dict:
        assert (dag_id, conf, run_id) == (DAG, {"version": "7"}, RUN)
        return {"dag_run_id": run_id}


@pytest.fixture
def push_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    models = tmp_path / "models"
    shutil.copytree(
        REPO_ROOT / "models" / "iris", models / "iris", ignore=shutil.ignore_patterns("__pycache__")
    )
    cfg = Settings(home=tmp_path / "home", models_dir=models, dags_dir=tmp_path / "dags")
    monkeypatch.setattr(pushbutton.config, "settings", lambda: cfg)
    monkeypatch.setattr(reg.Registry, "ping", lambda self: None)
    monkeypatch.setattr(pushbutton.training, "train_and_register", lambda *a, **k: Trained())
    clock = FakeClock()
    monkeypatch.setattr(runs, "Clock", lambda: clock)  # what `push --wait` follows with

    def run(script: list, *argv: str) -> tuple[int, str, str]:
        monkeypatch.setattr(actions, "_client", lambda settings: PushingAirflow(clock, script, hitl=True))
        code = main(["push", str(models / "iris"), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run, clock


def test_push_wait_ends_at_the_approval_with_exit_0(push_cli) -> None:
    push, clock = push_cli
    code, out, err = push(TO_APPROVAL[-1:], "--wait")
    result = json.loads(out)  # stdout is the JSON alone
    assert code == 0 and result["version"] == "7" and clock.sleeps == []
    assert result["pipeline"]["outcome"]["state"] == "awaiting_approval"
    assert f"pushbutton approve iris --run-id {RUN}" in err and REPORT in err
    assert "deploy_candidate" in err


def test_push_wait_ends_at_the_failure_with_exit_1(push_cli) -> None:
    push, _ = push_cli
    code, out, err = push(FAILS_AT_BUILD[-1:], "--wait")
    assert code == 1
    outcome = json.loads(out)["pipeline"]["outcome"]
    assert (outcome["failed_task"], outcome["reason"]) == ("build", MISSING)
    assert f"✗ iris: step 'build' failed: {MISSING}\n" in err


def test_push_wait_times_out_with_exit_124(push_cli) -> None:
    push, clock = push_cli
    code, out, err = push([("running", [ti("build", "running")])], "--wait", "--timeout", "30")
    assert code == 124 and json.loads(out)["pipeline"]["outcome"]["state"] == "timeout"
    assert clock.t == 30 and "stopped following after 30s" in err


def test_push_wait_refuses_no_trigger_a_lone_timeout_and_a_bad_timeout(push_cli, capsys) -> None:
    push, _ = push_cli
    assert push([], "--wait", "--no-trigger") == (
        2,
        "",
        "error: --wait follows the run push triggers; drop --no-trigger (or --wait)\n",
    )
    assert push([], "--timeout", "60") == (
        2,
        "",
        "error: --timeout goes with --wait (how long to follow the run)\n",
    )
    with pytest.raises(SystemExit) as exit_:
        main(["push", "x", "--wait", "--timeout", "-5"])
    assert exit_.value.code == 2
    assert "'-5' is not a number of seconds greater than 0" in capsys.readouterr().err
