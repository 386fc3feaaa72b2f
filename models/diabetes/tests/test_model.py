"""The model's own tests; pushbutton runs them in the serving environment with MODEL_URI set."""

from __future__ import annotations

import os

import numpy as np
from predict import FEATURES, DiabetesRegressor

# the bundled data is mean-centred and scaled: 0 is an average patient
AVERAGE = np.zeros(len(FEATURES))


def test_one_finite_value_per_row():
    model = DiabetesRegressor(os.environ["MODEL_URI"])
    values = model.predict(np.vstack([AVERAGE, AVERAGE]), FEATURES)
    assert values.shape == (2,)
    assert np.isfinite(values).all()
    assert 25 <= values[0] <= 346  # within the range of the training targets


def test_higher_body_mass_index_means_more_progression():
    model = DiabetesRegressor(os.environ["MODEL_URI"])
    heavier = AVERAGE.copy()
    heavier[FEATURES.index("bmi")] = 0.1
    assert model.predict(np.vstack([heavier]), FEATURES)[0] > model.predict(np.vstack([AVERAGE]), FEATURES)[0]
