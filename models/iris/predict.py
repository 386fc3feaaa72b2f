"""Serving class (seldon-core python wrapper contract): constructed once, ``predict`` per request."""

from __future__ import annotations

import mlflow.sklearn
import numpy as np
import pandas as pd

FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


class IrisClassifier:
    def __init__(self, model_uri: str):
        self.model = mlflow.sklearn.load_model(model_uri)

    def predict(self, X, features_names=None):
        return self.model.predict(self.frame(X, features_names))

    def predict_proba(self, X, features_names=None):
        """Class probabilities (one column per class of ``model.classes_``): the request log keeps them."""
        return self.model.predict_proba(self.frame(X, features_names))

    @staticmethod
    def frame(X, features_names=None) -> pd.DataFrame:
        return pd.DataFrame(np.asarray(X, dtype=float), columns=list(features_names or FEATURES))[FEATURES]
