"""One registry of indicator types: every built-in indicator is registered, documented and strict about
its params, and the spec takes its type list and param checks from it without heavy imports."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

import indicators
from indicators.base import Indicator, IndicatorConfigError
from indicators.registry import REGISTRY, TYPE_IDS, config_class, create
from pushbutton.config import REPO_ROOT
from pushbutton.errors import SpecError
from pushbutton.spec import load_model_dir, load_spec

README = Path(indicators.__file__).with_name("README.md")
MINIMAL = {"custom": {"function": "my_indicator"}}  # the params a type cannot do without


def _builtin_classes() -> list[type[Indicator]]:
    found = []
    for module_info in pkgutil.iter_modules(indicators.__path__):
        module = importlib.import_module(f"indicators.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Indicator) and cls is not Indicator and cls.__module__ == module.__name__:
                found.append(cls)
    return found


def test_every_builtin_indicator_class_is_registered_under_its_type_id() -> None:
    classes = _builtin_classes()
    assert {cls.type_id for cls in classes} == set(TYPE_IDS)
    for cls in classes:
        assert REGISTRY[cls.type_id] is cls
        assert cls.Config is config_class(cls.type_id), cls


def test_the_type_ids_are_the_released_ones() -> None:
    """Stored results carry the type id: renaming one orphans them."""
    assert TYPE_IDS == (
        "drift",
        "prediction_stability",
        "class_frequency",
        "skew",
        "label_metric",
        "error_rate",
        "latency",
        "custom",
    )


@pytest.mark.parametrize("type_id", TYPE_IDS)
def test_every_indicator_is_documented(type_id: str) -> None:
    cls = REGISTRY[type_id]
    assert (cls.__doc__ or "").strip(), f"{cls.__name__} needs a docstring"
    sections = README.read_text(encoding="utf-8").split("\n## ")
    section = next((s for s in sections if s.startswith(f"`{type_id}`\n")), None)
    assert section is not None, f"indicators/README.md needs a '## `{type_id}`' section"
    assert len(section.strip().splitlines()) > 2


@pytest.mark.parametrize("type_id", TYPE_IDS)
def test_every_config_rejects_unknown_keys(type_id: str) -> None:
    config = config_class(type_id)
    config.model_validate(MINIMAL.get(type_id, {}))  # the defaults are valid
    with pytest.raises(ValidationError) as caught:
        config.model_validate({**MINIMAL.get(type_id, {}), "treshold": 0.5})
    assert caught.value.errors()[0]["type"] == "extra_forbidden"


def test_out_of_range_params_raise_a_clear_error() -> None:
    with pytest.raises(IndicatorConfigError) as caught:
        create("drift", {"p_value": 1.5})
    assert str(caught.value) == (
        "drift: params.p_value: 1.5 is not a significance level "
        "(fix: write a probability between 0 and 1, e.g. 0.05)"
    )
    with pytest.raises(IndicatorConfigError, match=r"params.p99_ms: -5 is not a latency ceiling"):
        create("latency", {"p99_ms": -5})
    with pytest.raises(
        IndicatorConfigError, match=r"params.method: 'kss' is not allowed .*did you mean 'ks'\?"
    ):
        create("drift", {"method": "kss"})
    with pytest.raises(IndicatorConfigError, match=r"params.min_rows: true is not an integer"):
        create("skew", {"min_rows": True})


def _spec(tmp_path: Path, indicators_yaml: str) -> Path:
    text = (REPO_ROOT / "tests/unit/specs/good-minimal/model.yaml").read_text()
    (tmp_path / "model.yaml").write_text(text + "\nindicators:\n" + indicators_yaml)
    for name in ("train.py", "predict.py"):
        (tmp_path / name).write_text((REPO_ROOT / "tests/unit/specs/good-minimal" / name).read_text())
    return tmp_path


def test_the_spec_accepts_every_registered_type(tmp_path: Path) -> None:
    """The type list comes from the registry (error_rate and latency were not in the old Literal)."""
    (tmp_path / "indicators.py").write_text("def my_indicator(inputs):\n    return 1.0\n")
    lines = "".join(
        f"  - id: i_{n}\n    type: {t}\n" + (f"    params: {MINIMAL[t]}\n" if t in MINIMAL else "")
        for n, t in enumerate(TYPE_IDS)
    )
    spec = load_model_dir(_spec(tmp_path, lines))
    assert [i.type for i in spec.indicators] == list(TYPE_IDS)


def test_the_spec_names_every_problem_of_indicator_params(tmp_path: Path) -> None:
    lines = (
        "  - {id: a, type: latency, params: {p50_ms: 900, p99_ms: 300}}\n"
        "  - {id: b, type: label_metric, params: {metric: ndcg}}\n"
        "  - {id: c, type: drift, params: {method: fet}}\n"
        "  - {id: d, type: label_metric, params: {metric: rmse}}\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(_spec(tmp_path, lines))
    issues = {i.field: i for i in caught.value.issues}
    assert issues["indicators.0.params.p50_ms"].message.startswith("p50_ms 900 is above p99_ms 300")
    assert issues["indicators.0.params.p50_ms"].line == 24
    assert "add group" in issues["indicators.1.params.group"].fix
    assert len(issues) == 2  # c and d load; their contradictions with the schema need the checks
    with pytest.raises(SpecError) as caught:
        load_model_dir(_spec(tmp_path, lines.split("\n", 2)[2]))
    checked = {i.field: i for i in caught.value.issues}
    assert "'fet' (Fisher's exact test) needs boolean inputs" in checked["indicators.0.params.method"].message
    assert checked["indicators.1.params.metric"].message == "'rmse' is not a classification metric"
    assert checked["indicators.1.params.metric"].line == 25


def test_custom_function_signature_is_checked_without_running_model_code(tmp_path: Path) -> None:
    (tmp_path / "indicators.py").write_text(
        "raise SystemExit('model code must not run at validate time')\n"
        "def no_args():\n    return 1\n"
        "def fixed(inputs, scale=1):\n    return scale\n"
    )
    lines = (
        "  - {id: a, type: custom, params: {function: no_args}}\n"
        "  - {id: b, type: custom, params: {function: fixed, args: {scale: 2, offset: 1}}}\n"
    )
    with pytest.raises(SpecError) as caught:
        load_model_dir(_spec(tmp_path, lines))
    issues = {i.field: i for i in caught.value.issues}
    assert set(issues) == {"indicators.0.params.function", "indicators.1.params.args.offset"}
    assert "takes no argument" in issues["indicators.0.params.function"].message
    assert "has no parameter 'offset'" in issues["indicators.1.params.args.offset"].message


def test_validating_specs_imports_no_numeric_library() -> None:
    """DAG parsing validates every spec: indicator checks must not pull numpy, pandas, scipy, alibi."""
    code = (
        "import sys\nfrom pushbutton.spec import load_model_dir\n"
        f"for name in ('iris', 'diabetes'): load_model_dir({str(REPO_ROOT / 'models')!r} + '/' + name)\n"
        "heavy = {'numpy', 'pandas', 'scipy', 'sklearn', 'alibi_detect'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=REPO_ROOT)


def test_the_example_models_declare_drift_and_operational_indicators() -> None:
    for name, second in (("iris", "class_frequency"), ("diabetes", "prediction_stability")):
        spec = load_model_dir(REPO_ROOT / "models" / name)
        types = {i.type for i in spec.indicators}
        assert {"drift", second, "error_rate", "latency"} <= types, name
        drift = next(i for i in spec.indicators if i.type == "drift")
        assert "features" not in drift.params  # every input
