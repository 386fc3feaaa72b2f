"""The SQL monitoring store (SQLAlchemy): a SQLite file in WAL mode by default, PostgreSQL in production.

Tables: ``pbmon_models`` (each model's typed schema), ``pbmon_requests`` (one row per request,
predictor and graph node: ids, times, latency, status, raw bodies), one ``pbmon_rows_<model>`` per
model (one row per input row, the features as typed columns, ``prediction``, ``proba_<class>``; the
request's time, predictor, version, latency and status copied in so a window read needs no join),
``pbmon_labels`` and ``pbmon_indicators``.

Writes are ``INSERT … ON CONFLICT DO UPDATE`` with ``COALESCE(stored, new)``: a replay changes nothing
and the two halves of a request merge, whichever was stored first. Times are stored as epoch seconds
(float) so a 1M-row window converts to pandas in one vectorised step. SQLite runs with
``journal_mode=WAL`` (readers never block the logger's writes), ``synchronous=NORMAL`` (a committed
batch survives a crash of any process; a power cut may lose the last commits) and a busy timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from pushbutton.monitoring.records import InferenceRecord, Label, is_node_predictor
from pushbutton.monitoring.results import IndicatorResult
from pushbutton.monitoring.store import chunks, convert, sql_alerts
from pushbutton.monitoring.store.base import (
    PREDICTION,
    PROBA_PREFIX,
    Column,
    FeatureLike,
    LabelResult,
    ModelSchema,
    MonitoringStore,
    StoreCounters,
    StoreError,
    StoreUnavailable,
    WriteResult,
)
from pushbutton.monitoring.store.sql_alerts import SqlAlerts

# columns of every rows table: no feature may take these names
RESERVED = frozenset(
    ("request_id", "predictor", "model_id", "row", "ts", "time", "version", "latency_ms", "status", "req", "resp",
     "complete", PREDICTION)
)  # fmt: skip
log = logging.getLogger("pushbutton.monitoring")
SCHEMA_TTL = 10.0  # seconds a model's schema is cached (another process may add features)
metadata = sa.MetaData()
models_table = sa.Table(
    "pbmon_models",
    metadata,
    sa.Column("model", sa.String(63), primary_key=True),
    sa.Column("table_name", sa.String(63), nullable=False),
    sa.Column("schema", sa.Text, nullable=False),  # JSON: features, prediction, classes, exclude, inputs
    sa.Column("purged_before", sa.Float),  # retention: nothing older is read (chunks may straddle it)
)
requests_table = sa.Table(
    "pbmon_requests",
    metadata,
    sa.Column("model", sa.String(63), primary_key=True),
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("predictor", sa.String(63), primary_key=True),
    sa.Column("model_id", sa.String(128), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("request_event_id", sa.String(128)),
    sa.Column("response_event_id", sa.String(128)),
    sa.Column("request_ts", sa.Float),
    sa.Column("response_ts", sa.Float),
    sa.Column("latency_ms", sa.Float),
    sa.Column("status", sa.Integer),
    sa.Column("n_rows", sa.Integer, nullable=False),
    sa.Column("request_body", sa.Text),
    sa.Column("response_body", sa.Text),
    sa.Index("pbmon_requests_model_ts", "model", "ts"),
)
labels_table = sa.Table(
    "pbmon_labels",
    metadata,
    sa.Column("model", sa.String(63), primary_key=True),
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True),
    sa.Column("label", sa.Text, nullable=False),  # JSON value
    sa.Column("received_ts", sa.Float, nullable=False),
)
indicators_table = sa.Table(
    "pbmon_indicators",
    metadata,
    sa.Column("model", sa.String(63), primary_key=True),
    sa.Column("version", sa.String(32), primary_key=True),
    sa.Column("predictor", sa.String(63), primary_key=True),
    sa.Column("indicator_id", sa.String(64), primary_key=True),
    sa.Column("window_end", sa.Float, primary_key=True),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("flagged", sa.Boolean),
    sa.Column("result", sa.Text, nullable=False),  # IndicatorResult.as_dict() as JSON
)


chunks_table = chunks.table(metadata)
alerts_table = sql_alerts.table(metadata)


def table_name(model: str) -> str:
    """``pbmon_rows_<model>`` (``-`` → ``_``), shortened with a hash under PostgreSQL's 63 characters."""
    name = "pbmon_rows_" + model.replace("-", "_").lower()
    if len(name) <= 63 and name.replace("_", "").isalnum():
        return name
    digest = hashlib.sha1(model.encode()).hexdigest()[:10]
    return f"pbmon_rows_{''.join(c if c.isalnum() else '_' for c in model.lower())[:40]}_{digest}"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ts(when: datetime | None) -> float | None:
    if when is None:
        return None
    if when.tzinfo is None:
        raise StoreError(f"time {when.isoformat()} has no timezone; pass UTC times (datetime.now(UTC))")
    return when.timestamp()


class SqlStore(SqlAlerts, MonitoringStore):
    def __init__(self, url: str, *, clock: Any = time.time):
        self.url = sa.make_url(url).render_as_string(hide_password=True)  # shown in /status and logs
        self.clock = clock
        kwargs: dict[str, Any] = {"future": True, "pool_pre_ping": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.engine = sa.create_engine(url, **kwargs)
        self.sqlite = self.engine.dialect.name == "sqlite"
        if self.sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._schemas: dict[str, tuple[ModelSchema, str, float]] = {}
        self._sql: dict[tuple, str] = {}
        self._lock = threading.Lock()
        with self._errors("create the monitoring tables"):
            metadata.create_all(self.engine)

    # --- plumbing --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StoreUnavailable(f"cannot {what} in {self._where()}: {_first_line(exc)}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot {what} in {self._where()}: {_first_line(exc)}") from exc

    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        with self._errors("reach the store"), self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    # --- schema ----------------------------------------------------------------------------------

    def ensure_model(
        self,
        model: str,
        features: Sequence[FeatureLike | tuple[str, str] | str],
        prediction: FeatureLike | tuple[str, str] | None = None,
        exclude: Sequence[str] = (),
    ) -> ModelSchema:
        columns = tuple(Column.of(f) for f in features if Column.of(f).name not in set(exclude))
        out = Column(PREDICTION, Column.of(prediction).type) if prediction is not None else Column(PREDICTION)
        for column in (*columns, out):
            if column.type not in convert.SQL_TYPES:
                raise StoreError(f"{model}: feature {column.name!r} has unknown type {column.type!r}")
        for column in columns:
            if column.name in RESERVED or column.name.startswith(PROBA_PREFIX) or len(column.name) > 63:
                raise StoreError(
                    f"{model}: feature {column.name!r} cannot be a column of the request log (reserved: "
                    f"{', '.join(sorted(RESERVED))}, names starting with {PROBA_PREFIX}, or longer than 63 "
                    "characters); rename the input in schema.inputs"
                )
        with self._lock, self._errors(f"create the tables of model {model!r}"), self.engine.begin() as conn:
            stored = self._load(conn, model)
            name = stored[1] if stored else table_name(model)
            classes: tuple[str, ...] = ()
            if stored:
                old = {c.name: c.type for c in stored[0].features}
                for column in columns:
                    if column.name in old and old[column.name] != column.type:
                        raise StoreError(
                            f"{model}: feature {column.name!r} is stored as {old[column.name]} but the spec now "
                            f"says {column.type}; give the changed feature a new name (old rows would not fit)"
                        )
                new = {x.name for x in columns} | set(exclude)
                kept = [c for c in stored[0].features if c.name not in new]
                columns = (*columns, *kept)  # a feature dropped from the spec keeps its column
                classes = stored[0].classes
                if stored[0].prediction.type != out.type:
                    raise StoreError(
                        f"{model}: prediction is stored as {stored[0].prediction.type} but the spec's output "
                        f"is now {out.type}; keep the output type or log the model under a new name"
                    )
            inputs = tuple(Column.of(f).name for f in features)
            schema = ModelSchema(model, columns, out, classes, tuple(exclude), inputs)
            table = self._rows_table(name, schema)
            table.create(conn, checkfirst=True)
            present = {c["name"] for c in sa.inspect(conn).get_columns(name)}
            for column in table.columns:
                if column.name not in present:
                    ddl = column.type.compile(self.engine.dialect)
                    conn.exec_driver_sql(f"ALTER TABLE {_q(name)} ADD COLUMN {_q(column.name)} {ddl}")
            self._save(conn, schema, name, insert=stored is None)
        self._schemas[model] = (schema, name, time.monotonic())
        return schema

    def _rows_table(self, name: str, schema: ModelSchema) -> sa.Table:
        table = sa.Table(
            name,
            sa.MetaData(),
            sa.Column("request_id", sa.String(128), primary_key=True),
            sa.Column("predictor", sa.String(63), primary_key=True),
            sa.Column("model_id", sa.String(128), primary_key=True),
            sa.Column("row", sa.Integer, primary_key=True),
            sa.Column("ts", sa.Float, nullable=False),
            sa.Column("version", sa.String(32), nullable=False),
            sa.Column("latency_ms", sa.Float),
            sa.Column("status", sa.Integer),
            sa.Column("req", sa.Integer, nullable=False),
            sa.Column("resp", sa.Integer, nullable=False),
            *(sa.Column(c.name, convert.SQL_TYPES[c.type]()) for c in schema.features),
            sa.Column(PREDICTION, convert.SQL_TYPES[schema.prediction.type]()),
            *(sa.Column(PROBA_PREFIX + c, sa.Float) for c in schema.classes),
        )
        sa.Index(f"{name}_ts", table.c.ts)
        return table

    def _load(self, conn: sa.Connection, model: str) -> tuple[ModelSchema, str] | None:
        row = conn.execute(sa.select(models_table).where(models_table.c.model == model)).first()
        if row is None:
            return None
        data = json.loads(row.schema)
        schema = ModelSchema(
            model,
            tuple(Column(n, t) for n, t in data["features"]),
            Column(PREDICTION, data["prediction"]),
            tuple(data.get("classes", ())),
            tuple(data.get("exclude", ())),
            tuple(data.get("inputs", ())),
        )
        return schema, row.table_name

    def _save(self, conn: sa.Connection, schema: ModelSchema, name: str, *, insert: bool) -> None:
        text = json.dumps(
            {
                "features": [[c.name, c.type] for c in schema.features],
                "prediction": schema.prediction.type,
                "classes": list(schema.classes),
                "exclude": list(schema.exclude),
                "inputs": list(schema.inputs),
            }
        )
        if insert:
            conn.execute(models_table.insert().values(model=schema.model, table_name=name, schema=text))
        else:
            conn.execute(
                models_table.update().where(models_table.c.model == schema.model).values(schema=text)
            )

    def _cached(self, model: str) -> tuple[ModelSchema, str] | None:
        hit = self._schemas.get(model)
        if hit and time.monotonic() - hit[2] < SCHEMA_TTL:
            return hit[0], hit[1]
        with self.engine.connect() as conn:
            loaded = self._load(conn, model)
        if loaded:
            self._schemas[model] = (*loaded, time.monotonic())
        return loaded

    def schema(self, model: str) -> ModelSchema | None:
        with self._errors(f"read the schema of {model!r}"):
            found = self._cached(model)
        return found[0] if found else None

    def models(self) -> list[str]:
        with self._errors("list models"), self.engine.connect() as conn:
            named = {r[0] for r in conn.execute(sa.select(models_table.c.model))}
            logged = {r[0] for r in conn.execute(sa.select(requests_table.c.model).distinct())}
        return sorted(named | logged)

    def _add_classes(self, model: str, classes: Iterable[str]) -> None:
        with self._lock, self._errors(f"add class columns to {model!r}"), self.engine.begin() as conn:
            schema, name = self._load(conn, model)  # type: ignore[misc]
            new = [c for c in dict.fromkeys(classes) if c not in schema.classes]
            usable = [c for c in new if len(PROBA_PREFIX + c) <= 63]
            present = {c["name"] for c in sa.inspect(conn).get_columns(name)}
            for label in usable:
                if PROBA_PREFIX + label not in present:
                    conn.exec_driver_sql(
                        f"ALTER TABLE {_q(name)} ADD COLUMN {_q(PROBA_PREFIX + label)} FLOAT"
                    )
            schema = ModelSchema(
                model,
                schema.features,
                schema.prediction,
                (*schema.classes, *usable),
                schema.exclude,
                schema.inputs,
            )
            self._save(conn, schema, name, insert=False)
        self._schemas[model] = (schema, name, time.monotonic())

    # --- the request log -------------------------------------------------------------------------

    def write_records(self, records: Sequence[InferenceRecord]) -> WriteResult:
        if not records:
            return WriteResult(0, 0)
        by_model: dict[str, list[InferenceRecord]] = {}
        for record in records:
            by_model.setdefault(record.model, []).append(record)
        with self._errors("read model schemas"):
            schemas = {model: self._cached(model) for model in by_model}
        for model, group in by_model.items():
            found = schemas[model]
            if found is None:
                continue
            seen = dict.fromkeys(c for r in group if r.probabilities is not None for c in r.classes)
            if set(seen) - set(found[0].classes):
                self._add_classes(model, seen)
                schemas[model] = self._cached(model)
        request_rows = [convert.request_tuple(r, (schemas[r.model] or (None,))[0]) for r in records]
        feature_rows: dict[str, list[tuple]] = {}
        untyped = rows = 0
        for model, group in by_model.items():
            found = schemas[model]
            if found is None:
                untyped += len(group)
                continue
            out = feature_rows.setdefault(found[1], [])
            converter = convert.RowConverter.of(found[0])
            for record in group:
                if not is_node_predictor(record.predictor):  # a graph node's record: request log only
                    out.extend(converter.rows(record))
            rows += len(out)
        with self._errors(f"write {len(records)} records"), self.engine.begin() as conn:
            conn.exec_driver_sql(self._requests_upsert(), request_rows)
            for model in by_model:
                found = schemas[model]
                if found is not None and feature_rows.get(found[1]):
                    batch = feature_rows.pop(found[1])
                    conn.exec_driver_sql(self._rows_upsert(found[1], found[0]), batch)
                    chunks.append(conn, chunks_table, model, batch, found[0])
        return WriteResult(len(records), rows, untyped)

    def _requests_upsert(self) -> str:
        key = ("requests",)
        if key not in self._sql:
            self._sql[key] = convert.requests_upsert(self.mark)
        return self._sql[key]

    def _rows_upsert(self, name: str, schema: ModelSchema) -> str:
        key = ("rows", name, schema.features, schema.classes)
        if key not in self._sql:
            self._sql[key] = convert.rows_upsert(name, schema, self.mark)
        return self._sql[key]

    def rows(
        self,
        model: str,
        start: datetime,
        end: datetime,
        *,
        version: str | None = None,
        predictor: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Read from the column chunks; rows held incomplete there (a half whose partner came later)
        are taken from the typed table, which merged them, and a replay's second copy is dropped. A
        count of the typed table's window checks the result; a mismatch falls back to a typed read."""
        with self._errors(f"read the rows of {model!r}"):
            found = self._cached(model)
        if found is None:
            return convert.empty_frame(None)
        schema, name = found
        wanted = [c for c in schema.features if columns is None or c.name in columns]
        low, high = _ts(start), _ts(end)
        with self._errors(f"read the rows of {model!r}"), self.engine.connect() as conn:
            purged = conn.execute(
                sa.select(models_table.c.purged_before).where(models_table.c.model == model)
            ).scalar()
            low = max(low, purged or low)
            frame = chunks.read(
                conn,
                chunks_table,
                model,
                schema,
                low,
                high,
                version=version,
                predictor=predictor,
                wanted=wanted,
            )
            incomplete = ~frame["complete"].to_numpy()
            if incomplete.any():
                ids = list(frame.loc[incomplete, "request_id"].unique())
                truth = self._typed(conn, name, schema, wanted, low, high, version, predictor, ids)
                frame = pd.concat([frame[~frame["request_id"].isin(ids)], truth], ignore_index=True)
            where, params = self._window("ts", low, high, version, predictor)
            expected = conn.exec_driver_sql(
                f"SELECT COUNT(*) FROM {_q(name)} WHERE {where}", params
            ).scalar_one()
            if len(frame) != expected:
                frame = frame.drop_duplicates(["request_id", "predictor", "model_id", "row"], keep="last")
            if len(frame) != expected:
                log.warning(
                    "column chunks of %s disagree with its typed rows; reading the typed table", model
                )
                frame = self._typed(conn, name, schema, wanted, low, high, version, predictor, None)
        return frame.reset_index(drop=True)

    def _typed(
        self,
        conn: sa.Connection,
        name: str,
        schema: ModelSchema,
        wanted: list[Column],
        low: float,
        high: float,
        version: str | None,
        predictor: str | None,
        request_ids: list[str] | None,
    ) -> pd.DataFrame:
        """Rows from the typed table (of ``request_ids`` only, when given)."""
        proba = [PROBA_PREFIX + c for c in schema.classes]
        head = [
            "request_id",
            "row",
            "ts",
            "predictor",
            "version",
            "model_id",
            "latency_ms",
            "status",
            "req",
            "resp",
        ]
        select = ", ".join(map(_q, [*head, *(c.name for c in wanted), PREDICTION, *proba]))
        where, params = self._window("ts", low, high, version, predictor)
        if request_ids is None:
            fetched = conn.exec_driver_sql(
                f"SELECT {select} FROM {_q(name)} WHERE {where}", params
            ).fetchall()
            return convert.frame(fetched, schema, wanted, proba)
        fetched = []
        for at in range(0, len(request_ids), 500):
            part = request_ids[at : at + 500]
            marks = ", ".join([self.mark] * len(part))
            sql = f"SELECT {select} FROM {_q(name)} WHERE request_id IN ({marks}) AND {where}"
            fetched += conn.exec_driver_sql(sql, (*part, *params)).fetchall()
        return convert.frame(fetched, schema, wanted, proba)

    def _window(
        self,
        ts: str,
        start: datetime | float,
        end: datetime | float,
        version: str | None,
        predictor: str | None,
    ) -> tuple[str, tuple[Any, ...]]:
        bounds = [b if isinstance(b, float) else _ts(b) for b in (start, end)]
        clauses, params = [f"{ts} >= {self.mark}", f"{ts} < {self.mark}"], bounds
        if version is not None:
            clauses.append(f"version = {self.mark}")
            params.append(version)
        if predictor is not None:
            clauses.append(f"predictor = {self.mark}")
            params.append(predictor)
        return " AND ".join(clauses), tuple(params)

    def records(self, model: str, start: datetime, end: datetime, *, limit: int | None = None) -> list[dict]:
        t = requests_table
        query = (
            sa.select(t).where(t.c.model == model, t.c.ts >= _ts(start), t.c.ts < _ts(end)).order_by(t.c.ts)
        )
        if limit is not None:
            query = query.limit(limit)
        with self._errors(f"read the records of {model!r}"), self.engine.connect() as conn:
            found = [dict(r) for r in conn.execute(query).mappings()]
        for item in found:
            item["complete"] = item["request_event_id"] is not None and item["response_event_id"] is not None
            for name in ("ts", "request_ts", "response_ts"):
                item[name] = None if item[name] is None else datetime.fromtimestamp(item[name], UTC)
            item["time"] = item.pop("ts")
        return found

    def versions(self, model: str, start: datetime, end: datetime) -> list[tuple[str, str, int]]:
        t = requests_table
        count = sa.func.count().label("n")
        query = (
            sa.select(t.c.predictor, t.c.version, count)
            .where(t.c.model == model, t.c.ts >= _ts(start), t.c.ts < _ts(end))
            .group_by(t.c.predictor, t.c.version)
            .order_by(count.desc(), t.c.predictor, t.c.version)
        )
        with self._errors(f"read the versions of {model!r}"), self.engine.connect() as conn:
            rows = conn.execute(query)
            return [(r.predictor, r.version, int(r.n)) for r in rows if not is_node_predictor(r.predictor)]

    # --- labels ----------------------------------------------------------------------------------

    def write_labels(
        self, model: str, labels: Iterable[Label], *, now: datetime | None = None
    ) -> LabelResult:
        received = _ts(now) if now is not None else self.clock()
        latest = {(x.request_id, int(x.row)): x.label for x in labels}
        if not latest:
            return LabelResult(0, 0)
        ids = sorted({request_id for request_id, _ in latest})
        rows = [
            (model, rid, row, json.dumps(convert.plain(value)), received)
            for (rid, row), value in latest.items()
        ]
        m = self.mark
        sql = (
            f"INSERT INTO pbmon_labels (model, request_id, {_q('row')}, label, received_ts) "
            f"VALUES ({m}, {m}, {m}, {m}, {m}) ON CONFLICT (model, request_id, {_q('row')}) "
            "DO UPDATE SET label = excluded.label, received_ts = excluded.received_ts"
        )
        known: set[str] = set()
        t = requests_table
        with self._errors(f"write {len(rows)} labels of {model!r}"), self.engine.begin() as conn:
            conn.exec_driver_sql(sql, rows)
            for chunk in range(0, len(ids), 500):
                part = ids[chunk : chunk + 500]
                query = (
                    sa.select(t.c.request_id).where(t.c.model == model, t.c.request_id.in_(part)).distinct()
                )
                known.update(r[0] for r in conn.execute(query))
        unknown = tuple(i for i in ids if i not in known)
        return LabelResult(len(rows), len(ids) - len(unknown), unknown)

    def labels(
        self,
        model: str,
        start: datetime,
        end: datetime,
        *,
        version: str | None = None,
        predictor: str | None = None,
    ) -> pd.DataFrame:
        where, window = self._window("r.ts", start, end, None, None)
        params = list(window)
        for column, value in (("version", version), ("predictor", predictor)):
            if value is not None:
                where += f" AND r.{column} = {self.mark}"
                params.append(value)
        # the window's request ids are found once (the (model, ts) index) and the labels looked up by
        # them; a correlated EXISTS let SQLite scan the window once per label: 140 s at 1M rows
        sql = (
            f"SELECT l.request_id, l.{_q('row')}, l.label FROM pbmon_labels l WHERE l.model = {self.mark} AND "
            f"l.request_id IN (SELECT r.request_id FROM pbmon_requests r WHERE r.model = {self.mark} AND {where})"
        )
        with self._errors(f"read the labels of {model!r}"), self.engine.connect() as conn:
            fetched = conn.exec_driver_sql(sql, (model, model, *params)).fetchall()
        schema = self.schema(model)
        return convert.labels_frame(fetched, schema.prediction.type if schema else "string")

    # --- indicator results -----------------------------------------------------------------------

    def write_indicators(self, results: Iterable[IndicatorResult]) -> int:
        m = self.mark
        rows = [
            (r.model, r.version, r.predictor, r.indicator_id, _ts(r.window_end), r.status, r.flagged,
             json.dumps(r.as_dict(), default=convert.plain, allow_nan=True))
            for r in results
        ]  # fmt: skip
        if not rows:
            return 0
        sql = (
            "INSERT INTO pbmon_indicators (model, version, predictor, indicator_id, window_end, status, flagged, "
            f"result) VALUES ({', '.join([m] * 8)}) ON CONFLICT (model, version, predictor, indicator_id, "
            "window_end) DO UPDATE SET status = excluded.status, flagged = excluded.flagged, result = excluded.result"
        )
        with self._errors(f"write {len(rows)} indicator results"), self.engine.begin() as conn:
            conn.exec_driver_sql(sql, rows)
        return len(rows)

    def indicators(
        self,
        model: str,
        *,
        version: str | None = None,
        predictor: str | None = None,
        indicator_id: str | None = None,
        last: int = 1,
    ) -> list[IndicatorResult]:
        if last < 1:
            raise ValueError(f"last must be >= 1, got {last}")
        clauses, params = [f"model = {self.mark}"], [model]
        for column, value in (("version", version), ("predictor", predictor), ("indicator_id", indicator_id)):
            if value is not None:
                clauses.append(f"{column} = {self.mark}")
                params.append(value)
        sql = (
            "SELECT result FROM (SELECT result, window_end, indicator_id, ROW_NUMBER() OVER (PARTITION BY "
            "indicator_id, version, predictor ORDER BY window_end DESC) AS n FROM pbmon_indicators WHERE "
            f"{' AND '.join(clauses)}) ranked WHERE n <= {int(last)} ORDER BY window_end DESC, indicator_id"
        )
        with self._errors(f"read the indicators of {model!r}"), self.engine.connect() as conn:
            fetched = conn.exec_driver_sql(sql, tuple(params)).fetchall()
        return [IndicatorResult.from_dict(json.loads(r[0])) for r in fetched]

    # --- retention and status --------------------------------------------------------------------

    def purge(self, model: str, before: datetime) -> int:
        cutoff, m = _ts(before), self.mark
        found = self._cached(model)
        with self._errors(f"purge the log of {model!r}"), self.engine.begin() as conn:
            conn.exec_driver_sql(
                f"DELETE FROM pbmon_labels WHERE model = {m} AND request_id IN (SELECT request_id FROM "
                f"pbmon_requests WHERE model = {m} AND ts < {m}) AND request_id NOT IN (SELECT request_id FROM "
                f"pbmon_requests WHERE model = {m} AND ts >= {m})",
                (model, model, cutoff, model, cutoff),
            )
            if found is not None:
                conn.exec_driver_sql(f"DELETE FROM {_q(found[1])} WHERE ts < {m}", (cutoff,))
                chunks.purge(conn, chunks_table, model, cutoff)
                watermark = sa.func.coalesce(models_table.c.purged_before, cutoff)
                conn.execute(
                    models_table.update()
                    .where(models_table.c.model == model)
                    .values(purged_before=sa.case((watermark > cutoff, watermark), else_=cutoff))
                )
            result = conn.exec_driver_sql(
                f"DELETE FROM pbmon_requests WHERE model = {m} AND ts < {m}", (model, cutoff)
            )
        return int(result.rowcount or 0)

    def counters(self, model: str | None = None) -> StoreCounters:
        t = requests_table
        incomplete = sa.or_(t.c.request_event_id.is_(None), t.c.response_event_id.is_(None))
        query = sa.select(
            t.c.model,
            sa.func.count(),
            sa.func.sum(sa.case((incomplete, 1), else_=0)),
            sa.func.sum(sa.case((t.c.status >= 400, 1), else_=0)),
            sa.func.sum(t.c.n_rows),
            sa.func.min(t.c.ts),
            sa.func.max(t.c.ts),
        ).group_by(t.c.model)
        if model is not None:
            query = query.where(t.c.model == model)
        flagged = sa.select(sa.func.count()).select_from(indicators_table)
        labels = sa.select(sa.func.count()).select_from(labels_table)
        if model is not None:
            flagged = flagged.where(indicators_table.c.model == model)
            labels = labels.where(labels_table.c.model == model)
        with self._errors("count the log"), self.engine.connect() as conn:
            per = conn.execute(query).all()
            n_indicators = conn.execute(flagged).scalar_one()
            n_labels = conn.execute(labels).scalar_one()
            latest = self._latest_flags(conn, model)
        firsts = [r[5] for r in per if r[5] is not None]
        lasts = [r[6] for r in per if r[6] is not None]
        return StoreCounters(
            records=sum(int(r[1]) for r in per),
            incomplete=sum(int(r[2] or 0) for r in per),
            errors=sum(int(r[3] or 0) for r in per),
            rows=sum(int(r[4] or 0) for r in per),
            labels=int(n_labels),
            indicators=int(n_indicators),
            flagged=latest,
            first=datetime.fromtimestamp(min(firsts), UTC) if firsts else None,
            last=datetime.fromtimestamp(max(lasts), UTC) if lasts else None,
            per_model={r[0]: int(r[1]) for r in per},
        )

    def _latest_flags(self, conn: sa.Connection, model: str | None) -> int:
        where, params = ("WHERE model = " + self.mark, (model,)) if model is not None else ("", ())
        sql = (
            "SELECT COUNT(*) FROM (SELECT flagged, ROW_NUMBER() OVER (PARTITION BY model, indicator_id, version, "
            f"predictor ORDER BY window_end DESC) AS n FROM pbmon_indicators {where}) ranked "
            "WHERE n = 1 AND flagged"
        )
        return int(conn.exec_driver_sql(sql, params).scalar_one())


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
