"""Column chunks: a read-optimised copy of a model's typed rows, so a 1M-row window loads in about a second.

A SQL driver hands rows to Python one value at a time (about 0.1 µs each here: 1M rows x 32 columns
is 4-5 s before pandas sees them). So every ``write_records`` also appends its rows, in the same
transaction, as one Arrow IPC blob to ``pbmon_chunks`` (model, ts range, row count, tier); a window
read fetches the few blobs overlapping it and decodes them column-wise. The typed table stays the
truth: rows a chunk holds incomplete (a half whose partner came later) or twice (a replay) are
resolved against it on read (``SqlStore.rows``).

Chunks are compacted as they are written, like an LSM tree: when 16 chunks of one size tier
(``tier = floor(log16(rows))``) exist, they are merged into one of the next tier, up to tier 3
(4,096+ rows: a 1M-row window is ~250 blobs, whose count no longer matters), so a trickle of one-row
writes still reads as a few large blobs and each row is rewritten at most three times (once for the
logger's usual batches of hundreds of rows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import sqlalchemy as sa

from pushbutton.monitoring.store.base import PREDICTION, PROBA_PREFIX, ROW_COLUMNS, Column, ModelSchema

FANOUT = 16
TOP_TIER = 3  # chunks of 4,096+ rows are never merged: 1M rows read as ~250 blobs
ARROW_TYPES = {
    "double": pa.float64(),
    "float": pa.float64(),
    "long": pa.int64(),
    "integer": pa.int64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
}
HEAD = (
    ("request_id", pa.string()), ("predictor", pa.string()), ("model_id", pa.string()), ("row", pa.int32()),
    ("ts", pa.float64()), ("version", pa.string()), ("latency_ms", pa.float64()), ("status", pa.int32()),
    ("req", pa.int8()), ("resp", pa.int8()),
)  # fmt: skip
PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


def table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "pbmon_chunks",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(63), nullable=False),
        sa.Column("tier", sa.Integer, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("min_ts", sa.Float, nullable=False),
        sa.Column("max_ts", sa.Float, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Index("pbmon_chunks_window", "model", "max_ts"),
        sa.Index("pbmon_chunks_tier", "model", "tier"),
    )


def arrow_schema(schema: ModelSchema) -> pa.Schema:
    fields = [pa.field(name, kind) for name, kind in HEAD]
    fields += [pa.field(c.name, ARROW_TYPES[c.type]) for c in schema.features]
    fields.append(pa.field(PREDICTION, ARROW_TYPES[schema.prediction.type]))
    fields += [pa.field(PROBA_PREFIX + c, pa.float64()) for c in schema.classes]
    return pa.schema(fields)


def encode(rows: Sequence[tuple], schema: ModelSchema) -> tuple[bytes, float, float]:
    """Rows as ``convert.RowConverter`` makes them → (Arrow IPC bytes, min ts, max ts)."""
    arrow = arrow_schema(schema)
    columns = list(zip(*rows, strict=True))
    data = pa.table(
        [pa.array(values, type=f.type) for values, f in zip(columns, arrow, strict=True)], schema=arrow
    )
    ts = columns[4]
    return _ipc(data), min(ts), max(ts)


def _ipc(data: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    return sink.getvalue().to_pybytes()


def _tier(rows: int) -> int:
    return min(TOP_TIER, int(math.log(max(rows, 1), FANOUT)))


def append(
    conn: sa.Connection, chunks: sa.Table, model: str, rows: Sequence[tuple], schema: ModelSchema
) -> None:
    """Store ``rows`` as one chunk, then compact full tiers (in the caller's transaction)."""
    if not rows:
        return
    payload, low, high = encode(rows, schema)
    tier = _tier(len(rows))
    conn.execute(
        chunks.insert().values(model=model, tier=tier, n=len(rows), min_ts=low, max_ts=high, payload=payload)
    )
    while tier < TOP_TIER:
        query = sa.select(chunks.c.id, chunks.c.n, chunks.c.min_ts, chunks.c.max_ts, chunks.c.payload).where(
            chunks.c.model == model, chunks.c.tier == tier
        )
        found = conn.execute(query.order_by(chunks.c.id)).all()
        if len(found) < FANOUT:
            return
        merged = pa.concat_tables([_decode(r.payload) for r in found], promote_options="default")
        conn.execute(chunks.delete().where(chunks.c.id.in_([r.id for r in found])))
        tier = max(tier + 1, _tier(merged.num_rows))
        conn.execute(
            chunks.insert().values(
                model=model, tier=tier, n=merged.num_rows, min_ts=min(r.min_ts for r in found),
                max_ts=max(r.max_ts for r in found), payload=_ipc(merged),
            )
        )  # fmt: skip


def _decode(payload: bytes) -> pa.Table:
    return ipc.open_stream(pa.py_buffer(payload)).read_all()


def read(
    conn: sa.Connection,
    chunks: sa.Table,
    model: str,
    schema: ModelSchema,
    start: float,
    end: float,
    *,
    version: str | None,
    predictor: str | None,
    wanted: list[Column],
) -> pd.DataFrame:
    """The window's rows as the chunks hold them (``ROW_COLUMNS``, ``wanted``, prediction, probas)."""
    query = sa.select(chunks.c.payload).where(
        chunks.c.model == model, chunks.c.max_ts >= start, chunks.c.min_ts < end
    )
    tables = [_decode(r.payload) for r in conn.execute(query)]
    target = arrow_schema(schema)
    names = [name for name, _ in HEAD] + [c.name for c in wanted] + [PREDICTION]
    names += [PROBA_PREFIX + c for c in schema.classes]
    if not tables:
        data = target.empty_table()
    else:
        data = pa.concat_tables(tables, promote_options="default")
        ts = data.column("ts")
        mask = pc.and_(pc.greater_equal(ts, start), pc.less(ts, end))
        if version is not None:
            mask = pc.and_(mask, pc.equal(data.column("version"), version))
        if predictor is not None:
            mask = pc.and_(mask, pc.equal(data.column("predictor"), predictor))
        data = data.filter(mask)
    columns = []
    for name in names:  # a column added to the schema after a chunk was written: nulls there
        if name in data.column_names:
            columns.append(data.column(name).cast(target.field(name).type))
        else:
            columns.append(pa.nulls(data.num_rows, target.field(name).type))
    return frame(pa.table(columns, names=names), wanted, [PROBA_PREFIX + c for c in schema.classes])


def frame(data: pa.Table, wanted: list[Column], proba: list[str]) -> pd.DataFrame:
    """Arrow rows → the ``rows`` frame (same columns and dtypes as ``convert.frame``)."""
    pandas = data.to_pandas(types_mapper=PANDAS_TYPES.get)
    out: dict[str, Any] = {
        "request_id": pandas["request_id"].to_numpy(dtype=object),
        "row": pandas["row"].to_numpy(dtype=np.int64),
        "time": pd.to_datetime(pandas["ts"].to_numpy(dtype=np.float64), unit="s", utc=True),
        "predictor": pandas["predictor"].to_numpy(dtype=object),
        "version": pandas["version"].to_numpy(dtype=object),
        "model_id": pandas["model_id"].to_numpy(dtype=object),
        "latency_ms": pandas["latency_ms"].to_numpy(dtype=np.float64, na_value=np.nan),
        "status": pandas["status"].astype("Int64").array,
        "complete": (pandas["req"].to_numpy(dtype=np.int8) & pandas["resp"].to_numpy(dtype=np.int8)).astype(
            bool
        ),
    }
    assert tuple(out) == ROW_COLUMNS
    for column in [*wanted, Column(PREDICTION, "")]:
        values = pandas[column.name]
        if values.dtype.kind == "f":
            out[column.name] = values.to_numpy(dtype=np.float64, na_value=np.nan)
        elif values.dtype == object:
            out[column.name] = values.to_numpy(dtype=object)
        else:  # Int64, boolean
            out[column.name] = values.array
    for name in proba:
        out[name] = pandas[name].to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(out)


def purge(conn: sa.Connection, chunks: sa.Table, model: str, cutoff: float) -> None:
    conn.execute(chunks.delete().where(chunks.c.model == model, chunks.c.max_ts < cutoff))
