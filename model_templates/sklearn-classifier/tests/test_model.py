"""Tests of ${name}; pushbutton runs them in the serving environment with MODEL_URI set."""

from __future__ import annotations

import os

import numpy as np
from predict import Classifier
from sklearn.datasets import load_wine


def test_one_known_label_per_row():
    model = Classifier(os.environ["MODEL_URI"])
    data = load_wine()
    labels = model.predict(data.data[:5], model.features)
    assert labels.shape == (5,)
    assert set(labels) <= set(data.target)


def test_columns_may_come_in_any_order():
    model = Classifier(os.environ["MODEL_URI"])
    rows = load_wine().data[:5]
    expected = model.predict(rows, model.features)
    assert np.array_equal(model.predict(rows[:, ::-1], model.features[::-1]), expected)
