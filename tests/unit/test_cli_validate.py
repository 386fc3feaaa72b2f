"""``pushbutton validate`` / ``init`` / ``templates`` through ``pushbutton.cli.main``.

Exit codes of validate: 0 every spec is valid, 1 some spec is not, 2 no model.yaml was found.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pushbutton.cli import main
from pushbutton.config import REPO_ROOT

SPECS = Path(__file__).parent / "specs"
GOOD = SPECS / "good-minimal"
BAD = SPECS / "bad-cron"


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_good_directory(capsys) -> None:
    assert run(capsys, "validate", GOOD) == (0, f"ok   {GOOD}: model 'good-minimal'\n", "")


def test_good_spec_file(capsys) -> None:
    code, out, _ = run(capsys, "validate", GOOD / "model.yaml")
    assert (code, out) == (0, f"ok   {GOOD / 'model.yaml'}: model 'good-minimal'\n")


def test_bad_directory_exits_1(capsys) -> None:
    code, _, err = run(capsys, "validate", BAD)
    assert code == 1
    assert "no model.yaml found" not in err


def test_bad_directory_names_file_line_field_and_fix(capsys) -> None:
    code, out, err = run(capsys, "validate", BAD)
    assert code == 1
    assert out == ""
    assert f"FAIL {BAD}:\n" in err
    assert (
        f"  {BAD}/model.yaml:24: schedules.retrain: 'every monday' is not a valid cron expression "
        "(fix: use five fields" in err
    )


def test_models_root_reports_every_model_even_with_one_broken(capsys, tmp_path: Path) -> None:
    shutil.copytree(GOOD, tmp_path / "good")
    shutil.copytree(BAD, tmp_path / "broken")
    shutil.copytree(REPO_ROOT / "models" / "iris", tmp_path / "iris")
    code, out, err = run(capsys, "validate", tmp_path)
    assert code == 1
    assert out.splitlines() == [
        f"ok   {tmp_path / 'good'}: model 'good-minimal'",
        f"ok   {tmp_path / 'iris'}: model 'iris'",
    ]
    assert err.startswith(
        f"FAIL {tmp_path / 'broken'}:\n  {tmp_path / 'broken'}/model.yaml:24: schedules.retrain:"
    )


def test_models_root_with_duplicate_names(capsys) -> None:
    code, out, err = run(capsys, "validate", SPECS / "duplicate-model-names")
    assert code == 1
    assert "ok   " in out and "model 'twin'" in out
    assert "second/model.yaml:3: name: model name 'twin' is already used by" in err


def test_the_repository_models_are_valid(capsys) -> None:
    code, out, err = run(capsys, "validate", REPO_ROOT / "models")
    assert (code, err) == (0, "")
    assert "model 'iris'" in out and "model 'diabetes'" in out


def test_several_paths_fail_if_one_fails(capsys) -> None:
    code, out, err = run(capsys, "validate", GOOD, BAD)
    assert code == 1
    assert out.startswith(f"ok   {GOOD}") and f"FAIL {BAD}" in err


def test_nothing_to_validate_exits_2(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "validate", tmp_path)
    assert code == 2
    assert f"no model.yaml found under {tmp_path}" in err


def test_templates_lists_both(capsys) -> None:
    assert run(capsys, "templates") == (0, "sklearn-classifier\nsklearn-regressor\n", "")


@pytest.mark.parametrize("template", ["sklearn-classifier", "sklearn-regressor"])
def test_init_then_validate(capsys, tmp_path: Path, template: str) -> None:
    code, out, err = run(capsys, "init", "churn-model", "--template", template, "--dir", tmp_path)
    target = tmp_path / "churn-model"
    assert (code, err) == (0, "")
    assert out == f"created {target} from template '{template}'; next: pushbutton validate {target}\n"
    assert run(capsys, "validate", target) == (0, f"ok   {target}: model 'churn-model'\n", "")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["Churn_Model"],
            "name: 'Churn_Model' is not DNS-safe (fix: use lowercase letters, digits and '-', ",
        ),
        (["churn-model", "-t", "pytorch"], "template 'pytorch' not found"),
    ],
    ids=["bad-name", "unknown-template"],
)
def test_init_refuses_with_a_fix(capsys, tmp_path: Path, argv: list[str], message: str) -> None:
    code, out, err = run(capsys, "init", *argv, "--dir", tmp_path)
    assert (code, out) == (1, "")
    assert err.startswith("error: ") and message in err
    assert list(tmp_path.iterdir()) == []


def test_init_does_not_overwrite(capsys, tmp_path: Path) -> None:
    assert run(capsys, "init", "churn-model", "--dir", tmp_path)[0] == 0
    code, _, err = run(capsys, "init", "churn-model", "--dir", tmp_path)
    assert code == 1
    assert f"error: {tmp_path / 'churn-model'} already exists" in err
