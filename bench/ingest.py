"""Request-log ingestion and window reads of the embedded monitoring store (issue 14 §6).

Three measurements, each in a fresh temporary directory, on a model of ``--features`` double features:

* ``store``  — ``SqlStore.write_records`` alone (SQLite, WAL): records/s for batches of ``--batch``
  complete records (one input row each, prediction and two class probabilities);
* ``logger`` — end to end: a logger process (``python -m pushbutton.monitoring.logger``) on SQLite and
  ``--senders`` sender processes POSTing ``application/cloudevents-batch+json`` deliveries of ``--batch``
  records (a request and a response event each, as the gateway's emitter sends them) as fast as the
  logger answers; records/s sustained = records stored / seconds from the first POST until the last
  record is stored (every delivery must answer 200; the store is counted afterwards);
* ``read``   — ``SqlStore.rows`` of a ``--read-rows`` window into a typed pandas frame, and
  ``aggregate.window_aggregates`` over it (seconds; rows are bulk-written first).

    flock /tmp/pushbutton-heavy.lock .venv/bin/python bench/ingest.py --records 200000 --read-rows 100000 1000000

Prints one line per figure and, with ``--report FILE``, writes them as JSON. Timings are reported,
never asserted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pushbutton.monitoring import records as R  # noqa: E402
from pushbutton.monitoring.records import InferenceRecord  # noqa: E402
from pushbutton.procs import free_port  # noqa: E402

MODEL = "bench"
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def features(count: int) -> list[tuple[str, str]]:
    return [(f"f{i:02d}", "double") for i in range(count)]


def make_records(count: int, width: int, start: int = 0, seconds: float = 3600.0) -> list[InferenceRecord]:
    rng = random.Random(start)
    names = tuple(name for name, _ in features(width))
    out = []
    for i in range(start, start + count):
        at = T0 + timedelta(seconds=seconds * (i - start) / count)
        out.append(
            InferenceRecord(
                request_id=f"r{i}", model=MODEL, predictor="champion", version="1", model_id="bench-v1",
                request_event_id=f"q{i}", response_event_id=f"p{i}", request_time=at, response_time=at,
                latency_ms=rng.random() * 10, status=200, names=names,
                inputs=[[rng.gauss(0, 1) for _ in names]], predictions=[rng.randrange(2)],
                classes=("0", "1"), probabilities=[[0.3, 0.7]],
            )
        )  # fmt: skip
    return out


def bench_store(url: str, records: int, width: int, batch: int) -> dict:
    from pushbutton.monitoring.store.sql import SqlStore

    store = SqlStore(url)
    store.ensure_model(MODEL, features(width), ("y", "long"))
    data = make_records(records, width)
    started = time.perf_counter()
    for i in range(0, records, batch):
        store.write_records(data[i : i + batch])
    seconds = time.perf_counter() - started
    store.close()
    return {"records": records, "seconds": round(seconds, 3), "records_per_s": round(records / seconds)}


# --- end to end through the logger --------------------------------------------------------------


def delivery(start: int, count: int, width: int) -> bytes:
    """One batch delivery: ``count`` requests and their responses as structured CloudEvents."""
    rng = random.Random(start)
    names = [name for name, _ in features(width)]
    events = []
    stamp = T0.isoformat().replace("+00:00", "Z")
    common = {
        "specversion": "1.0", "source": "bench", "time": stamp, "modelid": "bench-v1",
        "inferenceservicename": MODEL, "namespace": "models", "endpoint": "champion", "protocol": "seldon",
        R.ATTR_VERSION: "1", R.ATTR_ROLE: "champion", "datacontenttype": "application/json",
    }  # fmt: skip
    for i in range(start, start + count):
        request_id = f"r{i}"
        row = [round(rng.gauss(0, 1), 6) for _ in names]
        events.append({**common, "id": uuid.uuid4().hex, "type": R.CE_REQUEST, "requestid": request_id,
                       "data": {"data": {"names": names, "ndarray": [row]}}})  # fmt: skip
        events.append({**common, "id": uuid.uuid4().hex, "type": R.CE_RESPONSE, "requestid": request_id,
                       R.ATTR_STATUS: "200", R.ATTR_LATENCY_MS: "3.2",
                       "data": {"data": {"names": [], "ndarray": [rng.randrange(2)]},
                                "meta": {"tags": {"classes": ["0", "1"], "probabilities": [[0.3, 0.7]]}}}})  # fmt: skip
    return json.dumps(events, separators=(",", ":")).encode()


def _sender(url: str, bodies: list[bytes], queue: multiprocessing.Queue) -> None:
    import httpx

    failures = 0
    with httpx.Client(timeout=120.0) as client:
        queue.put(("ready", 0))
        for body in bodies:
            answer = client.post(url, content=body, headers={"Content-Type": R.BATCH_CONTENT_TYPE})
            failures += answer.status_code != 200
    queue.put(("done", failures))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, its threads and its live children (``--workers``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children += [int(c) for c in task.read_text().split()]
    return own + sum(_cpu_seconds(child) for child in children)


def bench_logger(
    tmp: Path, records: int, width: int, batch: int, senders: int, logger_workers: int = 1
) -> dict:
    import httpx

    from pushbutton.monitoring.store.sql import SqlStore

    url = f"sqlite:///{tmp / 'logger.db'}"
    with SqlStore(url) as store:
        store.ensure_model(MODEL, features(width), ("y", "long"))
    port = free_port()
    argv = [sys.executable, "-m", "pushbutton.monitoring.logger", "--host", "127.0.0.1", "--port", str(port),
            "--store", url, "--workers", str(logger_workers), "--status-dir", str(tmp / "logger-status")]  # fmt: skip
    log = (tmp / "logger.log").open("w")
    env = {**os.environ, "PUSHBUTTON_HOME": str(tmp / "home"), "PUSHBUTTON_MODELS_DIR": str(tmp / "models")}
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the logger did not start; see {tmp / 'logger.log'}")
            time.sleep(0.1)
        starts = list(range(0, records, batch))
        bodies = [delivery(s, min(batch, records - s), width) for s in starts]  # built before timing
        queue: multiprocessing.Queue = multiprocessing.Queue()
        workers = [
            multiprocessing.Process(target=_sender, args=(f"{base}/", bodies[i::senders], queue))
            for i in range(senders)
        ]
        for worker in workers:
            worker.start()
        for _ in workers:
            queue.get()  # ready
        started, cpu = time.perf_counter(), _cpu_seconds(proc.pid)
        failures = sum(queue.get()[1] for _ in workers)
        seconds = time.perf_counter() - started
        logger_cpu = _cpu_seconds(proc.pid) - cpu
        for worker in workers:
            worker.join()
        status = httpx.get(f"{base}/status").json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    with SqlStore(url) as store:
        counters = store.counters(MODEL)
    return {
        "records": records,
        "events": 2 * records,
        "batch_records": batch,
        "senders": senders,
        "seconds": round(seconds, 3),
        "records_per_s": round(counters.records / seconds),
        "stored_records": counters.records,
        "stored_complete": counters.records - counters.incomplete,
        "failed_deliveries": failures,
        "logger_workers": logger_workers,
        "logger_cpu_cores": round(logger_cpu / seconds, 2),  # of the machine's cores, while ingesting
        "logger_status": {k: status[k] for k in ("received", "written", "paired", "duplicates", "rejected")},
    }


def bench_read(url: str, rows: int, width: int) -> dict:
    from pushbutton.monitoring.aggregate import window_aggregates
    from pushbutton.monitoring.store.sql import SqlStore

    store = SqlStore(url)
    store.ensure_model(MODEL, features(width), ("y", "long"))
    chunk = 50_000
    for start in range(0, rows, chunk):
        store.write_records(
            make_records(min(chunk, rows - start), width, start=start, seconds=3600.0 * rows / 1e6)
        )
    end = T0 + timedelta(days=1)
    started = time.perf_counter()
    frame = store.rows(MODEL, T0, end)
    read = time.perf_counter() - started
    started = time.perf_counter()
    window_aggregates(frame, [name for name, _ in features(width)], task="classification")
    aggregated = time.perf_counter() - started
    store.close()
    return {
        "rows": len(frame),
        "features": width,
        "read_seconds": round(read, 2),
        "aggregate_seconds": round(aggregated, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000, help="records to ingest (store and logger)")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument(
        "--batch", type=int, default=1000, help="records per write (store) or per delivery (logger)"
    )
    parser.add_argument("--senders", type=int, default=2, help="concurrent sender processes (logger)")
    parser.add_argument(
        "--workers", type=int, default=1, help="logger processes (pushbutton logger --workers)"
    )
    parser.add_argument("--read-rows", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--only", choices=("store", "logger", "read"), action="append")
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    only = set(args.only or ("store", "logger", "read"))
    report: dict = {"features": args.features, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="pushbutton-ingest-") as name:
        tmp = Path(name)
        if "store" in only:
            report["store"] = bench_store(
                f"sqlite:///{tmp / 'store.db'}", args.records, args.features, args.batch
            )
            print(f"store  : {report['store']['records_per_s']:>8} records/s ({report['store']})", flush=True)
        if "logger" in only:
            report["logger"] = bench_logger(
                tmp, args.records, args.features, args.batch, args.senders, args.workers
            )
            print(
                f"logger : {report['logger']['records_per_s']:>8} records/s ({report['logger']})", flush=True
            )
        if "read" in only:
            report["read"] = []
            for rows in args.read_rows:
                result = bench_read(f"sqlite:///{tmp / f'read-{rows}.db'}", rows, args.features)
                report["read"].append(result)
                print(f"read   : {result}", flush=True)
    if args.report:
        args.report.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
