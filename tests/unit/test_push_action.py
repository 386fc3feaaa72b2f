"""``pushbutton push`` around training: DAG stubs for new models, a clear error when no pipeline could
ever run (or Airflow is down), waiting for a new model's DAG before triggering, stdout that is only
JSON. Registry, training and Airflow are fakes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import pushbutton.config
import pushbutton.training
from pushbutton import actions
from pushbutton import registry as reg
from pushbutton.cli import main
from pushbutton.config import REPO_ROOT, Settings
from pushbutton.dagstubs import STUB_DIR
from pushbutton.errors import Conflict, NotFound, StackError


class FakeAirflow:
    def __init__(self, dags: set[str], webhook_first: bool = False, up: bool = True, trigger_error=None):
        self.dags, self.webhook_first, self.calls = dags, webhook_first, []
        self.up, self.trigger_error = up, trigger_error

    def health(self) -> dict:
        self.calls.append(("health",))
        if not self.up:
            raise StackError("GET http://127.0.0.1:8080/api/v2/monitor/health failed: ConnectError()")
        return {}

    def get_dag(self, dag_id: str) -> dict:
        self.calls.append(("get_dag", dag_id))
        if dag_id not in self.dags:
            raise NotFound(f"DAG {dag_id} not found")
        return {"dag_id": dag_id}

    def wait_dag(self, dag_id: str, timeout: float) -> dict:
        self.calls.append(("wait_dag", dag_id))
        return {"dag_id": dag_id}

    def trigger(self, dag_id: str, conf: dict, run_id: str) -> dict:
        self.calls.append(("trigger", dag_id, conf["version"], run_id))
        if self.trigger_error:
            raise self.trigger_error
        if self.webhook_first:
            raise Conflict("run exists")
        return {"dag_run_id": run_id}


class Trained:
    version, run_id = "7", "5e1f0c2a9b8d4e7f"

    def as_dict(self) -> dict:
        return {"version": self.version, "run_id": self.run_id}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    models, dags = tmp_path / "models", tmp_path / "dags"
    shutil.copytree(
        REPO_ROOT / "models" / "iris", models / "iris", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(REPO_ROOT / "models" / "iris", tmp_path / "elsewhere" / "iris")
    trained: list[str] = []
    monkeypatch.setattr(reg.Registry, "ping", lambda self: None)
    monkeypatch.setattr(
        pushbutton.training,
        "train_and_register",
        lambda spec, *a, **k: trained.append(spec.name) or Trained(),
    )
    cfg = Settings(home=tmp_path / "home", models_dir=models, dags_dir=dags)
    return cfg, tmp_path, trained


def use(monkeypatch: pytest.MonkeyPatch, airflow: FakeAirflow) -> FakeAirflow:
    monkeypatch.setattr(actions, "_client", lambda settings: airflow)
    return airflow


def test_a_new_model_under_the_models_dir_gets_its_stub_then_waits_for_its_dag(env, monkeypatch) -> None:
    cfg, _, trained = env
    airflow = use(monkeypatch, FakeAirflow(dags=set()))
    result = actions.push(cfg, cfg.models_dir / "iris", trigger=True)
    assert (cfg.stub_root / STUB_DIR / "iris.py").is_file()  # written before training
    assert trained == ["iris"]
    assert airflow.calls == [
        ("health",),  # before training
        ("wait_dag", "iris__cicd"),
        ("trigger", "iris__cicd", "7", result["pipeline"]["run_id"]),
    ]
    assert result["pipeline"]["run_id"] == "registered__v7__5e1f0c2a"  # the MLflow run's id starts it
    assert result["pipeline"]["triggered_by"] == "rest-api"


def test_register_only_still_writes_the_stub_and_never_calls_airflow(env, monkeypatch) -> None:
    cfg, _, trained = env
    use(monkeypatch, None)  # any call would fail
    result = actions.push(cfg, cfg.models_dir / "iris" / "model.yaml", trigger=False)
    assert (cfg.stub_root / STUB_DIR / "iris.py").is_file() and trained == ["iris"]
    assert "triggered_by" not in result["pipeline"]


def test_outside_the_models_dir_without_a_dag_fails_before_training(env, monkeypatch) -> None:
    cfg, root, trained = env
    use(monkeypatch, FakeAirflow(dags=set()))
    with pytest.raises(NotFound) as failure:
        actions.push(cfg, root / "elsewhere" / "iris", trigger=True)
    message = str(failure.value)
    assert (
        "not under the models directory" in message and "iris__cicd" in message and "--no-trigger" in message
    )
    assert trained == []  # nothing trained, nothing registered
    assert not (cfg.stub_root / STUB_DIR).exists()


def test_outside_the_models_dir_with_the_dag_the_webhook_may_win(env, monkeypatch) -> None:
    cfg, root, trained = env
    use(monkeypatch, FakeAirflow(dags={"iris__cicd"}, webhook_first=True))
    result = actions.push(cfg, root / "elsewhere" / "iris", trigger=True)
    assert trained == ["iris"] and result["pipeline"]["triggered_by"] == "webhook"


def test_an_unreachable_airflow_fails_before_training(env, monkeypatch) -> None:
    cfg, _, trained = env
    use(monkeypatch, FakeAirflow(dags={"iris__cicd"}, up=False))
    with pytest.raises(
        StackError, match=r"Airflow's API at http://127\.0\.0\.1:8080 is not reachable"
    ) as failure:
        actions.push(cfg, cfg.models_dir / "iris", trigger=True)
    assert "`pushbutton up`" in str(failure.value) and "--no-trigger" in str(failure.value)
    assert trained == []


def cli_push(capsys, monkeypatch, cfg: Settings, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr(pushbutton.config, "settings", lambda: cfg)
    code = main(["push", str(cfg.models_dir / "iris"), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_failed_trigger_still_reports_the_registered_version(env, monkeypatch, capsys) -> None:
    cfg, _, trained = env
    use(monkeypatch, FakeAirflow(dags={"iris__cicd"}, trigger_error=StackError("POST … answered 500")))
    code, out, err = cli_push(capsys, monkeypatch, cfg)
    assert code == 1 and trained == ["iris"]
    result = json.loads(out)
    assert result["version"] == "7" and "triggered_by" not in result["pipeline"]
    assert err.startswith("error: registered iris version 7, but triggering iris__cicd failed: POST")
    assert f"MLflow's webhook may still start run {result['pipeline']['run_id']}" in err


def test_stdout_is_only_json_whatever_training_prints(env, monkeypatch, capsys) -> None:
    cfg, _, _ = env

    def chatty_training(spec, *args, **kwargs) -> Trained:
        print("🏃 View run iris-push at: http://127.0.0.1:5000/#/experiments/1/runs/abc")
        return Trained()

    monkeypatch.setattr(pushbutton.training, "train_and_register", chatty_training)
    code, out, err = cli_push(capsys, monkeypatch, cfg, "--no-trigger")
    assert code == 0
    assert json.loads(out)["version"] == "7"
    assert "🏃 View run iris-push" in err


def test_ctrl_c_during_push_says_interrupted_and_exits_130(env, monkeypatch, capsys) -> None:
    cfg, _, _ = env

    def interrupted(spec, *args, **kwargs) -> Trained:
        raise KeyboardInterrupt

    monkeypatch.setattr(pushbutton.training, "train_and_register", interrupted)
    assert cli_push(capsys, monkeypatch, cfg, "--no-trigger") == (130, "", "interrupted\n")


def test_the_pusher_is_the_repositorys_git_identity(tmp_path: Path) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "config", "user.email", "ds@example.org"], check=True)
    (tmp_path / "iris").mkdir()
    assert pushbutton.training.pusher(tmp_path / "iris") == "ds@example.org"


def test_without_a_git_identity_the_pusher_is_the_os_user(tmp_path: Path, monkeypatch) -> None:
    import getpass

    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    assert pushbutton.training.pusher(tmp_path) == getpass.getuser() != ""


def test_push_records_who_pushed(env, monkeypatch) -> None:
    cfg, _, _ = env
    seen: dict = {}
    monkeypatch.setattr(pushbutton.training, "pusher", lambda path: "ds@example.org")
    monkeypatch.setattr(
        pushbutton.training, "train_and_register", lambda spec, *a, **k: seen.update(k) or Trained()
    )
    actions.push(cfg, cfg.models_dir / "iris", trigger=False)
    assert seen["actor"] == "ds@example.org" and seen["source"] == "push"


def duplicate(cfg: Settings, name: str = "iris-copy") -> Path:
    """A second model directory under the models directory that keeps ``name: iris``."""
    copy = cfg.models_dir / name
    shutil.copytree(cfg.models_dir / "iris", copy)
    return copy


def test_a_second_directory_declaring_the_same_name_is_refused_before_anything_runs(env, monkeypatch) -> None:
    from pushbutton.errors import SpecError
    from pushbutton.spec.loader import compose, field_line

    cfg, _, trained = env
    airflow = use(monkeypatch, FakeAirflow(dags={"iris__cicd"}))
    copy = duplicate(cfg)
    with pytest.raises(SpecError) as failure:
        actions.push(cfg, copy, trigger=True)
    [issue] = failure.value.issues
    spec_file = copy / "model.yaml"
    assert (issue.file, issue.field) == (str(spec_file), "name")
    assert issue.line == field_line(compose(spec_file), "name") is not None
    assert issue.message == (
        f"model name 'iris' is also claimed by {cfg.models_dir / 'iris' / 'model.yaml'}; while two "
        "directories claim one model, neither can be validated or pushed"
    )
    assert issue.fix == f"give one of them another `name:` or remove the copy ({cfg.models_dir / 'iris'})"
    assert trained == [] and airflow.calls == []
    assert not (cfg.stub_root / STUB_DIR).exists()


def test_while_a_copy_claims_its_name_the_owner_is_refused_too_and_keeps_its_model_line(
    env, monkeypatch
) -> None:
    """Issue 13 §3: a copy differing only in case (models/Iris beside models/iris, both 'name: iris').
    Pushing either is refused naming the other; the stub index still gives the model line to iris."""
    from pushbutton.dagstubs import name_owner, sync_stubs
    from pushbutton.errors import SpecError

    cfg, _, trained = env
    use(monkeypatch, None)
    sync_stubs(cfg.models_dir, cfg.stub_root)  # the platform knew iris before the copy appeared
    copy = duplicate(cfg, "Iris")  # sorts before 'iris'
    for target, other in ((copy, cfg.models_dir / "iris"), (cfg.models_dir / "iris", copy)):
        with pytest.raises(SpecError) as failure:
            actions.push(cfg, target, trigger=False)
        assert str(other / "model.yaml") in str(failure.value)
    assert trained == []
    assert name_owner(cfg.stub_root, "iris") == str(cfg.models_dir / "iris")


def test_a_duplicate_name_through_the_cli_names_file_line_field_and_fix(env, monkeypatch, capsys) -> None:
    cfg, _, trained = env
    use(monkeypatch, None)
    copy = duplicate(cfg, "a-iris")  # a copy elsewhere in the models dir: models/iris cannot be pushed
    code, out, err = cli_push(capsys, monkeypatch, cfg, "--no-trigger")
    assert (code, out, trained) == (1, "", [])
    assert err.startswith(f"error: {cfg.models_dir / 'iris' / 'model.yaml'}:")
    assert (
        f": name: model name 'iris' is also claimed by {copy / 'model.yaml'}; while two directories claim "
        f"one model, neither can be validated or pushed (fix: give one of them another `name:` or remove "
        f"the copy ({copy}))\n"
    ) in err


@pytest.mark.parametrize("name", ["train.py", "golden.csv"])
def test_a_file_other_than_model_yaml_is_refused(env, monkeypatch, name: str) -> None:
    from pushbutton.errors import SpecError

    cfg, _, trained = env
    use(monkeypatch, None)
    target = cfg.models_dir / "iris" / name
    assert target.is_file()
    with pytest.raises(SpecError) as failure:
        actions.push(cfg, target, trigger=False)
    assert str(failure.value) == (
        f"{target}: {name} is not a model spec: expected a model directory or its model.yaml "
        "(fix: pass the model directory (or its model.yaml))"
    )
    assert trained == []
