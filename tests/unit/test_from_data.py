"""``pushbutton init NAME --from-data PATH|sklearn:NAME``: a complete model directory from a data set
(a short model.yaml, a train.py, no predict class) that validates, trains through pushbutton's
training path and is served by the built-in predict class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pushbutton.cli import main
from pushbutton.config import REPO_ROOT
from pushbutton.data import SKLEARN_DATASETS, sklearn_datasets_markdown, snake_case
from pushbutton.errors import NotFound, PushbuttonError
from pushbutton.from_data import _scalar, init_from_data
from pushbutton.spec import load_model_dir
from pushbutton.templates import train_local

MAX_YAML_LINES = 25  # issue 13: a new tabular model in at most 25 lines of YAML plus the train function


def _init(capsys, tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["init", *argv, "--dir", str(tmp_path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_breast_cancer_in_at_most_25_lines_validates_trains_and_serves(capsys, tmp_path: Path) -> None:
    code, out, _ = _init(capsys, tmp_path, "cancer", "--from-data", "sklearn:breast_cancer")
    assert code == 0, out
    model_dir = tmp_path / "cancer"
    assert sorted(p.name for p in model_dir.iterdir()) == ["model.yaml", "requirements.txt", "train.py"]
    text = (model_dir / "model.yaml").read_text()
    assert len(text.splitlines()) <= MAX_YAML_LINES, text
    assert "predict" not in yaml.safe_load(text)  # the built-in class serves it

    assert main(["validate", str(model_dir)]) == 0
    spec = load_model_dir(model_dir)
    assert spec.feature_names == list(SKLEARN_DATASETS["breast_cancer"].columns)
    assert {f.type for f in spec.schema_.inputs} == {"double"}
    assert (spec.task, spec.data.target, spec.predict.builtin) == ("classification", "diagnosis", True)
    bound = spec.gate.metrics["accuracy"].min
    assert 0.63 <= bound < 0.7  # just above what always answering "benign" (357 of 569) scores

    local = train_local(model_dir, tmp_path / "trained")  # pushbutton's own path, no MLflow server
    served = local.predictor()
    assert type(served).__name__ == "SklearnModel"
    x = local.split.x_holdout
    labels = served.predict(x.to_numpy(), list(x.columns))
    assert (labels == local.split.y_holdout.to_numpy()).mean() >= bound
    tags = served.tags()
    assert tags["classes"] == [0, 1] and len(tags["probabilities"]) == len(x)


@pytest.fixture
def customers(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    rows = 80
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows),
            "income": rng.normal(50_000, 9_000, rows).round(2),
            "plan": rng.choice(["basic", "plus", "pro"], rows),
            "has app": rng.choice([True, False], rows),
            "score": rng.normal(size=rows),
        }
    )
    frame.loc[[3, 17], "income"] = np.nan
    frame.loc[[5], "plan"] = None
    frame["churned"] = np.where(frame.score + (frame.plan == "basic") > 0.5, "yes", "no")
    path = tmp_path / "source" / "customers.csv"
    path.parent.mkdir()
    frame.to_csv(path, index=False)
    return path


def test_a_csv_file_gives_typed_nullable_inputs_and_a_copy_of_the_data(capsys, tmp_path, customers) -> None:
    models = tmp_path / "models"
    code, out, _ = _init(capsys, models, "churn", "--from-data", str(customers), "--target", "churned")
    assert code == 0, out
    assert "task classification (the target holds 2 labels" in out
    model_dir = models / "churn"
    spec = load_model_dir(model_dir)
    assert spec.data.source == "csv:data/customers.csv"
    assert (model_dir / "data" / "customers.csv").read_bytes() == customers.read_bytes()
    declared = {f.name: (f.type, f.nullable) for f in spec.schema_.inputs}
    assert declared == {
        "age": ("long", False),
        "income": ("double", True),
        "plan": ("string", True),
        "has app": ("boolean", False),
        "score": ("double", False),
    }
    local = train_local(model_dir, tmp_path / "trained")
    x = local.split.x_holdout
    labels = local.predictor().predict(x.to_numpy(), list(x.columns))  # object rows, as check_model sends
    assert set(labels) <= {"yes", "no"} and len(labels) == len(x)


def test_a_numeric_target_with_many_values_is_a_regression_unless_told(capsys, tmp_path, customers) -> None:
    code, _, err = _init(capsys, tmp_path, "income", "--from-data", str(customers), "--target", "income")
    assert code == 1 and "target column 'income'" in err and "has 2 missing values" in err
    code, out, _ = _init(capsys, tmp_path, "age", "--from-data", str(customers), "--target", "age")
    assert code == 0
    assert load_model_dir(tmp_path / "age").task == "regression"
    assert "gate r2 >= 0" in out
    code, out, _ = _init(
        capsys, tmp_path, "age2", "--from-data", str(customers), "--target", "age", "--task", "classification"
    )
    assert code == 0 and load_model_dir(tmp_path / "age2").task == "classification"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from-data", "{csv}"], "say which column the model predicts with --target COLUMN"),
        (["--from-data", "{csv}", "--target", "churn"], "did you mean 'churned'?"),
        (
            ["--from-data", "sklearn:iris", "--target", "petal_length_cm"],
            "is a feature column of sklearn:iris",
        ),
        (["--from-data", "sklearn:irs"], "unknown scikit-learn data set 'irs'"),
        (["--from-data", "{csv}", "--target", "has app", "--task", "regression"], "needs a numeric target"),
        (["--from-data", "nothing.csv", "--target", "x"], "nothing.csv does not exist"),
        (["--from-data", "{csv}", "--template", "sklearn-regressor"], "--template or --from-data, not both"),
        (["--target", "churned"], "--target and --task go with --from-data"),
    ],
)
def test_bad_requests_say_what_to_do_and_leave_nothing(capsys, tmp_path, customers, argv, message) -> None:
    parent = tmp_path / "models"
    parent.mkdir()
    code, _, err = _init(capsys, parent, "churn", *[a.replace("{csv}", str(customers)) for a in argv])
    assert code in (1, 2)
    assert message in err
    assert list(parent.iterdir()) == []


def test_odd_column_names_are_quoted_so_yaml_reads_them_back() -> None:
    for name in ["my col", "yes", "No", "a:b", "[x]", "#tag", "null", "1st", "x, y", "naïve", "plain_name"]:
        assert yaml.safe_load(f"k: [{_scalar(name, flow=True)}]") == {"k": [name]}, name
    assert _scalar("plain_name", flow=True) == "plain_name"


def test_an_existing_model_name_is_refused_before_reading_any_data(tmp_path) -> None:
    (tmp_path / "cancer").mkdir()
    with pytest.raises(PushbuttonError, match="already exists"):
        init_from_data("cancer", "sklearn:breast_cancer", tmp_path)
    with pytest.raises(NotFound):
        init_from_data("other", "missing.parquet", tmp_path, target="y")


def test_the_table_of_sklearn_data_sets_is_scikit_learns() -> None:
    """validate never imports scikit-learn: the column names live in a table that must stay true."""
    import sklearn.datasets

    for name, dataset in SKLEARN_DATASETS.items():
        bunch = getattr(sklearn.datasets, dataset.loader)(as_frame=True)
        assert tuple(snake_case(c) for c in bunch.feature_names) == dataset.columns, name
        assert (dataset.task == "classification") == hasattr(bunch, "target_names"), name
        if dataset.task == "classification":
            assert tuple(str(label) for label in bunch.target_names) == dataset.labels, name


def test_the_readme_lists_the_sklearn_data_sets_as_the_code_has_them() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert sklearn_datasets_markdown() in readme, (
        "README.md's table of sklearn: data sources differs from pushbutton.data.SKLEARN_DATASETS; paste "
        "the output of: python -c 'from pushbutton.data import *; print(sklearn_datasets_markdown())'"
    )
