"""``pushbutton`` command line. Each subcommand is a thin call into the core module that owns it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pushbutton.errors import PushbuttonError, SpecError

Handler = Callable[[argparse.Namespace], int]


def _validate(args: argparse.Namespace) -> int:
    from pushbutton.spec import discover, find_spec_dirs, load_model_dir

    failed = 0
    checked = 0
    for target in args.paths:
        path = Path(target)
        if path.is_dir() and not (path / "model.yaml").exists() and find_spec_dirs(path):
            results = discover(path)  # a directory of models: also checks names are unique
        else:
            try:
                spec = load_model_dir(path.parent if path.name == "model.yaml" else path)
                print(f"ok   {path}: model '{spec.name}'")
                checked += 1
                continue
            except SpecError as exc:
                print(f"FAIL {path}:\n{_indent(str(exc))}", file=sys.stderr)
                failed += 1
                checked += path.is_file() or (path / "model.yaml").is_file()
                continue
        for found in results:
            checked += 1
            if found.error:
                failed += 1
                print(f"FAIL {found.model_dir}:\n{_indent(str(found.error))}", file=sys.stderr)
            else:
                print(f"ok   {found.model_dir}: model '{found.spec.name}'")
    if checked == 0:
        print(f"no model.yaml found under {', '.join(args.paths)}", file=sys.stderr)
        return 2
    return 1 if failed else 0


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def _init(args: argparse.Namespace) -> int:
    from pushbutton.templates import init_model

    target = init_model(args.name, args.template, Path(args.dir))
    print(f"created {target} from template '{args.template}'; next: pushbutton validate {target}")
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
    changed = sync_stubs(cfg.models_dir, cfg.dags_dir)
    print(f"DAG stubs in {cfg.dags_dir / 'models'}: {len(changed)} written or removed")
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

        print(json.dumps(model_status(settings(), args.model), indent=2, default=str))
        return 0
    from pushbutton.stack import status

    report = status(settings())
    print(json.dumps(report, indent=2, default=str))
    return 0 if all(c.get("running") for c in report.get("components", {}).values()) else 1


def _push(args: argparse.Namespace) -> int:
    from pushbutton.actions import push
    from pushbutton.config import settings

    result = push(settings(), Path(args.path), trigger=args.trigger)
    print(json.dumps(result, indent=2, default=str))
    return 0


def _promote(args: argparse.Namespace) -> int:
    from pushbutton.actions import request_promotion
    from pushbutton.config import settings

    result = request_promotion(settings(), "promote", args.model, args.version, wait=not args.no_wait)
    print(json.dumps(result, indent=2, default=str))
    return 0 if result.get("state") in ("success", "queued", "running") else 1


def _rollback(args: argparse.Namespace) -> int:
    from pushbutton.actions import request_promotion
    from pushbutton.config import settings

    result = request_promotion(settings(), "rollback", args.model, args.version, wait=not args.no_wait)
    print(json.dumps(result, indent=2, default=str))
    return 0 if result.get("state") in ("success", "queued", "running") else 1


def _approve(args: argparse.Namespace) -> int:
    from pushbutton.actions import respond_approval
    from pushbutton.config import settings

    result = respond_approval(settings(), args.model, approve=not args.reject, run_id=args.run_id)
    print(json.dumps(result, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pushbutton", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    p = command(
        "validate", _validate, "validate model specs (a model directory, a model.yaml, or a models root)"
    )
    p.add_argument("paths", nargs="+")
    p = command("init", _init, "create a model directory from a template")
    p.add_argument("name")
    p.add_argument("--template", "-t", default="sklearn-classifier")
    p.add_argument("--dir", default="models", help="parent directory (default: models)")
    command("templates", _templates, "list model templates")
    command("sync-dags", _sync_dags, "write one Airflow DAG stub per model spec (and remove stale ones)")
    p = command("up", _up, "start the embedded stack: MLflow, gateway, airflow standalone")
    p.add_argument("--no-airflow", action="store_true", help="start MLflow and the gateway only")
    command("down", _down, "stop every process the stack started")
    p = command("status", _status, "stack status, or a model's serving status with MODEL")
    p.add_argument("model", nargs="?")
    p = command("push", _push, "validate, train, log and register a new model version")
    p.add_argument("path")
    p.add_argument(
        "--no-trigger",
        dest="trigger",
        action="store_false",
        help="register only (MLflow's webhook still starts the pipeline); by default also trigger "
        "<model>__cicd through the REST API, waiting until Airflow has parsed a new model's DAG",
    )
    for name, handler, text in (
        ("promote", _promote, "make a version champion (default: the candidate)"),
        ("rollback", _rollback, "restore the previous champion (or --version)"),
    ):
        p = command(name, handler, text)
        p.add_argument("model")
        p.add_argument("--version", default="candidate" if name == "promote" else "previous")
        p.add_argument("--no-wait", action="store_true")
    p = command("approve", _approve, "answer the pending Approve/Reject of a model's CI/CD run")
    p.add_argument("model")
    p.add_argument("--reject", action="store_true")
    p.add_argument("--run-id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except PushbuttonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
