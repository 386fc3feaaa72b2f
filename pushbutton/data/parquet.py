"""A parquet file's columns read from its footer alone: names, types and missing-value counts.

``pushbutton validate`` checks a spec against its data without reading the data, and it also runs
when Airflow parses a model's DAG, where importing pyarrow (~0.7 s) for every parse would cost more
than all of the spec checks together. The footer is a Thrift (compact protocol) ``FileMetaData``;
this module decodes just that structure (https://github.com/apache/parquet-format, ``parquet.thrift``)
and falls back to pyarrow, when installed, for a footer it cannot decode.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAGIC = b"PAR1"
MAX_FOOTER = 64 * 1024 * 1024


class ParquetError(ValueError):
    """The file is not a parquet file, or its footer cannot be read."""


class NotParquet(ParquetError):
    """No parquet footer at the end of the file."""


@dataclass(frozen=True)
class ParquetColumn:
    name: str
    type: str | None  # double, long, boolean or string; None: a type pushbutton inputs cannot declare
    nulls: int | None  # missing values over all row groups; None: the writer recorded no statistics
    fraction: float | None = None  # a row group's minimum or maximum with a fractional part (doubles)


def read_columns(path: str | Path) -> tuple[list[ParquetColumn], int]:
    """The top-level columns of a parquet file and its row count (pandas' index columns left out)."""
    path = Path(path)
    meta = _footer(path)
    try:
        columns, rows = _columns(_Compact(meta).struct())
    except NotParquet:
        raise
    except (IndexError, KeyError, TypeError, ValueError, UnicodeDecodeError, struct.error) as exc:
        try:
            return _with_pyarrow(path)
        except ImportError:
            raise ParquetError(f"cannot decode the parquet footer of {path.name} ({exc})") from exc
    return [c for c in columns if not c.name.startswith("__index_level_")], rows


def _footer(path: Path) -> bytes:
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        if size < 12:
            raise NotParquet(f"{path.name} is not a parquet file ({size} bytes)")
        handle.seek(size - 8)
        tail = handle.read(8)
        length = struct.unpack("<I", tail[:4])[0]
        if tail[4:] != MAGIC:
            raise NotParquet(f"{path.name} is not a parquet file (no PAR1 at its end)")
        if length > min(size - 12, MAX_FOOTER):
            raise NotParquet(f"{path.name}: footer length {length} does not fit the file")
        handle.seek(size - 8 - length)
        return handle.read(length)


# physical types and the (converted or logical) annotations that make them a declarable input type
_BOOLEAN, _INT32, _INT64, _INT96, _FLOAT, _DOUBLE, _BYTE_ARRAY = range(7)
_FLOATS = {_FLOAT: (4, "<f"), _DOUBLE: (8, "<d")}
_TEXT_CONVERTED = {0, 4, 19}  # UTF8, ENUM, JSON
_TEXT_LOGICAL = {1, 4, 12}  # STRING, ENUM, JSON
_TIME_CONVERTED = {5, 6, 7, 8, 9, 10}  # DECIMAL, DATE, TIME_*, TIMESTAMP_*
_UNTYPED_LOGICAL = {5, 6, 7, 8, 11}  # DECIMAL, DATE, TIME, TIMESTAMP, UNKNOWN (all values null)


def _type(element: dict[int, Any]) -> str | None:
    physical, converted, logical = element.get(1), element.get(6), set(element.get(10) or {})
    if physical == _BOOLEAN:
        return "boolean"
    if physical in (_INT32, _INT64):
        return None if converted in _TIME_CONVERTED or logical & _UNTYPED_LOGICAL else "long"
    if physical in (_FLOAT, _DOUBLE):
        return "double"
    if physical == _BYTE_ARRAY and (converted in _TEXT_CONVERTED or logical & _TEXT_LOGICAL):
        return "string"
    return None  # INT96 timestamps, raw binary, fixed-length (decimal, uuid, float16)


def _columns(meta: dict[int, Any]) -> tuple[list[ParquetColumn], int]:
    schema = meta.get(2) or []
    nulls: dict[str, int | None] = {}
    fractions: dict[str, float] = {}
    for group in meta.get(4) or []:
        for chunk in group.get(1) or []:
            column = chunk.get(3) or {}
            path = [p.decode("utf-8") for p in column.get(3) or []]
            if len(path) != 1:
                continue
            stats = column.get(12) or {}
            count, known = stats.get(3), nulls.get(path[0], 0)
            nulls[path[0]] = None if count is None or known is None else known + count
            if column.get(1) in _FLOATS and path[0] not in fractions:
                width, code = _FLOATS[column[1]]
                for key in (6, 5, 2, 1):  # min_value, max_value, then the deprecated min, max
                    raw = stats.get(key)
                    if isinstance(raw, bytes) and len(raw) == width:
                        value = struct.unpack(code, raw)[0]
                        if math.isfinite(value) and value % 1:
                            fractions[path[0]] = value
                            break
    columns: list[ParquetColumn] = []
    index, remaining = 1, (schema[0].get(5, 0) if schema else 0)
    while remaining and index < len(schema):
        element = schema[index]
        name = element[4].decode("utf-8")
        children = element.get(5, 0)
        found = None if children else _type(element)
        columns.append(
            ParquetColumn(
                name, found, nulls.get(name) if found else None, fractions.get(name) if found else None
            )
        )
        index = _skip(schema, index)
        remaining -= 1
    return columns, int(meta.get(3, 0))


def _skip(schema: list[dict[int, Any]], index: int) -> int:
    """Index of the schema element after ``schema[index]`` and its nested children."""
    pending = 1
    while pending:
        pending += schema[index].get(5, 0) - 1
        index += 1
    return index


def _with_pyarrow(path: Path) -> tuple[list[ParquetColumn], int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
    except (OSError, pa.ArrowException) as exc:
        raise NotParquet(f"{path.name} is not a readable parquet file ({exc})") from exc
    arrow = meta.schema.to_arrow_schema()
    leaves = {meta.schema.column(i).path: i for i in range(meta.num_columns)}  # nested: "a.b"
    columns = []
    for field in arrow:
        kind = field.type
        if pa.types.is_boolean(kind):
            found: str | None = "boolean"
        elif pa.types.is_integer(kind):
            found = "long"
        elif pa.types.is_floating(kind):
            found = "double"
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
            found = "string"
        else:
            found = None
        nulls: int | None = 0 if found and field.name in leaves else None
        fraction = None
        for group in range(meta.num_row_groups if nulls is not None else 0):
            stats = meta.row_group(group).column(leaves[field.name]).statistics
            if found == "double" and stats is not None and stats.has_min_max and fraction is None:
                fraction = next((v for v in (stats.min, stats.max) if math.isfinite(v) and v % 1), None)
            if nulls is None or stats is None or not stats.has_null_count:
                nulls = None
                continue
            nulls += stats.null_count
        if not field.name.startswith("__index_level_"):
            columns.append(ParquetColumn(field.name, found, nulls, fraction))
    return columns, meta.num_rows


class _Compact:
    """Decoder of Thrift's compact protocol: a struct becomes ``{field id: value}``."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise ParquetError("varint too long")

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def value(self, kind: int) -> Any:
        if kind in (1, 2):  # booleans inside a list or map are one byte each
            return self.byte() == 1
        if kind == 3:
            return struct.unpack("b", bytes([self.byte()]))[0]
        if kind in (4, 5, 6):
            return self.zigzag()
        if kind == 7:
            self.pos += 8
            return struct.unpack("<d", self.data[self.pos - 8 : self.pos])[0]
        if kind == 8:
            size = self.varint()
            self.pos += size
            if self.pos > len(self.data):
                raise ParquetError("binary value runs past the footer")
            return self.data[self.pos - size : self.pos]
        if kind in (9, 10):
            header = self.byte()
            size = header >> 4 if header >> 4 != 15 else self.varint()
            return [self.value(header & 0x0F) for _ in range(size)]
        if kind == 11:
            size = self.varint()
            types = self.byte() if size else 0
            return {self.value(types >> 4): self.value(types & 0x0F) for _ in range(size)}
        if kind == 12:
            return self.struct()
        raise ParquetError(f"unknown compact type {kind}")

    def struct(self) -> dict[int, Any]:
        fields: dict[int, Any] = {}
        last = 0
        while True:
            header = self.byte()
            if header == 0:
                return fields
            delta, kind = header >> 4, header & 0x0F
            last = last + delta if delta else self.zigzag()
            fields[last] = kind == 1 if kind in (1, 2) else self.value(kind)
