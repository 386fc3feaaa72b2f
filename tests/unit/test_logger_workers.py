"""``pushbutton logger --workers N``: how workers share their counters (``monitoring/workers.py``)."""

from __future__ import annotations

from pathlib import Path

from pushbutton.monitoring.workers import combine, gather, publish


def test_the_answer_sums_counters_and_is_up_only_if_every_worker_is() -> None:
    one = {"received": 10, "written": 5, "store_up": True, "last_error": "", "store": "sqlite:///m.db"}
    two = {"received": 4, "written": 2, "store_up": False, "last_error": "database is locked", "store": "x"}
    assert combine([one, two]) == {"received": 14, "written": 7, "store_up": False,
                                   "last_error": "database is locked", "store": "sqlite:///m.db"}  # fmt: skip
    assert combine([one]) == one and combine([]) == {}


def test_workers_publish_whole_files_and_are_read_in_worker_order(tmp_path: Path) -> None:
    status = tmp_path / "logger"
    for index in (10, 2, 1):
        publish(status, index, {"worker": index, "received": index})
    publish(status, 2, {"worker": 2, "received": 20})  # replaced, not appended
    (status / "worker-3.json").write_text('{"received": ')  # a torn file of a crashed writer
    assert [p["worker"] for p in gather(status)] == [1, 2, 10]
    assert combine(gather(status))["received"] == 31
    assert not list(status.glob("*.tmp"))
