"""Benchmark: does one huge request stall other clients of the gateway?

Two stand-in model backends (single-threaded HTTP servers that parse the JSON body and answer one
label per row, like a seldon-core microservice's one sync worker) behind a real gateway process.
While one client sends a ``--mb`` MB request (rows of 30 features) to model ``big``, two clients
send small requests in a loop, one to ``big`` and one to ``other``; the script reports each
client's latency (p50/p99/max) during the huge request and what the huge request got back.

    .venv/bin/python bench/gateway_big_request.py [--mb 50] [--gateway-root DIR]

``--gateway-root`` runs the gateway from another checkout (e.g. ``git archive HEAD`` unpacked) to
compare before and after; ``--max-request-bytes`` raises the limit, to time a huge request the
gateway accepts. Stops every process it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from pushbutton.config import REPO_ROOT
from pushbutton.procs import ProcessGroup, free_port, http_ok, wait_ready
from pushbutton.serving.gateway import external_path

BACKEND = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self._send(b"pong")

    def do_POST(self):
        rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["data"]["ndarray"]
        self._send(json.dumps({"data": {"names": [], "ndarray": [0] * len(rows)}}).encode())

    def _send(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""
SMALL = json.dumps({"data": {"names": [f"f{i}" for i in range(30)], "ndarray": [[0.5] * 30]}}).encode()
HEADERS = {"Content-Type": "application/json"}


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"requests": 0}
    ordered = sorted(values)
    at = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return {"requests": len(ordered), "p50_ms": round(at(0.5), 1), "p99_ms": round(at(0.99), 1),
            "max_ms": round(ordered[-1], 1)}  # fmt: skip


async def small_client(session: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> list[float]:
    latencies = []
    while not stop.is_set():
        started = time.perf_counter()
        async with session.post(url, data=SMALL, headers=HEADERS) as resp:
            await resp.read()
            assert resp.status == 200, resp.status
        latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.02)  # ~40 requests/s per client
    return latencies


async def scenario(gateway: str, megabytes: int) -> dict[str, Any]:
    rows = megabytes * 1024 * 1024 // 302  # bytes per row of 30 features as json.dumps writes them
    big_body = json.dumps({"data": {"names": [f"f{i}" for i in range(30)],
                                    "ndarray": [[0.123456] * 30] * rows}}).encode()  # fmt: skip
    big_url, other_url = gateway + external_path("m", "big"), gateway + external_path("m", "other")
    stop = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        clients = [asyncio.create_task(small_client(session, u, stop)) for u in (big_url, other_url)]
        await asyncio.sleep(1.0)  # a baseline before the huge request
        started = time.perf_counter()
        async with session.post(big_url, data=big_body, headers=HEADERS) as resp:
            answer = await resp.read()
            status = resp.status
        huge_s = time.perf_counter() - started
        await asyncio.sleep(max(0.5, huge_s))  # as long again after it
        stop.set()
        same, other = await asyncio.gather(*clients)
    return {
        "huge_request": {"bytes": len(big_body), "rows": rows, "status": status,
                         "seconds": round(huge_s, 2), "answer": answer[:160].decode(errors="replace")},
        "small_requests_to_the_same_model": stats(same),
        "small_requests_to_another_model": stats(other),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=50, help="size of the huge request in MB")
    parser.add_argument("--gateway-root", type=Path, default=REPO_ROOT, help="checkout the gateway runs from")
    parser.add_argument("--max-request-bytes", type=int, help="the gateway's limit (default: its own)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pushbutton-bigreq-"))
    group = ProcessGroup(root / "run", root / "logs")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(args.gateway_root.resolve())}
    env.pop("PUSHBUTTON_GATEWAY_MAX_REQUEST_BYTES", None)  # the default limit
    try:
        backends = {}
        for name in ("big", "other"):
            backend_port = free_port()
            info = group.start(name, [sys.executable, "-c", BACKEND, str(backend_port)])
            backends[name] = f"http://127.0.0.1:{backend_port}"
            wait_ready(info, http_ok(backends[name] + "/health/ping"), 30, name)
        argv = [sys.executable, "-m", "pushbutton.serving.gateway", "--host", "127.0.0.1",
                "--port", str(port), "--state", str(root / "routes.json")]  # fmt: skip
        if args.max_request_bytes:
            argv += ["--max-request-bytes", str(args.max_request_bytes)]
        info = group.start("gateway", argv, env=env, cwd=args.gateway_root)
        gateway = f"http://127.0.0.1:{port}"
        wait_ready(info, http_ok(gateway + "/health"), 60, "gateway")
        import httpx

        for name, url in backends.items():
            body = {"backends": {"champion": {"url": url, "version": "1"}}, "weights": {"champion": 100}}
            httpx.put(f"{gateway}/admin/deployments/m/{name}", json=body).raise_for_status()
        summary = {"gateway_root": str(args.gateway_root), **asyncio.run(scenario(gateway, args.mb))}
    finally:
        group.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
