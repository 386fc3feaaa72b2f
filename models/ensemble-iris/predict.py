"""The whole ensemble as one serving class (seldon-core python wrapper contract): the members'
class probabilities averaged, the likeliest class answered. The graph in model.yaml answers the same
with one node per member and a combiner (nodes.py)."""

from __future__ import annotations

import mlflow.sklearn
import numpy as np
import pandas as pd

FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


def frame(X, features_names=None) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(X, dtype=float), columns=list(features_names or FEATURES))[FEATURES]


class EnsembleClassifier:
    def __init__(self, model_uri: str):
        self.model = mlflow.sklearn.load_model(model_uri)

    def predict(self, X, features_names=None):
        return self.model.predict(frame(X, features_names))

    def predict_proba(self, X, features_names=None):
        return self.model.predict_proba(frame(X, features_names))
