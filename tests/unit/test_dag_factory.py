"""The DAG factory under Airflow's own DagBag (bundle-aware, as the dag processor parses files)."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest

from pushbutton.config import REPO_ROOT
from pushbutton.dagstubs import sync_stubs

PARSE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from airflow.dag_processing.dagbag import BundleDagBag
    dags, stubs = Path(sys.argv[1]), Path(sys.argv[2])
    bags = [BundleDagBag(dag_folder=str(dags), bundle_path=dags, bundle_name="dags-folder"),
            BundleDagBag(dag_folder=str(stubs), bundle_path=stubs, bundle_name="pushbutton-models")]
    heavy = sorted(m for m in ("mlflow", "pandas", "sklearn", "alibi_detect") if m in sys.modules)
    def schedule(s):  # cron expression; "asset <uri>"; "<cron> | asset <uri>" (AssetOrTimeSchedule)
        if isinstance(s, list):
            return "asset " + ",".join(a.uri for a in s)
        timetable, assets = getattr(s, "timetable", None), getattr(s, "asset_condition", None)
        if timetable is not None and assets is not None:
            return f"{timetable.expression} | asset {assets.uri}"
        return getattr(s, "expression", str(s))
    out = {
        "dags": {
            d.dag_id: {
                "tasks": {t.task_id: sorted(t.downstream_task_ids) for t in d.tasks},
                "tags": sorted(d.tags), "owner": d.owner, "schedule": schedule(d.schedule),
                "start_date": str(d.start_date), "run_immediately": getattr(d.schedule, "run_immediately", None),
                "params": sorted(d.params.keys()), "max_active_runs": d.max_active_runs,
                "doc_md": d.doc_md or "", "fileloc": d.relative_fileloc,
            }
            for bag in bags for d in bag.dags.values()
        },
        "errors": {k: v for bag in bags for k, v in bag.import_errors.items()},
        "heavy": heavy,
    }
    print(json.dumps(out))
    """
)


def parse(tmp_path: Path, models: Path, **extra_env: str) -> dict:
    """Parse a copy of dags/ and the stub bundle against ``models`` in a fresh interpreter (as Airflow's
    processor does, with the environment ``pushbutton up`` gives it)."""
    dags, stubs = tmp_path / "dags", tmp_path / "home" / "dags"
    dags.mkdir(exist_ok=True)
    for source in (REPO_ROOT / "dags").glob("*.py"):
        shutil.copy(source, dags / source.name)
    sync_stubs(models, stubs)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PUSHBUTTON_MODELS_DIR": str(models),
        "PUSHBUTTON_DAGS_DIR": str(dags),
        "PUSHBUTTON_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(dags),  # as stack.airflow_env: stubs import the factory from dags/
        **extra_env,
    }
    proc = subprocess.run(
        [sys.executable, "-c", PARSE, str(dags), str(stubs)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    for name in ("iris", "diabetes"):
        if (REPO_ROOT / "models" / name).exists():
            shutil.copytree(REPO_ROOT / "models" / name, root / name)
    return root


def break_spec(models: Path, directory: str, old: str, new: str, name: str | None = None) -> Path:
    shutil.copytree(models / "iris", models / directory)
    spec = models / directory / "model.yaml"
    text = spec.read_text().replace(old, new)
    spec.write_text(text.replace("name: iris", f"name: {name or directory}"))
    return spec


def test_each_example_model_yields_its_three_dags(tmp_path: Path, models: Path) -> None:
    result = parse(tmp_path, models)
    assert result["errors"] == {}
    names = [d.name for d in models.iterdir()]
    for name in names:
        for kind in ("cicd", "monitor", "retrain"):
            assert f"{name}__{kind}" in result["dags"]
    assert {"pushbutton__promote", "pushbutton__rollback"} <= set(result["dags"])
    assert len(result["dags"]) == 3 * len(names) + 2


def test_cicd_dag_shape_tags_owner_params(tmp_path: Path, models: Path) -> None:
    dag = parse(tmp_path, models)["dags"]["iris__cicd"]
    # iris's promotion policy is auto: canary_policy decides before approve asks (or answers itself)
    steps = ["build", "test", "register", "deploy_candidate", "canary_policy", "approve", "activate",
             "discard_candidate"]  # fmt: skip
    expected = {step: sorted([following, "fail_on_error"]) for step, following in itertools.pairwise(steps)}
    # the image (when the Seldon Connection asks for one) is built beside the test; register waits for both
    expected["build"] = ["build_image", "fail_on_error", "test"]
    assert dag["tasks"] == {
        **expected,
        "build_image": ["fail_on_error", "register"],
        "canary_policy": ["approve"],  # a sensor: its timeout fails approve upstream, reaching the watcher
        "approve": ["activate"],  # Reject skips approve's direct downstream: never the watcher
        "discard_candidate": ["fail_on_error"],
        "fail_on_error": [],
    }
    assert {"pushbutton", "cicd", "model:iris"} <= set(dag["tags"])
    assert dag["owner"] == "data-science@example.com"
    assert dag["params"] == ["version"]
    assert dag["max_active_runs"] == 1
    assert "accuracy" in dag["doc_md"] and "canary 10%" in dag["doc_md"]


def test_schedules_come_from_the_spec(tmp_path: Path, models: Path) -> None:
    dags = parse(tmp_path, models)["dags"]
    # the retrain DAG also runs when an alert rule asks (its asset), whichever comes first
    assert dags["iris__retrain"]["schedule"] == "0 3 * * 1 | asset pushbutton://iris/retrain"
    assert dags["iris__monitor"]["schedule"] == "*/30 * * * *"
    assert dags["iris__cicd"]["schedule"] == "None"


def test_schedules_start_when_the_model_first_appeared(tmp_path: Path, models: Path) -> None:
    """The stub's first_seen is the time-scheduled DAGs' start_date (the CI/CD DAG has no schedule)."""
    dags = parse(tmp_path, models)["dags"]
    stub = (tmp_path / "home" / "dags" / "models" / "iris.py").read_text()
    first_seen = stub.split("first_seen='")[1].split("'")[0]
    for dag_id in ("iris__retrain", "iris__monitor"):
        assert dags[dag_id]["start_date"] == str(datetime.fromisoformat(first_seen))


def test_schedules_off_leaves_retrain_and_monitor_to_triggers(tmp_path: Path, models: Path) -> None:
    dags = parse(tmp_path, models, PUSHBUTTON_SCHEDULES="off")["dags"]
    assert {dags[f"iris__{kind}"]["schedule"] for kind in ("monitor", "cicd")} == {"None"}
    assert dags["iris__retrain"]["schedule"] == "asset pushbutton://iris/retrain"  # alerts still retrain
    assert "off in this stack" in dags["iris__retrain"]["doc_md"]


def test_parsing_imports_nothing_heavy(tmp_path: Path, models: Path) -> None:
    assert parse(tmp_path, models)["heavy"] == []


def test_broken_spec_fails_only_its_own_file(tmp_path: Path, models: Path) -> None:
    break_spec(models, "broken", "accuracy: {min: 0.85}", "accuracy: {min: 1.5}")
    result = parse(tmp_path, models)
    assert list(result["errors"]) == ["models/broken.py"]
    message = result["errors"]["models/broken.py"]
    assert "broken/model.yaml:" in message
    assert "gate.metrics.accuracy.min" in message
    assert "fix:" in message
    assert "iris__cicd" in result["dags"]
    assert not any(d.startswith("broken__") for d in result["dags"])


def test_strict_mode_fails_the_factory_itself_on_any_broken_spec(tmp_path: Path, models: Path) -> None:
    break_spec(models, "broken", "accuracy: {min: 0.85}", "accuracy: {min: 1.5}")
    result = parse(tmp_path, models, PUSHBUTTON_STRICT_SPECS="true")
    assert set(result["errors"]) == {"models/broken.py", "pushbutton_factory.py"}
    assert "broken/model.yaml:" in result["errors"]["pushbutton_factory.py"]


def test_duplicate_model_name_is_an_error_of_the_second_spec(tmp_path: Path, models: Path) -> None:
    break_spec(models, "zz-copy", "", "", name="iris")
    result = parse(tmp_path, models)
    assert list(result["errors"]) == ["models/zz-copy.py"]
    assert "already used by" in result["errors"]["models/zz-copy.py"]
    assert result["dags"]["iris__cicd"]["fileloc"] == "models/iris.py"


def test_sync_is_idempotent_and_removes_stale_stubs(tmp_path: Path, models: Path) -> None:
    dags = tmp_path / "dags"
    first = sync_stubs(models, dags)
    assert {p.name for p in first} >= {"iris.py", "_names.json"}
    assert sync_stubs(models, dags) == []
    shutil.rmtree(models / "iris")
    removed = sync_stubs(models, dags)
    assert dags / "models" / "iris.py" in removed
    assert not (dags / "models" / "iris.py").exists()
    assert "iris" not in json.loads((dags / "models" / "_names.json").read_text())


def test_nested_and_look_alike_model_directories_each_get_their_dags(tmp_path: Path, models: Path) -> None:
    """Stub file names are one per directory ('team/fraud' -> team.fraud.py, 'fraud-x' and 'fraud_x'
    apart, 'v1.2' escaped) and still import under Airflow's module naming."""
    (models / "team").mkdir()
    for directory, name in (
        ("team/fraud", "fraud"),
        ("fraud-x", "fraud-x"),
        ("fraud_x", "fraud-y"),
        ("v1.2", "v12"),
    ):
        break_spec(models, directory, "", "", name=name)
    result = parse(tmp_path, models)
    assert result["errors"] == {}
    for name in ("fraud", "fraud-x", "fraud-y", "v12"):
        assert f"{name}__cicd" in result["dags"]
    files = {d["fileloc"] for d in result["dags"].values()}
    assert {"models/team.fraud.py", "models/fraud-x.py", "models/fraud_x.py", "models/v1%2E2.py"} <= files


def test_a_copy_that_sorts_first_never_takes_over_the_model_line(tmp_path: Path, models: Path) -> None:
    """Issue 13 §3: models/Iris (a case-only copy keeping name: iris) appeared beside models/iris after
    the platform knew iris; the copy sorts first, yet iris keeps its DAGs and the copy's stub is the
    import error, naming the owner."""
    sync_stubs(models, tmp_path / "home" / "dags")  # iris was there first
    break_spec(models, "Iris", "", "", name="iris")
    result = parse(tmp_path, models)
    assert list(result["errors"]) == ["models/Iris.py"]
    assert f"already used by {models / 'iris'}/model.yaml" in result["errors"]["models/Iris.py"]
    assert result["dags"]["iris__cicd"]["fileloc"] == "models/iris.py"
