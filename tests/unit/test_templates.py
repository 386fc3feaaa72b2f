"""``pushbutton init``: templates render into valid model directories that train and predict; bad
requests fail without leaving anything behind."""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

import numpy as np
import pytest

from pushbutton.errors import AlreadyExists, NotFound, PushbuttonError, SpecError
from pushbutton.spec import load_model_dir
from pushbutton.templates import TEMPLATES_DIR, init_model, list_templates, train_local, write_golden

TEMPLATES = list_templates()


def test_lists_the_bundled_templates() -> None:
    assert TEMPLATES == ["sklearn-classifier", "sklearn-regressor"]


@pytest.mark.parametrize("template", TEMPLATES)
def test_init_renders_every_file_with_the_name(template: str, tmp_path: Path) -> None:
    target = init_model("churn-model", template, tmp_path)
    assert target == tmp_path / "churn-model"
    assert [p.name for p in tmp_path.iterdir()] == ["churn-model"]  # no staging directory left
    source = TEMPLATES_DIR / template
    rendered = sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file())
    assert rendered == sorted(
        p.relative_to(source) for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    for path in rendered:
        assert "${" not in (target / path).read_text(encoding="utf-8"), path
    assert "name: churn-model\n" in (target / "model.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("template", TEMPLATES)
def test_initialised_model_validates_without_a_golden_file(template: str, tmp_path: Path) -> None:
    spec = load_model_dir(init_model("churn-model", template, tmp_path))
    assert spec.name == "churn-model"
    assert spec.task == ("classification" if template.endswith("classifier") else "regression")
    assert spec.data.source.startswith("sklearn:")  # trains without a download
    assert spec.gate.golden is None  # see the comment in the template's model.yaml


@pytest.mark.parametrize("template", TEMPLATES)
def test_requirements_pin_the_installed_scikit_learn(template: str) -> None:
    pinned = (TEMPLATES_DIR / template / "requirements.txt").read_text(encoding="utf-8").split()
    assert f"scikit-learn=={importlib.metadata.version('scikit-learn')}" in pinned


@pytest.mark.parametrize("template", TEMPLATES)
def test_initialised_model_trains_and_predicts(template: str, tmp_path: Path) -> None:
    local = train_local(init_model("churn-model", template, tmp_path / "models"), tmp_path)
    predictor = local.predictor()  # constructed like serving: model_uri=<local MLflow model dir>
    x = local.split.x_holdout
    predicted = np.asarray(predictor.predict(x.to_numpy(), list(x.columns)))
    assert predicted.shape == (len(x),)
    if local.spec.task == "classification":
        assert set(predicted) <= set(local.split.y_train)
    else:
        assert predicted.dtype.kind == "f" and np.isfinite(predicted).all()


def test_write_golden_then_enable_it(tmp_path: Path) -> None:
    """The flow the template's comment describes: uncomment gate.golden, then write the file."""
    target = init_model("churn-model", "sklearn-classifier", tmp_path)
    spec_file = target / "model.yaml"
    spec_file.write_text(spec_file.read_text().replace("# golden: golden.csv", "golden: golden.csv"))
    golden = write_golden(target, rows=5)
    assert golden == target / "golden.csv"
    lines = golden.read_text(encoding="utf-8").splitlines()
    spec = load_model_dir(target)  # now valid, golden file included
    assert lines[0].split(",") == [*spec.feature_names, "expected"]
    assert len(lines) == 6


@pytest.mark.parametrize("name", ["Churn", "churn_model", "9lives", "x" * 41, ""])
def test_bad_name_is_refused_with_a_fix(name: str, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        init_model(name, "sklearn-classifier", tmp_path)
    issue = caught.value.issues[0]
    assert issue.field == "name"
    assert issue.fix.startswith("use ")
    assert list(tmp_path.iterdir()) == []


def test_unknown_template_names_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(
        NotFound, match=r"template 'pytorch' not found.*sklearn-classifier, sklearn-regressor"
    ):
        init_model("churn-model", "pytorch", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_existing_directory_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "churn-model").mkdir()
    (tmp_path / "churn-model" / "notes.txt").write_text("mine")
    with pytest.raises(AlreadyExists, match="churn-model already exists"):
        init_model("churn-model", "sklearn-classifier", tmp_path)
    assert [p.name for p in (tmp_path / "churn-model").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda spec: spec.write_text(spec.read_text() + "colour: ${colour}\n"), PushbuttonError),
        (lambda spec: spec.write_text(spec.read_text().replace("train:train", "training:fit")), SpecError),
    ],
    ids=["unknown-placeholder", "renders-invalid-model"],
)
def test_a_broken_template_leaves_nothing_behind(change, error, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR / "sklearn-classifier", templates / "broken")
    change(templates / "broken" / "model.yaml")
    parent = tmp_path / "models"
    with pytest.raises(error):
        init_model("churn-model", "broken", parent, templates_dir=templates)
    assert list(parent.iterdir()) == []
