"""The request logger as a process, on SQLite and on a real PostgreSQL server; the SQL store's
contract (the unit tests of tests/unit/test_monitoring_store.py) re-run on PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from pushbutton.monitoring import records as R
from pushbutton.monitoring.logger import logger_argv
from pushbutton.monitoring.store.sql import SqlStore
from pushbutton.procs import ProcessGroup, free_port, http_ok, wait_ready
from tests.integration.postgres import postgres_server
from tests.unit import test_monitoring_store as contract
from tests.unit.test_events import seldon_headers, structured

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WINDOW = (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC))
BATCH = {"Content-Type": R.BATCH_CONTENT_TYPE}


@contextmanager
def running_logger(tmp: Path, store_url: str) -> Iterator[tuple[str, ProcessGroup]]:
    """The logger process on a free port, typing models from the repository's specs."""
    group = ProcessGroup(tmp / "run", tmp / "logs")
    port = free_port()
    env = {**os.environ, "PUSHBUTTON_HOME": str(tmp / "home")}
    info = group.start("logger", logger_argv("127.0.0.1", port, store_url, REPO / "models"), env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(info, http_ok(f"{base}/health"), 60, "the request logger")
        yield base, group
    finally:
        group.stop_all()


def iris_events(request_id: str, n: int) -> list[dict]:
    request, response = (
        structured("request", event_id=f"{request_id}-q", request_id=request_id),
        structured("response", event_id=f"{request_id}-p", request_id=request_id),
    )
    request["data"] = {"data": {"names": ["sepal_length_cm", "petal_width_cm"], "ndarray": [[5.0 + n, 0.2]]}}
    response["data"] = {"data": {"ndarray": [n % 3]}}
    return [request, response]


def post(base: str, events: list[dict]) -> int:
    return httpx.post(f"{base}/", content=json.dumps(events), headers=BATCH, timeout=30).status_code


def test_logger_on_sqlite_stores_typed_rows_and_a_killed_logger_loses_nothing_acknowledged(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'monitoring.db'}"
    events = [e for n in range(20) for e in iris_events(f"r{n}", n)]
    with running_logger(tmp_path, url) as (base, group):
        # halves of one request in different deliveries, and Seldon's own binary mode
        assert post(base, events[:21]) == 200
        assert post(base, events[21:]) == 200
        headers = seldon_headers("request", event_id="s-q", request_id="seldon-1")
        body = {"data": {"names": ["petal_length_cm"], "ndarray": [[1.4]]}}
        assert httpx.post(f"{base}/", content=json.dumps(body), headers=headers).status_code == 200
        status = httpx.get(f"{base}/status").json()
        assert status["received"] == 41 and status["rejected"] == 0
        os.killpg(group.get("logger").pgid, signal.SIGKILL)  # no clean shutdown
    with SqlStore(url) as store:
        assert store.counters("iris").records == 21  # every acknowledged event is in the store
    with running_logger(tmp_path, url) as (base, _):
        assert post(base, events) == 200  # the emitter replays what it is unsure of: no duplicates
        assert httpx.get(f"{base}/status").json()["received"] == 40
    with SqlStore(url) as store:
        counters = store.counters("iris")
        assert (counters.records, counters.incomplete) == (21, 1)  # seldon-1 never got a response
        frame = store.rows("iris", *WINDOW, predictor="shadow").sort_values("request_id")
    assert len(frame) == 20 and frame["complete"].all()
    assert str(frame["sepal_length_cm"].dtype) == "float64" and frame["sepal_width_cm"].isna().all()
    assert str(frame["prediction"].dtype) == "Int64"  # iris's schema.output is a long
    assert sorted(frame["sepal_length_cm"]) == [5.0 + n for n in range(20)]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
def pg_database(pg_url: str) -> str:
    """A fresh database on the module's server (each test owns its tables)."""
    name = f"t{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return pg_url.rsplit("/", 1)[0] + "/" + name


CONTRACT: list[Callable[[SqlStore], None]] = [
    contract.test_features_are_typed_columns,
    contract.test_round_trip_to_a_typed_frame,
    contract.test_writes_are_idempotent,
    contract.test_halves_written_apart_merge_into_one_complete_record,
    contract.test_filters_and_versions,
    contract.test_untyped_model_is_kept_in_the_request_table,
    contract.test_positional_rows_follow_the_spec_order,
    contract.test_a_changed_feature_type_is_refused_with_the_fix,
    contract.test_labels_are_kept_and_unknown_ids_reported,
    contract.test_indicator_results_replace_on_recompute_and_read_newest_first,
    contract.test_purge_at_the_retention_edge,
    contract.test_counters,
]


@pytest.mark.parametrize("check", CONTRACT, ids=[c.__name__.removeprefix("test_") for c in CONTRACT])
def test_sql_store_contract_on_postgres(pg_database: str, check: Callable[[SqlStore], None]) -> None:
    with SqlStore(pg_database) as store:
        store.ensure_model("shop", contract.FEATURES, ("label", "long"))
        check(store)


def test_logger_on_postgres(tmp_path: Path, pg_database: str):
    events = [e for n in range(5) for e in iris_events(f"r{n}", n)]
    with running_logger(tmp_path, pg_database) as (base, _):
        assert post(base, events[::2]) == 200  # requests first, responses in a later delivery
        assert post(base, events[1::2]) == 200
        assert post(base, events) == 200  # a replay
    with SqlStore(pg_database) as store:
        counters = store.counters("iris")
        assert (counters.records, counters.incomplete, counters.rows) == (5, 0, 5)
        frame = store.rows("iris", *WINDOW)
    assert sorted(frame["prediction"].tolist()) == [0, 0, 1, 1, 2]
    assert frame["latency_ms"].tolist() == pytest.approx([250.0] * 5)


def test_logger_workers_share_the_port_store_everything_and_stop_together(tmp_path: Path) -> None:
    """``--workers 2``: deliveries on separate connections spread over both workers, halves of one
    request sent to different connections still make one complete record, ``/status`` sums the
    workers, and stopping the supervisor stops every worker."""
    url = f"sqlite:///{tmp_path / 'monitoring.db'}"
    group = ProcessGroup(tmp_path / "run", tmp_path / "logs")
    port, status_dir = free_port(), tmp_path / "logger"
    env = {**os.environ, "PUSHBUTTON_HOME": str(tmp_path / "home")}
    argv = logger_argv("127.0.0.1", port, url, REPO / "models", workers=2, status_dir=status_dir)
    info = group.start("logger", argv, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(info, http_ok(f"{base}/health"), 60, "the request logger")

        def both_serving() -> bool:  # each worker publishes once it serves; one may be restarting at first
            try:
                return httpx.get(f"{base}/status", timeout=5).json()["workers"] == 2
            except httpx.HTTPError:
                return False

        wait_ready(info, both_serving, 60, "both logger workers")  # else the kernel sends everything to one
        events = [e for n in range(40) for e in iris_events(f"w{n}", n)]
        for first in range(0, len(events), 3):  # a new connection each: the kernel spreads them
            with httpx.Client() as client:
                answer = client.post(f"{base}/", content=json.dumps(events[first : first + 3]), headers=BATCH)
            assert answer.status_code == 200

        def children() -> list[int]:
            return [
                int(c)
                for t in Path(f"/proc/{info.pid}/task").glob("*/children")
                for c in t.read_text().split()
            ]

        # both workers are up (one the supervisor is restarting, e.g. after the shared SQLite file was
        # locked, counts once it is back): a bounded wait, not a single snapshot
        deadline = time.monotonic() + 30
        while len(workers := children()) != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers) == 2
        deadline = time.monotonic() + 30
        while True:  # each worker publishes its figures every second
            status = httpx.get(f"{base}/status").json()
            if status["received"] == len(events) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status["workers"] == 2 and status["received"] == len(events) and status["store_up"] is True
        assert all(part["received"] > 0 for part in status["per_worker"])  # both took deliveries
    finally:
        group.stop("logger")
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]  # no orphans
    with SqlStore(url) as store:
        frame = store.rows("iris", *WINDOW)
        assert (store.counters("iris").records, store.counters("iris").incomplete) == (40, 0)
    assert len(frame) == 40 and frame["complete"].all()


def test_the_supervisor_gives_up_on_workers_that_keep_dying_and_stops_on_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pushbutton.monitoring import workers as W

    monkeypatch.setattr(W, "RESTART_DELAY", 0.01)
    monkeypatch.setattr(W, "STORE_RETRY", 0.01)
    dies = [sys.executable, "-c", "import sys; sys.exit(1)"]  # e.g. a port it cannot bind
    started = time.monotonic()
    assert W.supervise([], 2, tmp_path / "status", program=dies) == 1
    assert time.monotonic() - started < W.QUICK_EXIT * W.MAX_QUICK_EXITS  # not a restart loop forever
    refuses = [sys.executable, "-c", "import sys; sys.exit(2)"]
    assert W.supervise([], 2, tmp_path / "status", program=refuses) == W.CONFIG_ERROR
    store_down = [sys.executable, "-c", (
        "import pathlib, sys; tries = pathlib.Path(sys.argv[-1]) / 'tries'\n"
        "tries.parent.mkdir(parents=True, exist_ok=True); tries.write_text(tries.read_text() + 'x' "
        "if tries.exists() else 'x')\n"
        "sys.exit(3 if len(tries.read_text()) < 8 else 2)")]  # fmt: skip
    # a store down at start is retried past the quick-exit limit (then the 8th start stops it: code 2)
    assert W.supervise([], 1, tmp_path / "down", program=store_down) == W.CONFIG_ERROR
    assert (tmp_path / "down" / "tries").read_text() == "x" * 8
