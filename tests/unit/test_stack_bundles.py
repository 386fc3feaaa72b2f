"""Where Airflow finds pushbutton's DAG files: the repository's ``dags/`` and the generated stubs,
two bundles; the stubs live under the platform home (issue 13 §7), never in the source tree."""

from __future__ import annotations

import json
from pathlib import Path

from pushbutton import stack
from pushbutton.config import REPO_ROOT, Settings


def test_stubs_are_a_bundle_of_their_own_under_the_home(tmp_path: Path) -> None:
    cfg = Settings(home=tmp_path / "home", models_dir=tmp_path / "elsewhere")
    env = stack.airflow_env(cfg, "secret")
    bundles = {b["name"]: b for b in json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])}
    assert bundles["dags-folder"]["kwargs"] == {}  # Airflow's DAGS_FOLDER: the repository's dags/
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO_ROOT / "dags")
    assert bundles[stack.STUB_BUNDLE]["kwargs"] == {"path": str(tmp_path / "home" / "dags")}
    assert str(REPO_ROOT) not in bundles[stack.STUB_BUNDLE]["kwargs"]["path"]
    # stubs import the factory from dags/ wherever a task runs
    assert env["PYTHONPATH"].split(":")[0] == str(REPO_ROOT / "dags")


def test_a_stub_root_can_be_chosen(tmp_path: Path) -> None:
    cfg = Settings(home=tmp_path / "home", stubs_dir=tmp_path / "bundle")
    assert cfg.stub_root == tmp_path / "bundle"
    bundles = json.loads(stack.airflow_env(cfg, "secret")["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    assert bundles[1]["kwargs"]["path"] == str(tmp_path / "bundle")


def test_an_idle_stack_does_not_reparse_every_file(tmp_path: Path) -> None:
    """Changed stubs are re-parsed by mtime (sort mode modified_time); the rest rarely (issue 13 §8)."""
    env = stack.airflow_env(Settings(home=tmp_path / "home"), "secret")
    assert int(env["AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"]) >= 300
    assert env["AIRFLOW__DAG_PROCESSOR__FILE_PARSING_SORT_MODE"] == "modified_time"
    assert int(env["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"]) <= 5  # a new model's stub is found fast


def test_stubs_an_older_version_left_in_the_source_tree_are_removed_and_nothing_else(tmp_path: Path) -> None:
    from pushbutton.dagstubs import INDEX, MARKER, remove_legacy_stubs

    legacy = tmp_path / "dags" / "models"
    legacy.mkdir(parents=True)
    (legacy / "iris.py").write_text(MARKER + " (sync-dags) -- do not edit\n")
    (legacy / INDEX).write_text("{}")
    (legacy / "mine.py").write_text("# a person's own DAG file\n")
    removed = remove_legacy_stubs(tmp_path / "dags")
    assert sorted(p.name for p in removed) == [INDEX, "iris.py"]
    assert [p.name for p in legacy.iterdir()] == ["mine.py"]
    assert remove_legacy_stubs(tmp_path / "nowhere") == []


def test_importing_the_factory_as_a_module_writes_no_stubs(tmp_path: Path) -> None:
    """Only Airflow parsing dags/pushbutton_factory.py syncs stubs; a stub or a test importing it
    (``from dags.pushbutton_factory import …``) never writes into the home or the source tree."""
    import subprocess
    import sys

    code = "import dags.pushbutton_factory, pushbutton_factory"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PUSHBUTTON_HOME": str(tmp_path / "home"),
           "PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'dags'}", "AIRFLOW_HOME": str(tmp_path / "airflow")}  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "home" / "dags").exists()
    assert not (REPO_ROOT / "dags" / "models").exists()
