"""What a spec's data source holds, read cheaply, and the spec checked against it.

``pushbutton validate``, ``push`` and the DAG factory check ``schema.inputs`` and ``data.target``
against the data before anything trains: a column the data lacks (a typo), a type the data
contradicts, missing values in an input that is not ``nullable``. Cheap on purpose, since it also runs
whenever Airflow parses a model's DAG: ``sklearn:`` data sets come from the table in
``pushbutton.data.catalog`` (scikit-learn is not imported), a CSV file is read up to ``SAMPLE_ROWS`` rows
with the ``csv`` module, a parquet file only its footer (``pushbutton.data.parquet``). Training
reads all of it and checks again (``pushbutton.data.loading``), so a problem beyond the sample still stops a
push, on the same field.
"""

from __future__ import annotations

import csv
import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pushbutton.errors import SpecIssue

if TYPE_CHECKING:
    from pushbutton.spec.model import ModelSpec

SAMPLE_ROWS = 1000
NO_ROWS_FIX = "add rows of inputs and target under a header naming the columns"  # as training says
# pandas.read_csv's default missing-value markers (pandas._libs.parsers.STR_NA_VALUES)
NA_VALUES = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
     "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
)  # fmt: skip
BOOLEANS = frozenset({"True", "TRUE", "true", "False", "FALSE", "false"})  # what pandas reads as bool
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")
_FLOAT = re.compile(r"^\s*[+-]?(\d+\.?\d*(e[+-]?\d+)?|\.\d+(e[+-]?\d+)?|inf|infinity)\s*$", re.IGNORECASE)
NUMERIC_TYPES = ("double", "float", "long", "integer")


@dataclass(frozen=True)
class Column:
    """One column as far as it was read: ``type`` is double, long, boolean, string or None (a type no
    input can declare, e.g. timestamps, or no value seen). The other fields are evidence for messages,
    each saying where it was seen (e.g. ``"'n/a?' on line 7"``); None: not seen."""

    name: str
    type: str | None
    missing: str | None = None  # missing values
    text: str | None = None  # a value that is not a number
    fraction: str | None = None  # a number with a fractional part


@dataclass(frozen=True)
class Peek:
    source: str
    columns: list[Column]
    extent: str  # how much was read, for messages: "seen in its first 1000 rows"
    target_renamed: bool = False  # sklearn: the data set's target column takes data.target's name

    def names(self) -> list[str]:
        return [c.name for c in self.columns]


class DataSourceError(ValueError):
    """The data source cannot be read (empty, not CSV/parquet, unreadable)."""

    def __init__(self, problem: str, fix: str = "point data.source at a CSV or parquet file"):
        super().__init__(problem)
        self.fix = fix


def peek(source: str, model_dir: Path) -> Peek:
    """The columns of ``source`` (a spec's ``data.source``), reading as little as possible."""
    scheme, _, rest = source.partition(":")
    if scheme == "sklearn":
        from pushbutton.data.catalog import SKLEARN_DATASETS

        columns = [Column(name, "double") for name in SKLEARN_DATASETS[rest].columns]
        return Peek(source, columns, "per pushbutton's table of its columns", target_renamed=True)
    path = Path(model_dir) / rest
    if scheme == "csv":
        return Peek(source, _csv_columns(path), f"seen in its first {SAMPLE_ROWS} rows")
    from pushbutton.data.parquet import ParquetError, read_columns

    try:
        found, rows = read_columns(path)
    except ParquetError as exc:
        raise DataSourceError(str(exc)) from exc
    columns = [
        Column(
            c.name,
            c.type,
            missing=f"{c.nulls} of {rows} rows" if c.nulls else None,
            text="strings, says the file's schema" if c.type == "string" else None,
            fraction=f"{c.fraction:g}, a row group's minimum or maximum" if c.fraction is not None else None,
        )
        for c in found
    ]
    return Peek(source, columns, "seen in its schema and statistics")


def _csv_columns(path: Path) -> list[Column]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise DataSourceError(f"data file '{path.name}' is empty (no header, no rows)", NO_ROWS_FIX)
            seen: list[dict[str, str]] = [{} for _ in header]
            for row in reader:
                if reader.line_num > SAMPLE_ROWS + 1:
                    break
                for index, value in enumerate(row[: len(header)]):
                    _observe(seen[index], value, reader.line_num)
    except UnicodeDecodeError as exc:
        raise DataSourceError(
            f"data file '{path.name}' is not UTF-8 text ({exc.reason})", "save it as UTF-8"
        ) from exc
    except csv.Error as exc:
        raise DataSourceError(f"data file '{path.name}' is not a readable CSV file ({exc})") from exc
    if not any(seen):
        raise DataSourceError(f"data file '{path.name}' has no rows (only a header)", NO_ROWS_FIX)
    return [_column(name, evidence) for name, evidence in zip(header, seen, strict=True)]


def _observe(evidence: dict[str, str], value: str, line: int) -> None:
    """Remember the first value of each kind a column holds (what pandas would make of it)."""
    if value in NA_VALUES:
        kind = "missing"
    elif value in BOOLEANS:
        kind = "boolean"
    elif _INTEGER.match(value):
        kind = "long"
    elif _FLOAT.match(value):
        kind = "double"
        number = float(value)
        if math.isfinite(number) and number % 1 and "fraction" not in evidence:
            evidence["fraction"] = f"{value} on line {line}"
    else:
        kind = "text"
    if kind not in evidence:
        evidence[kind] = f"line {line}" if kind == "missing" else f"{value!r} on line {line}"


def _column(name: str, evidence: dict[str, str]) -> Column:
    numbers = "double" in evidence or "long" in evidence
    if "text" in evidence or ("boolean" in evidence and numbers):
        kind: str | None = "string"
    elif "boolean" in evidence:
        kind = "boolean"
    elif "double" in evidence or ("long" in evidence and "missing" in evidence):
        kind = "double"  # pandas reads whole numbers with gaps as float64
    elif "long" in evidence:
        kind = "long"
    else:
        kind = None  # nothing but missing values: no evidence of a type
    text = evidence.get("text") or (evidence.get("boolean") if kind == "string" else None)
    return Column(name, kind, evidence.get("missing"), text, evidence.get("fraction"))


# (field, problem, fix, index of the input the field belongs to)
_Found = tuple[str, str, str, int | None]


def check(spec: ModelSpec, model_dir: Path, file: str) -> list[SpecIssue]:
    """Every problem of ``spec``'s inputs and target against its data source; ``file`` is the spec.
    The wording follows what training says of the same problem (``pushbutton.data.loading``)."""
    try:
        found = peek(spec.data.source, model_dir)
    except (DataSourceError, OSError) as exc:
        fix = exc.fix if isinstance(exc, DataSourceError) else "check the file's permissions"
        return _placed(file, [("data.source", str(exc), fix, None)])
    columns = {c.name: c for c in found.columns}
    problems = _missing(spec, found.names() + [spec.data.target] * found.target_renamed)
    for index, feature in enumerate(spec.schema_.inputs):
        column = columns.get(feature.name)
        problem = column and _contradiction(feature.type, feature.nullable, column, spec.data.source)
        if problem:
            problems.append(
                (f"schema.inputs.{index}.type", f"{problem[0]} ({found.extent})", problem[1], index)
            )
    target = columns.get(spec.data.target)
    if found.target_renamed and target is not None:
        from pushbutton.data.catalog import SKLEARN_DATASETS

        dataset = SKLEARN_DATASETS[spec.data.source.partition(":")[2]]
        problem = (
            f"'{target.name}' is a feature column of {spec.data.source}, so the target cannot take its name"
        )
        problems.append(
            ("data.target", problem, f"name the target something else, e.g. '{dataset.target}'", None)
        )
    elif target is not None:
        problems += [(f, f"{p} ({found.extent})", x, None) for f, p, x in _target_problems(spec.task, target)]
    return _placed(file, problems)


def _contradiction(declared: str, nullable: bool, column: Column, source: str) -> tuple[str, str] | None:
    """``(problem, fix)`` when the data contradicts an input declared ``declared``/``nullable``."""
    if column.type is None:
        return None
    name = f"column '{column.name}' of '{source}'"
    nullable_too = ", nullable: true" if column.missing else ""
    as_is = f"declare the input's type as the data holds it: `{{name: {column.name}, type: {column.type}{nullable_too}}}`"
    if declared in NUMERIC_TYPES and column.type == "string":
        return (
            f"{name} holds values that are not numbers ({column.text}), so it cannot be typed {declared}",
            f"fix the data, or {as_is}",
        )
    if declared in ("long", "integer") and column.fraction:
        return (
            f"{name} has fractional values ({column.fraction}), which an integer input cannot hold",
            "fix the data, or declare the input's type as the data holds it: `type: double`",
        )
    if declared in ("long", "integer") and column.missing:
        return (
            f"{name} has missing values ({column.missing}), which an integer input cannot hold",
            "fill the gaps in the data, or declare the input's type as the data holds it: "
            "`type: double, nullable: true`",
        )
    if declared in ("string", "boolean") and column.type != declared:
        what = {"boolean": "true/false values", "string": "text"}.get(column.type, "numbers")
        return (
            f"{name} holds {what}"
            + (f" ({column.text})" if column.text else "")
            + f", so the model would be logged with a {column.type} input, not {declared}",
            as_is,
        )
    if column.missing and not nullable:
        return (
            f"{name} has missing values ({column.missing}), but the input is not nullable",
            "add `nullable: true` (the model must then handle missing values, and serving accepts null "
            "for it), or fill the gaps in the data",
        )
    return None


def _target_problems(task: str, target: Column) -> list[tuple[str, str, str]]:
    problems = []
    name = f"column '{target.name}'"
    if target.missing:
        problems.append(
            (
                "data.target",
                f"target {name} has missing values ({target.missing}); no model learns from rows "
                "without a target",
                "drop those rows from the data",
            )
        )
    if task == "regression" and target.type in ("string", "boolean"):
        shown = f"text ({target.text})" if target.type == "string" else "true/false values"
        problems.append(
            (
                "task",
                f"task regression needs a numeric target, but {name} holds {shown}",
                "use `task: classification`, or point data.target at a numeric column",
            )
        )
    if task == "classification" and target.fraction:
        problems.append(
            (
                "task",
                f"task classification, but target {name} holds fractional numbers ({target.fraction}): "
                "each distinct value would be a class of its own",
                "use `task: regression`, or point data.target at the column of labels",
            )
        )
    return problems


def missing_columns(spec: ModelSpec, file: str, columns: list[str]) -> list[SpecIssue]:
    """One issue per input or target the data source lacks, on its line, with the closest column."""
    return _placed(file, _missing(spec, columns))


def _missing(spec: ModelSpec, columns: list[str]) -> list[_Found]:
    wanted = [(f"schema.inputs.{i}.name", name, i) for i, name in enumerate(spec.feature_names)]
    wanted.append(("data.target", spec.data.target, None))
    problems: list[_Found] = []
    for field, name, index in wanted:
        if name in columns:
            continue
        close = difflib.get_close_matches(name, columns, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        problem = f"column '{name}' is not in data source '{spec.data.source}' (it has {_listed(columns)})"
        problems.append(
            (field, problem, f"{hint}name inputs and target exactly as the data source's columns", index)
        )
    return problems


def _listed(columns: list[str], most: int = 20) -> str:
    names = sorted(columns)
    if len(names) <= most:
        return ", ".join(names)
    return f"{', '.join(names[:most])} and {len(names) - most} more"


def _placed(file: str, problems: list[_Found]) -> list[SpecIssue]:
    """The problems as issues with their lines (the spec is composed once, and only when needed); an
    input written as a bare name (``[a, b]``) or without a ``type:`` key gets its list item's line."""
    if not problems:
        return []
    from pushbutton.spec.loader import compose, field_line

    root = compose(file)
    issues = []
    for field, problem, fix, index in problems:
        line = field_line(root, field)
        if line is None and index is not None:
            line = field_line(root, f"schema.inputs.{index}")
        issues.append(SpecIssue(file, field, problem, fix, line=line))
    return issues
