"""Train entry point: pushbutton calls ``train(X, y, params)`` and logs what it returns."""

from __future__ import annotations

from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def train(X, y, params):
    # A linear model on purpose: deterministic (the golden file pins its answers) and stored in
    # MLflow's default skops format without extra trusted types (tree models need them).
    model = make_pipeline(StandardScaler(), Ridge(alpha=float(params.get("alpha", 1.0))))
    return model.fit(X, y)
