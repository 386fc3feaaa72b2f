"""Load ``model.yaml`` into a ``ModelSpec``; every problem becomes a ``SpecIssue`` with file, line,
field and fix.

Validators in ``pushbutton.spec.model`` may start a message with ``<field>: `` (a dotted path relative
to the model they validate) to point at a field more precisely than pydantic's location; the text
after the last ``"; "`` of a message is its fix.
"""

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
_PATH_PREFIX = re.compile(r"^(?:Value error, )?([A-Za-z0-9_][\w-]*(?:\.[\w-]+)*): ")
_TYPES = {  # pydantic error type -> what to write instead
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true/false",
    "bool_parsing": "true/false",
    "dict_type": "a mapping ('key: value' lines)",
    "model_type": "a mapping ('key: value' lines)",
    "model_attributes_type": "a mapping ('key: value' lines)",
    "list_type": "a list",
    "none_required": "nothing",
}
_CONSTRAINTS = {
    "greater_than": "use a value above {gt}",
    "greater_than_equal": "use a value of at least {ge}",
    "less_than": "use a value below {lt}",
    "less_than_equal": "use a value of at most {le}",
    "too_short": "give at least {min_length} item(s)",
    "too_long": "give at most {max_length} item(s)",
    "string_too_short": "write at least {min_length} character(s)",
    "string_too_long": "write at most {max_length} characters",
    "string_pattern_mismatch": "match the pattern {pattern}",
}


def load_spec(path: str | Path) -> ModelSpec:
    """Parse and validate one spec (a ``model.yaml`` or the directory holding it).

    Raises ``SpecError`` listing every problem pydantic found, each with the YAML line.
    """
    path = Path(path)
    if path.is_dir() or (not path.exists() and path.suffix not in (".yaml", ".yml")):
        path = path / SPEC_FILE  # a model directory (or what was meant to be one)
    file = str(path)
    if not path.is_file():
        where = path.parent
        if not where.is_dir():
            problem = f"directory {where} does not exist"
        else:
            problem = (
                f"no {SPEC_FILE} in {where}" if path.name == SPEC_FILE else f"{path.name} does not exist"
            )
        raise SpecError(
            [
                SpecIssue(
                    file,
                    "",
                    problem,
                    f"create {SPEC_FILE} (see `pushbutton init --help`) or correct the path",
                )
            ]
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(
            [SpecIssue(file, "", f"cannot read it: {exc.strerror}", "check its permissions")]
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            [
                SpecIssue(
                    file,
                    "",
                    f"not UTF-8 text (byte {raw[exc.start]:#04x})",
                    "save the file as UTF-8",
                    line=raw.count(b"\n", 0, exc.start) + 1,
                )
            ]
        ) from exc
    try:
        root, data = _parse(text)
    except yaml.YAMLError as exc:
        raise SpecError([_yaml_issue(file, exc)]) from exc
    if root is not None and _expanded_size(root, {}) > MAX_VALUES:
        raise SpecError(
            [
                SpecIssue(
                    file,
                    "",
                    f"the spec expands to more than {MAX_VALUES} values through YAML aliases (*name)",
                    "write the values out instead of nesting aliases of aliases",
                    line=root.start_mark.line + 1,
                )
            ]
        )
    duplicates = _duplicate_keys(file, root)
    if duplicates:
        raise SpecError(duplicates)
    if not isinstance(data, dict):
        kinds = {
            list: "a list",
            str: "a single string",
            bool: "true/false",
            int: "a number",
            float: "a number",
        }
        what = "empty" if data is None else f"{kinds.get(type(data), type(data).__name__)}, not a mapping"
        raise SpecError(
            [
                SpecIssue(
                    file,
                    "",
                    f"the spec is {what}",
                    "write 'key: value' lines, starting with 'apiVersion: pushbutton/v1'",
                    line=root.start_mark.line + 1 if root is not None else None,
                )
            ]
        )
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as exc:
        issues = _issues(file, root, data, exc.errors())
        raise SpecError(sorted(issues, key=lambda i: (i.line or 0, i.field))) from exc


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: ~10x faster


def _parse(text: str, loader_class: type = _Loader) -> tuple[yaml.Node | None, Any]:
    """One parse giving both the node tree (lines, duplicate keys) and the Python data.

    A syntax error is re-parsed with the pure-Python loader, whose messages explain more (tabs, ...).
    """
    loader = loader_class(text)
    try:
        root = loader.get_single_node()
        return root, (loader.construct_document(root) if root is not None else None)
    except yaml.YAMLError:
        if loader_class is yaml.SafeLoader:
            raise
    finally:
        loader.dispose()
    return _parse(text, yaml.SafeLoader)


def compose(path: str | Path) -> yaml.Node | None:
    """The YAML node tree of a spec file (``None`` when missing or unreadable), for line lookups."""
    try:
        return yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def field_line(root: yaml.Node | None, field: str) -> int | None:
    """1-based line of the key ``field`` (dotted, e.g. ``gate.golden``); ``None`` if not written."""
    loc = tuple(int(p) if p.isdigit() else p for p in field.split("."))
    return _line(root, loc, exact=True)


def _yaml_issue(file: str, exc: yaml.YAMLError) -> SpecIssue:
    mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    line = mark.line + 1 if mark else None
    if "end of stream" in problem and context_mark and context:
        # the parser fails at the end of the file; the cause is where the unfinished scalar starts
        line = context_mark.line + 1
        message = f"not valid YAML: {problem} {context} (column {context_mark.column + 1})"
    else:
        message = f"not valid YAML: {problem}" + (f" (column {mark.column + 1})" if mark else "")
        if context_mark and context:
            message += f", {context} on line {context_mark.line + 1}"
    if "\\t" in repr(problem):
        fix = "indent with spaces, not tabs"
    elif "end of stream" in problem:
        fix = "close the quote or bracket that starts there"
    else:
        fix = "fix the YAML syntax at that line (indentation, a missing ':' or an unclosed quote)"
    return SpecIssue(file, "", message, fix, line=line)


MAX_VALUES = 10_000  # a model.yaml has a few hundred; aliases of aliases can expand to billions


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values the node tree holds with every alias expanded (linear: aliased nodes are
    shared objects, counted once each; a recursive alias counts as too many)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = MAX_VALUES + 1  # while in progress: a cycle back here is over the limit
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(item, memo) for item in node.value)
    else:
        size = 1
    memo[key] = size
    return size


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


def _issues(file: str, root: yaml.Node | None, data: Any, errors: list[Any]) -> list[SpecIssue]:
    """One issue per field: the alternatives of a union (``str | int | ...``) are merged."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for error in errors:
        loc = _untagged(data, tuple(error["loc"]))
        if error["type"] != "missing":
            loc = _present(data, loc)  # drops union member tags such as ('..., 'str')
        groups.setdefault(loc, []).append(error)
    issues: list[SpecIssue] = []
    for loc, group in groups.items():
        typed = [e for e in group if e["type"] in _TYPES]
        if len(typed) > 1:
            expected = [_TYPES[e["type"]] for e in typed if e["type"] != "none_required"]
            issues.append(_type_issue(file, root, loc, typed[0].get("input"), _either(expected)))
            group = [e for e in group if e not in typed]
        issues += [_issue(file, root, loc, error) for error in group]
    return issues


def _untagged(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """``loc`` without the tags of discriminated unions (``alerts.0.spike.ratio`` → ``alerts.0.ratio``):
    a part naming the ``type`` written at that point rather than a key."""
    out: list[Any] = []
    for part in loc:
        if isinstance(data, dict) and part not in data and data.get("type") == part:
            continue
        out.append(part)
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        data = data[part] if in_dict or in_list else None
    return tuple(out)


def _present(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The longest prefix of ``loc`` that exists in the parsed YAML."""
    for index, part in enumerate(loc):
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if not (in_dict or in_list):
            return loc[:index]
        data = data[part]
    return loc


def _issue(file: str, root: yaml.Node | None, loc: tuple[Any, ...], error: dict[str, Any]) -> SpecIssue:
    kind = error["type"]
    raw = str(error["msg"]).removeprefix("Value error, ")
    prefixed = _PATH_PREFIX.match(raw) if kind in ("value_error", "assertion_error") else None
    if prefixed:  # the validator named a field below the model it validates
        loc += tuple(int(p) if p.isdigit() else p for p in prefixed.group(1).split("."))
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
        close = difflib.get_close_matches(str(value), re.findall(r"'([^']*)'", expected), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return SpecIssue(
            file, field, f"{_shown(root, loc, value)} is not allowed", f"{hint}use {expected}", line
        )
    if kind in _TYPES:
        return _type_issue(file, root, loc, value, _TYPES[kind])
    if kind in _CONSTRAINTS:
        fix = _CONSTRAINTS[kind].format_map(_Missing(error.get("ctx", {})))
        return SpecIssue(file, field, f"{_shown(root, loc, value)}: {raw[0].lower()}{raw[1:]}", fix, line)
    problem, sep, fix = raw.rpartition("; ")
    if not sep:
        problem, fix = raw, "correct the value"
    return SpecIssue(file, field, problem, fix, line)


def _type_issue(
    file: str, root: yaml.Node | None, loc: tuple[Any, ...], value: Any, expected: str
) -> SpecIssue:
    field = ".".join(str(p) for p in loc)
    line = _line(root, loc)
    if value is None:
        key = loc[-1] if loc else "the key"
        return SpecIssue(file, field, "has no value", f"write {expected} after '{key}:'", line)
    fix = f"write {expected} here"
    if "a string" in expected and not isinstance(value, (str, dict, list)):
        fix += f' (quote it: "{_text(root, loc) or value}"; YAML reads it as {type(value).__name__})'
    return SpecIssue(file, field, f"{_shown(root, loc, value)} is not {expected}", fix, line)


def _either(options: list[str]) -> str:
    options = list(dict.fromkeys(options))
    return options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"


def _shown(root: yaml.Node | None, loc: tuple[Any, ...], value: Any) -> str:
    """The value as written in the YAML where possible (``no`` rather than ``False``), shortened;
    strings are quoted, numbers and booleans are not."""
    node = _node(root, loc)
    if isinstance(node, yaml.ScalarNode):
        shown = repr(node.value) if node.tag.endswith(":str") else node.value
    else:
        shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _text(root: yaml.Node | None, loc: tuple[Any, ...]) -> str | None:
    node = _node(root, loc)
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _node(node: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return None
    return node


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def _line(node: yaml.Node | None, loc: tuple[Any, ...], exact: bool = False) -> int | None:
    """1-based line of the deepest YAML node on ``loc`` (the key itself where it exists).

    With ``exact``, ``None`` unless the whole of ``loc`` is written in the file.
    """
    best = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                return None if exact else best
            best = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            best = node.start_mark.line + 1
        else:
            return None if exact else best
    return best


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys a spec section accepts (aliases as written in YAML)."""
    current: Any = ModelSpec
    for part in loc:
        if isinstance(part, int):
            continue  # a list index: the item type is the list's
        values = _mapping_values(current)
        if values is not None:  # a key of e.g. gate.metrics: continue with the value type
            current = values
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


def _mapping_values(annotation: Any) -> Any | None:
    """The value type of a ``dict[...]`` annotation (also inside ``X | None``), else ``None``."""
    origin = typing.get_origin(annotation)
    if origin is dict:
        return typing.get_args(annotation)[-1]
    if origin in (typing.Union, types.UnionType):
        found = [v for v in map(_mapping_values, typing.get_args(annotation)) if v is not None]
        return found[0] if found else None
    return None


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
