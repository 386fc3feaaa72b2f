"""Benchmark: traffic switches under open-loop load through the local gateway.

1. overhead: paired requests, each sent straight to the champion microservice and then through
   the gateway (same body, same backend), paced at ``--pair-rate``; reports p50/p99 of both and
   the gateway overhead (p50 of gateway minus p50 direct, and the median paired difference).
2. switch under load: at least ``--requests`` requests paced open-loop at ``--rate`` req/s while
   ``LocalRuntime.apply`` activates the candidate (v2 -> 100 %, v1 retired) and, once that is done,
   rolls back (v1 -> 100 %: v1's microservice starts again under load, v2 is retired); the load
   goes on until ``--tail`` s after the rollback. Goal: 0 failed requests.

Everything runs for real: a serving env (uv, warm cache), seldon-core microservices, the gateway
process. Prints the exact command line and a JSON summary; stops every process it started.

    .venv/bin/python bench/switch_under_load.py [--requests 10000 --rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from pushbutton.config import REPO_ROOT, Settings
from pushbutton.procs import ProcessGroup, free_port, http_ok, wait_ready
from pushbutton.serving.envs import ensure_env, model_requirements
from pushbutton.serving.gateway import external_path, gateway_argv
from pushbutton.serving.local import LocalRuntime
from pushbutton.serving.microservice import PREDICT_PATH
from pushbutton.serving.spec import Release, champion_only, with_candidate
from pushbutton.spec import load_model_dir

NS, DEP = "models", "iris"
BODY = json.dumps(
    {
        "data": {
            "names": ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"],
            "ndarray": [[5.1, 3.5, 1.4, 0.2]],
        }
    }
).encode()
HEADERS = {"Content-Type": "application/json"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ms(value: float) -> float:
    return round(value * 1000, 3)


def prepare(root: Path) -> tuple[Release, Release, Any]:
    """Train v1 and v2 (v2 on rotated labels, so answers show who served), build the serving env."""
    import mlflow.sklearn

    from pushbutton.data import split

    code_dir = root / "code"
    shutil.copytree(REPO_ROOT / "models" / "iris", code_dir, ignore=shutil.ignore_patterns("__pycache__"))
    spec = load_model_dir(code_dir)
    loader = importlib.util.spec_from_file_location("iris_train_for_bench", code_dir / "train.py")
    train = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(train)
    data = split(spec, code_dir)
    uris = {}
    for version, labels in (("1", data.y_train), ("2", (data.y_train + 1) % 3)):
        uris[version] = str(root / "models" / version)
        mlflow.sklearn.save_model(train.train(data.x_train, labels, spec.train.params), uris[version])
    env = ensure_env(model_requirements(code_dir, uris["1"]), root=root / "home" / "envs")
    print(
        f"serving env {env.key}: {'built' if env.created else 'reused'} in {env.seconds:.1f}s",
        file=sys.stderr,
    )
    v1 = Release("1", uris["1"], env.key, str(code_dir))
    v2 = Release("2", uris["2"], env.key, str(code_dir))
    return v1, v2, spec


async def timed_post(session: aiohttp.ClientSession, url: str) -> tuple[float, int, str]:
    started = time.perf_counter()
    async with session.post(url, data=BODY, headers=HEADERS) as resp:
        await resp.read()
        return time.perf_counter() - started, resp.status, resp.headers.get("X-Pushbutton-Version", "")


async def overhead(gateway_url: str, direct_url: str, pairs: int, rate: float) -> dict[str, Any]:
    direct, via, diffs = [], [], []
    async with aiohttp.ClientSession() as session:
        for _ in range(50):  # warm up both paths
            await timed_post(session, direct_url)
            await timed_post(session, gateway_url)
        t0 = time.perf_counter()
        for i in range(pairs):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
            d, s1, _ = await timed_post(session, direct_url)
            g, s2, _ = await timed_post(session, gateway_url)
            assert s1 == s2 == 200, (s1, s2)
            direct.append(d)
            via.append(g)
            diffs.append(g - d)
    return {
        "pairs": pairs,
        "direct_p50_ms": ms(percentile(direct, 50)),
        "direct_p99_ms": ms(percentile(direct, 99)),
        "gateway_p50_ms": ms(percentile(via, 50)),
        "gateway_p99_ms": ms(percentile(via, 99)),
        "overhead_p50_ms": ms(percentile(via, 50) - percentile(direct, 50)),
        "overhead_p99_ms": ms(percentile(via, 99) - percentile(direct, 99)),
        "paired_overhead_median_ms": ms(statistics.median(diffs)),
    }


async def switch_under_load(
    gateway_url: str,
    runtime: LocalRuntime,
    plan: list[tuple[float, str, Any]],
    requests: int,
    rate: float,
    tail: float,
) -> dict[str, Any]:
    """Paced load; ``plan`` runs in order, each step ``delay`` s after the previous one finished.

    The load lasts for at least ``requests`` requests and until ``tail`` s after the last switch.
    """
    latencies: list[float] = []
    failures: list[str] = []
    versions: list[tuple[float, str, float]] = []
    lag_max = 0.0
    switches: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()

    async def one(session: aiohttp.ClientSession, sent_at: float) -> None:
        try:
            seconds, status, version = await timed_post(session, gateway_url)
        except (aiohttp.ClientError, TimeoutError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            return
        if status != 200:
            failures.append(f"HTTP {status}")
            return
        latencies.append(seconds)
        versions.append((sent_at, version, seconds))

    async def run_plan() -> float:
        for delay, label, spec in plan:
            await asyncio.sleep(delay)
            began = time.perf_counter() - t0
            result = await loop.run_in_executor(None, runtime.apply, spec)
            switches.append(
                {
                    "action": label,
                    "started_at_s": round(began, 2),
                    "done_at_s": round(time.perf_counter() - t0, 2),
                    "started": result["started"],
                    "stopped": result["stopped"],
                }
            )
        return time.perf_counter()

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        t0 = time.perf_counter()
        switcher = asyncio.create_task(run_plan())
        tasks = []
        i = 0
        while i < requests or not switcher.done() or time.perf_counter() < switcher.result() + tail:
            target = t0 + i / rate
            now = time.perf_counter()
            if target > now:
                await asyncio.sleep(target - now)
            else:
                lag_max = max(lag_max, now - target)
            tasks.append(asyncio.create_task(one(session, time.perf_counter() - t0)))
            i += 1
        await asyncio.gather(*tasks)
        await switcher
        elapsed = time.perf_counter() - t0
    timeline = []  # per 5 s window of send time: which version answered, latency
    for window in range(int(elapsed // 5) + 1):
        rows = [(v, s) for at, v, s in versions if window * 5 <= at < (window + 1) * 5]
        if rows:
            seen = Counter(v for v, _ in rows)
            lat = [s for _, s in rows]
            timeline.append(
                {
                    "t_s": f"{window * 5}-{window * 5 + 5}",
                    **{f"v{k}": n for k, n in sorted(seen.items())},
                    "p50_ms": ms(percentile(lat, 50)),
                    "p99_ms": ms(percentile(lat, 99)),
                }
            )
    return {
        "requests": len(tasks),
        "target_rate": rate,
        "achieved_rate": round(len(tasks) / elapsed, 1),
        "failed": len(failures),
        "failures": Counter(failures).most_common(5),
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
        "max_ms": ms(max(latencies)),
        "max_send_lag_ms": ms(lag_max),
        "switches": switches,
        "timeline": timeline,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (open loop)")
    parser.add_argument(
        "--pairs", type=int, default=2000, help="direct/gateway request pairs for the overhead"
    )
    parser.add_argument("--pair-rate", type=float, default=100.0)
    parser.add_argument("--activate-at", type=float, default=10.0, help="seconds into the load")
    parser.add_argument("--rollback-after", type=float, default=5.0, help="seconds after the activation")
    parser.add_argument("--tail", type=float, default=5.0, help="seconds of load after the rollback")
    parser.add_argument("--threads", type=int, default=None, help="gunicorn threads per microservice")
    parser.add_argument("--keep", action="store_true", help="keep the temporary platform home")
    args = parser.parse_args()
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    print(f"command: {command}", file=sys.stderr)

    root = Path(tempfile.mkdtemp(prefix="pushbutton-bench-"))
    home = root / "home"
    settings = Settings(home=home, gateway_port=free_port())
    group = ProcessGroup(home / "run", home / "logs")
    runtime = LocalRuntime(settings, threads=args.threads)
    summary: dict[str, Any] = {"command": command}
    try:
        v1, v2, spec = prepare(root)
        info = group.start(
            "gateway", gateway_argv(settings.host, settings.gateway_port, home / "gateway.json")
        )
        wait_ready(info, http_ok(f"{settings.gateway_url}/health"), 60, "gateway")
        gateway_url = settings.gateway_url + external_path(NS, DEP)

        started = time.perf_counter()
        first = runtime.apply(champion_only(spec, v1))
        summary["first_apply_s"] = round(time.perf_counter() - started, 2)
        direct_url = first["route"]["backends"]["champion"]["url"] + PREDICT_PATH
        print("measuring gateway overhead ...", file=sys.stderr)
        summary["overhead"] = asyncio.run(overhead(gateway_url, direct_url, args.pairs, args.pair_rate))

        runtime.apply(with_candidate(spec, v2, v1))  # canary 90/10: starts v2
        plan = [
            (args.activate_at, "activate v2 (candidate -> 100%)", champion_only(spec, v2)),
            (args.rollback_after, "rollback to v1 (previous champion -> 100%)", champion_only(spec, v1)),
        ]
        print(f"switch under load: >= {args.requests} requests at {args.rate}/s ...", file=sys.stderr)
        summary["switch_under_load"] = asyncio.run(
            switch_under_load(gateway_url, runtime, plan, args.requests, args.rate, args.tail)
        )
        summary["gateway_counters"] = runtime.status(NS, DEP)["backends"]
    finally:
        runtime.stop_all()
        group.stop_all()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(summary, indent=2))
    return 1 if summary["switch_under_load"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
