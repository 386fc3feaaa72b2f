"""Serving class (seldon-core python wrapper contract): constructed once, ``predict`` per request."""

from __future__ import annotations

import mlflow.sklearn
import numpy as np
import pandas as pd

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


class DiabetesRegressor:
    def __init__(self, model_uri: str):
        self.model = mlflow.sklearn.load_model(model_uri)

    def predict(self, X, features_names=None):
        """One progression value per row; ``features_names`` names X's columns (default: FEATURES)."""
        names = list(features_names) if features_names is not None and len(features_names) else FEATURES
        frame = pd.DataFrame(np.asarray(X, dtype=float), columns=names)
        return np.asarray(self.model.predict(frame[FEATURES]), dtype=float)
