"""Serving class of ${name} (seldon-core python wrapper contract): constructed once with the MLflow
model, then ``predict`` per request."""

from __future__ import annotations

import mlflow.sklearn
import numpy as np
import pandas as pd


class Regressor:
    def __init__(self, model_uri: str):
        self.model = mlflow.sklearn.load_model(model_uri)
        self.features = list(self.model.feature_names_in_)  # the columns it was trained on, in order

    def predict(self, X, features_names=None):
        """One value per row; ``features_names`` names X's columns (any order, default: trained order)."""
        if isinstance(X, pd.DataFrame):
            frame = X
        else:
            names = list(features_names) if features_names is not None and len(features_names) else None
            frame = pd.DataFrame(np.asarray(X, dtype=float), columns=names or self.features)
        return np.asarray(self.model.predict(frame[self.features]), dtype=float).ravel()
