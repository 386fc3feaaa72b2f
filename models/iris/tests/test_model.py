"""The model's own tests; pushbutton runs them in the serving environment with MODEL_URI set."""

from __future__ import annotations

import os

import numpy as np
from predict import FEATURES, IrisClassifier


def test_predicts_one_known_class_per_row():
    model = IrisClassifier(os.environ["MODEL_URI"])
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
    labels = model.predict(rows, FEATURES)
    assert labels.shape == (2,)
    assert set(labels) <= {0, 1, 2}
    assert labels[0] == 0  # a textbook setosa
