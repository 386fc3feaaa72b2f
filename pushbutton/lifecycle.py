"""The model lifecycle steps, framework-free: build, test, register, deploy, activate, reject, rollback.

Airflow operators and the CLI call these; each step is idempotent (re-running it leaves the same
state) and ordered so that a failure leaves the current champion serving: traffic moves before
registry aliases, and nothing moves before the checks pass.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pushbutton import registry as reg
from pushbutton.config import Settings
from pushbutton.errors import Conflict, GateFailed, NotFound, PushbuttonError, ServingError
from pushbutton.gate import (
    Check,
    GateReport,
    answers_problem,
    champion_check,
    comparison_blocker,
    compute_metrics,
    golden_check,
    signature_check,
    skipped_comparison,
    threshold_checks,
)
from pushbutton.history import HistoryStore
from pushbutton.serving.spec import Release, champion_only, with_candidate
from pushbutton.spec import ModelSpec, load_spec

PAST_CANDIDATE = ("champion", "retired", "rejected")  # a re-run of an earlier step must not undo these


@dataclass
class Platform:
    """The external systems one lifecycle step talks to (operators build it from their hooks)."""

    settings: Settings
    registry: reg.Registry
    runtime: Any  # pushbutton.serving.local.LocalRuntime, or a Kubernetes runtime (pushbutton.kube)
    history: HistoryStore
    holder: str = ""  # who holds the promotion lease while a step waits in a trigger (operators set it)
    resumed: bool = False  # the step runs again after its wait for Seldon (its first run wrote the spec)

    @classmethod
    def from_settings(cls, settings: Settings) -> Platform:
        from pushbutton.serving.local import LocalRuntime

        return cls(
            settings, reg.Registry(settings.mlflow_url), LocalRuntime(settings), HistoryStore(settings.store)
        )

    def release_dir(self, name: str, version: str) -> Path:
        return self.settings.home / "releases" / name / str(version)


@dataclass(frozen=True)
class Prepared:
    """A version downloaded and its serving environment built."""

    spec: ModelSpec
    release: Release
    env: Any  # pushbutton.serving.envs.ServingEnv
    directory: Path

    @property
    def code_dir(self) -> Path:
        return self.directory / "code"

    @property
    def model_dir(self) -> Path:
        return self.directory / "model"


def serving_requirements(spec: ModelSpec, code_dir: Path, model_uri: str | None) -> list[str]:
    """What the version's serving environment (and its image) installs: the model's requirements, its
    MLflow model's, and every graph node's own requirements file (one environment for all nodes)."""
    from pushbutton.serving.envs import version_requirements

    nodes = {
        f"serving.{path}.requirements": node.requirements
        for path, node in spec.serving.graph.walk()
        if node.requirements
    }
    return version_requirements(code_dir, model_uri, spec.requirements or "requirements.txt", nodes)


def prepare(p: Platform, name: str, version: str) -> Prepared:
    """Download the version and build (or reuse) its serving environment."""
    from pushbutton.serving.envs import ensure_env

    directory = p.registry.download(name, version, p.release_dir(name, version))
    spec = load_spec(directory / "code")
    requirements = serving_requirements(spec, directory / "code", str(directory / "model"))
    env = ensure_env(requirements, python=p.settings.serving_python, root=p.settings.home / "envs")
    release = Release(str(version), str(directory / "model"), env.key, str(directory / "code"))
    return Prepared(spec, release, env, directory)


def build(p: Platform, name: str, version: str, run_id: str = "") -> dict[str, Any]:
    """The first CI/CD step. A run releases a version once: a version another run (or a promotion)
    already made champion, retired or rejected is refused, so no approval is asked for it again.

    A failure is recorded on the version (status ``failed``, its reason, ``failed_step`` build) unless
    it is champion, retired or rejected; a requirement no index has is named by its line in the
    model's requirements file. A later successful build of the version forgets that verdict."""
    mv = p.registry.get(name, version)
    owner = mv.tags.get(reg.CICD_RUN)
    if mv.status in PAST_CANDIDATE and not (run_id and owner == run_id):
        how = (
            "it serves all traffic already"
            if mv.status == "champion"
            else f"to serve it, run `pushbutton promote {name} --version {version}` or the "
            "pushbutton__promote DAG"
        )
        raise Conflict(
            f"{name} v{version} is already {mv.status}"
            + (f" (CI/CD run {owner})" if owner else "")
            + f"; a CI/CD run releases a version once, so this run stops before asking for approval: {how}"
        )
    try:
        prepared = prepare(p, name, version)
    except Exception as exc:
        failure = _requirement_located(p, name, version, exc)
        if mv.status not in PAST_CANDIDATE:  # a champion's (retired's, rejected's) status reflects serving
            first = (str(failure).strip().splitlines() or [repr(failure)])[0]
            with contextlib.suppress(PushbuttonError):  # MLflow down: the failure itself matters more
                p.registry.set_tags(
                    name,
                    version,
                    {
                        reg.STATUS: "failed",
                        reg.REASON: f"build failed: {first}"[:500],
                        reg.FAILED_STEP: "build",
                        "pushbutton.dag_run_id": run_id,
                    },
                )
        if failure is not exc:
            raise failure from exc
        raise
    tags = {reg.BUILD: prepared.env.key, "pushbutton.dag_run_id": run_id}
    if mv.status == "failed" and mv.tags.get(reg.FAILED_STEP) == "build":  # built now: forget that verdict
        tags[reg.STATUS] = "registered"
        p.registry.delete_tags(name, version, [reg.REASON, reg.FAILED_STEP])
    p.registry.set_tags(name, version, tags | ({reg.CICD_RUN: run_id} if run_id else {}))
    return {
        "model": name,
        "version": str(version),
        "env_key": prepared.env.key,
        "env_created": prepared.env.created,
        "env_seconds": round(prepared.env.seconds, 2),
        "release": str(prepared.directory),
    }


def _requirement_located(p: Platform, name: str, version: str, exc: BaseException) -> BaseException:
    """A ``RequirementsError`` naming the line of the model's requirements file that holds the package
    it is about (``requirements.txt:3``); any other error as it is."""
    from packaging.utils import canonicalize_name

    from pushbutton.errors import RequirementsError
    from pushbutton.serving.envs import requirement_lines, requirement_name

    if not isinstance(exc, RequirementsError) or exc.where or not exc.packages:
        return exc
    code = p.release_dir(name, version) / "code"
    try:
        relative = load_spec(code).requirements or "requirements.txt"
        lines = requirement_lines(code / relative)
    except (PushbuttonError, OSError, ValueError):
        return exc
    wanted = {canonicalize_name(package) for package in exc.packages}
    for number, line in lines:
        if requirement_name(line) in wanted:
            return exc.located(f"{relative}:{number}")
    return exc


def _signature_inputs(model_dir: Path) -> list[dict[str, Any]] | None:
    import yaml

    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    inputs = (mlmodel.get("signature") or {}).get("inputs")
    return json.loads(inputs) if inputs else None


def _rows(frame: Any) -> list[list[Any]]:
    return frame.to_numpy().tolist()


class Incomparable(Exception):
    """The champion cannot be scored on the candidate's holdout (different inputs, task or target)."""


def _champion_predictions(
    p: Platform, name: str, version: str, frame: Any, candidate: ModelSpec
) -> tuple[list[Any], str | None, ModelSpec]:
    """The champion's answers on the candidate's holdout: from its running microservice, else from a
    one-off load in its serving environment; with that microservice's URL (None: not running) and
    the champion's spec."""
    from pushbutton.serving.checks import predict_http, predict_in_env

    incumbent = prepare(p, name, version)
    spec = incumbent.spec
    blocker = comparison_blocker(candidate, spec, version)
    if blocker:
        raise Incomparable(blocker)
    url = p.runtime.endpoint(spec.serving.namespace, name, version)
    if url:
        return predict_http(url, spec.feature_names, _rows(frame[spec.feature_names])), url, spec
    answers = predict_in_env(
        incumbent.env, incumbent.code_dir, spec.predict.class_, str(incumbent.model_dir), frame
    )
    return answers, None, spec


def _latency(
    report: GateReport,
    spec: ModelSpec,
    version: str,
    url: str,
    frame: Any,
    champion: tuple[str, str | None, ModelSpec] | None,
) -> None:
    """Time the candidate's microservice on the holdout, then the champion's the same way (when it
    runs and was comparable), and add the latency checks. Runs after the concurrent checks, so a
    model test's CPU load does not count against the candidate."""
    from pushbutton.gate.latency import COMPARISON, champion_latency_check, latency_checks, latency_summary
    from pushbutton.serving.checks import measure_latency

    rows = spec.gate.latency.batch_rows
    try:
        mine = measure_latency(
            url, spec.feature_names, _rows(frame), batch_rows=rows, timeout=spec.serving.timeout_seconds
        )
    except ServingError as exc:
        report.checks.append(Check("latency", False, f"could not measure v{version}'s latency: {exc}"))
        return
    report.latency = latency_summary(spec, mine)
    report.checks += latency_checks(spec, mine)
    if champion is None:
        return
    old, old_url, old_spec = champion
    if old_url is None:
        why = f"champion v{old} has no running microservice here to time"
        report.checks.append(Check(COMPARISON, True, f"skipped: {why}", skipped=True))
        return
    try:
        theirs = measure_latency(
            old_url,
            old_spec.feature_names,
            _rows(frame[old_spec.feature_names]),
            batch_rows=rows,
            timeout=old_spec.serving.timeout_seconds,
        )
    except ServingError as exc:
        why = f"champion v{old}'s latency could not be measured: {exc}"
        report.checks.append(Check(COMPARISON, True, f"skipped: {why}", skipped=True))
        return
    report.champion = (report.champion or {"version": old}) | {"latency": theirs.summary()}
    report.checks.append(champion_latency_check(spec, mine, theirs, old))


def evaluate(p: Platform, name: str, version: str) -> GateReport:
    """Run every check of the gate against the version's own seldon microservice; never raises on a
    failed check. The model's tests and the champion's answers run concurrently with the load; the
    latency (candidate, then champion) is timed once they are done."""
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    from pushbutton.data import split
    from pushbutton.serving.checks import predict_http, run_model_tests
    from pushbutton.serving.spec import predictor

    report = GateReport(name, str(version))
    try:
        prepared = prepare(p, name, version)
    except (ServingError, OSError, ValueError) as exc:
        report.checks.append(Check("load artifacts", False, f"could not prepare v{version}: {exc}"))
        return report
    spec = prepared.spec
    try:
        report.checks.append(signature_check(spec, _signature_inputs(prepared.model_dir)))
    except (OSError, ValueError) as exc:
        report.checks.append(
            Check("input signature", False, f"MLmodel unreadable ({exc}); artifact corrupted?")
        )
    champion = p.registry.by_alias(name, reg.CHAMPION)
    incumbent = champion.version if champion is not None and champion.version != str(version) else None
    with ThreadPoolExecutor(max_workers=3) as pool:
        serving = pool.submit(
            p.runtime.warm, spec.serving.namespace, predictor(spec, "candidate", prepared.release)
        )
        tests = None
        if spec.tests:
            tests_dir = prepared.code_dir / spec.tests
            tests = pool.submit(
                run_model_tests, prepared.env, prepared.code_dir, tests_dir, str(prepared.model_dir)
            )
        data = split(spec, prepared.code_dir)  # while the microservice loads the model
        golden = pd.read_csv(prepared.code_dir / str(spec.gate.golden)) if spec.gate.golden else None
        theirs = (
            pool.submit(_champion_predictions, p, name, incumbent, data.x_holdout, spec)
            if incumbent
            else None
        )
        try:
            url = serving.result()
            predicted = predict_http(url, spec.feature_names, _rows(data.x_holdout))
            golden_predicted = None
            if golden is not None:
                golden_predicted = predict_http(url, spec.feature_names, _rows(golden[spec.feature_names]))
        except ServingError as exc:
            report.checks.append(Check("serving", False, f"v{version} does not serve: {exc}"))
            return report
    problem = answers_problem(spec.task, data.y_holdout.tolist(), predicted, data.y_train.tolist())
    if problem:  # e.g. '1' for 1, probabilities for labels, text for numbers
        report.checks.append(Check("answers", False, f"cannot score v{version}'s answers: {problem}"))
        return report
    try:
        report.metrics = compute_metrics(spec.task, list(data.y_holdout), predicted)
    except (ValueError, TypeError) as exc:
        report.checks.append(
            Check("metrics", False, f"cannot score v{version}'s answers as {spec.task}: {exc}")
        )
        return report
    report.checks += threshold_checks(spec, report.metrics)
    if golden is not None:
        report.checks.append(golden_check(spec, golden["expected"].tolist(), golden_predicted))
    if tests is not None:
        passed, output = tests.result()
        last = output.strip().splitlines()[-1] if output.strip() else "no output"
        report.checks.append(Check("model tests", passed, last if passed else output[-1500:]))
    measurable = None  # the champion, when its latency can be compared
    if theirs is not None:
        try:
            answers, champ_url, champ_spec = theirs.result()
            measurable = (incumbent, champ_url, champ_spec)
            champ_metrics = compute_metrics(spec.task, list(data.y_holdout), answers)
        except Incomparable as exc:
            report.checks.append(skipped_comparison(str(exc)))
        except ServingError as exc:
            report.checks.append(
                Check("champion comparison", False, f"champion v{incumbent} did not answer: {exc}")
            )
        except (PushbuttonError, OSError, ValueError, TypeError) as exc:
            # the champion's side (its artifacts, its old spec, its labels) is not this version's fault
            report.checks.append(
                skipped_comparison(f"champion v{incumbent} could not be scored on this holdout: {exc}")
            )
        else:
            report.champion = {"version": incumbent, "metrics": champ_metrics}
            report.checks.append(champion_check(spec, report.metrics, champ_metrics, incumbent))
    _latency(report, spec, str(version), url, data.x_holdout, measurable)
    return report


def test(p: Platform, name: str, version: str, run_id: str = "") -> GateReport:
    """Evaluate the gate, tag the version with the outcome; raise ``GateFailed`` when a check fails.

    A failed gate touches neither aliases nor serving: the champion keeps serving.
    """
    before = p.registry.get(name, version).status
    try:
        report = evaluate(p, name, version)
    except Exception as exc:  # a bug or an outage: the version must not look untested-but-fine
        if before not in PAST_CANDIDATE:
            with contextlib.suppress(PushbuttonError):
                p.registry.set_tags(
                    name, version, {reg.STATUS: "failed", reg.REASON: f"the test step crashed: {exc!r}"[:500]}
                )
        release_unrouted(p, name, version)
        raise
    outcome = "passed" if report.passed else "failed"
    tags: dict[str, Any] = {
        reg.TESTS: outcome,
        "pushbutton.test_report": report.as_dict(),
        "pushbutton.dag_run_id": run_id,
    }
    if not report.passed and before not in PAST_CANDIDATE:  # a champion's status reflects serving
        tags |= {reg.STATUS: "failed", reg.REASON: "; ".join(report.failures)}
    if report.passed and before == "failed":  # a re-run after a failure: forget the old verdict
        tags[reg.STATUS] = "registered"
        p.registry.delete_tags(name, version, [reg.REASON])
    p.registry.set_tags(name, version, tags)
    if not report.passed:
        release_unrouted(p, name, version)  # the candidate's microservice: nothing half-deployed
        raise GateFailed(report.failures, report)
    return report


def _namespace_of(p: Platform, name: str, version: str) -> str | None:
    """The serving namespace of a version prepared on this machine (None if unknown)."""
    with contextlib.suppress(PushbuttonError, OSError):
        return load_spec(p.release_dir(name, version) / "code").serving.namespace
    return None


def release_unrouted(p: Platform, name: str, version: str) -> bool:
    """Stop the version's microservice (started by the test step) unless the gateway routes to it.

    Best effort, for failure paths: True only when a process was stopped.
    """
    namespace = _namespace_of(p, name, version)
    with contextlib.suppress(PushbuttonError, OSError):
        return namespace is not None and p.runtime.release(namespace, name, str(version))
    return False


def withdraw(p: Platform, name: str, version: str, run_id: str = "", reason: str = "") -> str:
    """After a failed CI/CD run: undo what the run did to serving, never touching the champion.

    The version's candidate is rejected (the champion gets all traffic back; on a first release the
    deployment is removed); otherwise a microservice its test step started is stopped, and a version
    still ``registered`` is tagged ``failed`` with ``reason`` (``status`` then says why). A version
    that became champion, or is retired or rejected, stays as it is. Returns what was done.
    """
    mv = p.registry.get(name, version)
    if mv.status in PAST_CANDIDATE:
        return f"left as {mv.status}"
    candidate = p.registry.by_alias(name, reg.CANDIDATE)
    if candidate is not None and candidate.version == str(version):
        reject(p, name, version, actor="pipeline", run_id=run_id, reason=reason or "its CI/CD run failed")
        return "candidate withdrawn; the champion serves"
    stopped = release_unrouted(p, name, version)
    if mv.status == "registered":  # no step said why (a failed build or test tags "failed" itself)
        why = reason or f"its CI/CD run{' ' + run_id if run_id else ''} failed"
        p.registry.set_tags(
            name, version, {reg.STATUS: "failed", reg.REASON: why, "pushbutton.dag_run_id": run_id}
        )
    return "stopped its unrouted microservice" if stopped else "nothing to undo"


def _require_tested(p: Platform, name: str, version: str) -> reg.Version:
    mv = p.registry.get(name, version)
    if not mv.tests_passed:
        reason = mv.tags.get(reg.REASON) or "it has not been tested"
        raise Conflict(
            f"{name} v{version} did not pass its tests ({reason}); only tested versions can serve — "
            "fix the model and push a new version, or run its CI/CD DAG"
        )
    return mv


def register_candidate(p: Platform, name: str, version: str, run_id: str = "") -> dict[str, Any]:
    mv = _require_tested(p, name, version)
    if mv.status in PAST_CANDIDATE:
        return {"model": name, "version": str(version), "unchanged": f"already {mv.status}"}
    p.registry.set_alias(name, reg.CANDIDATE, version)
    p.registry.set_tags(name, version, {reg.STATUS: "candidate", "pushbutton.dag_run_id": run_id})
    return {"model": name, "version": str(version), "alias": reg.CANDIDATE}


def deploy_candidate(
    p: Platform, name: str, version: str, actor: str = "", run_id: str = ""
) -> dict[str, Any]:
    """Serve the candidate beside the champion per the traffic policy (or alone on a first release)."""
    mv = _require_tested(p, name, version)
    if mv.status in PAST_CANDIDATE:
        return {"model": name, "version": str(version), "unchanged": f"already {mv.status}"}
    candidate = prepare(p, name, version)
    with promotion(p, name):  # a promotion in flight must not change the champion under our feet
        champion = p.registry.by_alias(name, reg.CHAMPION)
        incumbent = prepare(p, name, champion.version) if champion and champion.version != version else None
        if incumbent is not None and incumbent.spec.serving.namespace != candidate.spec.serving.namespace:
            raise Conflict(
                f"{name} v{version} moves serving.namespace from '{incumbent.spec.serving.namespace}' "
                f"(champion v{champion.version}) to '{candidate.spec.serving.namespace}'; a canary splits one "
                f"deployment, so release it without one: `pushbutton promote {name} --version {version}`"
            )
        serving = with_candidate(
            candidate.spec,
            candidate.release,
            incumbent.release if incumbent else None,
            champion_model=incumbent.spec if incumbent else None,
        )
        result = p.runtime.apply(serving)
        unrecorded = bool(run_id) and p.history.done_by_run(name, run_id, ("deploy_candidate",)) is None
        if not result.get("changed", True) and not unrecorded:  # a re-run: the same candidate serves
            return {"model": name, "version": str(version), "path": serving.external_path, "serving": result}
        p.history.record(
            namespace=serving.namespace,
            model=name,
            action="deploy_candidate",
            version=str(version),
            previous_version=champion.version if champion else None,
            actor=actor,
            run_id=run_id,
            detail={
                "traffic": {q.name: q.traffic for q in serving.predictors},
                "mode": candidate.spec.traffic.mode,
            },
        )
    return {"model": name, "version": str(version), "path": serving.external_path, "serving": result}


@contextlib.contextmanager
def promotion(p: Platform, name: str) -> Iterator[None]:
    """The model's promotion lock for one step. When the runtime hands the wait for Seldon to a
    trigger (``RolloutPending``), the step keeps the model with a lease in ``p.holder``'s name until the
    rollout's deadline (plus a grace for the resumed task to start); any other end releases it."""
    from pushbutton.errors import LeaseHeld
    from pushbutton.kube.rollout import LEASE_GRACE_SECONDS, RolloutPending

    lost = (
        f"{p.holder}'s lease on '{name}' ran out while it waited for Seldon, so another promotion may have "
        "changed serving since; nothing more was done — check what serves, then clear the task"
    )
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(p.history.lock(name, holder=p.holder))
    except LeaseHeld as exc:
        if p.resumed:  # someone else's lease now: not a busy lock to retry but a wait that was overtaken
            raise Conflict(f"{lost} ({exc})") from exc
        raise
    with stack:
        lease = p.history.lease(name) if p.resumed and p.holder else None
        if p.resumed and p.holder and (lease is None or lease["holder"] != p.holder):
            raise Conflict(lost)
        try:
            yield
        except RolloutPending as pending:
            if p.holder:
                until = max(pending.deadline, p.history.clock()) + LEASE_GRACE_SECONDS  # a late retry too
                p.history.hold(name, p.holder, until=until, carry=pending.carry())
            raise
        except BaseException as exc:
            if not _undo_unfinished(p, exc) and p.holder:
                p.history.release(name, p.holder)
            raise
        if p.holder:
            p.history.release(name, p.holder)


def _undo_unfinished(p: Platform, exc: BaseException) -> bool:
    """A resumed step that failed before its apply finished (e.g. MLflow down while it re-reads the
    version): put back what its first run wrote, as a failed rollout does. True when that could not be
    done — the lease (and the undo steps in it) then stays, so a retry can finish or undo."""
    deferral = getattr(p.runtime, "deferral", None)
    if deferral is None or not deferral.undo:
        return False
    from pushbutton.kube.rollout import undo_carried

    outcome = undo_carried(p.runtime, deferral.undo)
    exc.add_note(f"the rollout this step had started, put back: {outcome}")
    return outcome.startswith("could NOT")


def _resolve(p: Platform, name: str, target: str) -> str:
    if target.isdigit():
        return str(p.registry.get(name, target).version)
    found = p.registry.by_alias(name, target)
    if found is None and not p.registry.exists(name):
        raise NotFound(
            f"model '{name}' is not registered in MLflow; check the name, or push the model first "
            "(`pushbutton push <model dir>`)"
        )
    if found is None:
        hint = "there was no earlier champion" if target == reg.PREVIOUS else "no version holds it"
        raise NotFound(f"model '{name}' has no '{target}' alias ({hint}); pass an explicit version number")
    return found.version


def make_champion(
    p: Platform,
    name: str,
    target: str,
    *,
    action: str,
    actor: str = "",
    run_id: str = "",
    comment: str = "",
) -> dict[str, Any]:
    """Move all traffic to ``target`` (a version number or an alias), then move the aliases.

    Used by activate (``target`` = the candidate), promote and rollback (``previous``).
    Serialised per model; idempotent when ``target`` already is the champion. ``comment`` (the
    approver's note) goes into the serving history.
    """
    with promotion(p, name):
        done = p.history.done_by_run(name, run_id, (action,))
        if done is not None:  # a cleared task of a finished run: what it did may since have been undone
            now = p.registry.by_alias(name, reg.CHAMPION)
            return {
                "model": name,
                "champion": now.version if now else None,
                "unchanged": f"run {run_id} already did its {action} (to v{done['version']} at {done['at']}); "
                f"v{now.version if now else '?'} is the champion now",
            }
        version = _resolve(p, name, target)
        mv = _require_tested(p, name, version)
        if action == "activate" and mv.status not in ("candidate", "champion"):
            raise Conflict(
                f"{name} v{version} is {mv.status}, not the candidate any more; activation only releases "
                f"a candidate — to serve it again: `pushbutton promote {name} --version {version}`"
            )
        prepared = prepare(p, name, version)
        old = p.registry.by_alias(name, reg.CHAMPION)
        serving = champion_only(prepared.spec, prepared.release)
        result = p.runtime.apply(serving)
        if old is not None and old.version != version:
            moved_from = _namespace_of(p, name, old.version)
            if moved_from not in (None, serving.namespace):  # the model moved namespace: the old path goes
                p.runtime.remove(moved_from, name)
        if old is None or old.version != version:
            if old is not None:
                p.registry.set_alias(name, reg.PREVIOUS, old.version)
                p.registry.set_tags(name, old.version, {reg.STATUS: "retired"})
            p.registry.set_alias(name, reg.CHAMPION, version)
            p.history.record(
                namespace=serving.namespace,
                model=name,
                action=action,
                version=version,
                previous_version=old.version if old else None,
                actor=actor,
                run_id=run_id,
                detail={"comment": comment} if comment else None,
            )
        candidate = p.registry.by_alias(name, reg.CANDIDATE)
        if candidate is not None and candidate.version == version:
            p.registry.delete_alias(name, reg.CANDIDATE)
        if reg.REASON in mv.tags:  # e.g. "rejected by …" of a version promoted anyway: no longer true
            p.registry.delete_tags(name, version, [reg.REASON])
        p.registry.set_tags(name, version, {reg.STATUS: "champion", "pushbutton.dag_run_id": run_id})
    return {"model": name, "champion": version, "previous": old.version if old else None, "serving": result}


def reject(
    p: Platform,
    name: str,
    version: str,
    actor: str = "",
    run_id: str = "",
    reason: str = "",
    *,
    action: str = "reject",
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Take the candidate out of serving (the champion gets all traffic back) and tag it rejected.

    ``action`` names it in the serving history (``reject``; ``supersede`` when a newer version's run
    answered the approval), with ``detail`` beside the reason."""
    with promotion(p, name):
        mv = p.registry.get(name, version)
        champion = p.registry.by_alias(name, reg.CHAMPION)
        if mv.status == "rejected":
            return {"model": name, "rejected": str(version), "unchanged": "already rejected"}
        if champion is not None and champion.version == str(version):
            raise Conflict(f"{name} v{version} is the champion; roll back instead of rejecting it")
        spec = load_spec(p.registry.download(name, version, p.release_dir(name, version)) / "code")
        if champion is not None and champion.version != str(version):
            incumbent = prepare(p, name, champion.version)
            p.runtime.apply(champion_only(incumbent.spec, incumbent.release))
        elif champion is None:
            p.runtime.remove(spec.serving.namespace, name)
        candidate = p.registry.by_alias(name, reg.CANDIDATE)
        if candidate is not None and candidate.version == str(version):
            p.registry.delete_alias(name, reg.CANDIDATE)
        text = reason or f"rejected by {actor or 'a reviewer'}"
        p.registry.set_tags(
            name, version, {reg.STATUS: "rejected", reg.REASON: text, "pushbutton.dag_run_id": run_id}
        )
        p.history.record(
            namespace=spec.serving.namespace,
            model=name,
            action=action,
            version=str(version),
            previous_version=champion.version if champion else None,
            actor=actor,
            run_id=run_id,
            detail={"reason": text, **(detail or {})},
        )
    return {"model": name, "rejected": str(version), "champion": champion.version if champion else None}


def probe(p: Platform, name: str) -> dict[str, Any]:
    """Is the model serving? Its deployment's status, plus one golden row sent through the gateway."""
    champion = p.registry.by_alias(name, reg.CHAMPION) or p.registry.by_alias(name, reg.CANDIDATE)
    if champion is None:
        return {"model": name, "serving": False, "reason": "no champion or candidate yet"}
    prepared = prepare(p, name, champion.version)
    spec = prepared.spec
    status = p.runtime.status(spec.serving.namespace, name)
    result: dict[str, Any] = {"model": name, "serving": True, "status": status}
    if spec.gate.golden:
        with (prepared.code_dir / str(spec.gate.golden)).open(newline="") as handle:
            row = next(csv.DictReader(handle))
        payload = {
            "data": {"names": spec.feature_names, "ndarray": [[float(row[f]) for f in spec.feature_names]]}
        }
        answer = p.runtime.predict(spec.serving.namespace, name, payload)
        result["probe"] = {"expected": row["expected"], "answer": answer}
    return result
