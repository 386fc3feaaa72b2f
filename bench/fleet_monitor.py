"""Monitoring at fleet scale on the embedded stack (issue 14 §6): 500 models on a ``*/30`` schedule.

Two measurements decide the shape (``pushbutton.monitoring.fleet``):

* ``airflow`` — what one ``<model>__monitor`` run costs as Airflow runs it: a stack (``pushbutton up``,
  schedules off) with ``--airflow-models`` copies of iris that serve nothing and logged nothing, so
  the four tasks (probe, compute, write, report) do almost no work: the figure is Airflow's own cost
  per run (task processes, DAG file parsing, imports). All runs are triggered at once; CPU = the
  machine's busy CPU time over the runs (``/proc/stat``: task processes are short-lived, and not all
  are reaped by a stack process, so the stack processes' own figure, reported beside it, undercounts)
  minus its idle rate, per run. Extrapolated to ``--models`` models per ``--interval``. Run it on an
  otherwise quiet machine (the heavy lock).
* ``fleet`` — one tick of ``pushbutton__monitor_fleet`` as its task runs it, in a fresh interpreter
  (imports included): discover ``--models`` model directories, pick the due ones, read each one's
  window (``--rows`` requests) from one SQLite store, compute iris's six indicators against a cached
  training reference (10% of the models get drifted traffic: reports for those), write the results.
  Wall time, CPU time and peak memory of that process.

CPU share = CPU seconds / (interval x cores): the goal is that a tick finishes within the interval and
monitoring leaves at least half of the machine to serving.

    flock /tmp/pushbutton-heavy.lock .venv/bin/python bench/fleet_monitor.py --models 500 --airflow-models 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.stack_scale import cpu_seconds, wait_until  # noqa: E402
from pushbutton.procs import free_port  # noqa: E402

TICK = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
NAMES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


def generate(models: Path, count: int) -> list[str]:
    source = REPO / "models" / "iris"
    text = (source / "model.yaml").read_text()
    names = []
    for i in range(count):
        name = f"model-{i:04d}"
        shutil.copytree(source, models / name, ignore=shutil.ignore_patterns("__pycache__", "tests"))
        (models / name / "model.yaml").write_text(
            text.replace("name: iris", f"name: {name}").replace("tests: tests\n", "")
        )
        names.append(name)
    return names


# --- the fleet tick in one process -------------------------------------------------------------------

TICK_CODE = textwrap.dedent(
    """
    import json, resource, sys, time
    started = time.perf_counter()
    from datetime import datetime, timedelta
    from pathlib import Path
    from pushbutton.monitoring.fleet import Plan, due_models, run_fleet
    from pushbutton.monitoring.reference import ReferenceStore
    from pushbutton.monitoring.store import open_store
    from pushbutton.spec import discover

    models, url, cache, reports, tick = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), \\
        datetime.fromisoformat(sys.argv[5])
    found = [(d.spec, d.model_dir, None) for d in discover(models) if d.spec is not None]
    discovered = time.perf_counter() - started
    due = due_models(found, tick - timedelta(minutes=5), tick)
    references = ReferenceStore(cache)
    plans = [Plan(d.spec, d.model_dir, d.window, lambda v, m=d.spec.name: references.get(m, v)) for d in due]
    with open_store(url) as store:
        fleet = run_fleet(store, plans, run_id="bench", report_dir=reports)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    summary = fleet.summary()
    print(json.dumps({"models": len(found), "due": len(due), "written": fleet.written,
                      "flagged_models": len(summary["flagged"]), "reports": len(summary["reports"]),
                      "failed": summary["failed"], "discover_s": round(discovered, 2),
                      "monitor_s": round(fleet.seconds, 2), "wall_s": round(time.perf_counter() - started, 2),
                      "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "peak_rss_mib": usage.ru_maxrss // 1024}))
    """
)


def fleet_tick(count: int, rows: int, tmp: Path) -> dict:
    import numpy as np

    from pushbutton.data import split
    from pushbutton.monitoring.records import InferenceRecord
    from pushbutton.monitoring.reference import capture_fitted
    from pushbutton.monitoring.store.sql import SqlStore
    from pushbutton.spec import load_model_dir
    from pushbutton.training import fit

    models = tmp / "models"
    names = generate(models, count)
    spec = load_model_dir(models / names[0])
    fitted = fit(spec, models / names[0])
    reference = capture_fitted(spec, fitted.data, fitted.estimator)
    holdout = split(spec, models / names[0]).x_holdout
    url = f"sqlite:///{tmp / 'monitoring.db'}"
    store = SqlStore(url)
    rng = np.random.default_rng(0)
    start = TICK - timedelta(minutes=30)
    for index, name in enumerate(names):
        reference.save(tmp / "reference" / name / "v1")
        store.ensure_model(name, spec.schema_.inputs, spec.schema_.output)
        picked = holdout.iloc[rng.integers(0, len(holdout), rows)].to_numpy()
        if index % 10 == 0:
            picked[:, 2] += 3.0  # petal_length_cm drifts in one model of ten
        answers = fitted.estimator.predict(pandas_frame(picked))
        batch = [
            InferenceRecord(request_id=f"{name}-{i}", model=name, predictor="champion", version="1", model_id=name,
                            request_event_id=f"q{i}", response_event_id=f"p{i}",
                            request_time=start + timedelta(seconds=1800 * i / rows),
                            response_time=start + timedelta(seconds=1800 * i / rows), latency_ms=3.0, status=200,
                            names=tuple(NAMES), inputs=[picked[i].tolist()], predictions=[int(answers[i])])
            for i in range(rows)
        ]  # fmt: skip
        store.write_records(batch)
    store.close()
    proc = subprocess.run(
        [sys.executable, "-c", TICK_CODE, str(models), url, str(tmp / "reference"), str(tmp / "reports"),
         TICK.isoformat()],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pandas_frame(values):
    import pandas as pd

    return pd.DataFrame(values, columns=NAMES)


# --- one <model>__monitor run as Airflow runs it ---------------------------------------------------


def busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (``/proc/stat``: every process, reaped or not)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def airflow_runs(count: int, tmp: Path, idle_seconds: float) -> dict:
    from pushbutton.airflow_client import AirflowClient
    from pushbutton.config import settings
    from pushbutton.stack import down, stack_processes, up

    models = tmp / "stack-models"
    names = generate(models, count)
    os.environ.update({
        "PUSHBUTTON_HOME": str(tmp / "home"), "PUSHBUTTON_MODELS_DIR": str(models),
        "PUSHBUTTON_MLFLOW_PORT": str(free_port()), "PUSHBUTTON_AIRFLOW_PORT": str(free_port()),
        "PUSHBUTTON_GATEWAY_PORT": str(free_port()), "PUSHBUTTON_LOGGER_PORT": str(free_port()),
        "PUSHBUTTON_SCHEDULES": "off",
    })  # fmt: skip
    settings.cache_clear()
    cfg = settings()
    try:
        up(cfg)
        client = AirflowClient.from_settings(cfg)
        for name in names:
            client.wait_dag(f"{name}__monitor", timeout=600)
        time.sleep(30)  # let the first parse of every file settle before the idle baseline
        pids, machine = stack_processes(cfg), busy_seconds()
        before = {pid: cpu_seconds(pid) for pid in pids}
        time.sleep(idle_seconds)
        idle_stack = sum(cpu_seconds(p) - before.get(p, 0.0) for p in stack_processes(cfg)) / idle_seconds
        idle_machine = (busy_seconds() - machine) / idle_seconds
        pids, machine = stack_processes(cfg), busy_seconds()
        before = {pid: cpu_seconds(pid) for pid in pids}
        started = time.monotonic()
        runs = [
            (f"{name}__monitor", client.trigger(f"{name}__monitor", note="bench")["dag_run_id"])
            for name in names
        ]
        states = {}

        def finished() -> bool:
            for dag_id, run_id in runs:
                if dag_id not in states:
                    state = client.get_run(dag_id, run_id)["state"]
                    if state in ("success", "failed"):
                        states[dag_id] = state
            return len(states) == len(runs)

        wait_until(finished, timeout=3600, poll=2.0)
        seconds = time.monotonic() - started
        used_machine = busy_seconds() - machine
        used_stack = sum(cpu_seconds(p) - before.get(p, 0.0) for p in set(pids) | set(stack_processes(cfg)))
        durations = [t["duration"] for dag_id, run_id in runs for t in client.task_instances(dag_id, run_id)
                     if t.get("duration") is not None]  # fmt: skip
        client.close()
    finally:
        down(cfg)
        settings.cache_clear()
    # task processes are short-lived and not all are reaped by a stack process: the machine's figure counts
    return {
        "runs": count,
        "states": sorted(set(states.values())),
        "wall_s": round(seconds, 1),
        "machine_cpu_s": round(used_machine, 1),
        "idle_cores_machine": round(idle_machine, 3),
        "cpu_s_per_run": round((used_machine - idle_machine * seconds) / count, 2),
        "stack_cpu_s": round(used_stack, 1),
        "cpu_s_per_run_stack_processes": round((used_stack - idle_stack * seconds) / count, 2),
        "tasks": len(durations),
        "task_seconds_median": round(sorted(durations)[len(durations) // 2], 2) if durations else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--rows", type=int, default=200, help="requests per model in a window")
    parser.add_argument("--airflow-models", type=int, default=20, help="0 skips the Airflow measurement")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=1800.0, help="seconds between ticks (*/30)")
    parser.add_argument("--skip-fleet", action="store_true", help="only the Airflow measurement")
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    budget = args.interval * cores
    report: dict = {"models": args.models, "interval_s": args.interval, "cores": cores}
    with tempfile.TemporaryDirectory(prefix="pushbutton-fleet-") as tmp:
        if not args.skip_fleet:
            tick = fleet_tick(args.models, args.rows, Path(tmp))
            tick["cpu_share_of_interval"] = round(tick["cpu_s"] / budget, 4)
            report["fleet_tick"] = tick
            print(json.dumps({"fleet_tick": tick}), flush=True)
        if args.airflow_models:
            runs = airflow_runs(args.airflow_models, Path(tmp), args.idle_seconds)
            runs["extrapolated_cpu_s_per_tick"] = round(runs["cpu_s_per_run"] * args.models, 0)
            runs["extrapolated_cpu_share"] = round(runs["extrapolated_cpu_s_per_tick"] / budget, 3)
            report["per_model_dag"] = runs
            print(json.dumps({"per_model_dag": runs}), flush=True)
    if args.report:
        args.report.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
