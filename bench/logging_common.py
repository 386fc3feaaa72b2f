"""What the request-logging benchmarks share: a stand-in model, the real gateway and logger processes,
open-loop load and reading the store back (``logging_overhead.py``, ``logger_outage.py``)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from pushbutton.config import REPO_ROOT
from pushbutton.monitoring.logger import logger_argv
from pushbutton.monitoring.store import open_store
from pushbutton.procs import ProcessGroup, free_port, http_ok, wait_ready
from pushbutton.serving.client import gateway_argv
from pushbutton.serving.routes import external_path

NS, MODEL = "models", "iris"  # the repository's iris spec gives the store its typed columns
NAMES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
BODY = json.dumps({"data": {"names": NAMES, "ndarray": [[5.1, 3.5, 1.4, 0.2]]}}).encode()
HEADERS = {"Content-Type": "application/json"}
# a stand-in for a seldon-core microservice (one thread, answers one label per row, echoes meta.puid)
BACKEND = """
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):  # HTTP/1.0: one connection per request
    def do_GET(self):
        self._send(b"pong")

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = {"data": {"names": [], "ndarray": [0] * len(request["data"]["ndarray"])}, "meta": {}}
        self._send(json.dumps(answer).encode())

    def _send(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


@dataclass
class Processes:
    """Backend, gateway and logger under ``root``; every process stops with ``stop_all``."""

    root: Path
    group: ProcessGroup = field(init=False)
    backend_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    logger_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.group = ProcessGroup(self.root / "run", self.root / "logs")

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def logger_url(self) -> str:
        return f"http://127.0.0.1:{self.logger_port}"

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.root / 'monitoring.db'}"

    @property
    def predict_url(self) -> str:
        return self.gateway_url + external_path(NS, MODEL)

    def start_backend(self) -> None:
        info = self.group.start("backend", [sys.executable, "-c", BACKEND, str(self.backend_port)])
        wait_ready(info, http_ok(f"http://127.0.0.1:{self.backend_port}/health/ping"), 30, "backend")

    def start_logger(self) -> None:
        argv = logger_argv("127.0.0.1", self.logger_port, self.store_url, REPO_ROOT / "models")
        wait_ready(self.group.start("logger", argv), http_ok(self.logger_url + "/health"), 60, "logger")

    def start_gateway(self, logging: bool = True) -> None:
        argv = gateway_argv("127.0.0.1", self.gateway_port, self.root / "routes.json", sys.executable,
                            logger_url=self.logger_url if logging else "", spool_dir=self.root / "spool")  # fmt: skip
        wait_ready(self.group.start("gateway", argv), http_ok(self.gateway_url + "/health"), 60, "gateway")
        backend = {"url": f"http://127.0.0.1:{self.backend_port}", "version": "1"}
        body = {"backends": {"champion": backend}, "weights": {"champion": 100}}
        httpx.put(f"{self.gateway_url}/admin/deployments/{NS}/{MODEL}", json=body).raise_for_status()

    def gateway_logging(self) -> dict[str, Any]:
        return httpx.get(self.gateway_url + "/status").json()["logging"]

    def logger_status(self) -> dict[str, Any]:
        return httpx.get(self.logger_url + "/status").json()

    def stop_all(self) -> None:
        self.group.stop_all(timeout=15)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


@dataclass
class Load:
    """What an open-loop run saw: latency per answered request, the request ids, the failures."""

    latencies: list[float] = field(default_factory=list)  # seconds
    request_ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    sent: int = 0
    lag_max: float = 0.0

    def summary(self) -> dict[str, Any]:
        ms = lambda s: round(s * 1000, 3)  # noqa: E731
        return {
            "requests": self.sent,
            "failed": len(self.failures),
            "failures": Counter(self.failures).most_common(3),
            "p50_ms": ms(percentile(self.latencies, 50)),
            "p90_ms": ms(percentile(self.latencies, 90)),
            "p99_ms": ms(percentile(self.latencies, 99)),
            "max_send_lag_ms": ms(self.lag_max),
        }


async def open_loop(url: str, rate: float, seconds: float, load: Load, events: list | None = None) -> None:
    """POST ``BODY`` at ``rate``/s for ``seconds`` (paced by send time, not by answers).

    ``events``: ``(at_seconds, callable)`` run (in a thread) when the run reaches ``at_seconds``."""

    async def one(session: aiohttp.ClientSession) -> None:
        started = time.perf_counter()
        try:
            async with session.post(url, data=BODY, headers=HEADERS) as resp:
                await resp.read()
                status, puid = resp.status, resp.headers.get("Seldon-Puid", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            load.failures.append(f"{type(exc).__name__}: {exc}")
            return
        if status != 200:
            load.failures.append(f"HTTP {status}")
            return
        load.latencies.append(time.perf_counter() - started)
        load.request_ids.append(puid)

    async def scheduled() -> None:
        for at, action in sorted(events or [], key=lambda e: e[0]):
            await asyncio.sleep(max(0.0, t0 + at - time.perf_counter()))
            await asyncio.to_thread(action)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        t0 = time.perf_counter()
        side = asyncio.create_task(scheduled())
        tasks = []
        for i in range(int(rate * seconds)):
            target = t0 + i / rate
            now = time.perf_counter()
            if target > now:
                await asyncio.sleep(target - now)
            else:
                load.lag_max = max(load.lag_max, now - target)
            tasks.append(asyncio.create_task(one(session)))
            load.sent += 1
        await asyncio.gather(*tasks)
        await side


def store_check(
    store_url: str, request_ids: list[str], since: datetime, warmup: Sequence[str] = ()
) -> dict[str, Any]:
    """Count the store's records by request id against the ids the client got (``warmup``: ids of
    unmeasured requests, also logged, neither counted nor reported as unknown)."""
    store = open_store(store_url)
    try:
        records = store.records(MODEL, since, datetime.now(UTC) + timedelta(minutes=1))
    finally:
        store.close()
    wanted = set(request_ids)
    per_id = Counter(r["request_id"] for r in records)
    complete = {r["request_id"] for r in records if r["complete"]}
    return {
        "client_requests": len(request_ids),
        "records": len(records),
        "lost": len(wanted - set(per_id)),
        "incomplete": len(wanted - complete),
        "duplicated": sum(n - 1 for n in per_id.values() if n > 1),
        "warmup_records": len(set(per_id) & set(warmup)),
        "unknown": len(set(per_id) - wanted - set(warmup)),
    }


def wait_for_store(store_url: str, request_ids: list[str], since: datetime, timeout: float) -> float:
    """Seconds until every request id is in the store complete (or ``timeout``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if store_check(store_url, request_ids, since)["incomplete"] == 0:
            break
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)
