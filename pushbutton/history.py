"""What served when: an append-only serving history in the platform SQL store, plus per-model locks.

SQLite by default (embedded stack), PostgreSQL in production. Locks serialise promotions of one
model: a PostgreSQL advisory lock, or an exclusive file lock beside a SQLite database. A lock lives as
long as one process's session, so a step that hands its wait for Seldon to Airflow's triggerer keeps
other promotions of the model out with a lease (a row naming the holder and until when) instead: the
lock is refused to anyone else while the lease runs, and the holder's resumed step gets it back.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pushbutton.errors import LeaseHeld, LockBusy

metadata = sa.MetaData()
events = sa.Table(
    "pushbutton_serving_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("model", sa.String(63), nullable=False, index=True),
    sa.Column("action", sa.String(32), nullable=False),  # deploy_candidate|activate|reject|rollback|promote
    sa.Column("version", sa.String(16), nullable=False),
    sa.Column("previous_version", sa.String(16)),
    sa.Column("actor", sa.String(200), nullable=False, default=""),
    sa.Column("run_id", sa.String(250), nullable=False, default=""),
    sa.Column("detail", sa.Text, nullable=False, default="{}"),
)
leases = sa.Table(
    "pushbutton_promotion_leases",
    metadata,
    sa.Column("model", sa.String(63), primary_key=True),
    sa.Column("holder", sa.String(500), nullable=False),  # e.g. <dag_id>/<run_id>/<task_id>
    sa.Column("until", sa.Float, nullable=False),  # wall clock (epoch seconds)
    sa.Column("carry", sa.Text, nullable=False, default="{}"),  # the waiting step's undo steps and deadline
)


class HistoryStore:
    def __init__(self, url: str):
        self.url = url
        self.engine = sa.create_engine(url, future=True, pool_pre_ping=True)
        metadata.create_all(self.engine)
        self.clock = time.time  # the leases' clock (tests inject one)

    def record(
        self,
        *,
        namespace: str,
        model: str,
        action: str,
        version: str,
        previous_version: str | None = None,
        actor: str = "",
        run_id: str = "",
        detail: dict[str, Any] | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                events.insert().values(
                    at=datetime.now(UTC),
                    namespace=namespace,
                    model=model,
                    action=action,
                    version=version,
                    previous_version=previous_version,
                    actor=actor or "",
                    run_id=run_id or "",
                    detail=json.dumps(detail or {}, sort_keys=True, default=str),
                )
            )

    def events(self, model: str, limit: int = 50) -> list[dict[str, Any]]:
        query = sa.select(events).where(events.c.model == model).order_by(events.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [{**row, "detail": json.loads(row["detail"])} for row in rows]

    def done_by_run(self, model: str, run_id: str, actions: tuple[str, ...]) -> dict[str, Any] | None:
        """The latest of ``actions`` on ``model`` recorded by DAG run ``run_id`` (None without a run id)."""
        if not run_id:
            return None
        query = (
            sa.select(events)
            .where(events.c.model == model, events.c.run_id == run_id, events.c.action.in_(actions))
            .order_by(events.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return {**row, "detail": json.loads(row["detail"])} if row else None

    @contextlib.contextmanager
    def lock(self, model: str, timeout: float = 120.0, holder: str = "") -> Iterator[None]:
        """Hold the model's promotion lock (waits up to ``timeout`` seconds); ``LockBusy`` while
        someone other than ``holder`` holds the model's lease (a step waiting for Seldon)."""
        with self._mutex(model, timeout):
            lease = self.lease(model)
            if lease is not None and lease["holder"] != holder:
                until = datetime.fromtimestamp(lease["until"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                raise LeaseHeld(
                    f"another promotion of '{model}' ({lease['holder']}) is waiting for Seldon to roll out "
                    f"its change (lease until {until}); retry after it finishes"
                )
            yield

    def lease(self, model: str) -> dict[str, Any] | None:
        """The model's running lease (holder, until, carry), None when there is none or it ran out."""
        query = sa.select(leases).where(leases.c.model == model, leases.c.until > self.clock())
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return {**row, "carry": json.loads(row["carry"] or "{}")} if row else None

    def hold(self, model: str, holder: str, until: float, carry: dict[str, Any] | None = None) -> None:
        """Give ``holder`` the model's lease until ``until`` (epoch seconds), keeping ``carry`` (what its
        step needs to finish or undo, should its deferral end without an event); call under ``lock``."""
        with self.engine.begin() as conn:
            conn.execute(leases.delete().where(leases.c.model == model))
            conn.execute(leases.insert().values(model=model, holder=holder, until=until,
                                                carry=json.dumps(carry or {}, default=str)))  # fmt: skip

    def release(self, model: str, holder: str) -> bool:
        """End ``holder``'s lease of the model (idempotent); True when there was one."""
        with self.engine.begin() as conn:
            gone = conn.execute(leases.delete().where(leases.c.model == model, leases.c.holder == holder))
        return bool(gone.rowcount)

    @contextlib.contextmanager
    def _mutex(self, model: str, timeout: float) -> Iterator[None]:
        if self.engine.dialect.name == "postgresql":
            key = int.from_bytes(
                hashlib.sha256(f"pushbutton:{model}".encode()).digest()[:8], "big", signed=True
            )
            with self.engine.connect() as conn:
                conn.execute(
                    sa.text("SELECT set_config('lock_timeout', :ms, false)"), {"ms": f"{int(timeout * 1000)}"}
                )
                try:
                    conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                except sa.exc.OperationalError as exc:
                    raise LockBusy(f"another promotion of '{model}' holds the lock; retry later") from exc
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
            return
        database = self.engine.url.database or ""
        base = Path(database).parent if database and database != ":memory:" else Path("/tmp")
        path = base / "locks" / f"{model}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as handle:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LockBusy(f"another promotion of '{model}' holds {path}; retry later") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
