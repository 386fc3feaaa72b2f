"""Serving history and promotion locks on a real PostgreSQL server (advisory locks)."""

from __future__ import annotations

import pytest

from pushbutton.errors import LockBusy
from pushbutton.history import HistoryStore
from tests.integration.postgres import postgres_server
from tests.unit.test_history import assert_lock_serialises

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pg_url():
    with postgres_server() as url:
        yield url


def test_history_round_trip(pg_url: str) -> None:
    store = HistoryStore(pg_url)
    store.record(
        namespace="models", model="pg-iris", action="activate", version="1", actor="ann", run_id="r1"
    )
    store.record(namespace="models", model="pg-iris", action="rollback", version="0", previous_version="1")
    assert [e["action"] for e in HistoryStore(pg_url).events("pg-iris")] == ["rollback", "activate"]


def test_advisory_lock_serialises_across_connections(pg_url: str) -> None:
    assert_lock_serialises(HistoryStore(pg_url), HistoryStore(pg_url), "pg-iris")


def test_advisory_lock_timeout_is_a_conflict(pg_url: str) -> None:
    store, other = HistoryStore(pg_url), HistoryStore(pg_url)
    with (
        store.lock("pg-wine"),
        pytest.raises(LockBusy, match="holds the lock"),
        other.lock("pg-wine", timeout=0.3),
    ):
        pass
