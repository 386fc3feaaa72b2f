"""The model's own tests; pushbutton runs them in the serving environment with MODEL_URI set."""

from __future__ import annotations

import os

import numpy as np
from nodes import AverageProbabilities, Member
from predict import FEATURES, EnsembleClassifier

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


def test_predicts_one_known_class_per_row():
    labels = EnsembleClassifier(os.environ["MODEL_URI"]).predict(ROWS, FEATURES)
    assert labels.shape == (3,) and set(labels) <= {0, 1, 2}
    assert labels[0] == 0  # a textbook setosa


def test_the_graph_nodes_answer_what_the_ensemble_answers():
    members = [Member(os.environ["MODEL_URI"], member) for member in ("linear", "tree")]
    answers = [m.predict(ROWS, FEATURES) for m in members]
    assert all(a.shape == (3, 3) for a in answers)
    combined = AverageProbabilities().aggregate(answers, [m.class_names() for m in members])
    assert combined.tolist() == EnsembleClassifier(os.environ["MODEL_URI"]).predict(ROWS, FEATURES).tolist()
