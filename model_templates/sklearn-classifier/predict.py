"""Serving class of ${name} (seldon-core python wrapper contract): constructed once with the MLflow
model, then ``predict`` per request."""

from __future__ import annotations

import mlflow.sklearn
import numpy as np
import pandas as pd


class Classifier:
    def __init__(self, model_uri: str):
        self.model = mlflow.sklearn.load_model(model_uri)
        self.features = list(self.model.feature_names_in_)  # the columns it was trained on, in order

    def predict(self, X, features_names=None):
        """One label per row; ``features_names`` names X's columns (any order, default: trained order)."""
        return np.asarray(self.model.predict(self.frame(X, features_names)))

    def predict_proba(self, X, features_names=None):
        """Class probabilities per row (columns: ``model.classes_``); pushbutton logs them for log loss."""
        return np.asarray(self.model.predict_proba(self.frame(X, features_names)))

    def frame(self, X, features_names=None) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            return X[self.features]
        names = list(features_names) if features_names is not None and len(features_names) else None
        return pd.DataFrame(np.asarray(X, dtype=float), columns=names or self.features)[self.features]
