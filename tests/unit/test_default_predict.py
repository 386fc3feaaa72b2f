"""The built-in predict class (``pushbutton_sklearn:SklearnModel``) that serves a model whose spec
names none: loaded in-process on tiny models saved with ``mlflow.sklearn.save_model``, as the
microservice loads them (tests/integration/test_default_predict_serving.py starts a real one).

seldon-core calls ``predict(X, features_names)`` and then ``tags()`` in the request's thread and
merges the tags into ``meta.tags``; these tests make the same calls.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pushbutton.serving.microservice import RUNTIME_DIR
from pushbutton.spec.model import DEFAULT_PREDICT_CLASSES, ModelSpec, PredictSpec
from pushbutton.templates import predict_class

FEATURES = ["width", "height", "depth"]
DEFAULT = DEFAULT_PREDICT_CLASSES["sklearn"]


def _save(estimator, frame: pd.DataFrame, target, path: Path) -> str:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    estimator.fit(frame, target)
    signature = infer_signature(frame, estimator.predict(frame.head(3)))
    mlflow.sklearn.save_model(estimator, str(path), signature=signature, pip_requirements=[])
    return str(path)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(size=(60, 3)), columns=FEATURES)
    frame["label"] = np.where(frame.width + 2 * frame.height > 0, "big", "small")
    frame["size"] = 3 * frame.width - frame.depth
    return frame


@pytest.fixture(scope="module")
def model_class():
    spec = ModelSpec.model_validate(
        {
            "apiVersion": "pushbutton/v1",
            "name": "m",
            "owner": "o",
            "flavor": "sklearn",
            "task": "classification",
            "train": {"entry_point": "train:train"},
            "data": {"source": "sklearn:iris", "target": "species"},
            "schema": {"inputs": ["sepal_length_cm"]},
        }
    )
    assert spec.predict.class_ == DEFAULT and spec.predict.builtin  # no `predict:`: the default serves
    return predict_class(Path("."), spec)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, data, model_class):
    from sklearn.linear_model import LogisticRegression

    estimator = LogisticRegression()
    uri = _save(estimator, data[FEATURES], data["label"], tmp_path_factory.mktemp("clf") / "model")
    return estimator, model_class(model_uri=uri)


def test_predict_answers_the_estimators_labels_and_tags_give_its_probabilities(data, classifier) -> None:
    estimator, served = classifier
    rows = data[FEATURES].to_numpy()[:5]
    labels = served.predict(rows, FEATURES)
    assert labels.tolist() == estimator.predict(data[FEATURES].head(5)).tolist()
    tags = served.tags()  # what seldon-core merges into meta.tags of this response
    assert tags["classes"] == ["big", "small"]
    assert np.allclose(tags["probabilities"], estimator.predict_proba(data[FEATURES].head(5)))
    json.dumps(tags)  # plain JSON, as the REST response needs
    assert served.tags() == {}  # consumed: the next response does not carry this one's probabilities


def test_request_columns_may_come_in_any_order_or_by_position(data, classifier) -> None:
    _, served = classifier
    rows = data[FEATURES].to_numpy()[:8]
    expected = served.predict(rows, FEATURES).tolist()
    shuffled = [2, 0, 1]
    assert served.predict(rows[:, shuffled], [FEATURES[i] for i in shuffled]).tolist() == expected
    assert served.predict(rows, []).tolist() == expected  # seldon-core passes [] when data.names is absent
    assert served.predict(rows).tolist() == expected


def test_unknown_or_missing_names_are_refused_by_name(data, classifier) -> None:
    _, served = classifier
    with pytest.raises(ValueError, match=r"unknown \['widht'\] and lack \['width'\]"):
        served.predict(data[FEATURES].to_numpy()[:1], ["widht", "height", "depth"])
    with pytest.raises(ValueError, match="rows have 2 values, the model takes 3"):
        served.predict(data[FEATURES].to_numpy()[:1, :2])


def test_probabilities_belong_to_the_thread_that_predicted(data, classifier) -> None:
    """gunicorn threads serve requests concurrently: one request's tags never carry another's rows."""
    _, served = classifier
    served.predict(data[FEATURES].to_numpy()[:3], FEATURES)
    other: list[dict] = []
    thread = threading.Thread(target=lambda: other.append(served.tags()))
    thread.start()
    thread.join()
    assert other == [{}]
    assert len(served.tags()["probabilities"]) == 3


def test_a_regressor_answers_values_and_no_probabilities(tmp_path, data, model_class) -> None:
    from sklearn.linear_model import LinearRegression

    estimator = LinearRegression()
    served = model_class(model_uri=_save(estimator, data[FEATURES], data["size"], tmp_path / "model"))
    rows = data[FEATURES].to_numpy()[:4]
    assert np.allclose(served.predict(rows, FEATURES), estimator.predict(data[FEATURES].head(4)))
    assert served.tags() == {}
    with pytest.raises(AttributeError, match="no predict_proba"):
        served.predict_proba(rows, FEATURES)


def test_text_and_numbers_in_one_request_reach_the_model_typed(tmp_path, model_class) -> None:
    """numpy turns a row mixing text and numbers into text; the logged signature types it back."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame(
        {
            "colour": ["red", "blue", "red", "green"] * 5,
            "weight": [1.0, 5.0, 1.5, 9.0] * 5,
            "fresh": [True, False] * 10,
        }
    )
    labels = ["a", "b", "a", "b"] * 5
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["colour"]), remainder="passthrough"
    )
    estimator = make_pipeline(encode, LogisticRegression())
    served = model_class(model_uri=_save(estimator, frame, labels, tmp_path / "model"))
    assert served.types == {"colour": "string", "weight": "double", "fresh": "boolean"}
    request = np.array([[9.0, "green", "false"], ["1.0", "red", "true"]])  # numpy: all text
    assert request.dtype.kind == "U"
    typed = served.frame(request, ["weight", "colour", "fresh"])
    assert typed.dtypes.astype(str).to_dict() == {"colour": "object", "weight": "float64", "fresh": "bool"}
    expected = estimator.predict(
        pd.DataFrame({"colour": ["green", "red"], "weight": [9.0, 1.0], "fresh": [False, True]})
    )
    assert served.predict(request, ["weight", "colour", "fresh"]).tolist() == expected.tolist()
    with pytest.raises(ValueError, match=r"feature 'weight' \(double\) got 'heavy', which is not a number"):
        served.predict(np.array([["heavy", "red", "true"]]), ["weight", "colour", "fresh"])


def test_behind_the_schema_guard_tags_reach_seldon(data, classifier, monkeypatch) -> None:
    """The microservice's interface is the guard; seldon-core asks *it* for ``tags()``."""
    import types

    class BadRequest(Exception):
        def __init__(self, message, status_code=None, reason=""):
            super().__init__(message)

    flask_utils = types.ModuleType("seldon_core.flask_utils")
    flask_utils.SeldonMicroserviceException = BadRequest
    user_model = types.ModuleType("seldon_core.user_model")
    user_model.SeldonNotImplementedError = NotImplementedError
    for name, module in {
        "seldon_core": types.ModuleType("seldon_core"),
        "seldon_core.flask_utils": flask_utils,
        "seldon_core.user_model": user_model,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.syspath_prepend(str(RUNTIME_DIR))  # the microservice's PYTHONPATH
    before = set(sys.modules)
    try:
        import pushbutton_guard

        _, served = classifier
        inputs = json.dumps([[name, "double", False] for name in FEATURES])
        guarded = pushbutton_guard.Guarded(model_uri=served.model_uri, model_class=DEFAULT, inputs=inputs)
        labels = guarded.predict(data[FEATURES].to_numpy()[:2], FEATURES)
        assert len(labels) == 2 and len(guarded.tags()["probabilities"]) == 2
        with pytest.raises(BadRequest, match="unknown feature"):
            guarded.predict(data[FEATURES].to_numpy()[:1], ["widht", "height", "depth"])
    finally:
        for name in {"pushbutton_guard", "pushbutton_sklearn"} - before:
            sys.modules.pop(name, None)


def test_the_test_steps_runner_finds_the_built_in_class(tmp_path, data, classifier) -> None:
    """``check_model.py`` (what the test step and the champion comparison run in the serving env)
    imports the built-in class although the model directory has no module of that name."""
    estimator, served = classifier
    code = tmp_path / "code"
    code.mkdir()
    rows = tmp_path / "rows.csv"
    data[FEATURES].head(6).to_csv(rows, index=False)
    out = tmp_path / "out.json"
    argv = [sys.executable, str(RUNTIME_DIR.parent / "check_model.py"), "--code-dir", str(code),
            "--class-ref", DEFAULT, "--model-uri", served.model_uri, "--input", str(rows), "--output", str(out)]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=code, check=False)
    result = json.loads(out.read_text())
    assert proc.returncode == 0, result
    assert result["predictions"] == estimator.predict(data[FEATURES].head(6)).tolist()


def test_a_spec_without_predict_is_served_by_the_flavors_default() -> None:
    assert PredictSpec().class_ == DEFAULT
    assert (RUNTIME_DIR / f"{DEFAULT.partition(':')[0]}.py").is_file()
    assert not PredictSpec.model_validate({"class": "predict:Mine"}).builtin


def test_a_model_module_may_not_shadow_the_built_in_one(tmp_path) -> None:
    """The microservice runs in the model directory, whose modules come first on ``sys.path``."""
    from pushbutton.errors import SpecError
    from pushbutton.spec import load_model_dir

    model_dir = tmp_path / "m"
    model_dir.mkdir()
    good = Path(__file__).parent / "specs" / "good-minimal"
    text = (good / "model.yaml").read_text().replace("predict:\n  class: predict:Model\n", "")
    (model_dir / "model.yaml").write_text(text)
    (model_dir / "train.py").write_text((good / "train.py").read_text())
    assert load_model_dir(model_dir).predict.builtin
    (model_dir / "pushbutton_sklearn.py").write_text("class SklearnModel: ...\n")
    with pytest.raises(SpecError, match=r"pushbutton_sklearn\.py in the model directory has the name"):
        load_model_dir(model_dir)
