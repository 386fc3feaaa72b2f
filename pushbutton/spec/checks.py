"""Checks of a model directory against its spec: files exist, stay inside the directory, the entry
points are defined, and the data source holds the declared inputs and target (``pushbutton.data.checks``).

Entry points are checked by parsing the module with ``ast`` (cheap and side-effect free, so it runs
at DAG-parse time too); importing the module with its dependencies is the build/test stage's job.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
from pathlib import Path

import yaml

from pushbutton.data import checks as datasource
from pushbutton.data.remote import is_remote
from pushbutton.errors import SpecError, SpecIssue
from pushbutton.spec.loader import SPEC_FILE, compose, field_line, load_spec
from pushbutton.spec.model import DEFAULT_PREDICT_CLASSES, NODE_METHODS, ModelSpec, method_signature


def load_model_dir(model_dir: str | Path) -> ModelSpec:
    """Load the spec of ``model_dir`` and check the directory against it; raise ``SpecError``."""
    model_dir = Path(model_dir)
    spec = load_spec(model_dir)
    if model_dir.is_file():  # given the model.yaml itself
        model_dir = model_dir.parent
    issues = check_model_dir(spec, model_dir)
    if issues:
        raise SpecError(issues)
    return spec


def check_model_dir(spec: ModelSpec, model_dir: Path) -> list[SpecIssue]:
    """Every problem of ``model_dir`` against ``spec``, each with the line of the field in model.yaml."""
    model_dir = Path(model_dir)
    file = str(model_dir / SPEC_FILE)
    issues: list[SpecIssue] = []
    issues += _reference(file, model_dir, "train.entry_point", spec.train.entry_point, kind="function")
    if spec.predict.builtin:
        issues += _builtin_class(file, model_dir, spec)
    else:
        issues += _reference(file, model_dir, "predict.class", spec.predict.class_, kind="class")
    issues += _graph(file, model_dir, spec)
    explicit = spec.model_fields_set
    if spec.requirements and ("requirements" in explicit or (model_dir / spec.requirements).exists()):
        found = _file(file, model_dir, "requirements", spec.requirements)
        issues += found or _requirements(model_dir / spec.requirements)
    if spec.tests:
        issues += _file(file, model_dir, "tests", spec.tests, directory_ok=True)
    if spec.gate.golden:
        found = _file(file, model_dir, "gate.golden", spec.gate.golden)
        issues += found or _golden_header(file, model_dir / spec.gate.golden, spec)
    issues += _indicators(file, model_dir, spec)
    scheme, _, rest = spec.data.source.partition(":")
    data_file = _file(file, model_dir, "data.source", rest) if scheme in ("csv", "parquet") else []
    if not is_remote(spec):  # sql:/object storage: fetched and checked by each retrain for its window
        issues += data_file or datasource.check(spec, model_dir, file)  # columns, types, target
    if not issues:
        return issues
    root = compose(file)  # line numbers are only needed to report problems
    return [_with_line(issue, root) for issue in issues]


def _with_line(issue: SpecIssue, root: yaml.Node | None) -> SpecIssue:
    if issue.line is not None or not issue.file.endswith(SPEC_FILE):
        return issue
    return dataclasses.replace(issue, line=field_line(root, issue.field))


def _inside(model_dir: Path, relative: str) -> Path | None:
    target = (model_dir / relative).resolve()
    return target if target.is_relative_to(model_dir.resolve()) else None


def _file(
    file: str, model_dir: Path, field: str, relative: str, directory_ok: bool = False
) -> list[SpecIssue]:
    target = _inside(model_dir, relative)
    if target is None:
        real = (model_dir / relative).resolve()
        return [
            SpecIssue(
                file,
                field,
                f"'{relative}' resolves outside the model directory (a symlink to {real})",
                "copy the file into the model directory instead of linking to it",
            )
        ]
    if not target.exists():
        return [
            SpecIssue(
                file,
                field,
                f"'{relative}' does not exist in {model_dir}",
                "create it or correct the path (relative to the model directory)",
            )
        ]
    if target.is_dir() and not directory_ok:
        return [SpecIssue(file, field, f"'{relative}' is a directory", "point to a file")]
    return []


def _graph(file: str, model_dir: Path, spec: ModelSpec) -> list[SpecIssue]:
    """Each graph node's class exists in the model directory and defines the method its node type
    needs (a MODEL node without a class is ``predict.class``, checked above); per-node requirements."""
    issues: list[SpecIssue] = []
    for path, node in spec.serving.graph.walk():
        where = f"serving.{path}"
        if node.class_:
            method = NODE_METHODS[node.type]
            issues += _reference(file, model_dir, f"{where}.class", node.class_, kind="class", method=method)
        if node.requirements:
            found = _file(file, model_dir, f"{where}.requirements", node.requirements)
            issues += found or _requirements(model_dir / node.requirements, f"{where}.requirements")
    return issues


def _reference(
    file: str, model_dir: Path, field: str, ref: str, kind: str, method: str = "predict"
) -> list[SpecIssue]:
    module, _, attr = ref.partition(":")
    relative = module.replace(".", "/")
    candidates = [f"{relative}.py", f"{relative}/__init__.py"]
    source = next((c for c in candidates if (model_dir / c).is_file()), None)
    if source is None:
        return [
            SpecIssue(
                file,
                field,
                f"module '{module}' not found (looked for {' or '.join(candidates)})",
                f"create {candidates[0]} in the model directory or correct '{ref}'",
            )
        ]
    if _inside(model_dir, source) is None:
        return [
            SpecIssue(
                file,
                field,
                f"'{source}' resolves outside the model directory (symlink)",
                "keep model code inside the model directory",
            )
        ]
    try:
        tree = ast.parse((model_dir / source).read_bytes(), filename=source)
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes (Python < 3.12)
        return [
            SpecIssue(
                str(model_dir / source),
                field,
                f"syntax error: {getattr(exc, 'msg', exc)}",
                "fix the Python syntax so the module can be imported",
                line=getattr(exc, "lineno", None),
            )
        ]
    wanted = (ast.FunctionDef,) if kind == "function" else (ast.ClassDef,)
    defined: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.ImportFrom, ast.Import)):
            # `train = make_trainer()`, re-exports
            if isinstance(node, ast.Assign):
                targets: list[object] = list(node.targets)
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            else:
                targets = list(node.names)
            for target in targets:
                name = (
                    getattr(target, "id", None)
                    or getattr(target, "asname", None)
                    or getattr(target, "name", "")
                )
                defined[name.split(".")[0]] = node
    node = defined.get(attr)
    if node is None:
        names = sorted(n for n, v in defined.items() if isinstance(v, wanted))
        hint = f"; it defines {', '.join(names)}" if names else ""
        return [
            SpecIssue(
                file,
                field,
                f"'{source}' has no top-level {kind} '{attr}'{hint}",
                f"define {kind} '{attr}' in {source} or point {field} at an existing one",
            )
        ]
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.Import, ast.ImportFrom)):
        return []  # bound by assignment or import: the build stage's import check covers it
    if not isinstance(node, wanted):
        what = "class" if isinstance(node, ast.ClassDef) else "function"
        return [
            SpecIssue(
                file,
                field,
                f"'{attr}' in {source} is a {what}, not a {kind}",
                f"make '{attr}' a {kind} or point {field} at one",
            )
        ]
    if kind == "class" and not _has_method(node, method, defined):
        return [
            SpecIssue(
                file,
                field,
                f"class '{attr}' in {source} has no {method} method",
                f"add '{method_signature(method)}' (the seldon-core wrapper contract)",
            )
        ]
    return []


def _has_method(cls: ast.ClassDef, method: str, defined: dict[str, ast.stmt], depth: int = 0) -> bool:
    """Whether ``cls`` defines ``method``, itself or through a base class of the same module; a base
    defined elsewhere (imported) may define it, so it counts as found (the build's import check runs)."""
    if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == method for n in cls.body):
        return True
    for base in cls.bases:
        name = base.id if isinstance(base, ast.Name) else None
        if name == "object":
            continue
        found = defined.get(name or "")
        if not isinstance(found, ast.ClassDef) or depth > 20:
            return True  # imported, attribute access or assigned: not decidable by parsing
        if found is not cls and _has_method(found, method, defined, depth + 1):
            return True
    return False


def _builtin_class(file: str, model_dir: Path, spec: ModelSpec) -> list[SpecIssue]:
    """A ``predict.class`` in pushbutton's runtime module must be the flavor's built-in class, and no
    module of the model directory may shadow that module (the microservice runs in the directory)."""
    default = DEFAULT_PREDICT_CLASSES[spec.flavor]
    module = spec.predict.class_.partition(":")[0]
    shadows = [p for p in (f"{module}.py", f"{module}/__init__.py") if (model_dir / p).exists()]
    if shadows:
        return [
            SpecIssue(
                file,
                "predict.class",
                f"{shadows[0]} in the model directory has the name of pushbutton's built-in serving module "
                f"'{module}' and would be served instead of it",
                f"rename {shadows[0]}",
            )
        ]
    if spec.predict.class_ == default:
        return []
    return [
        SpecIssue(
            file,
            "predict.class",
            f"'{module}' is pushbutton's built-in serving module; it has no class "
            f"'{spec.predict.class_.partition(':')[2]}' for flavor {spec.flavor}",
            f"leave predict out (or write '{default}') to serve the logged model as it is, or name your "
            "own module in the model directory",
        )
    ]


def _requirements(path: Path, field: str = "requirements") -> list[SpecIssue]:
    """One issue per line of the requirements file that cannot go into a serving environment."""
    from pushbutton.serving.envs import requirement_lines, requirement_problem

    try:
        lines = requirement_lines(path)
    except (OSError, UnicodeDecodeError) as exc:
        return [SpecIssue(str(path), field, f"unreadable ({exc})", "save it as UTF-8 text")]
    issues = []
    for number, line in lines:
        found = requirement_problem(line)
        if found:
            issues.append(SpecIssue(str(path), field, found[0], found[1], line=number))
    return issues


def _golden_header(file: str, golden: Path, spec: ModelSpec) -> list[SpecIssue]:
    wanted = [*spec.feature_names, "expected"]
    try:
        with golden.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            has_rows = next(reader, None) is not None
    except (UnicodeDecodeError, csv.Error) as exc:
        return [SpecIssue(file, "gate.golden", f"golden file is not a UTF-8 CSV ({exc})", "save it as CSV")]
    missing = [c for c in wanted if c not in header]
    if missing:
        return [
            SpecIssue(
                file,
                "gate.golden",
                f"golden file lacks columns {missing}",
                f"give it a header with the inputs and 'expected': {','.join(wanted)}",
            )
        ]
    if not has_rows:
        return [
            SpecIssue(
                file,
                "gate.golden",
                "golden file has a header but no rows",
                "add rows of inputs with the expected prediction (see pushbutton.templates.write_golden)",
            )
        ]
    return []


def _indicators(file: str, model_dir: Path, spec: ModelSpec) -> list[SpecIssue]:
    """Indicator declarations against the schema (feature names, types, task) and the model directory
    (a custom indicator's function in ``indicators.py``, found by parsing, not importing, the file)."""
    from indicators.registry import config_class

    inputs = {feature.name: feature.type for feature in spec.schema_.inputs}
    issues: list[SpecIssue] = []
    for index, declared in enumerate(spec.indicators):
        config = config_class(declared.type).model_validate(declared.params)
        where = f"indicators.{index}"
        for field, problem, fix in config.schema_problems(inputs, spec.task):
            written = field.split(".")[0] in declared.params
            issues.append(
                SpecIssue(file, f"{where}.params.{field}" if written else f"{where}.type", problem, fix)
            )
        excluded = set(getattr(getattr(spec, "logging", None), "exclude", None) or ())
        for field in config.FEATURE_FIELDS:
            value = getattr(config, field)
            names = [value] if isinstance(value, str) else list(value or [])
            issues += [
                SpecIssue(
                    file,
                    f"{where}.params.{field}" + ("" if isinstance(value, str) else f".{position}"),
                    f"'{name}' is excluded from request logging (logging.exclude), so no window holds it",
                    f"remove '{name}' here, or from logging.exclude",
                )
                for position, name in enumerate(names)
                if name in excluded
            ]
        if declared.type == "custom":
            issues += _custom_function(file, model_dir, where, config.function, config.args)  # type: ignore[attr-defined]
    return issues


def _custom_function(file: str, model_dir: Path, where: str, name: str, args: dict) -> list[SpecIssue]:
    from indicators.custom import MODULE_FILE

    field = f"{where}.params.function"
    example = f"def {name}(inputs): return <a number>"
    found = _file(file, model_dir, field, MODULE_FILE)
    if found and "does not exist" in found[0].message:
        return [
            dataclasses.replace(found[0], fix=f"create {MODULE_FILE} in the model directory with '{example}'")
        ]
    if found:
        return found
    try:
        tree = ast.parse((model_dir / MODULE_FILE).read_bytes(), filename=MODULE_FILE)
    except (SyntaxError, ValueError) as exc:
        return [
            SpecIssue(
                str(model_dir / MODULE_FILE),
                field,
                f"syntax error: {getattr(exc, 'msg', exc)}",
                "fix the Python syntax so the module can be imported",
                line=getattr(exc, "lineno", None),
            )
        ]
    functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    bound = {
        getattr(target, "id", None) or getattr(target, "asname", None) or getattr(target, "name", "")
        for node in tree.body
        if isinstance(node, (ast.Assign, ast.ImportFrom, ast.Import))
        for target in (node.targets if isinstance(node, ast.Assign) else node.names)
    }
    node = functions.get(name)
    if node is None:
        if name in bound:
            return []  # bound by assignment or import: checked when the monitor imports it
        defined = f"; it defines {', '.join(sorted(functions))}" if functions else ""
        return [
            SpecIssue(
                file,
                field,
                f"{MODULE_FILE} has no top-level function '{name}'{defined}",
                f"define '{example}' in {MODULE_FILE} or point params.function at an existing one",
            )
        ]
    if isinstance(node, ast.AsyncFunctionDef):
        return [SpecIssue(file, field, f"'{name}' in {MODULE_FILE} is async", f"make it a plain '{example}'")]
    positional = [*node.args.posonlyargs, *node.args.args]
    if not positional and node.args.vararg is None:
        return [
            SpecIssue(
                file,
                field,
                f"'{name}' in {MODULE_FILE} takes no argument, but it is called with the window's inputs",
                f"write 'def {name}(inputs, ...)'",
            )
        ]
    if node.args.kwarg is None:
        accepted = {a.arg for a in [*positional[1:], *node.args.kwonlyargs]}
        return [
            SpecIssue(
                file,
                f"{where}.params.args.{key}",
                f"'{name}' in {MODULE_FILE} has no parameter '{key}'",
                f"add '{key}' to its parameters or remove it from args",
            )
            for key in args
            if key not in accepted
        ]
    return []
