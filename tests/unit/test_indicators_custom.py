"""A data scientist's own indicator: a function in the model directory's indicators.py."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from indicators.base import Inputs, Verdict
from indicators.custom import CustomIndicator
from indicators.registry import create

MODULE = textwrap.dedent(
    """
    from indicators import indicator
    from helper import OUTLIER  # a neighbour module of the model directory


    @indicator
    def share_of_outliers(inputs, limit=OUTLIER):
        return float((inputs.current["x"] > limit).mean())


    @indicator(needs_reference=True)
    def mean_shift(inputs):
        shift = inputs.current["x"].mean() - inputs.reference["x"].mean()
        return {"value": abs(shift), "details": {"shift": shift}, "message": f"shift {shift:.2f}"}


    def broken(inputs):
        return helper_that_does_not_exist(inputs)


    def says_yes(inputs):
        return True
    """
)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (tmp_path / "indicators.py").write_text(MODULE)
    (tmp_path / "helper.py").write_text("OUTLIER = 5\n")
    return tmp_path


def _inputs(model_dir: Path, reference: pd.DataFrame | None = None) -> Inputs:
    current = pd.DataFrame({"x": [1, 2, 3, 6, 7, 8, 9, 1, 2, 3]})
    return Inputs(current=current, reference=reference, model_dir=model_dir)


def test_a_function_becomes_an_indicator(model_dir: Path) -> None:
    verdict = create("custom", {"function": "share_of_outliers", "threshold": 0.3}).compute(
        _inputs(model_dir)
    )
    assert (verdict.status, verdict.value, verdict.threshold, verdict.flagged) == ("ok", 0.4, 0.3, True)
    below = create("custom", {"function": "share_of_outliers", "threshold": 0.3, "direction": "below"})
    assert below.compute(_inputs(model_dir)).flagged is False
    with_args = create("custom", {"function": "share_of_outliers", "args": {"limit": 8}}).compute(
        _inputs(model_dir)
    )
    assert (with_args.value, with_args.flagged) == (0.1, None)  # no threshold: no verdict, still a value


def test_a_dict_answer_and_a_missing_reference(model_dir: Path) -> None:
    indicator = create("custom", {"function": "mean_shift"})
    reference = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    verdict = indicator.compute(_inputs(model_dir, reference))
    assert verdict.value == pytest.approx(2.2)
    assert verdict.details == {"shift": pytest.approx(2.2)} and verdict.message == "shift 2.20"
    assert verdict.reference_size == 3
    assert indicator.compute(_inputs(model_dir)).status == "missing_reference"


def test_a_raising_indicator_fails_alone_with_its_traceback(model_dir: Path) -> None:
    inputs = _inputs(model_dir)
    results = {
        name: create("custom", {"function": name}).compute(inputs) for name in ("broken", "share_of_outliers")
    }
    failed = results["broken"]
    assert failed.status == "error" and failed.flagged is None
    assert failed.message == (
        "custom indicator 'broken' raised NameError: name 'helper_that_does_not_exist' is not defined"
    )
    assert "indicators.py" in failed.details["traceback"]
    assert "return helper_that_does_not_exist(inputs)" in failed.details["traceback"]
    assert results["share_of_outliers"].status == "ok"  # the other one still computed
    result = failed.to_result(
        indicator_id="bad",
        indicator_type="custom",
        model="iris",
        version="3",
        predictor="champion",
        window_start=pd.Timestamp("2026-01-01T00:00Z").to_pydatetime(),
        window_end=pd.Timestamp("2026-01-01T00:30Z").to_pydatetime(),
    )
    assert result.status == "error" and "NameError" in result.message


def test_wrong_answers_and_missing_functions_are_errors(model_dir: Path) -> None:
    yes = create("custom", {"function": "says_yes"}).compute(_inputs(model_dir))
    assert yes.status == "error" and "returned bool" in yes.message
    missing = create("custom", {"function": "nowhere"}).compute(_inputs(model_dir))
    assert missing.status == "error" and "has no function 'nowhere'" in missing.message
    no_dir = create("custom", {"function": "share_of_outliers"}).compute(_inputs(None))  # type: ignore[arg-type]
    assert no_dir.status == "error" and "no model directory" in no_dir.message


def test_an_edited_file_is_read_again(model_dir: Path) -> None:
    indicator = CustomIndicator({"function": "share_of_outliers"})
    assert indicator.compute(_inputs(model_dir)).value == 0.4
    (model_dir / "indicators.py").write_text("def share_of_outliers(inputs):\n    return 0.75\n")
    assert indicator.compute(_inputs(model_dir)).value == 0.75


def test_a_verdict_answer_is_kept() -> None:
    indicator = CustomIndicator({"function": "f"})
    own = Verdict("ok", value=1.0, flagged=True, message="mine")
    assert indicator._verdict(own, 10, 0) is own
