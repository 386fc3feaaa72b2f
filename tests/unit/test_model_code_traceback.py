"""A train function that raises: the error shows the model code's own frames (file:line and the source
line, as Python prints them) and the exception, not a promise of a chained traceback nobody sees."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import pushbutton.config
from pushbutton import registry as reg
from pushbutton.cli import main
from pushbutton.config import REPO_ROOT, Settings
from pushbutton.errors import ModelCodeError, SpecError
from pushbutton.spec import load_model_dir
from pushbutton.training import fit

RAISING = """\
from sklearn.linear_model import LogisticRegression


def regularisation(params):
    return {"C": params["C"] - 2.0}


def train(X, y, params):
    model = LogisticRegression(**regularisation(params))
    return model.fit(X, y)
"""


def iris(tmp_path: Path, train: str) -> Path:
    model_dir = tmp_path / "models" / "iris"
    shutil.copytree(REPO_ROOT / "models" / "iris", model_dir, ignore=shutil.ignore_patterns("__pycache__"))
    (model_dir / "train.py").write_text(train)
    return model_dir


def test_the_error_shows_the_model_codes_frames_and_the_exception(tmp_path: Path) -> None:
    model_dir = iris(tmp_path, RAISING)
    with pytest.raises(ModelCodeError) as failure:
        fit(load_model_dir(model_dir), model_dir)
    lines = str(failure.value).splitlines()
    assert lines[0].endswith("; fix the train function and push again")
    assert "chained" not in lines[0]
    assert lines[1] == "Traceback of the model code (most recent call last):"
    assert lines[2:4] == [
        f'  File "{model_dir / "train.py"}", line 10, in train',
        "    return model.fit(X, y)",
    ]
    assert not any("pushbutton/training.py" in line for line in lines)  # the platform's frames stay out
    assert any("library frame" in line for line in lines)  # sklearn raised, deeper down
    assert lines[-1].endswith("InvalidParameterError: The 'C' parameter of LogisticRegression must be a float "
                              "in the range (0.0, inf]. Got -1.0 instead.")  # fmt: skip


def test_a_custom_estimators_predict_raising_shows_its_frames(tmp_path: Path) -> None:
    model_dir = iris(
        tmp_path,
        "class Model:\n"
        "    def predict(self, X):\n"
        "        return X['petal_length'] * 2\n\n\n"
        "def train(X, y, params):\n"
        "    return Model()\n",
    )
    with pytest.raises(ModelCodeError) as failure:
        fit(load_model_dir(model_dir), model_dir)
    text = str(failure.value)
    assert f'  File "{model_dir / "train.py"}", line 3, in predict\n' in text
    assert "    return X['petal_length'] * 2\n" in text and text.endswith("KeyError: 'petal_length'")


def test_an_import_error_names_the_line_of_the_model_code(tmp_path: Path) -> None:
    model_dir = iris(tmp_path, "import math\n\nSCALE = math.log(0)\n\n\ndef train(X, y, params):\n    pass\n")
    with pytest.raises(SpecError) as failure:
        fit(load_model_dir(model_dir), model_dir)
    (issue,) = failure.value.issues
    assert issue.message == (
        f"importing 'train' failed at {model_dir / 'train.py'}:3: ValueError('math domain error')"
    )


def test_push_prints_the_frames_with_the_error(tmp_path: Path, monkeypatch, capsys) -> None:
    model_dir = iris(tmp_path, RAISING)
    cfg = Settings(home=tmp_path / "home", models_dir=model_dir.parent, dags_dir=tmp_path / "dags")
    monkeypatch.setattr(pushbutton.config, "settings", lambda: cfg)
    monkeypatch.setattr(reg.Registry, "ping", lambda self: None)  # fit fails before MLflow is used
    assert main(["push", str(model_dir), "--no-trigger"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {model_dir / 'model.yaml'}: train.entry_point 'train:train' raised ")
    assert f'  File "{model_dir / "train.py"}", line 10, in train\n    return model.fit(X, y)\n' in err
