"""Scaffolding for model authors: create a model directory from a template (``pushbutton init``),
train it locally the way pushbutton does, and write its golden file.

Templates live in ``model_templates/<template>/``: a complete model directory whose text files are
``string.Template`` texts (``${name}`` is the model name; write ``$$`` for a literal ``$``).

``python -m pushbutton.templates golden <model_dir>`` writes ``golden.csv`` from a fresh training run.
"""

from __future__ import annotations

import argparse
import csv
import secrets
import shutil
import string
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pushbutton.config import REPO_ROOT
from pushbutton.errors import AlreadyExists, NotFound, PushbuttonError, SpecError, SpecIssue
from pushbutton.spec import (
    SPEC_FILE,
    ModelSpec,
    check_model_dir,
    declared_name,
    find_spec_dirs,
    load_model_dir,
    load_spec,
)
from pushbutton.spec.model import _dns_name
from pushbutton.training import fit, flavor_kwargs, load_reference

if TYPE_CHECKING:
    from pushbutton.data import Split

TEMPLATES_DIR = REPO_ROOT / "model_templates"
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def list_templates(templates_dir: Path = TEMPLATES_DIR) -> list[str]:
    """Names of the templates (directories holding a model.yaml), sorted."""
    if not templates_dir.is_dir():
        return []
    return sorted(p.name for p in templates_dir.iterdir() if (p / SPEC_FILE).is_file())


def init_model(
    name: str,
    template: str,
    parent: Path,
    *,
    templates_dir: Path = TEMPLATES_DIR,
    models_dir: Path | None = None,
) -> Path:
    """Create ``parent/name`` from ``template``; all or nothing (rendered aside, then renamed).

    Refuses a name some spec under ``models_dir`` (or ``parent``) already declares: model names are
    unique in the repository."""
    target = new_model_target(
        name, parent, models_dir, after=lambda: _known_template(template, templates_dir)
    )
    return write_model(target, lambda staging: _render(templates_dir / template, staging, {"name": name}))


def _known_template(template: str, templates_dir: Path) -> None:
    available = list_templates(templates_dir)
    if template not in available:
        choices = ", ".join(available) or "(none)"
        raise NotFound(f"template '{template}' not found in {templates_dir}; use one of: {choices}")


def new_model_target(
    name: str, parent: Path, models_dir: Path | None = None, after: Callable[[], None] | None = None
) -> Path:
    """``parent/name`` when a new model called ``name`` may be created there; else the error saying
    why (a name that is not DNS-safe, one another spec declares, an existing directory). ``after``
    runs once the name is known to be well-formed, before anything is looked up on disk."""
    parent = Path(parent)
    target = parent / name
    try:
        _dns_name(name)
    except ValueError as exc:
        problem, _, fix = str(exc).rpartition("; ")
        raise SpecError([SpecIssue(str(target / SPEC_FILE), "name", problem, fix)]) from exc
    if after is not None:
        after()
    if target.exists() or target.is_symlink():
        raise AlreadyExists(f"{target} already exists; choose another name or --dir, or remove it first")
    if parent.exists() and not parent.is_dir():
        raise PushbuttonError(f"--dir {parent} is a file, not a directory; pass a directory (or omit --dir)")
    _check_name_is_new(name, [r for r in (models_dir, parent) if r is not None])
    return target


def write_model(target: Path, fill: Callable[[Path], None]) -> Path:
    """Let ``fill`` write a model directory into a hidden staging directory beside ``target``, check
    it, and rename it to ``target``: all or nothing."""
    parent, name = target.parent, target.name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PushbuttonError(f"--dir {parent} cannot be created ({exc.strerror}); pass a directory") from exc
    staging = parent / f".{name}.init-{secrets.token_hex(4)}"  # hidden: discovery skips it
    staging.mkdir()
    try:
        fill(staging)
        load_model_dir(staging)  # a template that renders into an invalid model is a bug; never ship it
        if target.exists():
            raise AlreadyExists(f"{target} was created while rendering; remove it or choose another name")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _check_name_is_new(name: str, roots: list[Path]) -> None:
    seen: set[Path] = set()
    for root in roots:
        if not root.is_dir() or root.resolve() in seen:
            continue
        seen.add(root.resolve())
        for model_dir in find_spec_dirs(root):
            if declared_name(model_dir) == name:
                raise AlreadyExists(
                    f"a model named '{name}' already exists: {model_dir / SPEC_FILE}; model names are "
                    "unique in the repository, choose another name"
                )


def _render(source: Path, dest: Path, values: dict[str, str]) -> None:
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if _SKIP_DIRS & set(relative.parts) or path.suffix == ".pyc" or not path.is_file():
            continue
        out = dest / string.Template(str(relative)).substitute(values)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            shutil.copyfile(path, out)  # binary files are copied as they are
        else:
            try:
                out.write_text(string.Template(text).substitute(values), encoding="utf-8")
            except (KeyError, ValueError) as exc:
                raise PushbuttonError(
                    f"{path}: bad placeholder {exc}; use ${{name}} only, and $$ for a literal $"
                ) from exc
        shutil.copymode(path, out)


@dataclass(frozen=True)
class LocalModel:
    """A model trained in-process and saved as a local MLflow model (what serving loads)."""

    model_dir: Path
    spec: ModelSpec
    split: Split
    estimator: Any
    model_uri: str

    def predictor(self) -> Any:
        """The spec's predict class (pushbutton's built-in one when the spec names none), constructed
        the way serving constructs it."""
        return predict_class(self.model_dir, self.spec)(model_uri=self.model_uri)


def predict_class(model_dir: Path, spec: ModelSpec) -> Any:
    """The class ``predict.class`` names: from the model directory, or from pushbutton's serving
    runtime for a built-in class (which a microservice finds on its ``PYTHONPATH``)."""
    if not spec.predict.builtin:
        return load_reference(model_dir, spec.predict.class_, "predict.class")
    import importlib.util

    from pushbutton.serving.microservice import RUNTIME_DIR

    module_name, _, attr = spec.predict.class_.partition(":")
    name = f"_pushbutton_runtime_{module_name}"
    module = sys.modules.get(name)
    if module is None:
        path = RUNTIME_DIR / f"{module_name}.py"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None or not path.is_file():
            raise NotFound(
                f"pushbutton's serving runtime {RUNTIME_DIR} lacks {path.name}; reinstall pushbutton"
            )
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        sys.modules[name] = module
    return getattr(module, attr)


def train_local(model_dir: Path, out_dir: Path, *, spec: ModelSpec | None = None) -> LocalModel:
    """Validate (unless ``spec`` is given), split, train with the spec's entry point and save under
    ``out_dir/model`` the way pushbutton logs it (``training.flavor_kwargs``, with the input signature
    the built-in predict class reads)."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    model_dir = Path(model_dir)
    fitted = fit(spec or load_model_dir(model_dir), model_dir)
    uri = Path(out_dir) / "model"
    x_train = fitted.data.x_train
    signature = infer_signature(x_train, fitted.estimator.predict(x_train.head(5)))
    # explicit (possibly empty) requirements: skips MLflow's slow inference for a local model
    mlflow.sklearn.save_model(
        fitted.estimator, str(uri), signature=signature, **flavor_kwargs(fitted, infer_requirements=False)
    )
    return LocalModel(model_dir, fitted.spec, fitted.data, fitted.estimator, str(uri))


def write_golden(model_dir: Path, rows: int = 10) -> Path:
    """Train ``model_dir`` and write its golden file (``gate.golden``, else ``golden.csv``): the first
    ``rows`` holdout rows with what the predict class answers for them in column ``expected``."""
    model_dir = Path(model_dir)
    spec = load_spec(model_dir)
    issues = [i for i in check_model_dir(spec, model_dir) if i.field != "gate.golden"]  # written here
    if issues:
        raise SpecError(issues)
    with tempfile.TemporaryDirectory() as tmp:
        local = train_local(model_dir, Path(tmp), spec=spec)
        inputs = local.split.x_holdout.head(rows)
        expected = local.predictor().predict(inputs.to_numpy(), list(inputs.columns))
    target = model_dir / (spec.gate.golden or "golden.csv")
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*inputs.columns, "expected"])
        for values, answer in zip(inputs.itertuples(index=False), expected, strict=True):
            writer.writerow([*map(_cell, values), _cell(answer)])
    return target


def _cell(value: Any) -> str:
    """Exact text for a CSV cell: integers as integers, floats round-trip (``repr``)."""
    if hasattr(value, "item"):
        value = value.item()  # numpy scalar -> Python scalar
    return repr(value) if isinstance(value, float) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pushbutton.templates", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    golden = sub.add_parser("golden", help="write a model's golden file from a fresh training run")
    golden.add_argument("model_dir", type=Path)
    golden.add_argument("--rows", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        print(f"wrote {write_golden(args.model_dir, args.rows)}")
    except PushbuttonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
