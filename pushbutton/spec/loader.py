"""Load ``model.yaml`` into a ``ModelSpec``; every problem becomes a ``SpecIssue`` with file, line,
field and fix."""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pushbutton.errors import SpecError, SpecIssue
from pushbutton.spec.model import ModelSpec

SPEC_FILE = "model.yaml"
_PATH_PREFIX = re.compile(r"^(?:Value error, )?([a-z_][\w]*(?:\.[\w]+)+): ")


def load_spec(path: str | Path) -> ModelSpec:
    """Parse and validate one spec (a ``model.yaml`` or the directory holding it).

    Raises ``SpecError`` listing every problem pydantic found, each with the YAML line.
    """
    path = Path(path)
    if path.is_dir():
        path = path / SPEC_FILE
    file = str(path)
    if not path.is_file():
        raise SpecError(
            [SpecIssue(file, "", "file not found", f"create {SPEC_FILE} (see `pushbutton init --help`)")]
        )
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(
            [
                SpecIssue(
                    file,
                    "",
                    f"not valid YAML: {problem}",
                    "fix the YAML syntax at that line (indentation, a missing ':' or an unclosed quote)",
                    line=mark.line + 1 if mark else None,
                )
            ]
        ) from exc
    duplicates = _duplicate_keys(file, root)
    if duplicates:
        raise SpecError(duplicates)
    if not isinstance(data, dict):
        raise SpecError(
            [
                SpecIssue(
                    file,
                    "",
                    "the spec is not a mapping",
                    "write 'key: value' pairs, starting with apiVersion",
                )
            ]
        )
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as exc:
        issues = [_issue(file, root, error) for error in exc.errors()]
        raise SpecError(sorted(issues, key=lambda i: (i.line or 0, i.field))) from exc


def _duplicate_keys(file: str, node: yaml.Node | None, path: str = "") -> list[SpecIssue]:
    """YAML keeps the last of two equal keys silently; a spec must not."""
    issues: list[SpecIssue] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value)
            field = f"{path}.{name}" if path else name
            line = key.start_mark.line + 1
            if name in seen:
                issues.append(
                    SpecIssue(
                        file,
                        field,
                        f"key '{name}' appears twice (first on line {seen[name]})",
                        "merge the two entries into one",
                        line,
                    )
                )
            seen.setdefault(name, line)
            issues += _duplicate_keys(file, value, field)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            issues += _duplicate_keys(file, item, f"{path}.{index}")
    return issues


def _issue(file: str, root: yaml.Node | None, error: dict[str, Any]) -> SpecIssue:
    loc = tuple(error["loc"])
    kind = error["type"]
    raw = str(error["msg"])
    prefixed = _PATH_PREFIX.match(raw)
    if prefixed:  # model-level validators name the field at the start of their message
        loc = tuple(int(p) if p.isdigit() else p for p in prefixed.group(1).split("."))
        raw = raw[prefixed.end() :]
    field = ".".join(str(p) for p in loc)
    line = _line(root, loc)
    value = error.get("input")

    if kind == "missing":
        parent = ".".join(str(p) for p in loc[:-1]) or "the top level"
        return SpecIssue(file, field, "required field is missing", f"add '{loc[-1]}' under {parent}", line)
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        fix = (
            f"did you mean '{close[0]}'?" if close else f"remove it; allowed keys here: {', '.join(allowed)}"
        )
        return SpecIssue(file, field, f"unknown key '{loc[-1]}'", fix, line)
    if kind in ("literal_error", "enum"):
        expected = error.get("ctx", {}).get("expected", "")
        return SpecIssue(file, field, f"{value!r} is not allowed", f"use one of {expected}", line)
    if kind.endswith(("_type", "_parsing")):
        expected = kind.split("_")[0].replace("int", "integer").replace("float", "number")
        expected = {"model": "mapping", "dict": "mapping", "bool": "true or false"}.get(expected, expected)
        return SpecIssue(file, field, f"{value!r} has the wrong type", f"write a {expected} here", line)
    if kind in (
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "too_short",
        "too_long",
        "string_too_short",
        "string_too_long",
        "string_pattern_mismatch",
    ):
        return SpecIssue(
            file, field, f"{value!r}: {raw[0].lower()}{raw[1:]}", _constraint_fix(kind, error), line
        )
    message = raw.removeprefix("Value error, ")
    problem, sep, fix = message.rpartition("; ")
    if not sep:
        problem, fix = message, "correct the value"
    return SpecIssue(file, field, problem, fix, line)


def _constraint_fix(kind: str, error: dict[str, Any]) -> str:
    ctx = error.get("ctx", {})
    return {
        "greater_than": f"use a value above {ctx.get('gt')}",
        "greater_than_equal": f"use a value of at least {ctx.get('ge')}",
        "less_than": f"use a value below {ctx.get('lt')}",
        "less_than_equal": f"use a value of at most {ctx.get('le')}",
        "too_short": f"give at least {ctx.get('min_length')} item(s)",
        "too_long": f"give at most {ctx.get('max_length')} item(s)",
        "string_too_short": f"write at least {ctx.get('min_length')} character(s)",
        "string_too_long": f"write at most {ctx.get('max_length')} characters",
        "string_pattern_mismatch": f"match the pattern {ctx.get('pattern')}",
    }[kind]


def _line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node on ``loc`` (the key itself where it exists)."""
    best = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                return best
            best = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            best = node.start_mark.line + 1
        else:
            return best
    return best


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys a spec section accepts (aliases as written in YAML)."""
    current: Any = ModelSpec
    for part in loc:
        if isinstance(part, int):
            continue
        model = _model_class(current)
        if model is None:
            return []
        field = next(
            (f for name, f in model.model_fields.items() if (f.alias or name) == part or name == part), None
        )
        if field is None:
            return []
        current = field.annotation
    model = _model_class(current)
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_class(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, dict, typing.Union, types.UnionType, typing.Annotated):
        for arg in reversed(typing.get_args(annotation)):
            found = _model_class(arg)
            if found is not None:
                return found
    return None
