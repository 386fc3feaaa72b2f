"""Lead time from `pushbutton push` to the candidate answering, split by step, and approve → 100%.

Starts the embedded stack in a fresh platform home, then:
* the first push of iris builds its serving environment (env cache miss, "cold"; uv's package
  cache may be warm — pass --cold-uv-cache for a download from the package index too);
* it is approved (champion);
* --repeat further pushes reuse the environment ("warm"), each approved, measuring approve → 100%.
Per push: train+log+register (CLI), webhook → run queued, build, test, register, deploy task
durations and the orchestration time between them. Goals: push → candidate ≤ 60 s warm,
activation ≤ 5 s.

``--new-model`` instead times a model the running platform has never seen: ``pushbutton init``
from the sklearn-classifier template into the models directory, ``pushbutton push --no-trigger``
(only MLflow's webhook starts the pipeline, retried until Airflow has parsed the new DAG), until
its first candidate answers.

    .venv/bin/python bench/lead_time.py --repeat 3
    .venv/bin/python bench/lead_time.py --new-model
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pushbutton.config import settings  # noqa: E402
from pushbutton.demo import MODEL, Demo  # noqa: E402

STEPS = ("build", "test", "register", "deploy_candidate")


def one_push(demo: Demo, c: float) -> dict:
    started = time.perf_counter()
    pushed = demo.push_variant(c)
    pushed_at = time.perf_counter()
    run_id = demo.pipeline_run(pushed["version"])
    demo.approval(run_id)
    demo.until_serving(pushed["version"], share=0.1, timeout=60)
    total = time.perf_counter() - started
    tasks = demo.task_seconds(run_id)
    result = {
        "version": pushed["version"],
        "push_to_candidate_s": round(total, 1),
        "cli_push_s": round(pushed_at - started, 1),
        "train_s": round(pushed["seconds"]["train"], 1),
        "log_and_register_s": round(pushed["seconds"]["log_and_register"], 1),
        **{f"{step}_s": tasks.get(step) for step in STEPS},
    }
    result["orchestration_s"] = round(total - result["cli_push_s"] - sum(tasks.get(s, 0) for s in STEPS), 1)
    demo.answer(run_id, "Approve")
    approved = time.perf_counter()
    demo.until_serving(pushed["version"], timeout=60)
    result["approve_to_100pct_s"] = round(time.perf_counter() - approved, 2)
    demo.finish(run_id)
    result["activate_task_s"] = demo.task_seconds(run_id).get("activate")
    return result


def new_model(demo: Demo) -> dict:
    """init → push (webhook only) → DAG parsed → run started → candidate answering, as splits."""
    import httpx

    from pushbutton.actions import push
    from pushbutton.spec import load_model_dir
    from pushbutton.templates import init_model

    cfg, client, dag_id = demo.cfg, demo.client, "fresh__cicd"
    started = time.perf_counter()
    model_dir = init_model("fresh", "sklearn-classifier", cfg.models_dir)
    pushed = push(cfg, model_dir)
    marks = {"cli_push_s": time.perf_counter()}
    client.wait_dag(dag_id, timeout=180)
    marks["dag_parsed_s"] = time.perf_counter()
    run_id = client.wait_run_created(dag_id, pushed["pipeline"]["run_id"])["dag_run_id"]
    marks["run_started_s"] = time.perf_counter()
    client.wait_hitl(dag_id, run_id, timeout=600)
    spec = load_model_dir(model_dir)
    url = f"{cfg.gateway_url}/seldon/{spec.serving.namespace}/fresh/api/v1.0/predictions"
    body = {"data": {"names": spec.feature_names, "ndarray": [[0.5] * len(spec.feature_names)]}}
    answer = httpx.post(url, json=body, timeout=10)
    answer.raise_for_status()
    marks["candidate_answering_s"] = time.perf_counter()
    result = {k: round(v - started, 1) for k, v in marks.items()}  # cumulative, from `init`
    tasks = {t["task_id"]: t.get("duration") for t in client.task_instances(dag_id, run_id)}
    result |= {f"{step}_s": round(tasks[step], 1) for step in STEPS if tasks.get(step) is not None}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="warm pushes after the first (default 3)")
    parser.add_argument(
        "--cold-uv-cache", action="store_true", help="empty uv package cache for the first build"
    )
    parser.add_argument(
        "--new-model", action="store_true", help="time init → push → first candidate of a new model"
    )
    args = parser.parse_args()
    print(f"command: python {' '.join(sys.argv)}  (cpus: {os.cpu_count()})", flush=True)

    from pushbutton.stack import down, up

    with tempfile.TemporaryDirectory(prefix="pushbutton-leadtime-") as home:
        os.environ["PUSHBUTTON_HOME"] = home
        if args.new_model:
            os.environ["PUSHBUTTON_MODELS_DIR"] = str(Path(home) / "models")
            (Path(home) / "models").mkdir()
        if args.cold_uv_cache:
            os.environ["UV_CACHE_DIR"] = str(Path(home) / "uv-cache")
        settings.cache_clear()
        cfg = settings()
        try:
            up(cfg)
            demo = Demo(cfg)
            if args.new_model:
                demo.client.wait_dag("pushbutton__promote", timeout=180)  # Airflow is parsing DAGs
                print(json.dumps({"new_model": new_model(demo)}), flush=True)
                return 0
            for dag_id in (f"{MODEL}__cicd", "pushbutton__promote"):
                demo.client.wait_dag(dag_id, timeout=180)
            runs = [{"build": "cold (env created)", **one_push(demo, 1.0)}]
            print(json.dumps(runs[-1]), flush=True)
            for _ in range(args.repeat):
                runs.append(
                    {"build": "warm (env reused)", **one_push(demo, 1.0)}
                )  # same quality: passes the champion check
                print(json.dumps(runs[-1]), flush=True)
        finally:
            down(cfg)
    warm = runs[1:]
    summary = {
        "cold_push_to_candidate_s": runs[0]["push_to_candidate_s"],
        "cold_build_s": runs[0]["build_s"],
        "warm_push_to_candidate_s_median": statistics.median(r["push_to_candidate_s"] for r in warm)
        if warm
        else None,
        "warm_build_s_median": statistics.median(r["build_s"] for r in warm) if warm else None,
        # a first release already answers 100%: activation is measured on the switches (warm runs)
        "approve_to_100pct_s_median": statistics.median(r["approve_to_100pct_s"] for r in warm)
        if warm
        else None,
    }
    print(json.dumps({"summary": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
