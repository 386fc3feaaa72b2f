"""Several request-logger processes on one port: ``pushbutton logger --workers N``.

One logger process parses and writes on one core (a Python process: bench/ingest.py measured ~17,000
records/s end to end, CPU-bound). With ``--workers N`` the process started is a small supervisor that
runs N worker processes (``python -m pushbutton.monitoring.logger --worker I``); each binds the same
port with ``SO_REUSEPORT``, so the kernel spreads connections over them, and each has its own pairing
and store connection. The two halves of a request that reach different workers are each stored at
once as incomplete and merged by the store when the partner arrives (the same path as a half that
comes late), so nothing depends on which worker gets what — but each worker's pairer counts such a half
as ``incomplete`` when its wait ends, so with several workers and senders that post the halves apart
(Seldon's executor does) the logger's ``incomplete`` overstates; the store's own count
(``pushbutton status MODEL``) is the truth. SQLite serialises the workers' writes (WAL, busy timeout);
PostgreSQL and Elasticsearch take them in parallel.

Counters: each worker writes its ``/status`` figures to ``<status dir>/worker-<I>.json`` every second
(atomically); any worker's ``GET /status`` answers the sum over all workers (``combine``), with
``workers`` and ``per_worker``. The supervisor forwards SIGTERM/SIGINT to the workers, waits for them,
and restarts a worker that died (a crash loses nothing acknowledged: deliveries are answered only
once stored, and the gateway's emitter resends the rest; a restarted worker's counters start again
from zero). A worker that exits with a configuration error (code 2) stops them all; one that keeps
dying within ``QUICK_EXIT`` seconds of its start (a port it cannot bind, a broken install) is given up
after ``MAX_QUICK_EXITS`` tries and stops them all with code 1, so ``pushbutton up`` fails at once
with the log instead of waiting on a supervisor that restarts forever. A store that is unavailable
when a worker starts (code ``STORE_DOWN``) is retried every ``STORE_RETRY`` seconds, however long it
stays down (the gateway's emitter spools meanwhile).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("pushbutton.logger")

MODULE = "pushbutton.monitoring.logger"
PUBLISH_SECONDS = 1.0
RESTART_DELAY = 1.0
STOP_TIMEOUT = 10.0
CONFIG_ERROR = 2
STORE_DOWN = 3  # the store did not answer at start: retried, not a configuration error
QUICK_EXIT = 10.0  # seconds; a worker that dies sooner than this after its start counts as a quick exit
MAX_QUICK_EXITS = 5
STORE_RETRY = 5.0  # seconds before a worker whose store was down at its start tries again


def publish(status_dir: Path, worker: int, figures: dict[str, Any]) -> None:
    """Write one worker's figures where the others read them (replace, never a half-written file)."""
    status_dir.mkdir(parents=True, exist_ok=True)
    target = status_dir / f"worker-{worker}.json"
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(figures, default=str))
    partial.replace(target)


def gather(status_dir: Path) -> list[dict[str, Any]]:
    """Every worker's last published figures, by worker number."""
    found = []
    for path in sorted(status_dir.glob("worker-*.json"), key=lambda p: int(p.stem.split("-", 1)[1])):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):  # replaced between glob and read, or gone: the next answer has it
            continue
    return found


def combine(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One answer for all workers: numbers summed, flags true only if true everywhere (``store_up``),
    other values from the first worker that has one (``last_error``: the first non-empty)."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if key not in out or out[key] in (None, ""):
                out[key] = value
            elif isinstance(value, bool):
                out[key] = bool(out[key]) and value
            elif isinstance(value, int | float) and isinstance(out[key], int | float):
                out[key] = out[key] + value
    return out


def supervise(
    argv: Sequence[str], workers: int, status_dir: Path, *, program: Sequence[str] | None = None
) -> int:
    """Run ``workers`` logger workers with ``argv`` (the logger's own arguments, minus ``--workers``)
    until SIGTERM/SIGINT; the exit code is 0, 2 when a worker refused its configuration, 1 when one
    kept dying at start. ``program``: the worker command before its arguments (default: the logger)."""
    for stale in status_dir.glob("worker-*.json") if status_dir.exists() else ():
        stale.unlink(missing_ok=True)  # figures of an earlier run must not be summed in

    def start(index: int) -> subprocess.Popen:
        command = [*(program or (sys.executable, "-m", MODULE)), *argv, "--worker", str(index),
                   "--workers", str(workers), "--status-dir", str(status_dir)]  # fmt: skip
        return subprocess.Popen(command)

    children = {index: start(index) for index in range(workers)}
    started = dict.fromkeys(children, time.monotonic())
    quick = dict.fromkeys(children, 0)
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for index, child in list(children.items()):
                status = child.poll()
                if status is None or stopping:
                    continue
                if status == CONFIG_ERROR:
                    log.error("logger worker %d refused its configuration; stopping", index)
                    stopping, code = True, CONFIG_ERROR
                    break
                if status == STORE_DOWN:  # the store may come back: retry, more slowly, never give up
                    delay = STORE_RETRY
                else:
                    quick[index] = quick[index] + 1 if time.monotonic() - started[index] < QUICK_EXIT else 0
                    delay = RESTART_DELAY
                if quick[index] >= MAX_QUICK_EXITS:
                    log.error("logger worker %d exited %d times within %.0fs of its start (last code %s); "
                              "stopping", index, quick[index], QUICK_EXIT, status)  # fmt: skip
                    stopping, code = True, 1
                    break
                log.error("logger worker %d exited with %s; starting it again in %.0fs", index, status, delay)
                time.sleep(delay)  # a SIGTERM meanwhile ends the loop right after it
                children[index], started[index] = start(index), time.monotonic()
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
