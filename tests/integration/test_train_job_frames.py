"""The retrain DAG trains in a child process (``pushbutton.train_job``): when the model's train function
raises, the error the task fails with (what its log shows as the failure) carries the model code's
frames and the exception, and the child's output shows those frames, not the platform's. A real child process; it fails before MLflow would be called."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pushbutton.errors import ModelCodeError
from pushbutton.train_job import train_in_child

pytestmark = pytest.mark.integration

GOOD = Path(__file__).parent.parent / "unit" / "specs" / "good-minimal"
TRAIN = """\
def scale(params):
    return 10 / params.get("denominator", 0)


def train(X, y, params):
    factor = scale(params)
    return factor
"""


def test_the_childs_error_carries_the_model_codes_frames(tmp_path: Path, capsys) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(GOOD, model_dir, ignore=shutil.ignore_patterns("__pycache__"))
    (model_dir / "train.py").write_text(TRAIN)
    with pytest.raises(ModelCodeError) as failure:
        train_in_child(model_dir, "http://127.0.0.1:9", source="test")
    lines = [line for line in str(failure.value).splitlines() if line.strip(" ^~")]  # no caret lines
    train_py = model_dir.resolve() / "train.py"
    assert lines[0].endswith(
        "raised ZeroDivisionError: division by zero; fix the train function and push again"
    )
    assert lines[1:] == [
        "Traceback of the model code (most recent call last):",
        f'  File "{train_py}", line 6, in train',
        "    factor = scale(params)",
        f'  File "{train_py}", line 2, in scale',
        '    return 10 / params.get("denominator", 0)',
        "ZeroDivisionError: division by zero",
    ]
    err = capsys.readouterr().err  # the child's output: what the task log shows before the failure
    assert f'  File "{train_py}", line 2, in scale\n' in err and "pushbutton/training.py" not in err
