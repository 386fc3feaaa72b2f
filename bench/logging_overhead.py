"""Benchmark: what request logging adds to a request through the gateway at 200 req/s.

A stand-in model (a one-thread HTTP server answering like seldon-core's wrapper, so the model's own
time does not drown the figure) behind a real gateway process; the gateway runs alternately with
request logging off (``--logger-url ''``) and on (Seldon CloudEvents to the real logger,
``python -m pushbutton.monitoring.logger``, writing the SQLite store with the iris spec's typed
columns — all on this machine, as in the embedded stack). Each round is ``--seconds`` of open-loop
load at ``--rate`` from a fresh gateway process; off and on alternate for ``--rounds`` rounds.

Reports, per mode, latency p50/p90/p99 and failed requests; the p50 added by logging (on minus off,
per round and pooled); and for logging on, the gateway's logging counters and the store checked by
request id (every answered request stored once, with its response).

    .venv/bin/python bench/logging_overhead.py [--rate 200 --seconds 30 --rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from logging_common import Load, Processes, open_loop, percentile, store_check, wait_for_store


def run_round(
    procs: Processes, logging: bool, rate: float, seconds: float, warmup: Load, warmup_seconds: float
) -> tuple[Load, Any]:
    procs.start_gateway(logging=logging)
    try:
        asyncio.run(open_loop(procs.predict_url, rate, warmup_seconds, warmup))  # connections, caches
        load = Load()
        asyncio.run(open_loop(procs.predict_url, rate, seconds, load))
        counters = procs.gateway_logging()
    finally:
        procs.group.stop("gateway")
    return load, counters


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each round")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pushbutton-logbench-"))
    procs = Processes(root)
    since = datetime.now(UTC) - timedelta(minutes=1)
    rounds: list[dict[str, Any]] = []
    pooled: dict[str, Load] = {"off": Load(), "on": Load()}
    logged_ids: list[str] = []
    warmup = Load()
    try:
        procs.start_backend()
        procs.start_logger()
        for index in range(args.rounds):
            row: dict[str, Any] = {"round": index + 1}
            for mode in ("off", "on"):
                load, counters = run_round(procs, mode == "on", args.rate, args.seconds, warmup, args.warmup)
                row[mode] = load.summary()
                if mode == "on":
                    row["on"]["gateway_logging"] = {k: counters[k] for k in
                                                    ("sent", "spooled", "replayed", "dropped_total")}  # fmt: skip
                    logged_ids += load.request_ids
                for name in ("latencies", "request_ids", "failures"):
                    getattr(pooled[mode], name).extend(getattr(load, name))
                pooled[mode].sent += load.sent
                pooled[mode].lag_max = max(pooled[mode].lag_max, load.lag_max)
            row["p50_added_ms"] = round(row["on"]["p50_ms"] - row["off"]["p50_ms"], 3)
            rounds.append(row)
            print(json.dumps(row), file=sys.stderr)
        waited = wait_for_store(procs.store_url, logged_ids, since, timeout=120)
        store = store_check(procs.store_url, logged_ids, since, warmup.request_ids)
        logger = procs.logger_status()
    finally:
        procs.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    p50 = {mode: percentile(load.latencies, 50) * 1000 for mode, load in pooled.items()}
    summary = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "rate": args.rate,
        "seconds_per_round": args.seconds,
        "rounds": rounds,
        "pooled": {mode: load.summary() for mode, load in pooled.items()},
        "p50_added_ms": round(p50["on"] - p50["off"], 3),
        "p50_added_ms_per_round": [r["p50_added_ms"] for r in rounds],
        "failed_requests": {mode: len(load.failures) for mode, load in pooled.items()},
        "store": {**store, "seconds_to_store_after_load": waited},
        "logger": {k: logger.get(k) for k in ("deliveries", "received", "written", "duplicates", "rejected")},
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
