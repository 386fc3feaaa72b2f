"""Train entry point: both members fitted in one soft-voting ensemble, logged as one model."""

from __future__ import annotations

from sklearn.ensemble import VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

MEMBERS = ("linear", "tree")  # the graph's MODEL nodes name these (parameters.member)


def train(X, y, params):
    linear = make_pipeline(StandardScaler(), LogisticRegression(C=float(params.get("C", 1.0)), max_iter=500))
    tree = DecisionTreeClassifier(max_depth=int(params.get("max_depth", 3)), random_state=0)
    ensemble = VotingClassifier(list(zip(MEMBERS, (linear, tree), strict=True)), voting="soft")
    return ensemble.fit(X, y)
