"""The model's own training code or data failing: a clear error naming the spec, the entry point or
field, and the cause."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pushbutton.config import REPO_ROOT
from pushbutton.errors import ModelCodeError, SpecError
from pushbutton.spec import load_model_dir
from pushbutton.training import fit

HEADER = "sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm,species\n"


def iris_with_train(tmp_path: Path, code: str) -> Path:
    model_dir = tmp_path / "iris"
    shutil.copytree(REPO_ROOT / "models" / "iris", model_dir, ignore=shutil.ignore_patterns("__pycache__"))
    (model_dir / "train.py").write_text(code)
    return model_dir


def test_a_raising_train_names_spec_entry_point_and_cause(tmp_path: Path) -> None:
    model_dir = iris_with_train(
        tmp_path, "def train(X, y, params):\n    raise ValueError(f\"C must be > 0, got {params['C']}\")\n"
    )
    with pytest.raises(ModelCodeError) as failure:
        fit(load_model_dir(model_dir), model_dir)
    message = str(failure.value)
    assert str(model_dir / "model.yaml") in message and "train.entry_point 'train:train'" in message
    assert "raised ValueError: C must be > 0, got 1.0" in message and "fix the train function" in message
    assert isinstance(failure.value.__cause__, ValueError)


def test_a_train_returning_no_estimator_says_what_to_return(tmp_path: Path) -> None:
    model_dir = iris_with_train(tmp_path, "def train(X, y, params):\n    return {'weights': [1, 2]}\n")
    with pytest.raises(
        ModelCodeError, match=r"returned dict; return the fitted estimator \(an object with predict"
    ):
        fit(load_model_dir(model_dir), model_dir)


def test_a_train_returning_an_unfitted_estimator_says_train_must_fit(tmp_path: Path) -> None:
    model_dir = iris_with_train(
        tmp_path,
        "from sklearn.linear_model import LogisticRegression\n\n"
        "def train(X, y, params):\n    return LogisticRegression()\n",
    )
    with pytest.raises(
        ModelCodeError, match=r"returned an unfitted LogisticRegression; train must return a fitted"
    ):
        fit(load_model_dir(model_dir), model_dir)


def test_sys_exit_in_train_is_a_model_code_error_not_an_exit(tmp_path: Path) -> None:
    model_dir = iris_with_train(tmp_path, "import sys\n\ndef train(X, y, params):\n    sys.exit(3)\n")
    with pytest.raises(
        ModelCodeError, match=r"train:train' called sys.exit\(3\); raise an exception instead"
    ):
        fit(load_model_dir(model_dir), model_dir)


def iris_with_csv(tmp_path: Path, csv: str) -> Path:
    model_dir = iris_with_train(tmp_path, (REPO_ROOT / "models" / "iris" / "train.py").read_text())
    spec = model_dir / "model.yaml"
    spec.write_text(spec.read_text().replace("source: sklearn:iris", "source: csv:data.csv"))
    (model_dir / "data.csv").write_text(csv)
    return model_dir


@pytest.mark.parametrize(
    ("csv", "problem"),
    [
        ("", "data file 'data.csv' is empty (no header, no rows)"),
        (HEADER, "data file 'data.csv' has no rows (only a header)"),
        (HEADER + "5.1,3.5,1.4,0.2,0\n", "cannot cut a 0.3 holdout from 'csv:data.csv' (1 rows)"),
    ],
    ids=["empty", "header-only", "one-row"],
)
def test_data_without_enough_rows_names_the_field_and_fix(tmp_path: Path, csv: str, problem: str) -> None:
    model_dir = iris_with_csv(tmp_path, csv)
    with pytest.raises(SpecError) as failure:
        fit(load_model_dir(model_dir), model_dir)
    (issue,) = failure.value.issues
    assert (issue.file, issue.field, issue.line) == (str(model_dir / "model.yaml"), "data.source", 17)
    assert problem in issue.message and "add rows" in issue.fix


def test_registration_keeps_mlflows_misleading_already_exists_line_quiet(monkeypatch, capsys) -> None:
    import mlflow
    from mlflow.utils.logging_utils import eprint

    from pushbutton.training import _register

    def register_model(uri: str, name: str, tags: dict) -> str:
        eprint(f"Registered model {name!r} already exists. Creating a new version of this model...")
        eprint(f"Created version '1' of model '{name}'.")
        eprint("a warning worth reading")
        return f"{name}@{uri}"

    monkeypatch.setattr(mlflow, "register_model", register_model)
    assert _register("models:/m-1", "churn", {}) == "churn@models:/m-1"
    assert capsys.readouterr() == ("", "a warning worth reading\n")


def test_whole_numbers_in_a_csv_are_typed_as_the_schema_says(tmp_path: Path) -> None:
    """A CSV of whole numbers for ``double`` inputs: the model sees (and MLflow logs) doubles."""
    from pushbutton.data import split
    from pushbutton.gate import signature_check

    rows = "".join(f"{5 + i % 3},{3 + i % 2},{1 + i % 4},{i % 2},{i % 3}\n" for i in range(30))
    model_dir = iris_with_csv(tmp_path, HEADER + rows)
    spec = load_model_dir(model_dir)
    data = split(spec, model_dir)
    assert {str(t) for t in data.x_train.dtypes} == {"float64"}
    logged = [{"name": n, "type": "double"} for n in data.x_train.columns]  # what infer_signature logs
    assert signature_check(spec, logged).passed


@pytest.mark.parametrize(
    ("value", "problem"),
    [("wide", "holds values that are not numbers"), ("", "has missing values")],
    ids=["text", "missing-integer"],
)
def test_an_input_column_that_cannot_take_its_type_names_the_type_field(
    tmp_path: Path, value: str, problem: str
) -> None:
    rows = "".join(f"{5 + i % 3},{value if i == 7 else 3},1.4,0.2,{i % 3}\n" for i in range(30))
    model_dir = iris_with_csv(tmp_path, HEADER + rows)
    spec_file = model_dir / "model.yaml"
    if value == "":  # an integer input with a gap
        text = spec_file.read_text()
        assert "{name: sepal_width_cm, type: double}" in text
        spec_file.write_text(
            text.replace("{name: sepal_width_cm, type: double}", "{name: sepal_width_cm, type: long}")
        )
    with pytest.raises(SpecError) as failure:
        fit(load_model_dir(model_dir), model_dir)
    (issue,) = failure.value.issues
    assert (issue.file, issue.field) == (str(spec_file), "schema.inputs.1.type")
    assert issue.line is not None and "column 'sepal_width_cm'" in issue.message and problem in issue.message
    assert "declare the input's type" in issue.fix
