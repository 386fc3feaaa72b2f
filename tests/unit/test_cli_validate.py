"""``pushbutton validate`` / ``init`` / ``templates`` through ``pushbutton.cli.main``.

Exit codes of validate: 0 every spec is valid, 1 some spec is not, 2 no model.yaml was found.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
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
    """Both directories fail, each naming the other: neither is blamed alone for the pair."""
    root = SPECS / "duplicate-model-names"
    code, out, err = run(capsys, "validate", root)
    assert (code, out) == (1, "")
    for this, other in (("first", "second"), ("second", "first")):
        assert (
            f"{root / this}/model.yaml:3: name: model name 'twin' is also claimed by {root / other}/model.yaml"
        ) in err


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


def test_a_missing_path_gets_one_message(capsys, tmp_path: Path) -> None:
    code, out, err = run(capsys, "validate", tmp_path / "nonexistent")
    assert (code, out) == (2, "")
    assert (
        err
        == f"error: {tmp_path / 'nonexistent'} does not exist (fix: pass a model directory, its model.yaml or a models root)\n"
    )


def test_an_empty_directory_gets_one_message(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "validate", tmp_path)
    assert code == 2 and err.count("\n") == 1 and "FAIL" not in err


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from pushbutton.config import settings

    models = tmp_path / "models"
    monkeypatch.setenv("PUSHBUTTON_MODELS_DIR", str(models))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # not where the models are
    settings.cache_clear()
    yield models
    settings.cache_clear()


def test_init_defaults_to_the_configured_models_dir(capsys, models_dir: Path, tmp_path: Path) -> None:
    code, _, err = run(capsys, "init", "churn")
    assert (code, err) == (0, "")
    assert (models_dir / "churn" / "model.yaml").is_file()
    assert not (tmp_path / "elsewhere" / "models").exists()


def test_init_into_a_file_is_a_clear_error(capsys, models_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    code, out, err = run(capsys, "init", "x1", "--dir", tmp_path / "notes.txt")
    assert (code, out) == (1, "")
    assert (
        err
        == f"error: --dir {tmp_path / 'notes.txt'} is a file, not a directory; pass a directory (or omit --dir)\n"
    )


def test_init_refuses_a_name_another_spec_already_has(capsys, models_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "models" / "iris", models_dir / "team" / "flowers")
    code, out, err = run(capsys, "init", "iris", "--dir", tmp_path / "scratch")
    assert (code, out) == (1, "")
    assert f"a model named 'iris' already exists: {models_dir / 'team' / 'flowers' / 'model.yaml'}" in err
    assert not (tmp_path / "scratch" / "iris").exists()


def test_a_directory_reusing_a_name_of_the_models_dir_fails(capsys, models_dir: Path) -> None:
    shutil.copytree(REPO_ROOT / "models" / "iris", models_dir / "iris")
    shutil.copytree(REPO_ROOT / "models" / "iris", models_dir / "iris-copy")
    spec_file = models_dir / "iris-copy" / "model.yaml"
    line = next(n for n, text in enumerate(spec_file.read_text().splitlines(), 1) if text.startswith("name:"))
    code, out, err = run(capsys, "validate", models_dir / "iris-copy")
    assert (code, out) == (1, "")
    assert err == (
        f"FAIL {models_dir / 'iris-copy'}:\n  {spec_file}:{line}: name: model name 'iris' is also claimed "
        f"by {models_dir / 'iris' / 'model.yaml'}; while two directories claim one model, neither can be "
        f"validated or pushed (fix: give one of them another `name:` or remove the copy ({models_dir / 'iris'}))\n"
    )
    code, _, err = run(capsys, "validate", spec_file)  # the model.yaml itself: the same verdict
    assert code == 1 and "also claimed by" in err
    code, out, err = run(capsys, "validate", models_dir / "iris")  # the original too, naming the copy
    assert (code, out) == (1, "") and f"also claimed by {spec_file}" in err


@pytest.mark.parametrize("copy", ["Iris", "IRIS"])
def test_a_copy_differing_only_in_case_is_refused_both_ways(capsys, models_dir: Path, copy: str) -> None:
    """Issue 13 §3: `validate Cancer/` said ok beside models/cancer, and the whole folder blamed the
    original. Each direction now fails naming the other directory."""
    shutil.copytree(REPO_ROOT / "models" / "iris", models_dir / "iris")
    shutil.copytree(REPO_ROOT / "models" / "iris", models_dir / copy)
    for this, other in ((copy, "iris"), ("iris", copy)):
        code, out, err = run(capsys, "validate", models_dir / this)
        assert (code, out) == (1, ""), this
        assert (
            f"also claimed by {models_dir / other / 'model.yaml'} (a directory differing from this one only "
            "in case)" in err
        )
    code, out, err = run(capsys, "validate", models_dir)
    assert (code, out) == (1, "")
    assert err.count("FAIL ") == 2


def test_directories_differing_only_in_case_conflict_even_with_different_names(
    capsys, models_dir: Path
) -> None:
    shutil.copytree(REPO_ROOT / "models" / "iris", models_dir / "iris")
    shutil.copytree(REPO_ROOT / "models" / "iris", models_dir / "Iris")
    spec = models_dir / "Iris" / "model.yaml"
    spec.write_text(spec.read_text().replace("name: iris", "name: iris-two"))
    code, _, err = run(capsys, "validate", models_dir / "Iris")
    assert code == 1
    assert f"differs from {models_dir / 'iris'} only in case" in err and "also claimed" not in err


def test_a_part_of_the_models_dir_is_checked_against_all_of_it(capsys, models_dir: Path) -> None:
    shutil.copytree(REPO_ROOT / "models" / "iris", models_dir / "iris")
    shutil.copytree(REPO_ROOT / "models" / "iris", models_dir / "team" / "flowers")
    code, _, err = run(capsys, "validate", models_dir / "team")
    assert code == 1
    assert f"FAIL {models_dir / 'team' / 'flowers'}:" in err and "model name 'iris' is also claimed" in err


def test_a_copy_outside_the_models_dir_is_not_a_duplicate(capsys, models_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "models" / "iris", models_dir / "iris")
    shutil.copytree(REPO_ROOT / "models" / "iris", tmp_path / "scratch" / "iris")
    code, out, err = run(capsys, "validate", tmp_path / "scratch" / "iris")
    assert (code, err) == (0, "") and out.endswith(": model 'iris'\n")


@pytest.mark.parametrize("name", ["train.py", "golden.csv", "requirements.txt"])
def test_a_file_other_than_model_yaml_is_refused(capsys, name: str) -> None:
    target = REPO_ROOT / "models" / "iris" / name
    assert target.is_file()
    code, out, err = run(capsys, "validate", target)
    assert (code, out) == (1, "")
    assert err == (
        f"FAIL {target}:\n  {target}: {name} is not a model spec: expected a model directory or its "
        "model.yaml (fix: pass the model directory (or its model.yaml))\n"
    )


def test_a_column_the_data_source_lacks_fails_validate(capsys, tmp_path: Path) -> None:
    """Before issue 13 a misspelled input passed `validate`; only training named it."""
    model_dir = tmp_path / "iris"
    shutil.copytree(REPO_ROOT / "models" / "iris", model_dir, ignore=shutil.ignore_patterns("__pycache__"))
    spec = model_dir / "model.yaml"
    spec.write_text(spec.read_text().replace("{name: sepal_width_cm", "{name: sepal_widht_cm"))
    (model_dir / "golden.csv").write_text(
        (model_dir / "golden.csv").read_text().replace("sepal_width_cm", "sepal_widht_cm", 1)
    )
    code, out, err = run(capsys, "validate", model_dir)
    assert (code, out) == (1, "")
    assert err == (
        f"FAIL {model_dir}:\n  {spec}:25: schema.inputs.1.name: column 'sepal_widht_cm' is not in data source "
        "'sklearn:iris' (it has petal_length_cm, petal_width_cm, sepal_length_cm, sepal_width_cm, species) "
        "(fix: did you mean 'sepal_width_cm'? name inputs and target exactly as the data source's columns)\n"
    )
