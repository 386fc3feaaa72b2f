"""Tests of ${name}; pushbutton runs them in the serving environment with MODEL_URI set."""

from __future__ import annotations

import os

import numpy as np
from predict import Regressor
from sklearn.datasets import load_diabetes


def test_one_finite_value_per_row():
    model = Regressor(os.environ["MODEL_URI"])
    values = model.predict(load_diabetes().data[:5], model.features)
    assert values.shape == (5,)
    assert np.isfinite(values).all()


def test_columns_may_come_in_any_order():
    model = Regressor(os.environ["MODEL_URI"])
    rows = load_diabetes().data[:5]
    expected = model.predict(rows, model.features)
    assert np.allclose(model.predict(rows[:, ::-1], model.features[::-1]), expected)
