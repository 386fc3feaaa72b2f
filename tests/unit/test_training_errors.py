"""The model's own training code failing: a clear error naming the spec, the entry point and the cause."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pushbutton.config import REPO_ROOT
from pushbutton.errors import ModelCodeError
from pushbutton.spec import load_model_dir
from pushbutton.training import fit


def iris_with_train(tmp_path: Path, code: str) -> Path:
    model_dir = tmp_path / "iris"
    shutil.copytree(REPO_ROOT / "models" / "iris", model_dir, ignore=shutil.ignore_patterns("__pycache__"))
    (model_dir / "train.py").write_text(code)
    return model_dir


def test_a_raising_train_names_spec_entry_point_and_cause(tmp_path: Path) -> None:
    model_dir = iris_with_train(
        tmp_path, "def train(X, y, params):\n    raise ValueError(f\"C must be > 0, got {params['C']}\")\n"
    )
    with pytest.raises(ModelCodeError) as failure:
        fit(load_model_dir(model_dir), model_dir)
    message = str(failure.value)
    assert str(model_dir / "model.yaml") in message and "train.entry_point 'train:train'" in message
    assert "raised ValueError: C must be > 0, got 1.0" in message and "fix the train function" in message
    assert isinstance(failure.value.__cause__, ValueError)


def test_a_train_returning_no_estimator_says_what_to_return(tmp_path: Path) -> None:
    model_dir = iris_with_train(tmp_path, "def train(X, y, params):\n    return {'weights': [1, 2]}\n")
    with pytest.raises(
        ModelCodeError, match=r"returned dict; return the fitted estimator \(an object with predict"
    ):
        fit(load_model_dir(model_dir), model_dir)
