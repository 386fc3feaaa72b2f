"""``pushbutton`` command line. Each subcommand is a thin call into the core module that owns it."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pushbutton.errors import PushbuttonError, SpecError

Handler = Callable[[argparse.Namespace], int]
DESCRIPTION = (
    "Model lifecycle on Airflow: validate a model directory, push it (train, log, register), approve, "
    "promote or roll back its releases, and run the embedded stack (MLflow, gateway, Airflow)."
)
VERSION_CHOICE = re.compile(r"^(candidate|previous|[0-9]+)$")  # as the promote/rollback DAGs' Param


def _validate(args: argparse.Namespace) -> int:
    from pushbutton.actions import check_unique_name, model_dir_of
    from pushbutton.config import settings
    from pushbutton.spec import Discovered, discover, find_spec_dirs, load_model_dir

    failed = 0
    checked = 0
    missing: list[str] = []
    catalog: list[Discovered] | None = None  # discover(models dir), read once for all paths

    def unique(model_dir: Path) -> None:
        """A SpecError when another model directory of the models directory owns this name."""
        nonlocal catalog
        models_dir = settings().models_dir
        if model_dir.resolve().is_relative_to(models_dir):
            catalog = discover(models_dir) if catalog is None else catalog
            check_unique_name(models_dir, model_dir, catalog)

    for target in args.paths:
        path = Path(target)
        if not path.exists():
            missing.append(f"{path} does not exist")
            continue
        if path.is_dir() and not (path / "model.yaml").exists():
            if not find_spec_dirs(path):
                missing.append(f"no model.yaml found under {path}")
                continue
            results = discover(path)  # a directory of models: also checks names are unique
            if catalog is None and path.resolve() == settings().models_dir:
                catalog = results
        else:
            try:
                model_dir = model_dir_of(path)
                spec = load_model_dir(model_dir)
                unique(model_dir)
                print(f"ok   {path}: model '{spec.name}'")
            except SpecError as exc:
                print(f"FAIL {path}:\n{_indent(str(exc))}", file=sys.stderr)
                failed += 1
            checked += 1
            continue
        for found in results:
            checked += 1
            error = found.error
            if error is None:
                try:
                    unique(found.model_dir)  # a part of the models directory: names across all of it
                except SpecError as exc:
                    error = exc
            if error:
                failed += 1
                print(f"FAIL {found.model_dir}:\n{_indent(str(error))}", file=sys.stderr)
            else:
                print(f"ok   {found.model_dir}: model '{found.spec.name}'")
    for problem in missing:
        print(
            f"error: {problem} (fix: pass a model directory, its model.yaml or a models root)",
            file=sys.stderr,
        )
    if checked == 0:
        return 2
    return 1 if failed or missing else 0


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def _init(args: argparse.Namespace) -> int:
    from pushbutton.config import settings

    models_dir = settings().models_dir
    parent = Path(args.dir) if args.dir else models_dir
    if args.from_data is None:
        from pushbutton.templates import init_model

        if args.target or args.task:
            print("error: --target and --task go with --from-data (a template sets its own)", file=sys.stderr)
            return 2
        template = args.template or "sklearn-classifier"
        target = init_model(args.name, template, parent, models_dir=models_dir)
        print(f"created {target} from template '{template}'; next: pushbutton validate {target}")
        return 0
    if args.template:
        print("error: pass --template or --from-data, not both", file=sys.stderr)
        return 2
    from pushbutton.from_data import describe, init_from_data

    target, inferred = init_from_data(
        args.name, args.from_data, parent, target=args.target, task=args.task, models_dir=models_dir
    )
    print(f"created {target} from {args.from_data}: {describe(inferred)}")
    print(f"next: pushbutton validate {target} && pushbutton push {target} (train.py is yours to change)")
    return 0


def _templates(args: argparse.Namespace) -> int:
    from pushbutton.templates import list_templates

    for name in list_templates():
        print(name)
    return 0


def _sync_dags(args: argparse.Namespace) -> int:
    from pushbutton.config import settings
    from pushbutton.dagstubs import sync_stubs

    cfg = settings()
    stubs = [p for p in sync_stubs(cfg.models_dir, cfg.stub_root) if p.suffix == ".py"]
    print(f"DAG stubs in {cfg.stub_root / 'models'}: {len(stubs)} written or removed")
    return 0


def _up(args: argparse.Namespace) -> int:
    from pushbutton.config import settings
    from pushbutton.stack import up

    info = up(settings(), airflow=not args.no_airflow)
    print(info.describe())
    return 0


def _down(args: argparse.Namespace) -> int:
    from pushbutton.config import settings
    from pushbutton.stack import down

    stopped = down(settings())
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _status(args: argparse.Namespace) -> int:
    from pushbutton.config import settings

    if args.model:
        from pushbutton.actions import model_status

        report = model_status(settings(), args.model)
        print(json.dumps(report, indent=2, default=str))
        if not report["cicd"]["available"]:
            print(f"warning: no CI/CD run information: {report['cicd']['why']}", file=sys.stderr)
        return 0
    from pushbutton.stack import status

    report = status(settings())
    print(json.dumps(report, indent=2, default=str))
    return 0 if all(c.get("running") for c in report.get("components", {}).values()) else 1


def _logger(args: argparse.Namespace) -> int:
    from pushbutton.monitoring.logger import main as logger_main

    argv = [f"--{name.replace('_', '-')}={value}" for name, value in
            (("host", args.host), ("port", args.port), ("store", args.store), ("workers", args.workers))
            if value is not None]  # fmt: skip
    return logger_main(argv)


def _indicators(args: argparse.Namespace) -> int:
    import os

    from pushbutton.config import settings
    from pushbutton.monitoring.store import open_store
    from pushbutton.monitoring.table import latest_report, render_table

    cfg = settings()
    with open_store(cfg=cfg) as store:
        results = store.indicators(args.model, version=args.version, last=args.last)
    report = latest_report(cfg, args.model)
    if args.json:
        print(json.dumps({"model": args.model, "results": [r.as_dict() for r in results],
                          "report": str(report) if report else None}, indent=2, default=str))  # fmt: skip
        return 0 if results else 1
    if not results:
        which = f" v{args.version}" if args.version else ""
        print(f"error: no indicator results for {args.model}{which} yet (fix: trigger {args.model}__monitor, "
              "or wait for its schedule; is the model serving and logging?)", file=sys.stderr)  # fmt: skip
        return 1
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    print(render_table(results, color=color))
    flagged = sum(1 for r in results if r.flagged)
    print(f"\n{flagged} flagged of {len(results)} results" + (" (FLAGGED rows)" if flagged else ""))
    print(f"latest drift report: {report}" if report else "latest drift report: none yet")
    return 0


def _labels(args: argparse.Namespace) -> int:
    from pushbutton.config import settings
    from pushbutton.monitoring.labels import write_labels
    from pushbutton.monitoring.store import open_store

    with open_store(cfg=settings()) as store:
        report = write_labels(store, args.model, Path(args.file))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.describe())
    if report.unknown:
        print(f"warning: {report.unknown_message()}", file=sys.stderr)
    return 0


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"'{value}' is not a whole number of windows >= 1 (e.g. 5)")
    return int(value)


PUSH_WAIT_EXIT = {"awaiting_approval": 0, "success": 0, "failed": 1, "timeout": 124}
PUSH_WAIT_SECONDS = 1800.0


def _push(args: argparse.Namespace) -> int:
    from pushbutton.actions import follow_push, push
    from pushbutton.config import settings

    if args.wait and not args.trigger:
        print("error: --wait follows the run push triggers; drop --no-trigger (or --wait)", file=sys.stderr)
        return 2
    if args.timeout is not None and not args.wait:
        print("error: --timeout goes with --wait (how long to follow the run)", file=sys.stderr)
        return 2
    cfg = settings()
    result = push(cfg, Path(args.path), trigger=args.trigger)
    error = result["pipeline"].get("error")
    if error or not args.wait:
        print(json.dumps(result, indent=2, default=str))
        if error:
            print(f"error: {error}", file=sys.stderr)
        return 1 if error else 0
    code = 1  # registered: whatever happens while following, stdout gets the result
    try:
        timeout = PUSH_WAIT_SECONDS if args.timeout is None else args.timeout
        outcome = follow_push(cfg, result, timeout, emit=lambda line: print(line, file=sys.stderr))
        code = PUSH_WAIT_EXIT[outcome["state"]]
    except PushbuttonError as exc:
        outcome = {"state": "unknown", "error": str(exc)}
        what = f"{result.get('name', 'the model')} version {result['version']}"
        print(f"error: registered {what}, but following its CI/CD run failed: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        outcome, code = {"state": "interrupted"}, 130
        print("interrupted; the run goes on in Airflow", file=sys.stderr)
    result["pipeline"]["outcome"] = outcome
    print(json.dumps(result, indent=2, default=str))
    return code


def _promote(args: argparse.Namespace) -> int:
    return _promotion("promote", args)


def _rollback(args: argparse.Namespace) -> int:
    return _promotion("rollback", args)


def _promotion(action: str, args: argparse.Namespace) -> int:
    from pushbutton.actions import request_promotion
    from pushbutton.config import settings

    result = request_promotion(settings(), action, args.model, args.version, wait=not args.no_wait)
    print(json.dumps(result, indent=2, default=str))
    for task, reason in (result.get("reasons") or {}).items():
        print(f"error: {action} of '{args.model}' failed in task '{task}': {reason}", file=sys.stderr)
    return 0 if result.get("state") in ("success", "queued", "running") else 1


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"'{value}' is not a number of seconds greater than 0 (e.g. 600)")
    return seconds


def _version(value: str) -> str:
    if not VERSION_CHOICE.match(value):
        raise argparse.ArgumentTypeError(
            f"'{value}' is not a version; use a version number (e.g. 3), 'candidate' or 'previous'"
        )
    return value


def _version_number(value: str) -> str:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"'{value}' is not a version number (e.g. 3)")
    return value


def _approve(args: argparse.Namespace) -> int:
    from pushbutton.actions import respond_approval
    from pushbutton.config import settings

    result = respond_approval(
        settings(), args.model, approve=not args.reject, run_id=args.run_id, comment=args.comment
    )
    print(json.dumps(result, indent=2, default=str))
    return 0


def _render(args: argparse.Namespace) -> int:
    import yaml

    from pushbutton.actions import model_dir_of
    from pushbutton.kube.render import render_model, serving_spec
    from pushbutton.spec import load_model_dir

    model = load_model_dir(model_dir_of(Path(args.model_dir)))
    spec = serving_spec(
        model,
        champion_version=int(args.champion_version),
        candidate_version=None if args.candidate_version is None else int(args.candidate_version),
        candidate_percent=args.candidate_percent,
        shadow=args.shadow,
    )
    docs = render_model(
        model, spec, args.runtime, image_registry=args.image_registry, logger_url=args.logger_url
    )
    print(yaml.safe_dump_all(docs, sort_keys=False), end="")
    return 0


def _percent(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 99:
        raise argparse.ArgumentTypeError(f"'{value}' is not a candidate share from 1 to 99 (e.g. 10)")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pushbutton", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    p = command(
        "validate", _validate, "validate model specs (a model directory, a model.yaml, or a models root)"
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="model directory, model.yaml or models root")
    p = command("init", _init, "create a model directory from a template, or from a data set")
    p.add_argument("name", help="model name: lowercase letters, digits and '-', starting with a letter")
    p.add_argument(
        "--template",
        "-t",
        help="template name (default sklearn-classifier; list them with: pushbutton templates)",
    )
    p.add_argument(
        "--from-data",
        metavar="PATH|sklearn:NAME",
        help="write model.yaml (inputs and types, target, task, gate) and train.py from a CSV or parquet "
        "file (copied into the model directory) or a scikit-learn data set; no predict class needed",
    )
    p.add_argument("--target", metavar="COLUMN", help="with --from-data: the column to predict (files)")
    p.add_argument(
        "--task",
        choices=("classification", "regression"),
        help="with --from-data: override the task inferred from the target column",
    )
    p.add_argument("--dir", help="parent directory (default: the models directory, PUSHBUTTON_MODELS_DIR)")
    command("templates", _templates, "list model templates")
    command("sync-dags", _sync_dags, "write one Airflow DAG stub per model spec (and remove stale ones)")
    p = command("up", _up, "start the embedded stack: MLflow, gateway, airflow standalone")
    p.add_argument("--no-airflow", action="store_true", help="start MLflow and the gateway only")
    command("down", _down, "stop every process the stack started")
    p = command("logger", _logger, "run the request logger in the foreground (`up` starts it for you)")
    p.add_argument("--host", help="address to bind (default: PUSHBUTTON_HOST)")
    p.add_argument("--port", type=int, help="port (default: PUSHBUTTON_LOGGER_PORT, 8002)")
    p.add_argument(
        "--store", help="monitoring store URL (default: PUSHBUTTON_MONITORING_URL, else <home>/monitoring.db)"
    )
    p.add_argument(
        "--workers",
        type=int,
        help="logger processes sharing the port (default: PUSHBUTTON_LOGGER_WORKERS, 1)",
    )
    p = command(
        "indicators", _indicators, "a model's latest indicator results (flags highlighted) and drift report"
    )
    p.add_argument("model", metavar="MODEL", help="a model name")
    p.add_argument("--version", type=_version_number, help="only this version (a number)")
    p.add_argument(
        "--last", type=_positive, default=1, help="windows per indicator, newest first (default 1)"
    )
    p.add_argument("--json", action="store_true", help="the results as JSON (IndicatorResult fields)")
    p = command("labels", _labels, "send late labels (ground truth) for logged requests: CSV or Parquet")
    p.add_argument("model", metavar="MODEL", help="the model whose requests the labels answer")
    p.add_argument("file", metavar="FILE", help="CSV/Parquet with request_id, label and optionally row")
    p.add_argument("--json", action="store_true", help="the outcome as JSON")
    p = command("status", _status, "stack status, or a model's serving status with MODEL")
    p.add_argument("model", nargs="?", metavar="MODEL", help="a registered model name")
    p = command("push", _push, "validate, train, log and register a new model version")
    p.add_argument("path", metavar="PATH", help="the model directory (or its model.yaml)")
    p.add_argument(
        "--no-trigger",
        dest="trigger",
        action="store_false",
        help="register only (MLflow's webhook still starts the pipeline); by default also trigger "
        "<model>__cicd through the REST API, waiting until Airflow has parsed a new model's DAG",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="follow the CI/CD run: print each step as it ends (stderr), stop at the approval (exit 0, with "
        "the test report and how to approve) or at a failure (exit 1, with the failing step and why)",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help=f"with --wait: stop following after this long (exit 124; the run goes on; default "
        f"{PUSH_WAIT_SECONDS:.0f})",
    )
    for name, handler, text, default in (
        ("promote", _promote, "make a version champion (default: the candidate)", "candidate"),
        ("rollback", _rollback, "restore the previous champion (or --version)", "previous"),
    ):
        p = command(name, handler, text)
        p.add_argument("model", metavar="MODEL", help="a registered model name")
        p.add_argument(
            "--version",
            type=_version,
            default=default,
            help=f"a version number, 'candidate' or 'previous' (default: {default})",
        )
        p.add_argument("--no-wait", action="store_true", help="return once the DAG run is queued")
    p = command("render", _render, "print a model's Seldon manifests as YAML (no cluster needed)")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="the model directory (or its model.yaml)")
    p.add_argument("--runtime", required=True, choices=("seldon-v1", "seldon-v2"), help="Seldon Core version")
    share = p.add_mutually_exclusive_group()
    share.add_argument(
        "--candidate-percent", type=_percent, metavar="P", help="add a candidate taking P%% (canary)"
    )
    share.add_argument(
        "--shadow", action="store_true", help="add a candidate as a shadow (a copy of traffic)"
    )
    p.add_argument("--champion-version", type=_version_number, default="1", metavar="N", help="(default 1)")
    p.add_argument("--candidate-version", type=_version_number, metavar="N", help="(default: champion's + 1)")
    p.add_argument(
        "--image-registry",
        default="registry.example/models",
        metavar="REG",
        help="seldon-v1: images are REG/<model>:<version> (default registry.example/models)",
    )
    p.add_argument("--logger-url", metavar="URL", help="seldon-v1: the request logger service's URL")
    p = command("approve", _approve, "answer the pending Approve/Reject of a model's CI/CD run")
    p.add_argument("model", metavar="MODEL", help="a model name (its DAG is MODEL__cicd)")
    p.add_argument("--reject", action="store_true", help="reject instead of approve")
    p.add_argument("--run-id", help="which run, when several wait for an answer")
    p.add_argument("--comment", help="why (kept in the serving history; default 'via pushbutton CLI')")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pushbutton.config import unknown_variables

    for warning in unknown_variables():
        print(f"warning: {warning}", file=sys.stderr)
    try:
        return args.handler(args)
    except PushbuttonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
