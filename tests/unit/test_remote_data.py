"""Training data that changes between runs: a ``sql:`` query through an Airflow Connection windowed by
the run's data interval, an object storage source through ``ObjectStoragePath``, and the checks a
retrain makes before it trains (a clear failure, never a bad model). The retrain task's own fetch is
exercised with a real SQLite file and a ``file://`` object (the same code path as ``s3://``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import sqlalchemy as sa
from airflow.sdk.exceptions import AirflowFailException

from operators.training import MlflowTrainOperator, sqlalchemy_url
from pushbutton.config import REPO_ROOT
from pushbutton.data import remote
from pushbutton.spec import load_model_dir
from tests.integration.platform import model_copy

T0 = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
QUERY = "SELECT * FROM training WHERE ts >= :start AND ts < :end"


def iris_rows(n: int, start: datetime) -> pd.DataFrame:
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True).frame.sample(n=n, replace=True, random_state=1).reset_index(drop=True)
    data.columns = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm", "species"]
    data["ts"] = [str(start + timedelta(minutes=i)) for i in range(n)]  # as sqlite3 binds a datetime
    return data


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "warehouse.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    iris_rows(150, T0 - timedelta(hours=2)).to_sql("training", engine, index=False)  # 120 in the last 2h
    engine.dispose()
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", f'{{"conn_type": "sqlite", "host": "{db}"}}')
    return db


def sql_iris(tmp_path: Path, query: str = QUERY) -> Path:
    edits = {"  source: sklearn:iris\n": f"  source: sql:warehouse\n  query: {query}\n"}
    return model_copy(REPO_ROOT / "models" / "iris", tmp_path / "iris", name="iris", edits=edits)


def context(start: datetime, end: datetime, **params) -> dict:
    return {"data_interval_start": start, "data_interval_end": end, "params": params,
            "dag_run": SimpleNamespace(run_type="asset_triggered")}  # fmt: skip


def test_a_sql_source_is_fetched_for_the_runs_data_window(tmp_path, warehouse) -> None:
    spec = load_model_dir(sql_iris(tmp_path))
    op = MlflowTrainOperator(task_id="train_and_register", model_dir=str(tmp_path / "iris"))
    fetched = op.fetch_data(spec, context(T0 - timedelta(minutes=60), T0), tmp_path)
    assert fetched.rows == 60 and fetched.window.startswith((T0 - timedelta(minutes=60)).isoformat())
    assert len(pd.read_parquet(fetched.path)) == 60
    # a window given by hand (the Params form) wins over the data interval
    by_hand = op.fetch_data(spec, context(T0, T0, window_start=(T0 - timedelta(minutes=90)).isoformat(),
                                          window_end=T0.isoformat()), tmp_path)  # fmt: skip
    assert by_hand.rows == 90


def test_an_empty_window_or_a_missing_connection_fails_without_training(
    tmp_path, warehouse, monkeypatch
) -> None:
    spec = load_model_dir(sql_iris(tmp_path))
    op = MlflowTrainOperator(task_id="train_and_register", model_dir=str(tmp_path / "iris"))
    with pytest.raises(AirflowFailException, match=r"0 training row\(s\), fewer than data.min_rows \(20\)"):
        op.fetch_data(spec, context(T0 + timedelta(days=1), T0 + timedelta(days=2)), tmp_path)
    monkeypatch.delenv("AIRFLOW_CONN_WAREHOUSE")
    with pytest.raises(AirflowFailException, match="Connection 'warehouse' is not defined"):
        op.fetch_data(spec, context(T0 - timedelta(hours=1), T0), tmp_path)


def test_a_failing_query_names_the_fix(tmp_path, warehouse) -> None:
    spec = load_model_dir(sql_iris(tmp_path, "SELECT * FROM trainng"))
    op = MlflowTrainOperator(task_id="train_and_register", model_dir=str(tmp_path / "iris"))
    with pytest.raises(
        AirflowFailException, match=r"the query failed: .*no such table: trainng.*check data.query"
    ):
        op.fetch_data(spec, context(T0 - timedelta(hours=1), T0), tmp_path)


def test_an_object_storage_source_reads_through_object_storage_path(tmp_path) -> None:
    iris_rows(40, T0).drop(columns=["ts"]).to_parquet(tmp_path / "train.parquet")
    edits = {"  source: sklearn:iris\n": f"  source: file://{tmp_path}/train.parquet\n"}
    spec = load_model_dir(
        model_copy(REPO_ROOT / "models" / "iris", tmp_path / "iris", name="iris", edits=edits)
    )
    op = MlflowTrainOperator(task_id="train_and_register", model_dir=str(tmp_path / "iris"))
    assert op.fetch_data(spec, context(T0, T0), tmp_path / "iris").rows == 40
    gone = spec.model_copy(
        update={"data": spec.data.model_copy(update={"source": f"file://{tmp_path}/x.parquet"})}
    )
    with pytest.raises(AirflowFailException, match="the object does not exist"):
        op.fetch_data(gone, context(T0, T0), tmp_path)


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda f: f.drop(columns=["species"]), "columns species are missing"),
        (lambda f: f.assign(petal_width_cm=None), "petal_width_cm is missing in 100% of the rows"),
        (lambda f: f.assign(species=0), "has a single class"),
        (lambda f: f.assign(species=[None] + [1] * (len(f) - 1)), "missing in 1 row"),
    ],
)
def test_data_checks_refuse_unfit_data(mutate, problem) -> None:
    spec = load_model_dir(REPO_ROOT / "models" / "iris")
    frame = iris_rows(50, T0).drop(columns=["ts"])
    remote.check(spec, frame, "here")  # fit data passes
    with pytest.raises(remote.DataCheckFailed, match=problem):
        remote.check(spec, mutate(frame), "here")


def test_connection_urls() -> None:
    conn = SimpleNamespace(extra_dejson={}, conn_type="postgres", get_uri=lambda: "postgres://u:p@db:5432/w")
    assert sqlalchemy_url(conn) == "postgresql+psycopg://u:p@db:5432/w"
    assert sqlalchemy_url(SimpleNamespace(extra_dejson={"sqlalchemy_url": "duckdb:///x"})) == "duckdb:///x"


def test_label_balance_against_the_reference() -> None:
    spec = load_model_dir(REPO_ROOT / "models" / "iris")
    frame = pd.DataFrame({"species": [0, 1, 2] * 20})
    reference = pd.Series([0, 1, 2] * 10, name="label")
    remote.check_balance(spec, frame, reference, "the reference of v3", "here")  # same shares pass
    gone = pd.DataFrame({"species": [0, 1] * 30})  # class 2 vanished from the window
    with pytest.raises(
        remote.DataCheckFailed, match=r"class '2' of species is 0% of the rows, 33% in the refe"
    ):
        remote.check_balance(spec, gone, reference, "the reference of v3", "here")
    off = spec.model_copy(update={"data": spec.data.model_copy(update={"max_label_shift": 1.0})})
    remote.check_balance(off, gone, reference, "the reference of v3", "here")  # 1: the check is off
    loose = spec.model_copy(update={"data": spec.data.model_copy(update={"max_label_shift": 0.34})})
    remote.check_balance(loose, gone, reference, "the reference of v3", "here")  # 33% shift <= 34%


def test_the_retrain_refuses_a_window_whose_labels_moved_from_the_champions_reference(
    tmp_path, warehouse, monkeypatch
) -> None:
    """The champion's reference (cached as the monitor caches it) says class 0 is 90% of the labels;
    the window's iris rows are about a third each: refused before training, naming the champion."""
    from pushbutton.config import settings
    from pushbutton.monitoring.reference import FORMAT, LABEL, Reference

    monkeypatch.setenv("PUSHBUTTON_HOME", str(tmp_path / "home"))
    settings.cache_clear()
    frame = pd.DataFrame({"sepal_length_cm": [1.0] * 10, LABEL: [0] * 9 + [1]})
    Reference(frame, frame, {"format": FORMAT}).save(
        tmp_path / "home" / "monitoring" / "reference" / "iris" / "v3"
    )
    spec = load_model_dir(sql_iris(tmp_path))
    op = MlflowTrainOperator(task_id="train_and_register", model_dir=str(tmp_path / "iris"))
    champion = SimpleNamespace(by_alias=lambda name, alias: SimpleNamespace(version="3"))
    try:
        with pytest.raises(
            AirflowFailException, match=r"in the reference of v3 \(champion\).*max_label_shift"
        ):
            op.fetch_data(spec, context(T0 - timedelta(hours=2), T0), tmp_path, champion)
        first_release = SimpleNamespace(by_alias=lambda name, alias: None)  # no champion: nothing to compare
        assert op.fetch_data(spec, context(T0 - timedelta(hours=2), T0), tmp_path, first_release).rows == 120
    finally:
        settings.cache_clear()
