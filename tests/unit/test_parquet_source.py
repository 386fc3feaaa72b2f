"""``data.source: parquet:<path>``: a model trained from a Parquet file inside its directory. The file
holds the iris example's own data (as ``sklearn:iris`` loads it), so every figure must match."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from pushbutton.cli import main as cli
from pushbutton.config import REPO_ROOT
from pushbutton.data import load_frame, split
from pushbutton.errors import SpecError
from pushbutton.spec import load_model_dir

IRIS = REPO_ROOT / "models" / "iris"
SOURCE = "parquet:data/iris.parquet"


@pytest.fixture
def iris_frame() -> pd.DataFrame:
    return load_frame(load_model_dir(IRIS), IRIS)


@pytest.fixture
def parquet_model(tmp_path: Path, iris_frame: pd.DataFrame) -> Path:
    model = tmp_path / "iris"
    shutil.copytree(IRIS, model, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    (model / "data").mkdir()
    iris_frame.to_parquet(model / "data" / "iris.parquet", index=False)
    spec = model / "model.yaml"
    text = spec.read_text()
    assert "source: sklearn:iris" in text
    spec.write_text(text.replace("source: sklearn:iris", f"source: {SOURCE}"))
    return model


def test_a_parquet_source_is_split_exactly_as_the_data_it_holds(parquet_model: Path) -> None:
    spec = load_model_dir(parquet_model)
    assert spec.data.source == SOURCE
    from_parquet, from_sklearn = split(spec, parquet_model), split(load_model_dir(IRIS), IRIS)
    assert from_parquet.fingerprint == from_sklearn.fingerprint  # same rows, same types
    pd.testing.assert_frame_equal(from_parquet.x_holdout, from_sklearn.x_holdout)
    pd.testing.assert_series_equal(from_parquet.y_train, from_sklearn.y_train)
    assert len(from_parquet.x_holdout) == round(150 * spec.data.holdout_fraction)


def test_a_model_trains_from_it(parquet_model: Path, tmp_path: Path) -> None:
    from pushbutton.templates import train_local

    trained = train_local(parquet_model, tmp_path / "out")
    assert (Path(trained.model_uri) / "MLmodel").is_file()


def test_validate_accepts_it_and_names_a_missing_file(parquet_model: Path, capsys) -> None:
    assert cli(["validate", str(parquet_model)]) == 0
    (parquet_model / "data" / "iris.parquet").unlink()
    assert cli(["validate", str(parquet_model)]) == 1
    out, err = capsys.readouterr()
    assert "model.yaml:" in out + err and "data.source" in out + err and "data/iris.parquet" in out + err


def test_a_parquet_file_without_a_declared_column_names_the_input(
    parquet_model: Path, iris_frame: pd.DataFrame
) -> None:
    iris_frame.drop(columns=["petal_width_cm"]).to_parquet(
        parquet_model / "data" / "iris.parquet", index=False
    )
    with pytest.raises(SpecError) as failure:
        split(load_model_dir(parquet_model), parquet_model)
    [issue] = failure.value.issues
    assert issue.field == "schema.inputs.3.name" and issue.file.endswith("model.yaml") and issue.line
    assert f"column 'petal_width_cm' is not in data source '{SOURCE}'" in issue.message
