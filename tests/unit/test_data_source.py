"""``validate`` (and so ``push`` and the DAG factory) checks ``schema.inputs`` and ``data.target``
against the data source, reading only what is cheap: the ``sklearn:`` column table, a CSV file's
first rows, a parquet file's footer."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pushbutton.config import REPO_ROOT
from pushbutton.data.checks import SAMPLE_ROWS
from pushbutton.data.parquet import ParquetColumn, _with_pyarrow, read_columns
from pushbutton.errors import SpecError, SpecIssue
from pushbutton.spec import load_model_dir

SPEC = """\
apiVersion: pushbutton/v1
name: shop
owner: ml@example.com
flavor: sklearn
task: {task}
train:
  entry_point: train:train
data:
  source: {source}
  target: {target}
schema:
  inputs:
{inputs}
"""


def _model(
    tmp_path: Path, inputs: list[str], *, source: str, target: str, task: str = "classification"
) -> Path:
    model_dir = tmp_path / "shop"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "train.py").write_text("def train(X, y, params):\n    return None\n")
    lines = "\n".join(f"    - {item}" for item in inputs)
    (model_dir / "model.yaml").write_text(SPEC.format(task=task, source=source, target=target, inputs=lines))
    return model_dir


def _issues(model_dir: Path) -> list[SpecIssue]:
    with pytest.raises(SpecError) as caught:
        load_model_dir(model_dir)
    return caught.value.issues


@pytest.fixture
def shop() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "price": [9.5, 12.0, 3.25, 8.0],
            "weight": [1.5, 2.0, 0.5, 3.0],
            "items": [1, 3, 2, 5],
            "city": ["Oslo", "Rome", "Oslo", "Lima"],
            "member": [True, False, True, True],
            "rating": [4.0, None, 3.0, 5.0],
            "bought": ["yes", "no", "yes", "no"],
        }
    )


def test_a_misspelled_input_fails_validate_on_its_line(tmp_path: Path) -> None:
    """Before: validate said ok, and only training (push) named the column."""
    model_dir = tmp_path / "iris"
    shutil.copytree(REPO_ROOT / "models" / "iris", model_dir, ignore=shutil.ignore_patterns("__pycache__"))
    spec_file = model_dir / "model.yaml"
    spec_file.write_text(spec_file.read_text().replace("{name: petal_width_cm", "{name: petal_widht_cm"))
    (issue,) = [i for i in _issues(model_dir) if i.field != "gate.golden"]  # golden.csv names the old column
    assert (issue.field, issue.line) == ("schema.inputs.3.name", 27)
    assert issue.message.startswith("column 'petal_widht_cm' is not in data source 'sklearn:iris'")
    assert issue.fix.startswith("did you mean 'petal_width_cm'?")


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_good_file_validates_and_a_misspelled_target_does_not(tmp_path, shop, kind) -> None:
    data = tmp_path / "shop" / f"shop.{kind}"
    data.parent.mkdir()
    shop.to_csv(data, index=False) if kind == "csv" else shop.to_parquet(data)
    inputs = ["price", "{name: items, type: long}", "{name: city, type: string}", "{name: member, type: boolean}",
              "{name: rating, nullable: true}"]  # fmt: skip
    model_dir = _model(tmp_path, inputs, source=f"{kind}:shop.{kind}", target="bought")
    assert load_model_dir(model_dir).name == "shop"
    _model(tmp_path, inputs, source=f"{kind}:shop.{kind}", target="bougth")
    (issue,) = _issues(model_dir)
    assert (issue.field, issue.line) == ("data.target", 10)
    assert "did you mean 'bought'?" in issue.fix


@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize(
    ("item", "message", "fix"),
    [
        (
            "{name: city}",
            "holds values that are not numbers",
            "`{name: city, type: string}`",
        ),
        ("{name: price, type: long}", "has fractional values", "`type: double`"),
        ("{name: rating}", "has missing values", "add `nullable: true`"),
        (
            "{name: items, type: string}",
            "holds numbers, so the model would be logged with a long input",
            "type: long",
        ),
        ("{name: member, type: double}", None, None),  # true/false trains as numbers: no contradiction
    ],
)
def test_a_type_the_data_contradicts_is_an_error_on_its_line(
    tmp_path, shop, kind, item, message, fix
) -> None:
    data = tmp_path / "shop" / f"shop.{kind}"
    data.parent.mkdir()
    shop.to_csv(data, index=False) if kind == "csv" else shop.to_parquet(data)
    model_dir = _model(tmp_path, ["weight", item], source=f"{kind}:shop.{kind}", target="bought")
    if message is None:
        assert load_model_dir(model_dir)
        return
    (issue,) = _issues(model_dir)
    assert (issue.field, issue.line) == ("schema.inputs.1.type", 14)
    assert message in issue.message and fix in issue.fix
    assert f"{kind}:shop.{kind}" in issue.message  # says what it read


def test_a_bare_name_input_is_a_double_and_its_problems_get_its_line(tmp_path, shop) -> None:
    (tmp_path / "shop").mkdir()
    shop.to_csv(tmp_path / "shop" / "shop.csv", index=False)
    model_dir = _model(tmp_path, ["price"], source="csv:shop.csv", target="bought")
    text = (model_dir / "model.yaml").read_text().replace("    - price\n", "    [price, city]\n")
    (model_dir / "model.yaml").write_text(text)
    (issue,) = _issues(model_dir)
    assert (issue.field, issue.line) == ("schema.inputs.1.type", 13)  # the line of the list: [price, city]
    assert issue.message.startswith(
        "column 'city' of 'csv:shop.csv' holds values that are not numbers ('Oslo'"
    )


@pytest.mark.parametrize(
    ("target", "task", "field", "message"),
    [
        ("bought", "regression", "task", "task regression needs a numeric target"),
        ("price", "classification", "task", "holds fractional numbers (9.5 on line 2)"),
        ("rating", "regression", "data.target", "has missing values (line 3)"),
    ],
)
def test_the_target_must_suit_the_task(tmp_path, shop, target, task, field, message) -> None:
    (tmp_path / "shop").mkdir()
    shop.to_csv(tmp_path / "shop" / "shop.csv", index=False)
    model_dir = _model(
        tmp_path, ["{name: items, type: long}"], source="csv:shop.csv", target=target, task=task
    )
    (issue,) = _issues(model_dir)
    assert issue.field == field and message in issue.message


def test_a_sklearn_target_may_not_take_a_feature_columns_name(tmp_path) -> None:
    model_dir = _model(tmp_path, ["sepal_width_cm"], source="sklearn:iris", target="sepal_length_cm")
    (issue,) = _issues(model_dir)
    assert issue.field == "data.target" and "is a feature column of sklearn:iris" in issue.message
    assert "e.g. 'species'" in issue.fix


def test_only_the_first_rows_of_a_csv_are_read_training_checks_the_rest(tmp_path) -> None:
    """The cost of validate does not grow with the file; a bad value further down stops training."""
    from pushbutton.data import load_frame
    from pushbutton.spec import load_spec

    (tmp_path / "shop").mkdir()
    values = [str(v) for v in range(SAMPLE_ROWS + 10)]
    values[SAMPLE_ROWS + 5] = "lots"
    frame = pd.DataFrame({"count": values, "label": ["a", "b"] * ((SAMPLE_ROWS + 10) // 2)})
    frame.to_csv(tmp_path / "shop" / "shop.csv", index=False)
    model_dir = _model(tmp_path, ["{name: count, type: long}"], source="csv:shop.csv", target="label")
    assert load_model_dir(model_dir)
    with pytest.raises(
        SpecError, match=r"column 'count' of 'csv:shop\.csv' holds values that are not numbers"
    ):
        load_frame(load_spec(model_dir), model_dir)


def test_a_file_that_is_not_parquet_is_named(tmp_path) -> None:
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "shop.parquet").write_text("price,label\n1,a\n")
    (issue,) = _issues(_model(tmp_path, ["price"], source="parquet:shop.parquet", target="label"))
    assert (issue.field, issue.line) == ("data.source", 9)
    assert "not a parquet file" in issue.message


def test_the_footer_reader_agrees_with_pyarrow(tmp_path) -> None:
    frame = pd.DataFrame(
        {
            "d": [1.5, np.nan, 3.0],
            "i": [1, 2, 3],
            "i32": np.array([1, 2, 3], dtype="int32"),
            "f32": np.array([1, 2, 3], dtype="float32"),
            "b": [True, False, True],
            "s": ["a", None, "c"],
            "cat": pd.Categorical(["x", "y", "x"]),
            "ts": pd.to_datetime(["2020-01-01"] * 3),
            "ni": pd.array([1, None, 3], dtype="Int64"),
            "nothing": [None] * 3,
            "lst": [[1], [2, 3], []],
            "nested": [{"a": 1}, {"a": 2}, {"a": 3}],
        },
        index=[7, 8, 9],
    )
    expected = [
        ParquetColumn("d", "double", 1, 1.5), ParquetColumn("i", "long", 0), ParquetColumn("i32", "long", 0),
        ParquetColumn("f32", "double", 0), ParquetColumn("b", "boolean", 0), ParquetColumn("s", "string", 1),
        ParquetColumn("cat", "string", 0), ParquetColumn("ts", None, None), ParquetColumn("ni", "long", 1),
        ParquetColumn("nothing", None, None), ParquetColumn("lst", None, None), ParquetColumn("nested", None, None),
    ]  # fmt: skip
    for options in ({}, {"row_group_size": 1, "compression": "gzip"}, {"index": True}):
        path = tmp_path / "t.parquet"
        frame.to_parquet(path, **options)
        assert read_columns(path) == _with_pyarrow(path) == (expected, 3), options


def test_validate_imports_neither_scikit_learn_nor_pyarrow(tmp_path, shop) -> None:
    """What keeps `pushbutton validate` (and every DAG parse) fast: seconds of imports avoided."""
    (tmp_path / "shop").mkdir()
    shop.to_parquet(tmp_path / "shop" / "shop.parquet")
    parquet = _model(tmp_path, ["price"], source="parquet:shop.parquet", target="bought")
    code = (
        "import sys\nfrom pushbutton.spec import load_model_dir\n"
        f"load_model_dir({str(REPO_ROOT / 'models' / 'iris')!r}); load_model_dir({str(parquet)!r})\n"
        "heavy = {'sklearn', 'pyarrow', 'pandas'} & set(sys.modules)\nassert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_csv_column_types_are_what_training_reads(tmp_path) -> None:
    """validate samples with the csv module; training reads with pandas: they must agree on types."""
    from pushbutton.data.checks import peek

    columns = {
        "whole": ["1", "-2", "007", "3"],
        "gappy_whole": ["1", "", "3", "4"],
        "fraction": ["1.5", "2", "1e3", ".5"],
        "infinite": ["inf", "2", "-Infinity", "1"],
        "flags": ["True", "false", "TRUE", "False"],
        "flags_and_numbers": ["True", "1", "0", "False"],
        "words": ["a", "b", "NA", "c"],
        "underscored": ["1_000", "2", "3", "4"],
        "empty": ["", "", "NA", "null"],
    }
    text = (
        ",".join(columns)
        + "\n"
        + "".join(",".join(row) + "\n" for row in zip(*columns.values(), strict=True))
    )
    (tmp_path / "t.csv").write_text(text)
    read = pd.read_csv(tmp_path / "t.csv")
    pandas_type = {"int64": "long", "float64": "double", "bool": "boolean", "object": "string"}
    found = {c.name: c for c in peek("csv:t.csv", tmp_path).columns}
    for name in columns:
        if name == "empty":  # no value to tell a type by: no claim (pandas says float64)
            assert found[name].type is None and found[name].missing
            continue
        assert found[name].type == pandas_type[str(read[name].dtype)], name
        assert bool(found[name].missing) == bool(read[name].isna().any()), name
