"""`make demo`: the model lifecycle on the embedded stack, every step timed.

1. bring the stack up (MLflow, gateway, airflow standalone) and wait for the models' DAGs; the
   retrain/monitor schedules are off in the demo's stack (``--schedules on`` keeps them), and the demo
   only ever waits on runs it started;
2. train iris v1 through its ``iris__retrain`` DAG; MLflow's webhook starts ``iris__cicd``;
3. approve v1 (the Approve button, pressed through the REST API) and serve it;
4. push v2 with ``pushbutton push``: canary at the spec's 10%, approve under load (100 req/s; the
   requests per second achieved are reported, and the demo fails if the load did not run), 100% switch;
5. roll back to v1 with the ``pushbutton__rollback`` DAG, under the same load;
6. push v3 and reject it: the champion keeps serving;
7. monitoring (``pushbutton.demo_monitoring``): normal traffic and its labels, ``iris__monitor`` over
   that window (no drift), drifted traffic, ``iris__monitor`` again (drift flagged, report path shown).

Leaves nothing running unless ``--keep-up``. ``--report FILE`` writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from pushbutton.config import REPO_ROOT, Settings, settings
from pushbutton.errors import PushbuttonError
from pushbutton.webhook import cicd_run_id

MODEL = "iris"
LOAD_RATE = 100.0  # requests per second during activation and rollback
HOME_MARKER = ".pushbutton-demo"  # written into a home the demo created: only such a home is wiped


class Puids:
    """The request ids (``Seldon-Puid``) of every request the demo sends through the gateway, kept when
    a model answered it (200; a failure fails its step anyway): the demo checks at the end that each is
    in the request log."""

    def __init__(self, token: str):
        self.token = token
        self.answered: list[str] = []
        self._count = itertools.count()
        self._lock = threading.Lock()

    def new(self, kind: str) -> str:
        return f"demo-{self.token}-{kind}-{next(self._count):05d}"

    def answered_by(self, puid: str) -> None:
        with self._lock:
            self.answered.append(puid)


class Load:
    """Requests through the gateway at ``rate`` per second from ``workers`` threads, paced by a shared
    schedule; counts who answered and what failed, and how many requests per second it achieved.

    Pacing uses ``time.sleep`` and a plain flag, never a timed ``Event.wait``: under libfaketime (the
    ``at-time`` tool) a timed wait on a lock blocks for the clock offset, and the load silently stopped
    after one request. ``check()`` fails when the load did not really run."""

    MIN_SHARE = 0.25  # of the announced requests; less means the load did not run

    def __init__(
        self,
        url: str,
        payload: dict[str, Any],
        rate: float = 100.0,
        workers: int = 4,
        puids: Puids | None = None,
    ):
        self.url, self.payload, self.rate = url, payload, rate
        self.puids = puids
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self.seconds = 0.0
        self._stopping = False
        self._lock = threading.Lock()
        self._next_at = 0.0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def __enter__(self) -> Load:
        self._started = time.perf_counter()
        self._next_at = self._started
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        for thread in self._threads:
            thread.join()
        self.seconds = time.perf_counter() - self._started

    def _slot(self) -> float:
        """The time of this worker's next request (one every 1/rate seconds across all workers)."""
        with self._lock:
            at = self._next_at = max(self._next_at + 1.0 / self.rate, time.perf_counter() - 1.0)
            return at

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stopping:
                delay = self._slot() - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                puid = self.puids.new("load") if self.puids else None
                try:
                    resp = client.post(
                        self.url, json=self.payload, headers={"Seldon-Puid": puid} if puid else None
                    )
                except httpx.HTTPError as exc:
                    outcome = repr(exc)
                else:
                    if self.puids and puid and resp.status_code == 200:
                        self.puids.answered_by(puid)
                    outcome = "" if resp.status_code == 200 else f"HTTP {resp.status_code}: {resp.text[:200]}"
                with self._lock:
                    if outcome:
                        self.failures.append(outcome)
                    else:
                        self.versions[resp.headers.get("X-Pushbutton-Version", "?")] += 1

    @property
    def total(self) -> int:
        return sum(self.versions.values()) + len(self.failures)

    @property
    def achieved(self) -> float:
        return self.total / self.seconds if self.seconds else 0.0

    def facts(self) -> dict[str, Any]:
        return {
            "requests": self.total,
            "failed": len(self.failures),
            "seconds": round(self.seconds, 2),
            "rps": round(self.achieved, 1),
            "rps_announced": self.rate,
            "by_version": dict(self.versions),
        }

    def check(self, what: str) -> None:
        """Fail when the load did not run: fewer than a quarter of the announced requests were sent."""
        announced = self.rate * self.seconds
        if self.total == 0 or self.total < self.MIN_SHARE * announced:
            raise PushbuttonError(
                f"the load during {what} did not run: {self.total} requests in {self.seconds:.1f}s "
                f"({self.achieved:.1f} req/s of {self.rate:.0f} announced), so its failure count proves "
                "nothing; is the machine overloaded?"
            )


class Demo:
    def __init__(self, cfg: Settings):
        from pushbutton.airflow_client import AirflowClient

        self.cfg = cfg
        self.client = AirflowClient.from_settings(cfg)
        self.url = f"{cfg.gateway_url}/seldon/{cfg.namespace}/{MODEL}/api/v1.0/predictions"
        with (REPO_ROOT / "models" / MODEL / "golden.csv").open(newline="") as handle:
            row = next(csv.DictReader(handle))
        features = [k for k in row if k != "expected"]
        self.payload = {"data": {"names": features, "ndarray": [[float(row[f]) for f in features]]}}
        self.report: dict[str, Any] = {"steps": []}
        self.started = datetime.now(UTC)
        self.puids = Puids(self.started.strftime("%H%M%S"))

    @contextmanager
    def step(self, title: str) -> Iterator[dict[str, Any]]:
        print(f"\n▶ {title}", flush=True)
        facts: dict[str, Any] = {}
        started = time.perf_counter()
        yield facts
        seconds = time.perf_counter() - started
        self.report["steps"].append({"step": title, "seconds": round(seconds, 2), **facts})
        detail = "; ".join(f"{k}={v}" for k, v in facts.items())
        print(f"✓ {title} — {seconds:.1f}s" + (f" ({detail})" if detail else ""), flush=True)

    # -- helpers ----------------------------------------------------------------------------

    def ask(self, n: int) -> Counter[str]:
        answers = []
        with httpx.Client(timeout=10) as client:
            for _ in range(n):
                puid = self.puids.new("ask")
                answers.append(client.post(self.url, json=self.payload, headers={"Seldon-Puid": puid}))
                if answers[-1].status_code == 200:
                    self.puids.answered_by(puid)
        bad = [r for r in answers if r.status_code != 200]
        if bad:
            raise PushbuttonError(
                f"{len(bad)}/{n} requests failed, e.g. HTTP {bad[0].status_code}: {bad[0].text}"
            )
        return Counter(r.headers["X-Pushbutton-Version"] for r in answers)

    def until_serving(self, version: str, timeout: float = 60.0, share: float = 1.0) -> float:
        """Seconds until the gateway answers with ``version`` (every answer, or any when share < 1)."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            seen = self.ask(20)
            if (seen[version] == 20) if share >= 1 else seen[version] > 0:
                return time.perf_counter() - started
        raise PushbuttonError(f"v{version} did not serve within {timeout:.0f}s (last answers {dict(seen)})")

    def approval(self, run_id: str, timeout: float = 600.0) -> dict[str, Any]:
        """Wait until the run's Approve/Reject is pending; fail early when the run fails before it."""
        return self.client.wait_hitl(f"{MODEL}__cicd", run_id, timeout=timeout)

    def answer(self, run_id: str, choice: str) -> None:
        print(
            f"  the {choice} button: {self.cfg.airflow_url}/dags/{MODEL}__cicd/runs/{run_id}/tasks/approve "
            "(Airflow UI → Browse → Required Actions); pressing it through the REST API",
            flush=True,
        )
        self.client.respond_hitl(
            f"{MODEL}__cicd", run_id, "approve", [choice], {"comment": f"demo: {choice}"}
        )

    def pipeline_run(self, version: str, timeout: float = 120.0) -> str:
        """The CI/CD run the MLflow webhook started for ``version``."""
        from pushbutton.registry import MLFLOW_RUN, Registry

        registered = Registry(self.cfg.mlflow_url).get(MODEL, version)
        run_id = cicd_run_id(version, registered.tags.get(MLFLOW_RUN) or registered.run_id)
        self.report.setdefault("cicd_runs", {})[version] = run_id
        return self.client.wait_run_created(f"{MODEL}__cicd", run_id, timeout)["dag_run_id"]

    @staticmethod
    def trained_by(registry: Any, run_id: str) -> str:
        """The version the demo's own retrain run registered (tagged with the run): never another one."""
        from pushbutton.registry import TRAIN_RUN

        tag = f"{MODEL}__retrain/{run_id}"
        mine = [v.version for v in registry.versions(MODEL) if v.tags.get(TRAIN_RUN) == tag]
        if len(mine) != 1:
            raise PushbuttonError(f"{MODEL}__retrain run {run_id} registered {len(mine)} versions, not one")
        return mine[0]

    def task_seconds(self, run_id: str) -> dict[str, float]:
        return {
            t["task_id"]: round(t["duration"], 1)
            for t in self.client.task_instances(f"{MODEL}__cicd", run_id)
            if t.get("duration") is not None
        }

    def push_variant(self, c: float) -> dict[str, Any]:
        """Push a copy of the iris model with another regularisation strength (a new version)."""
        from pushbutton.actions import push

        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(tmp) / MODEL
            shutil.copytree(
                REPO_ROOT / "models" / MODEL, model_dir, ignore=shutil.ignore_patterns("__pycache__")
            )
            spec = model_dir / "model.yaml"
            spec.write_text(spec.read_text().replace("C: 1.0", f"C: {c}"))
            return push(self.cfg, model_dir)

    def until_alias_cleared(self, registry: Any, version: str, timeout: float = 120.0) -> float:
        """Seconds from a Reject until the ``candidate`` alias no longer points at ``version`` (the
        scheduler resumes the parked approval, then the discard task runs)."""
        from pushbutton.registry import CANDIDATE

        started = time.perf_counter()
        while True:
            current = registry.by_alias(MODEL, CANDIDATE)
            if current is None or current.version != version:
                return round(time.perf_counter() - started, 2)
            if time.perf_counter() - started > timeout:
                raise PushbuttonError(
                    f"the candidate alias still points at v{version} {timeout:.0f}s after Reject"
                )
            time.sleep(0.2)  # polling the registry: the alias moves when the discard task runs

    def finish(self, run_id: str) -> str:
        return self.client.wait_run(f"{MODEL}__cicd", run_id, timeout=300)["state"]

    # -- the story --------------------------------------------------------------------------

    def run(self) -> None:
        from pushbutton.registry import Registry

        registry = Registry(self.cfg.mlflow_url)
        with self.step("wait for the models' DAGs") as facts:
            for dag_id in (f"{MODEL}__retrain", f"{MODEL}__cicd", "pushbutton__rollback"):
                self.client.wait_dag(dag_id, timeout=180)
            facts["dags"] = len(self.client.list_dags(tags=["pushbutton"]))

        with self.step(f"train {MODEL} v1 through its {MODEL}__retrain DAG") as facts:
            run = self.client.trigger(f"{MODEL}__retrain", note="pushbutton demo")
            state = self.client.wait_run(f"{MODEL}__retrain", run["dag_run_id"], timeout=300)["state"]
            if state != "success":
                raise PushbuttonError(f"{MODEL}__retrain run {run['dag_run_id']} ended {state}")
            v1 = self.trained_by(registry, run["dag_run_id"])
            facts["version"] = v1

        with self.step(f"pipeline of v{v1}: build → test → register → deploy candidate") as facts:
            run_v1 = self.pipeline_run(v1)
            self.approval(run_v1)
            facts |= self.task_seconds(run_v1)

        with self.step(f"approve v{v1}, activate it as champion") as facts:
            self.answer(run_v1, "Approve")
            facts["run"] = self.finish(run_v1)
            facts["serving"] = dict(self.ask(50))

        with self.step(f"push v2 of {MODEL} (`pushbutton push`) until the candidate answers") as facts:
            started = time.perf_counter()
            v2 = self.push_variant(c=10.0)["version"]
            run_v2 = self.pipeline_run(v2)
            self.approval(run_v2)
            self.until_serving(v2, share=0.1, timeout=30)
            facts |= {"version": v2, "push_to_candidate_s": round(time.perf_counter() - started, 1)}
            facts |= self.task_seconds(run_v2)
            self.report["lead_time_s"] = facts["push_to_candidate_s"]

        with self.step("canary: 1 000 requests through the gateway") as facts:
            split = self.ask(1000)
            facts |= {"champion_v1": split[v1], "candidate_v2": split[v2]}
            self.report["canary"] = {"v1": split[v1], "v2": split[v2]}

        with self.step(f"approve v{v2} under load ({LOAD_RATE:.0f} req/s): switch to 100%") as facts:
            with Load(self.url, self.payload, LOAD_RATE, puids=self.puids) as load:
                self.answer(run_v2, "Approve")
                approved = time.perf_counter()  # after the answer was accepted
                self.until_serving(v2, timeout=120)
                facts["approve_to_100pct_s"] = round(time.perf_counter() - approved, 2)
                facts["run"] = self.finish(run_v2)
                facts["activate_task_s"] = self.task_seconds(run_v2).get("activate")
            facts |= {"load_requests": load.total, "load_rps": round(load.achieved, 1)}
        self.report["activation"] = {
            **load.facts(),
            "switch_seconds": facts["approve_to_100pct_s"],
            "activate_task_s": facts["activate_task_s"],
        }
        print(f"  load during activation: {_describe(load)}")
        load.check("the activation")

        with self.step(f"roll back to v{v1} (pushbutton__rollback DAG) under load") as facts:
            with Load(self.url, self.payload, LOAD_RATE, puids=self.puids) as load:
                run = self.client.trigger(
                    "pushbutton__rollback", conf={"model": MODEL, "version": "previous"}
                )
                facts["run"] = self.client.wait_run("pushbutton__rollback", run["dag_run_id"], timeout=300)[
                    "state"
                ]
                self.until_serving(v1, timeout=30)
            facts |= {"load_requests": load.total, "load_rps": round(load.achieved, 1)}
        self.report["rollback"] = load.facts()
        print(f"  load during rollback: {_describe(load)}")
        load.check("the rollback")

        with self.step("push v3 and reject it: the champion keeps serving") as facts:
            v3 = self.push_variant(c=0.5)["version"]
            run_v3 = self.pipeline_run(v3)
            self.approval(run_v3)
            self.answer(run_v3, "Reject")
            facts["reject_cleared_s"] = self.until_alias_cleared(registry, v3)
            facts["run"] = self.finish(run_v3)
            facts["serving"] = dict(self.ask(100))
            facts["v3_status"] = registry.get(MODEL, v3).status
            self.report["reject"] = {"version": v3, "status": facts["v3_status"], "serving": facts["serving"],
                                     "cleared_s": facts["reject_cleared_s"]}  # fmt: skip

        from pushbutton.demo_loop import ClosedLoopDemo
        from pushbutton.demo_monitoring import MonitoringDemo

        monitoring = MonitoringDemo(self, MODEL)
        monitoring.run()
        ClosedLoopDemo(self, monitoring).run()
        monitoring.finish()

        champion = registry.by_alias(MODEL, "champion")
        self.report |= {
            "versions": {"v1": v1, "v2": v2, "v3": v3},
            "champion": champion.version if champion else None,
        }


def _describe(load: Load) -> str:
    f = load.facts()
    return (
        f"{f['requests']} requests in {f['seconds']}s ({f['rps']} req/s achieved, {f['rps_announced']:.0f} "
        f"announced), {f['failed']} failed, answered by {f['by_version']}"
    )


def fresh_home(cfg: Settings, owned: bool = False) -> None:
    """Give the demo an empty ``cfg.home``, wiping one only if the demo created it (its marker file),
    it is empty, or it is the demo's own default (``owned``); refuse a home with anything else in it,
    or with a stack running there."""
    from pushbutton.stack import process_group, stack_processes

    home = Path(cfg.home)
    group = process_group(cfg)
    pids = {p.pid for name in group.names() if (p := group.get(name)) and p.alive()}
    pids |= set(stack_processes(cfg))
    if pids:
        raise PushbuttonError(
            f"a pushbutton stack is running in {home} (pids {', '.join(map(str, sorted(pids)))}), so the "
            f"demo will not wipe it (fix: stop it with `PUSHBUTTON_HOME={home} pushbutton down`, or "
            "choose another --home)"
        )
    if home.exists() and not home.is_dir():
        raise PushbuttonError(f"--home {home} is a file, not a directory (fix: choose another --home)")
    if not owned and home.is_dir() and any(home.iterdir()) and not (home / HOME_MARKER).is_file():
        raise PushbuttonError(
            f"--home {home} is not empty and was not created by the demo (no {HOME_MARKER} in it); it may "
            "hold a real registry and history, so the demo will not wipe it (fix: choose another --home, "
            "or remove that directory yourself)"
        )
    try:
        if home.exists():
            shutil.rmtree(home)
        home.mkdir(parents=True)
        (home / HOME_MARKER).write_text(
            "created by `python -m pushbutton.demo`; it wipes this home when run again\n"
        )
    except OSError as exc:
        raise PushbuttonError(f"could not prepare --home {home}: {exc} (fix: choose another --home)") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pushbutton.demo", description=__doc__.splitlines()[0])
    default_home = REPO_ROOT / ".pushbutton" / "demo"  # git-ignored, the demo's own: always wiped
    parser.add_argument(
        "--home",
        type=Path,
        default=default_home,
        help="platform home for the demo (wiped first if the demo created it, else it must be empty or "
        "missing; default .pushbutton/demo)",
    )
    parser.add_argument("--keep-up", action="store_true", help="leave the stack running at the end")
    parser.add_argument("--report", type=Path, help="write the figures as JSON to this file")
    parser.add_argument(
        "--schedules",
        choices=("on", "off"),
        default="off",
        help="time schedules of the retrain and monitor DAGs (default off: no tick can start a run in the "
        "middle of the demo; the demo triggers what it shows)",
    )
    args = parser.parse_args(argv)

    from pushbutton.stack import down, up

    os.environ["PUSHBUTTON_HOME"] = str(args.home)
    os.environ["PUSHBUTTON_SCHEDULES"] = args.schedules
    os.environ.setdefault("PUSHBUTTON_POLICY_POKE_SECONDS", "5")  # the demo plays a fast monitor schedule
    settings.cache_clear()
    cfg = settings()
    try:
        fresh_home(cfg, owned=args.home.resolve() == default_home.resolve())
    except PushbuttonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    ok = False
    demo: Demo | None = None
    try:
        print("▶ start the embedded stack (MLflow, gateway, airflow standalone)", flush=True)
        info = up(cfg)
        print(info.describe(), flush=True)
        demo = Demo(cfg)
        demo.run()
        ok = True
    except (PushbuttonError, httpx.HTTPError) as exc:
        print(f"\n✗ demo failed: {exc}\n  logs: {cfg.home / 'logs'}", file=sys.stderr)
    finally:
        report = demo.report if demo else {"steps": []}
        report |= {"ok": ok, "total_s": round(time.perf_counter() - started, 1)}
        if args.report:
            args.report.write_text(json.dumps(report, indent=2))
        if args.keep_up and ok:
            print(
                f"\nstack left running; Airflow UI {cfg.airflow_url}, gateway {cfg.gateway_url}; "
                "stop it with `PUSHBUTTON_HOME=" + str(args.home) + " .venv/bin/pushbutton down`"
            )
        else:
            print("\n▶ stop the stack: " + (", ".join(down(cfg)) or "nothing was running"), flush=True)
    if ok:
        print(
            f"\ndemo finished in {report['total_s']:.0f}s; lead time push → candidate {report['lead_time_s']}s, "
            f"activation {report['activation']['switch_seconds']}s with {report['activation']['failed']} failed "
            f"of {report['activation']['requests']} requests ({report['activation']['rps']} req/s); drift flagged "
            f"on drifted traffic only: report {report['monitoring']['drifted']['report']}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
