"""Benchmark: the request logger or its store down for 60 s under 200 req/s — is anything lost or
stored twice once the gateway has replayed its spool?

A stand-in model behind a real gateway process with request logging on, the real logger
(``python -m pushbutton.monitoring.logger``) writing the SQLite store. Open-loop load at ``--rate``
for ``--before`` + ``--down`` + ``--after`` seconds; the outage lasts ``--down`` seconds:

* ``--what logger``: the logger is killed (SIGKILL: no goodbye, deliveries in flight unanswered)
  and started again;
* ``--what store``: the logger stays up but its store refuses writes: another connection holds an
  exclusive lock on the SQLite file (``BEGIN EXCLUSIVE``), so writes wait out SQLite's busy timeout
  and fail; the logger answers 503 (or the gateway's send times out), and writes that did get
  through late are resent by the replay (idempotent by event id).

Afterwards it waits until the store holds every request the client got an answer for, then counts
the store's records by request id: lost (answered, not stored), incomplete (stored without its
response), duplicated (stored more than once) — and the gateway's counters (spooled, replayed,
dropped) and the client's failed requests.

    .venv/bin/python bench/logger_outage.py [--what logger|store --rate 200 --down 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from logging_common import Load, Processes, open_loop, store_check, wait_for_store


class StoreLock:
    """Holds an exclusive write lock on the SQLite store from another connection."""

    def __init__(self, path: Path):
        self.path = path
        self.conn: sqlite3.Connection | None = None

    def take(self) -> None:
        self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        if self.conn is not None:
            self.conn.execute("ROLLBACK")
            self.conn.close()
            self.conn = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--what", choices=("logger", "store"), default="logger", help="what goes down")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--before", type=float, default=15.0, help="seconds of load before the outage")
    parser.add_argument("--down", type=float, default=60.0, help="seconds the logger or store is down")
    parser.add_argument("--after", type=float, default=30.0, help="seconds of load after it is back")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait for the replay")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pushbutton-outage-"))
    procs = Processes(root)
    since = datetime.now(UTC) - timedelta(minutes=1)
    timeline: list[dict[str, Any]] = []
    load, warmup = Load(), Load()
    lock = StoreLock(root / "monitoring.db")
    t0 = time.monotonic()

    def mark(what: str) -> None:
        timeline.append(
            {"t_s": round(time.monotonic() - t0, 1), "event": what, "gateway": procs.gateway_logging()}
        )

    def outage() -> None:
        if args.what == "logger":
            info = procs.group.get("logger")
            os.killpg(info.pgid, signal.SIGKILL)
            procs.group.stop("logger", timeout=5)
        else:
            lock.take()
        mark(f"{args.what} down")

    def recovery() -> None:
        mark(f"{args.what} back (before)")
        if args.what == "logger":
            procs.start_logger()
        else:
            lock.release()
        mark(f"{args.what} back")

    sampler_stop = threading.Event()

    def sample() -> None:
        while not sampler_stop.wait(5.0):
            mark("sample")

    try:
        procs.start_backend()
        procs.start_logger()
        procs.start_gateway(logging=True)
        asyncio.run(open_loop(procs.predict_url, args.rate, 2.0, warmup))  # warm-up, not counted
        since = datetime.now(UTC) - timedelta(seconds=1)
        sampler = threading.Thread(target=sample, daemon=True)
        t0 = time.monotonic()
        sampler.start()
        seconds = args.before + args.down + args.after
        events = [(args.before, outage), (args.before + args.down, recovery)]
        asyncio.run(open_loop(procs.predict_url, args.rate, seconds, load, events))
        sampler_stop.set()
        mark("load done")
        waited = wait_for_store(procs.store_url, load.request_ids, since, args.drain_timeout)
        mark("stored")
        store = store_check(procs.store_url, load.request_ids, since, warmup.request_ids)
        gateway = procs.gateway_logging()
        logger = procs.logger_status()
    finally:
        sampler_stop.set()
        lock.release()
        procs.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    gateway_keys = ("queued", "sent", "spooled", "replayed", "dropped", "spool_pending", "logger_up")
    logger_keys = ("deliveries", "received", "written", "duplicates", "unavailable", "store_errors")
    sampled = ("sent", "spooled", "replayed", "spool_pending", "logger_up")
    summary = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "what_went_down": args.what,
        "rate": args.rate,
        "down_seconds": args.down,
        "load": load.summary(),
        "store": {**store, "seconds_to_store_after_load": waited},
        "gateway_logging": {k: gateway[k] for k in gateway_keys},
        "logger": {k: logger.get(k) for k in logger_keys},
        "timeline": [
            {"t_s": m["t_s"], "event": m["event"], **{k: m["gateway"][k] for k in sampled}} for m in timeline
        ],
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
