"""MLflow draws a progress bar on stderr for every artifact download, which an Airflow task log records
at error level: pushbutton's own downloads turn it off, and only while they run."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import mlflow.artifacts
import pytest

from pushbutton import registry as reg

VARIABLE = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
real_download = mlflow.artifacts.download_artifacts


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    source = tmp_path / "run-artifacts"
    for name in ("model/MLmodel", "model/model.skops", "code/model.yaml", "code/train.py"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(name)
    return source


def test_mlflow_draws_its_bar_for_a_download(artifacts: Path, tmp_path: Path, capfd, monkeypatch) -> None:
    """What the fix is about (and what makes the tests below able to fail)."""
    monkeypatch.delenv(VARIABLE, raising=False)
    real_download(artifact_uri=(artifacts / "code").as_uri(), dst_path=str(tmp_path / "out"))
    assert "Downloading artifacts" in capfd.readouterr().err


def test_registry_downloads_draw_no_bar_and_leave_the_setting_alone(
    artifacts: Path, tmp_path: Path, capfd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIABLE, "true")  # the user's own choice for their MLflow use
    monkeypatch.setattr(
        reg.Registry, "get", lambda self, name, version: reg.Version(name, version, "r1", "s")
    )

    def from_disk(artifact_uri: str | None = None, run_id: str | None = None, artifact_path: str = "", **kw):
        """MLflow's own download, of these files: a model's into dst_path, a run's path into dst_path/path."""
        if artifact_uri == "models:/iris/3":
            for file in (artifacts / "model").iterdir():
                real_download(artifact_uri=file.as_uri(), dst_path=kw["dst_path"])
            return kw["dst_path"]
        return real_download(artifact_uri=(artifacts / artifact_path).as_uri(), dst_path=kw["dst_path"])

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", from_disk)
    dest = reg.Registry("http://mlflow.test").download("iris", "3", tmp_path / "releases" / "3")
    assert (dest / "model" / "MLmodel").is_file() and (dest / "code" / "train.py").is_file()
    assert "Downloading artifacts" not in capfd.readouterr().err
    assert os.environ[VARIABLE] == "true"


def test_the_switch_is_restored_after_the_last_of_concurrent_downloads(monkeypatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    inside, release = threading.Barrier(2), threading.Event()
    seen: list[str | None] = []

    def download() -> None:
        with reg.quiet_artifact_transfers():
            inside.wait()
            seen.append(os.environ.get(VARIABLE))
            release.wait()

    first = threading.Thread(target=download)
    first.start()
    with reg.quiet_artifact_transfers():
        inside.wait()  # both blocks are open
        seen.append(os.environ.get(VARIABLE))
    assert os.environ.get(VARIABLE) == "false"  # the other download still runs
    release.set()
    first.join()
    assert seen == ["false", "false"] and VARIABLE not in os.environ
