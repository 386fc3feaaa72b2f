"""Train entry point of ${name}: pushbutton calls ``train(X, y, params)`` and logs what it returns."""

from __future__ import annotations

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def train(X, y, params):
    """Fit on the training rows (a DataFrame of the schema inputs); ``params`` is ``train.params``."""
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=float(params.get("C", 1.0)), max_iter=int(params.get("max_iter", 1000))),
    )
    return model.fit(X, y)
