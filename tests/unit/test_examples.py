"""Every shipped model (``models/*`` and each template, freshly initialised) validates, trains, meets
its own gate on the holdout, matches its golden file and passes its own tests.

Training runs in-process and saves with ``mlflow.sklearn`` like pushbutton does; the first test to
train pays for importing scikit-learn and MLflow (several seconds), the rest are fast.
"""

from __future__ import annotations

import csv
import shutil
import sys
from collections.abc import Callable

import numpy as np
import pytest

from pushbutton.config import REPO_ROOT
from pushbutton.errors import SpecError
from pushbutton.spec import discover, load_spec
from pushbutton.templates import LocalModel, init_model, list_templates, train_local

MODELS = REPO_ROOT / "models"
VALID = [found for found in discover(MODELS) if found.spec]  # the others fail the first test
EXAMPLES = [found.model_dir.relative_to(REPO_ROOT).as_posix() for found in VALID]
TEMPLATES = [f"template/{name}" for name in list_templates()]
GOLDEN = [key for key, found in zip(EXAMPLES, VALID, strict=True) if found.spec.gate.golden]


def _metric(name: str, local: LocalModel, predicted: np.ndarray) -> float:
    from sklearn import metrics

    y = local.split.y_holdout
    return {
        "accuracy": lambda: metrics.accuracy_score(y, predicted),
        "f1_macro": lambda: metrics.f1_score(y, predicted, average="macro"),
        "precision_macro": lambda: metrics.precision_score(y, predicted, average="macro"),
        "recall_macro": lambda: metrics.recall_score(y, predicted, average="macro"),
        "rmse": lambda: metrics.root_mean_squared_error(y, predicted),
        "mae": lambda: metrics.mean_absolute_error(y, predicted),
        "r2": lambda: metrics.r2_score(y, predicted),
    }[name]()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], LocalModel]:
    """``models/<dir>`` or ``template/<name>`` -> that model, trained once per module."""
    cache: dict[str, LocalModel] = {}

    def get(key: str) -> LocalModel:
        if key not in cache:
            kind, _, name = key.partition("/")
            work = tmp_path_factory.mktemp(name.replace("/", "-"))
            model_dir = init_model(f"{name}-check", name, work) if kind == "template" else REPO_ROOT / key
            cache[key] = train_local(model_dir, work)
        return cache[key]

    return get


def test_every_model_directory_validates() -> None:
    results = discover(MODELS)
    assert [str(found.error) for found in results if found.error] == []
    assert {"iris", "diabetes"} <= {found.spec.name for found in results if found.spec}


@pytest.mark.parametrize("key", EXAMPLES + TEMPLATES)
def test_meets_its_own_gate_on_the_holdout(key: str, trained: Callable[[str], LocalModel]) -> None:
    local = trained(key)
    x = local.split.x_holdout
    predicted = np.asarray(local.predictor().predict(x.to_numpy(), list(x.columns)))
    assert predicted.shape == (len(x),)
    assert local.spec.gate.metrics, f"{key} declares no gate metrics"
    failures = []
    for name, bound in local.spec.gate.metrics.items():
        value = _metric(name, local, predicted)
        if (bound.min is not None and value < bound.min) or (bound.max is not None and value > bound.max):
            failures.append(f"{name} = {value:.4f} outside min {bound.min} / max {bound.max}")
    assert failures == []


@pytest.mark.parametrize("key", GOLDEN)
def test_golden_file_matches_predictions(key: str, trained: Callable[[str], LocalModel]) -> None:
    local = trained(key)
    spec = local.spec
    with (local.model_dir / str(spec.gate.golden)).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == [*spec.feature_names, "expected"]
    assert rows, f"{spec.gate.golden} has no rows"
    inputs = np.array([[float(row[f]) for f in spec.feature_names] for row in rows])
    predicted = local.predictor().predict(inputs, spec.feature_names)
    for row, got in zip(rows, predicted, strict=True):
        if spec.task == "classification":
            assert str(got) == row["expected"], row
        else:
            assert abs(float(got) - float(row["expected"])) <= spec.gate.golden_tolerance, row


@pytest.mark.parametrize("key", EXAMPLES + TEMPLATES)
def test_passes_its_own_tests(
    key: str, trained: Callable[[str], LocalModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model's tests/ as the build stage runs them: model directory importable, MODEL_URI set."""
    local = trained(key)
    assert local.spec.tests, f"{key} declares no tests"
    model_dir = str(local.model_dir.resolve())
    monkeypatch.setenv("MODEL_URI", local.model_uri)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # a nested session needs no plugins
    monkeypatch.syspath_prepend(model_dir)
    before = set(sys.modules)
    try:
        code = pytest.main(
            [
                str(local.model_dir / local.spec.tests),
                "-q",
                "-p",
                "no:cacheprovider",
                "--import-mode=importlib",  # every model has a tests/test_model.py
                f"--rootdir={model_dir}",
                "-o",
                "addopts=",
            ]
        )
    finally:
        for name in set(sys.modules) - before:  # each model has its own `predict` module
            if str(getattr(sys.modules[name], "__file__", "") or "").startswith(model_dir):
                del sys.modules[name]
    assert code == pytest.ExitCode.OK


def test_a_column_the_data_source_lacks_is_named_on_its_line(tmp_path) -> None:
    from pushbutton.data import load_frame

    model_dir = tmp_path / "typo"
    shutil.copytree(REPO_ROOT / "models" / "iris", model_dir)
    spec_file = model_dir / "model.yaml"
    spec_file.write_text(spec_file.read_text().replace("{name: petal_width_cm", "{name: petal_widht_cm"))
    with pytest.raises(SpecError) as caught:
        load_frame(load_spec(model_dir), model_dir)
    (issue,) = caught.value.issues
    assert (issue.field, issue.line) == ("schema.inputs.3.name", 27)
    assert "column 'petal_widht_cm' is not in data source 'sklearn:iris'" in issue.message
    assert issue.fix.startswith("did you mean 'petal_width_cm'?")
