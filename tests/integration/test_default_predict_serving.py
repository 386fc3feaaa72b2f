"""A model directory without a predict class, served by a real seldon-core microservice through
pushbutton's built-in class (``pushbutton_sklearn:SklearnModel``) behind the schema guard: labels in
``data``, class probabilities in ``meta.tags``, columns matched by name in any order; and the test
step's runner (``predict_in_env``) finds the same class."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from pushbutton.config import REPO_ROOT, Settings
from pushbutton.serving.checks import predict_in_env
from pushbutton.serving.envs import ensure_env, model_requirements
from pushbutton.serving.microservice import PREDICT_PATH, Microservices
from pushbutton.spec import load_model_dir
from pushbutton.templates import train_local
from tests.integration.platform import model_copy

pytestmark = pytest.mark.integration


def test_a_model_without_a_predict_class_serves_labels_and_probabilities(tmp_path: Path, serving_envs: Path):
    code = model_copy(
        REPO_ROOT / "models" / "iris",
        tmp_path / "code",
        name="iris-default",
        edits={"predict:\n  class: predict:IrisClassifier\n": "", "tests: tests\n": ""},
    )
    (code / "predict.py").unlink()
    shutil.rmtree(code / "tests")
    spec = load_model_dir(code)
    assert spec.predict.builtin
    local = train_local(code, tmp_path)  # skops format and signature, as pushbutton logs it
    env = ensure_env(
        model_requirements(code, local.model_uri), python=Settings().serving_python, root=serving_envs
    )
    services = Microservices(Settings(home=tmp_path / "home"))
    svc = services.start(
        env, namespace="defaults", model="iris-default", version="1", code_dir=code,
        class_ref=spec.predict.class_, model_uri=local.model_uri, timeout=120,
        inputs=[(f.name, f.type, f.nullable) for f in spec.schema_.inputs],
    )  # fmt: skip
    try:
        rows = local.split.x_holdout.head(6)
        expected = local.estimator.predict(rows).tolist()
        shuffled = list(reversed(rows.columns))
        body = {"data": {"names": shuffled, "ndarray": rows[shuffled].to_numpy().tolist()}}
        answer = httpx.post(svc.url + PREDICT_PATH, json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        out = answer.json()
        assert out["data"]["ndarray"] == expected  # today's response shape: labels in data
        assert out["meta"]["tags"]["classes"] == [0, 1, 2]
        assert np.allclose(out["meta"]["tags"]["probabilities"], local.estimator.predict_proba(rows))

        unnamed = httpx.post(svc.url + PREDICT_PATH, json={"data": {"ndarray": rows.to_numpy().tolist()}})
        assert unnamed.json()["data"]["ndarray"] == expected  # no names: the order of schema.inputs

        typo = {
            "data": {"names": ["sepal_lenght_cm", *rows.columns[1:]], "ndarray": rows.to_numpy().tolist()}
        }
        refused = httpx.post(svc.url + PREDICT_PATH, json=typo, timeout=30)
        assert refused.status_code == 400 and "sepal_lenght_cm" in refused.text  # the guard, not a 500

        assert predict_in_env(env, code, spec.predict.class_, local.model_uri, rows) == expected
    finally:
        services.stop(svc.name)
