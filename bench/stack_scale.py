"""The embedded stack with N models: registration time, idle CPU, REST API latency, memory (issue 13 §8).

For each N, in a fresh platform home: generate N model directories (copies of models/iris), run
`pushbutton up`, then report
  * seconds from `up` until every DAG (3 per model + 2) is registered with no import error;
  * idle CPU (cores) of every stack process over a window, after registration (each process's own and
    reaped children's CPU time, from /proc), with a per-component breakdown;
  * REST API latency (GET /api/v2/dags pages and one DAG's details, p50/p99 over repeated calls);
  * memory: the sum of the stack processes' proportional set size (PSS);
  * how soon a new model's DAGs appear after `pushbutton sync-dags`, and a changed spec after a sync.
The generated specs keep iris's weekly retrain but move the */30 monitor to a yearly tick, so no
scheduled run starts during the idle window (an idle stack: nothing to run).

    .venv/bin/python bench/stack_scale.py --models 100 500 --idle-seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pushbutton.procs import free_port, process_cmdline  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
COMPONENTS = ("dag-processor", "scheduler", "triggerer", "api-server", "mlflow", "gateway", "standalone")


def generate(models: Path, count: int, start: int = 0) -> list[str]:
    source = REPO / "models" / "iris"
    text = (source / "model.yaml").read_text().replace('monitor: "*/30 * * * *"', 'monitor: "0 4 1 1 *"')
    names = []
    for i in range(start, start + count):
        name = f"model-{i:04d}"
        target = models / name
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "tests"))
        spec = text.replace("name: iris", f"name: {name}").replace("tests: tests\n", "")
        (target / "model.yaml").write_text(spec)
        names.append(name)
    return names


def cpu_seconds(pid: int) -> float:
    """utime + stime + reaped children's cutime + cstime of ``pid`` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICK


def pss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def component(pid: int) -> str:
    command = process_cmdline(pid)
    for name in COMPONENTS:
        if name in command:
            return name
    return "other"


def idle_cpu(cfg, seconds: float) -> dict:
    from pushbutton.stack import stack_processes

    pids = stack_processes(cfg)
    before = {pid: cpu_seconds(pid) for pid in pids}
    time.sleep(seconds)
    by_component: dict[str, float] = defaultdict(float)
    for pid in set(pids) | set(stack_processes(cfg)):
        delta = cpu_seconds(pid) - before.get(pid, 0.0)
        by_component[component(pid)] += max(delta, 0.0)
    total = sum(by_component.values())
    return {
        "idle_cores": round(total / seconds, 3),
        "by_component_cores": {k: round(v / seconds, 3) for k, v in sorted(by_component.items())},
        "window_s": seconds,
    }


def latency(call, repeat: int) -> dict:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(1000 * (time.perf_counter() - started))
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 1),
        "p99_ms": round(samples[min(len(samples) - 1, int(0.99 * len(samples)))], 1),
        "n": repeat,
    }


def wait_until(check, timeout: float, poll: float = 0.5) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"not reached within {timeout:.0f}s")
        time.sleep(poll)
    return time.monotonic() - started


def measure(count: int, idle_seconds: float, repeat: int) -> dict:
    from pushbutton.airflow_client import AirflowClient
    from pushbutton.config import settings
    from pushbutton.dagstubs import sync_stubs
    from pushbutton.errors import NotFound
    from pushbutton.stack import down, stack_processes, up

    with tempfile.TemporaryDirectory(prefix="pushbutton-scale-") as tmp:
        models = Path(tmp) / "models"
        generate(models, count)
        os.environ.update(
            {
                "PUSHBUTTON_HOME": str(Path(tmp) / "home"),
                "PUSHBUTTON_MODELS_DIR": str(models),
                "PUSHBUTTON_MLFLOW_PORT": str(free_port()),
                "PUSHBUTTON_AIRFLOW_PORT": str(free_port()),
                "PUSHBUTTON_GATEWAY_PORT": str(free_port()),
                "PUSHBUTTON_LOGGER_PORT": str(free_port()),
                "PUSHBUTTON_SCHEDULES": "on",
            }
        )
        settings.cache_clear()
        cfg = settings()
        started = time.monotonic()
        try:
            up(cfg)
            healthy = time.monotonic() - started
            client = AirflowClient.from_settings(cfg)
            expected = 3 * count + 2

            def registered() -> bool:
                return client.request("GET", "/dags", params={"limit": 1})["total_entries"] >= expected

            wait_until(registered, timeout=1800, poll=1.0)
            all_registered = time.monotonic() - started
            errors = client.import_errors()
            result: dict = {
                "models": count,
                "dags": client.request("GET", "/dags", params={"limit": 1})["total_entries"],
                "import_errors": len(errors),
                "up_healthy_s": round(healthy, 1),
                "all_dags_registered_s": round(all_registered, 1),
            }
            result |= idle_cpu(cfg, idle_seconds)
            result["memory_pss_mib"] = round(sum(pss_mib(p) for p in stack_processes(cfg)), 0)
            result["api_list_dags_page100"] = latency(
                lambda: client.request("GET", "/dags", params={"limit": 100, "offset": 0}), repeat
            )
            result["api_get_dag"] = latency(lambda: client.get_dag("model-0000__cicd"), repeat)

            [new] = generate(models, 1, start=count)  # a new model, then `pushbutton sync-dags`
            t0 = time.monotonic()
            sync_stubs(models, cfg.stub_root)

            def appeared(dag_id: str = f"{new}__cicd") -> bool:
                try:
                    return not client.get_dag(dag_id).get("is_stale")
                except NotFound:
                    return False

            wait_until(appeared, timeout=300, poll=0.2)
            result["new_model_visible_s"] = round(time.monotonic() - t0, 1)
            spec = models / "model-0001" / "model.yaml"  # a changed spec: new tag
            spec.write_text(
                spec.read_text().replace("tags: [example, tabular]", "tags: [example, tabular, v2]")
            )
            t0 = time.monotonic()
            sync_stubs(models, cfg.stub_root)
            wait_until(
                lambda: "v2" in {t["name"] for t in client.get_dag("model-0001__cicd")["tags"]}, 300, 0.2
            )
            result["changed_spec_visible_s"] = round(time.monotonic() - t0, 1)
            client.close()
            return result
        finally:
            down(cfg)
            settings.cache_clear()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=50, help="REST calls per latency figure")
    args = parser.parse_args()
    print(
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}  (cpus: {os.cpu_count()})", flush=True
    )
    for count in args.models:
        print(json.dumps(measure(count, args.idle_seconds, args.repeat)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
