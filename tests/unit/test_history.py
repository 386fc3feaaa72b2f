"""Serving history and the per-model promotion lock (SQLite; PostgreSQL in tests/integration)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pushbutton.errors import LockBusy
from pushbutton.history import HistoryStore


@pytest.fixture
def store(tmp_path: Path) -> HistoryStore:
    return HistoryStore(f"sqlite:///{tmp_path / 'pb.db'}")


def test_events_are_returned_newest_first_per_model(store: HistoryStore) -> None:
    store.record(namespace="models", model="iris", action="activate", version="1", actor="ann", run_id="r1")
    store.record(namespace="models", model="wine", action="activate", version="7")
    store.record(namespace="models", model="iris", action="activate", version="2", previous_version="1",
                 actor="bob", run_id="r2", detail={"why": "better"})  # fmt: skip
    events = store.events("iris")
    assert [(e["version"], e["previous_version"], e["actor"]) for e in events] == [
        ("2", "1", "bob"),
        ("1", None, "ann"),
    ]
    assert events[0]["detail"] == {"why": "better"}
    assert events[0]["at"] >= events[1]["at"]


def test_what_a_run_already_did_is_found_by_run_and_action(store: HistoryStore) -> None:
    store.record(namespace="models", model="iris", action="activate", version="2", previous_version="1",
                 run_id="registered__v2")  # fmt: skip
    store.record(namespace="models", model="iris", action="rollback", version="1", run_id="manual__1")
    done = store.done_by_run("iris", "registered__v2", ("activate",))
    assert (done["version"], done["previous_version"]) == ("2", "1")
    assert store.done_by_run("iris", "registered__v2", ("rollback",)) is None
    assert store.done_by_run("wine", "registered__v2", ("activate",)) is None
    assert store.done_by_run("iris", "", ("activate", "rollback")) is None  # no run: nothing to match


def test_history_survives_a_new_store_object(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pb.db'}"
    HistoryStore(url).record(namespace="models", model="iris", action="rollback", version="1")
    assert HistoryStore(url).events("iris")[0]["action"] == "rollback"


def assert_lock_serialises(first: HistoryStore, second: HistoryStore, model: str) -> None:
    """While ``first`` holds the model's lock, ``second`` cannot take it (its wait ends in LockBusy);
    asked again as ``first`` lets go, it waits and gets it (shared with the PostgreSQL test)."""
    order: list[str] = []
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with first.lock(model):
            order.append("first-in")
            inside.set()
            order.append("first-out" if release.wait(30) else "first held it for 30s")

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        assert inside.wait(30), "the first promotion never got the lock"
        with pytest.raises(LockBusy), second.lock(model, timeout=0.2):
            order.append("second while the first holds it")
    finally:
        release.set()  # the first lets go while the second asks (or has just asked) for the lock
        with second.lock(model, timeout=30):
            order.append("second")
        thread.join(30)
    assert not thread.is_alive()
    assert order == ["first-in", "first-out", "second"]


def test_lock_serialises_two_promotions_of_one_model(store: HistoryStore) -> None:
    assert_lock_serialises(store, store, "iris")


def test_locks_of_different_models_do_not_block(store: HistoryStore) -> None:
    with store.lock("iris"), store.lock("wine", timeout=0.5):
        pass


def test_lock_timeout_is_lock_busy_which_operators_retry(store: HistoryStore) -> None:
    with (
        store.lock("iris"),
        pytest.raises(LockBusy, match="another promotion of 'iris'"),
        store.lock("iris", timeout=0.2),
    ):
        pass
