"""The serving side's schema guard: which requests it refuses (with what message) and how it is started.

``pushbutton_guard`` runs inside a serving env where seldon-core provides the exception class; here a
stand-in module with the same constructor provides it, so only the guard's own logic is under test
(tests/integration/test_serving.py sends real requests through a real microservice).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from pushbutton.config import Settings
from pushbutton.serving.microservice import GUARD_INTERFACE, RUNTIME_DIR, Microservices, microservice_argv


class BadRequest(Exception):
    def __init__(self, message, status_code=None, payload=None, reason="MICROSERVICE_BAD_DATA"):
        super().__init__(message)
        self.message, self.status_code, self.reason = message, status_code, reason


class NotImplementedHere(BadRequest):
    """seldon-core's ``SeldonNotImplementedError``: ``predict_raw`` declines, seldon decodes itself."""

    def __init__(self, message):
        super().__init__(message, status_code=400)


@pytest.fixture(scope="module")
def guard():
    flask_utils = types.ModuleType("seldon_core.flask_utils")
    flask_utils.SeldonMicroserviceException = BadRequest
    user_model = types.ModuleType("seldon_core.user_model")
    user_model.SeldonNotImplementedError = NotImplementedHere
    stubs = {
        "seldon_core": types.ModuleType("seldon_core"),
        "seldon_core.flask_utils": flask_utils,
        "seldon_core.user_model": user_model,
    }
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location("pushbutton_guard", RUNTIME_DIR / "pushbutton_guard.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value


INPUTS = [("width", "double", False), ("height", "double", False), ("colour", "string", False)]
NULLABLE_HEIGHT = [("width", "double", False), ("height", "double", True), ("colour", "string", False)]


@pytest.mark.parametrize(
    ("X", "names", "message"),
    [
        (np.array([1.0, 2.0, 3.0]), None, "data has shape [3], not one row per instance"),
        (np.array([[1.0, 2.0]]), None, "rows have 2 values, the model takes 3: ['width', 'height', 'colour']"),
        (np.array([[1, 2, "red"]], dtype=object), ["width", "hight", "colour"], "unknown feature(s) ['hight'] and missing ['height']"),
        (np.array([[1, 2, 3]], dtype=object), ["width", "width", "colour"], "lists ['width'] more than once"),
        (np.array([[1, 2]], dtype=object), ["width", "height", "colour"], "rows have 2 values but data.names has 3"),
        (np.array([[1, "tall", "red"]], dtype=object), None, "feature 'height' (double) in row 0 is not a number ('tall'); send a number"),
        (np.array([[1, 2, "red"], ["red", 2, 1]], dtype=object), ["colour", "height", "width"], "feature 'width' (double) in row 0 is not a number ('red')"),
        (np.array([[1, [2], "red"]], dtype=object), None, "feature 'height' (double) in row 0 is not a number ([2])"),
        (np.array([[1, None, "red"]], dtype=object), None, "'height' (double) in row 0 is missing (None); send a number, or declare the feature `nullable: true`"),
        (np.array([[1.0, 2.0, 3.0], [1.0, np.nan, 3.0]]), None, "'height' (double) in row 1 is missing (nan)"),
        (np.array([[np.inf, 2.0, 3.0]]), None, "'width' (double) in row 0 is not finite (inf); send a finite number"),
        (np.array([[1, "-inf", "red"]], dtype=object), None, "'height' (double) in row 0 is not finite ('-inf')"),
        (np.array([[True, 2, "red"]], dtype=object), None, "'width' (double) in row 0 is a boolean (True)"),
        ({"a": 1}, None, "not dict data; send them as data.ndarray or data.tensor"),
        ("a string payload", None, "not str data"),
    ],
)  # fmt: skip
def test_rows_that_do_not_fit_the_schema_are_a_400_naming_the_problem(guard, X, names, message):
    with pytest.raises(BadRequest) as caught:
        guard.check_rows(X, names, INPUTS)
    assert caught.value.status_code == 400 and caught.value.reason == "MICROSERVICE_BAD_DATA"
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("X", "names"),
    [
        (np.array([[1.0, 2.0, 0.0]]), None),
        (np.array([["red", "2.5", 1]], dtype=object), ["colour", "height", "width"]),
        (np.array([[1, 2, 3]]), None),
    ],
)
def test_rows_that_fit_pass(guard, X, names):
    assert guard.check_rows(X, names, INPUTS) is None


def test_a_nullable_feature_may_be_missing_but_not_infinite(guard):
    assert guard.check_rows(np.array([[1, None, "red"]], dtype=object), None, NULLABLE_HEIGHT) is None
    assert guard.check_rows(np.array([[1.0, np.nan, 0.0]]), None, NULLABLE_HEIGHT) is None
    with pytest.raises(BadRequest, match=r"'height' .* is not finite"):
        guard.check_rows(np.array([[1.0, np.inf, 0.0]]), None, NULLABLE_HEIGHT)
    with pytest.raises(BadRequest, match=r"'width' .* is missing"):
        guard.check_rows(np.array([[np.nan, 1.0, 0.0]]), None, NULLABLE_HEIGHT)


def test_guarded_class_delegates_to_the_model_class(guard, tmp_path, monkeypatch):
    (tmp_path / "mymodel.py").write_text(
        "class Model:\n"
        "    class_names = ['y']\n"
        "    def __init__(self, model_uri, scale=1):\n"
        "        self.uri, self.scale = model_uri, scale\n"
        "    def predict(self, X, features_names=None):\n"
        "        return X[:, :1].astype(float) * self.scale\n"
        "    def tags(self):\n"
        "        return {'uri': self.uri}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    model = guard.Guarded("models:/m/1", "mymodel:Model", json.dumps([["a", "double", False]]), scale=2)
    assert model.predict(np.array([[3.0]]), ["a"], meta={}).tolist() == [[6.0]]  # meta dropped as seldon does
    assert model.tags() == {"uri": "models:/m/1"} and model.class_names == ["y"]
    with pytest.raises(BadRequest, match="rows have 2 values"):
        model.predict(np.array([[3.0, 4.0]]))
    with pytest.raises(NotImplementedHere):  # a well-formed payload: seldon-core decodes it, calls predict
        model.predict_raw({"data": {"ndarray": [[3.0]]}})
    with pytest.raises(BadRequest, match="rows differ") as caught:
        model.predict_raw({"data": {"ndarray": [[3.0], []]}})
    assert not isinstance(caught.value, NotImplementedHere)


def test_a_model_class_with_its_own_predict_raw_gets_raw_requests(guard, tmp_path, monkeypatch):
    (tmp_path / "rawmodel.py").write_text(
        "class Model:\n"
        "    def __init__(self, model_uri):\n"
        "        pass\n"
        "    def predict_raw(self, request):\n"
        "        return {'jsonData': {'seen': request}}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    model = guard.Guarded("models:/m/1", "rawmodel:Model", json.dumps([["a", "double", False]]))
    assert model.predict_raw({"data": None}) == {"jsonData": {"seen": {"data": None}}}


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({"data": None}, 'data is null, not an object; send {"data": {"names"'),
        ({"data": [[1, 2, 3]]}, "data is an array, not an object"),
        ({"data": {"ndarray": [[1, 2, "red"], [1, 2]]}}, "rows differ: row 0 has 3 values, row 1 has 2 values"),
        ({"data": {"ndarray": [[1, 2, "red"], 7]}}, "row 1 has a single value, not a list"),
        ({"data": {"ndarray": [[1, [2, 3], "red"]]}}, "holds lists where single values belong"),
        ({"data": {"tensor": {"shape": [2, 3], "values": [1, 2, 3]}}}, "data.tensor has 3 values, which do not fill shape [2, 3]"),
        ({"data": {"tensor": {"values": [1, 2, 3]}}}, 'data.tensor needs a list "shape" and a list "values"'),
        ({"data": {"tensor": [1, 2, 3]}}, 'data.tensor needs a list "shape"'),
        ({"data": {"tensor": {"shape": ["x"], "values": [1]}}}, "do not fill shape ['x']"),
    ],
)  # fmt: skip
def test_payloads_seldon_could_not_decode_are_a_400(guard, request_body, message):
    with pytest.raises(BadRequest) as caught:
        guard.check_payload(request_body)
    assert caught.value.status_code == 400 and message in caught.value.message


@pytest.mark.parametrize(
    "request_body",
    [
        {"data": {"names": ["width", "height", "colour"], "ndarray": [[1, 2, "red"], [3, 4, "blue"]]}},
        {"data": {"tensor": {"shape": [2, 3], "values": [1, 2, 3, 4, 5, 6]}}},
        {"data": {"tensor": {"shape": [-1, 3], "values": [1, 2, 3]}}},
        {"data": {"ndarray": []}},
        {"jsonData": {"anything": 1}},
        {"strData": "text"},
        [1, 2],
    ],
)
def test_payloads_seldon_decodes_pass_through(guard, request_body):
    assert guard.check_payload(request_body) is None


def test_argv_runs_the_guard_only_when_the_schema_is_known(tmp_path):
    env = types.SimpleNamespace(bin=lambda name: tmp_path / "bin" / name)
    ports = {"host": "127.0.0.1", "http_port": 1, "metrics_port": 2}
    plain = microservice_argv(env, "predict:Iris", "models:/iris/1", **ports)
    assert plain[5] == "predict.Iris"
    guarded = microservice_argv(
        env, "predict:Iris", "models:/iris/1", **ports, inputs=[("a", "double", False)]
    )
    assert guarded[5] == GUARD_INTERFACE
    params = {p["name"]: p["value"] for p in json.loads(guarded[guarded.index("--parameters") + 1])}
    assert params == {
        "model_uri": "models:/iris/1",
        "model_class": "predict:Iris",
        "inputs": '[["a", "double", false]]',
    }
    assert (Path(RUNTIME_DIR) / "pushbutton_guard.py").is_file()


def test_a_service_record_from_before_the_guard_still_loads(tmp_path):
    services = Microservices(Settings(home=tmp_path))
    services.meta_dir.mkdir(parents=True)
    record = {
        "name": "svc-models-iris-v1", "namespace": "models", "model": "iris", "version": "1",
        "model_uri": "models:/iris/1", "class_ref": "predict:Iris", "code_dir": "/code", "env": "/env",
        "host": "127.0.0.1", "http_port": 1, "metrics_port": 2, "pid": 3, "log": "/log",
    }  # fmt: skip
    (services.meta_dir / "svc-models-iris-v1.json").write_text(json.dumps(record))
    assert services._record("svc-models-iris-v1").inputs == ()
    record["inputs"] = [["a", "double", True]]
    (services.meta_dir / "svc-models-iris-v1.json").write_text(json.dumps(record))
    assert services._record("svc-models-iris-v1").inputs == (("a", "double", True),)


def test_a_class_with_predict_proba_answers_probabilities_in_its_tags(guard, tmp_path, monkeypatch):
    (tmp_path / "probamodel.py").write_text(
        "import numpy as np\n"
        "class Model:\n"
        "    classes_ = np.array([0, 1])\n"
        "    def __init__(self, model_uri):\n"
        "        pass\n"
        "    def predict(self, X, features_names=None):\n"
        "        return (X[:, 0] > 0.5).astype(int)\n"
        "    def predict_proba(self, X, features_names=None):\n"
        "        if (X[:, 0] < 0).any():\n"
        "            raise ValueError('negative')\n"
        "        return np.column_stack([1 - X[:, 0], X[:, 0]])\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    model = guard.Guarded("models:/m/1", "probamodel:Model", json.dumps([["a", "double", False]]))
    assert model.tags() == {}  # nothing predicted yet
    assert model.predict(np.array([[0.25], [0.75]]), ["a"]).tolist() == [0, 1]
    assert model.tags() == {"classes": [0, 1], "probabilities": [[0.75, 0.25], [0.25, 0.75]]}
    assert model.tags() == {}  # once per prediction
    assert model.predict(np.array([[-1.0]]), ["a"]).tolist() == [0]
    assert model.tags() == {}  # a failing predict_proba leaves the tags out, the answer stands
