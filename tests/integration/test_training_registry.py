"""Train → log → register against a real MLflow tracking server (started by the test)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pushbutton import registry as reg
from pushbutton.config import REPO_ROOT, Settings
from pushbutton.errors import NotFound, PushbuttonError
from pushbutton.spec import load_model_dir
from pushbutton.training import train_and_register
from tests.integration.platform import model_copy

pytestmark = pytest.mark.integration


MODEL = "reg-iris"  # this module's model line on the tier's shared MLflow


@pytest.fixture(scope="module")
def registry(shared_stack: Settings) -> reg.Registry:
    return reg.Registry(shared_stack.mlflow_url)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris example as MODEL, committed in a git repository of its own (whose HEAD is known)."""
    target = model_copy(REPO_ROOT / "models" / "iris", tmp_path_factory.mktemp("repo") / MODEL, name=MODEL)
    git = ["git", "-C", str(target), "-c", "user.name=pytest", "-c", "user.email=pytest@example.com"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "the model"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return target


@pytest.fixture(scope="module")
def pushed(registry: reg.Registry, model_dir: Path):
    return train_and_register(load_model_dir(model_dir), model_dir, registry, source="test", actor="pytest")


def test_push_registers_a_version_with_lineage_tags(registry: reg.Registry, pushed, model_dir: Path) -> None:
    version = registry.get(MODEL, pushed.version)
    assert version.run_id == pushed.run_id
    assert version.status == "registered"
    assert version.tags["pushbutton.source"] == "test"
    assert version.tags["pushbutton.data_fingerprint"] == pushed.data_fingerprint
    assert len(version.tags["pushbutton.spec_hash"]) == 16
    head = subprocess.run(["git", "-C", str(model_dir), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert version.tags["pushbutton.git_commit"] == pushed.git_commit == head.stdout.strip()  # clean tree
    assert version.tags["pushbutton.actor"] == pushed.actor == "pytest"


def test_run_holds_params_metrics_and_the_model_code(registry: reg.Registry, pushed) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(registry.tracking_uri)
    run = client.get_run(pushed.run_id)
    assert run.data.params["C"] == "1.0"
    assert run.data.params["data.source"] == "sklearn:iris"
    assert run.data.metrics["accuracy"] == pytest.approx(pushed.metrics["accuracy"])
    assert pushed.metrics["accuracy"] >= 0.85
    code = {a.path for a in client.list_artifacts(pushed.run_id, "code")}
    assert {"code/model.yaml", "code/train.py", "code/predict.py"} <= code
    assert "code/__pycache__" not in code


def test_same_data_gives_the_same_fingerprint(registry: reg.Registry, pushed, model_dir: Path) -> None:
    again = train_and_register(load_model_dir(model_dir), model_dir, registry, source="test")
    assert int(again.version) == int(pushed.version) + 1
    assert again.data_fingerprint == pushed.data_fingerprint


def test_download_materialises_model_and_code_once(registry: reg.Registry, pushed, tmp_path: Path) -> None:
    dest = tmp_path / "release"
    registry.download(MODEL, pushed.version, dest)
    assert (dest / "model" / "MLmodel").is_file()
    assert (dest / "code" / "model.yaml").is_file()
    stamp = (dest / ".complete").stat().st_mtime_ns
    registry.download(MODEL, pushed.version, dest)
    assert (dest / ".complete").stat().st_mtime_ns == stamp


def test_aliases_move_and_disappear(registry: reg.Registry, pushed) -> None:
    assert registry.by_alias(MODEL, "nonexistent-alias") is None
    registry.set_alias(MODEL, reg.CANDIDATE, pushed.version)
    assert registry.by_alias(MODEL, reg.CANDIDATE).version == pushed.version
    registry.delete_alias(MODEL, reg.CANDIDATE)
    registry.delete_alias(MODEL, reg.CANDIDATE)  # idempotent
    assert registry.by_alias(MODEL, reg.CANDIDATE) is None


def test_unknown_version_and_model_are_not_found(registry: reg.Registry) -> None:
    with pytest.raises(NotFound, match=f"model '{MODEL}' version 999"):
        registry.get(MODEL, "999")
    assert registry.versions("no-such-model") == []
    assert registry.by_alias("no-such-model", reg.CHAMPION) is None


def test_train_returning_nothing_is_a_clear_error(registry: reg.Registry, tmp_path: Path) -> None:
    model_dir = model_copy(REPO_ROOT / "models" / "iris", tmp_path / MODEL, name=MODEL,
                           files={"train.py": "def train(X, y, params):\n    pass\n"})  # fmt: skip
    before = [v.version for v in registry.versions(MODEL)]
    with pytest.raises(PushbuttonError, match=r"returned NoneType; return the fitted estimator"):
        train_and_register(load_model_dir(model_dir), model_dir, registry)
    assert [v.version for v in registry.versions(MODEL)] == before  # nothing registered


def test_unreachable_mlflow_is_a_clear_error() -> None:
    with pytest.raises(PushbuttonError, match="MLflow"):
        reg.Registry("http://127.0.0.1:9").ping(timeout=2)
