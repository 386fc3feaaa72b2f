"""The inference graph's node classes (seldon-core python wrapper contract): each MODEL node is one
member of the trained ensemble answering class probabilities, the COMBINER averages them."""

from __future__ import annotations

import mlflow.sklearn
import numpy as np
import pandas as pd

FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


def frame(X, features_names=None) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(X, dtype=float), columns=list(features_names or FEATURES))[FEATURES]


class Member:
    """MODEL node: one member's class probabilities, one column per class of the ensemble."""

    def __init__(self, model_uri: str, member: str):
        ensemble = mlflow.sklearn.load_model(model_uri)
        self.model = ensemble.named_estimators_[member]  # fitted on the ensemble's class indices
        self.classes = [str(c) for c in ensemble.classes_]

    def class_names(self):
        return self.classes

    def predict(self, X, features_names=None):
        return self.model.predict_proba(frame(X, features_names))


class AverageProbabilities:
    """COMBINER: the mean of the members' probabilities, answered as the likeliest class (the species
    code: Seldon names the columns by text, iris's classes are integers)."""

    def aggregate(self, Xs, features_names=None):
        names = [list(n) for n in features_names or []]
        if not names or any(n != names[0] for n in names):
            raise ValueError(f"members answer different classes: {names}; train them on the same labels")
        mean = np.mean([np.asarray(x, dtype=float) for x in Xs], axis=0)
        return np.asarray([int(c) for c in names[0]])[np.argmax(mean, axis=1)]
