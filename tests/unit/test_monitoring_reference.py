"""The training reference: captured from a fitted estimator and its split, bounded, saved and read back
as the files logged under ``reference/``; a broken or foreign copy is refused, not half read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from pushbutton.config import REPO_ROOT
from pushbutton.data import split
from pushbutton.monitoring.reference import (
    FILES,
    STATS_FILE,
    Reference,
    ReferenceError,
    ReferenceStore,
    capture,
    capture_fitted,
    class_name,
)
from pushbutton.spec import load_model_dir

IRIS = REPO_ROOT / "models" / "iris"


@pytest.fixture(scope="module")
def fitted():
    spec = load_model_dir(IRIS)
    data = split(spec, IRIS)
    return spec, data, LogisticRegression(max_iter=500).fit(data.x_train, data.y_train)


def test_a_fitted_classifier_leaves_inputs_answers_probabilities_and_statistics(fitted) -> None:
    spec, data, estimator = fitted
    reference = capture_fitted(spec, data, estimator, version="3")
    assert list(reference.inputs.columns) == spec.feature_names and len(reference.inputs) == len(data.x_train)
    holdout = reference.predictions
    assert list(holdout.columns) == [
        *spec.feature_names,
        "label",
        "prediction",
        "proba_0",
        "proba_1",
        "proba_2",
    ]
    assert len(holdout) == len(data.x_holdout) == 45
    assert np.allclose(holdout[["proba_0", "proba_1", "proba_2"]].sum(axis=1), 1.0)
    assert (holdout["prediction"] == estimator.predict(data.x_holdout)).all()
    stats = reference.stats
    assert (stats["version"], stats["origin"], stats["task"], stats["has_probabilities"]) == ("3", "training",
                                                                                            "classification", True)  # fmt: skip
    petal = stats["feature_stats"]["petal_length_cm"]
    assert petal["mean"] == pytest.approx(data.x_train["petal_length_cm"].mean())
    assert petal["count"] == len(data.x_train) and petal["null_share"] == 0.0
    assert {s["class"] for s in stats["prediction_stats"]} <= {0, 1, 2}
    assert stats["rows"] == {"training": 105, "inputs": 105, "holdout": 45, "predictions": 45}


def test_samples_are_bounded_and_seeded(fitted) -> None:
    spec, data, _ = fitted
    first = capture(spec, data.x_train, data.x_holdout, data.y_holdout, max_rows=20)
    second = capture(spec, data.x_train, data.x_holdout, data.y_holdout, max_rows=20)
    assert len(first.inputs) == 20 == len(first.predictions)
    assert first.inputs.equals(second.inputs)  # the spec's seed: the same sample every time
    assert first.stats["rows"]["training"] == 105  # statistics of the whole training split
    assert "prediction" not in first.predictions and first.stats["has_predictions"] is False


def test_saved_files_read_back_the_same(fitted, tmp_path: Path) -> None:
    spec, data, estimator = fitted
    reference = capture_fitted(spec, data, estimator)
    reference.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
    again = Reference.load(tmp_path)
    assert again.inputs.equals(reference.inputs) and again.predictions.equals(reference.predictions)
    assert again.stats == json.loads(json.dumps(reference.stats))


def test_an_incomplete_or_foreign_reference_is_refused(fitted, tmp_path: Path) -> None:
    spec, data, estimator = fitted
    capture_fitted(spec, data, estimator).save(tmp_path)
    stats = json.loads((tmp_path / STATS_FILE).read_text())
    (tmp_path / STATS_FILE).write_text(json.dumps(stats | {"format": 99}))
    with pytest.raises(ReferenceError, match="has format 99, this pushbutton reads 1"):
        Reference.load(tmp_path)
    (tmp_path / "inputs.parquet").unlink()
    with pytest.raises(ReferenceError, match=r"lacks inputs\.parquet"):
        Reference.load(tmp_path)


def test_a_broken_cached_copy_is_computed_again(fitted, tmp_path: Path) -> None:
    spec, _, _ = fitted
    store = ReferenceStore(
        tmp_path, None, lambda model, version: (spec, IRIS, lambda frame: [0] * len(frame))
    )
    directory = store.directory("iris", "2")
    directory.mkdir(parents=True)
    (directory / STATS_FILE).write_text("{not json")
    lookup = store.get("iris", "2")
    assert lookup.origin == "computed" and set(lookup.reference.predictions["prediction"]) == {0}
    assert Reference.load(directory).stats["origin"] == "on demand"


@pytest.mark.parametrize(
    ("value", "name"), [(1, "1"), (1.0, "1"), (np.int64(2), "2"), (True, "true"), ("a", "a")]
)
def test_probability_columns_are_named_as_the_request_log_names_them(value, name) -> None:
    assert class_name(value) == name
