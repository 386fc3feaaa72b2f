"""Training in a child process: the model's code runs without the worker's secrets, and what goes
wrong there reaches the caller as the same pushbutton error. The child processes are real (hence
integration); each fails before MLflow would be called, so no server is needed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pushbutton.errors import GateFailed, ModelCodeError, NotFound, PushbuttonError, SpecError, StackError
from pushbutton.train_job import _describe, _rebuild, train_in_child

pytestmark = pytest.mark.integration

GOOD = Path(__file__).parent.parent / "unit" / "specs" / "good-minimal"
UNREACHABLE = "http://127.0.0.1:9"  # never contacted: every case fails before registration


def model_dir(tmp_path: Path, train: str) -> Path:
    target = tmp_path / "model"
    shutil.copytree(GOOD, target, ignore=shutil.ignore_patterns("__pycache__"))
    (target / "train.py").write_text(train)
    return target


def test_the_train_entry_point_sees_no_platform_secrets(tmp_path, monkeypatch) -> None:
    seen = tmp_path / "environ.json"
    monkeypatch.setenv("AIRFLOW_CONN_PUSHBUTTON_MLFLOW", '{"extra": {"webhook_secret": "s3cr3t"}}')
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://airflow:pw@db/airflow")
    monkeypatch.setenv("PUSHBUTTON_STORE_URL", "postgresql://pushbutton:pw@db/pushbutton")
    code = (
        "import json, os\n"
        "def train(X, y, params):\n"
        f"    open({str(seen)!r}, 'w').write(json.dumps(dict(os.environ)))\n"
        "    raise ValueError('boom')\n"
    )
    with pytest.raises(ModelCodeError) as failure:
        train_in_child(model_dir(tmp_path, code), UNREACHABLE, source="test")
    assert "train.entry_point 'train:train' raised ValueError: boom" in str(failure.value)
    environ = json.loads(seen.read_text())
    assert environ["MLFLOW_TRACKING_URI"] == UNREACHABLE
    leaked = [k for k in environ if k.startswith("AIRFLOW") or k == "PUSHBUTTON_STORE_URL"]
    assert leaked == []


def test_the_models_output_and_traceback_reach_the_callers_stderr(tmp_path, capsys) -> None:
    code = "def train(X, y, params):\n    print('fitting now')\n    raise ValueError('boom')\n"
    with pytest.raises(ModelCodeError):
        train_in_child(model_dir(tmp_path, code), UNREACHABLE, source="test")
    err = capsys.readouterr().err
    assert "fitting now" in err and "Traceback" in err and "ValueError: boom" in err


def test_a_spec_error_in_the_child_is_a_spec_error_here(tmp_path) -> None:
    target = model_dir(tmp_path, "def train(X, y, params):\n    return None\n")
    spec = target / "model.yaml"
    spec.write_text(spec.read_text().replace("owner: ml@example.com\n", ""))
    with pytest.raises(SpecError) as failure:
        train_in_child(target, UNREACHABLE, source="test")
    assert failure.value.file.endswith("model.yaml") and failure.value.issues[0].field == "owner"


def test_a_child_that_dies_without_a_result_is_a_stack_error_with_its_output(tmp_path) -> None:
    code = (
        "import os, signal\n"
        "def train(X, y, params):\n"
        "    print('about to die', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    with pytest.raises(StackError) as failure:
        train_in_child(model_dir(tmp_path, code), UNREACHABLE, source="test")
    assert "exit code -9 and no result" in str(failure.value) and "about to die" in str(failure.value)


def test_errors_keep_their_type_across_the_process_boundary() -> None:
    assert type(_rebuild(_describe(NotFound("no such model")))) is NotFound
    assert str(_rebuild(_describe(ModelCodeError("bad code")))) == "bad code"
    gate = _rebuild(_describe(GateFailed(["accuracy 0.5 < 0.9"])))  # not raised by training; kept as text
    assert type(gate) is PushbuttonError and "accuracy 0.5 < 0.9" in str(gate)
    assert type(_rebuild({"type": "os", "message": "m"})) is PushbuttonError


def test_a_models_own_indicators_py_does_not_shadow_the_platforms_indicators(tmp_path) -> None:
    """The child runs in the model directory; its ``indicators.py`` (custom indicators) is not the
    platform's ``indicators`` package that validating the spec's ``indicators:`` imports."""
    code = "def train(X, y, params):\n    raise ValueError('reached the model code')\n"
    target = model_dir(tmp_path, code)
    (target / "indicators.py").write_text("def shape(inputs):\n    return 0.0\n")
    spec = target / "model.yaml"
    spec.write_text(
        spec.read_text() + "indicators:\n  - {id: shape, type: custom, params: {function: shape}}\n"
    )
    with pytest.raises(ModelCodeError) as failure:  # not a crash importing indicators.registry
        train_in_child(target, UNREACHABLE, source="test")
    assert "reached the model code" in str(failure.value)
