"""Training in a child process with the model environment (``procs.model_env``): a train entry point
run for an Airflow task never sees the worker's Connections, Variables, configuration or keys.

``python -m pushbutton.train_job REQUEST RESULT`` reads the job (model directory, tracking URI,
source, actor, tags) from the JSON file REQUEST, trains and registers, and writes the
``TrainResult`` (or the pushbutton error it raised) to RESULT. Its output goes to the caller's
stderr line by line, so a task log shows the model's own output and tracebacks: for an error of the
model's code, the frames of the model directory (``training.model_traceback``) rather than the
platform's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pushbutton import errors
from pushbutton.errors import ModelCodeError, PushbuttonError, SpecError, SpecIssue, StackError
from pushbutton.procs import model_env


def _describe(exc: PushbuttonError) -> dict[str, Any]:
    described: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, SpecError):
        described["issues"] = [vars(issue) for issue in exc.issues]
    return described


def _rebuild(error: dict[str, Any]) -> PushbuttonError:
    """The child's error as the same pushbutton exception type (base class if unknown)."""
    if error.get("type") == "SpecError" and error.get("issues"):
        return SpecError([SpecIssue(**issue) for issue in error["issues"]])
    cls = getattr(errors, str(error.get("type")), PushbuttonError)
    if not (isinstance(cls, type) and issubclass(cls, PushbuttonError)) or cls is errors.GateFailed:
        cls = PushbuttonError
    return cls(error.get("message", "training failed"))


def train_in_child(
    model_dir: Path,
    tracking_uri: str,
    *,
    source: str,
    actor: str = "",
    extra_tags: dict[str, str] | None = None,
    on_start: Callable[[subprocess.Popen], None] | None = None,
    data_file: Path | None = None,
) -> dict[str, Any]:
    """Run ``train_and_register`` for ``model_dir`` in a child process; return its result as a dict.

    The child's pushbutton errors are raised here as the same type (a spec error stays a
    ``SpecError``); a child that dies without a result is a ``StackError`` with its last output.
    ``on_start`` gets the process (for an operator's ``on_kill``); the child never outlives the call.
    """
    request = {
        "model_dir": str(Path(model_dir).resolve()),
        "tracking_uri": tracking_uri,
        "source": source,
        "actor": actor,
        "extra_tags": dict(extra_tags or {}),
        # a remote source (sql:, s3://) fetched by the parent, which holds the Connections
        "data_file": str(data_file) if data_file else None,
    }
    env = model_env()
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["PYTHONUNBUFFERED"] = "1"
    with tempfile.TemporaryDirectory(prefix="pushbutton-train-") as tmp:
        request_file, result_file = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request_file.write_text(json.dumps(request))
        last = deque(maxlen=30)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pushbutton.train_job", str(request_file), str(result_file)],
            env=env,
            cwd=request["model_dir"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        try:
            if on_start is not None:
                on_start(proc)
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stderr.write(line)
                last.append(line.rstrip("\n"))
            code = proc.wait()
        except BaseException:  # the task is being stopped (timeout, kill): the child goes with it
            proc.kill()
            proc.wait()
            raise
        if result_file.is_file():
            outcome = json.loads(result_file.read_text())
            if "error" in outcome:
                raise _rebuild(outcome["error"])
            return outcome["result"]
    output = "\n".join(last) or "(no output)"
    raise StackError(
        f"training {request['model_dir']} in a child process ended with exit code {code} and no result "
        f"(killed, out of memory, or a crash outside pushbutton); its last output:\n{output}"
    )


def _run(request: dict[str, Any]) -> dict[str, Any]:
    from pushbutton.registry import Registry
    from pushbutton.spec import load_model_dir
    from pushbutton.training import train_and_register

    model_dir = Path(request["model_dir"])
    spec = load_model_dir(model_dir)
    if request.get("data_file"):  # the fetched training data of a sql:/s3:// source, as Parquet
        data = spec.data.model_copy(update={"source": f"parquet:{request['data_file']}"})
        spec = spec.model_copy(update={"data": data})
    result = train_and_register(
        spec,
        model_dir,
        Registry(request["tracking_uri"]),
        source=request["source"],
        actor=request["actor"],
        extra_tags=request["extra_tags"],
    )
    return result.as_dict()


def platform_first(path: list[str], model_dir: str) -> list[str]:
    """``sys.path`` with the model directory moved to its end (see ``load_platform_packages``)."""
    here = os.path.realpath(model_dir)
    others = [p for p in path if p != "" and os.path.realpath(p) != here]
    return [*others, model_dir]


def load_platform_packages(model_dir: str) -> None:
    """This child runs in the model directory, which ``-m`` puts first on ``sys.path``, and a model's own
    ``indicators.py`` (its custom indicators) there would shadow the platform's ``indicators`` package
    that validating the spec imports (an editable install finds the platform's packages only after
    ``sys.path``). So the package is imported with the directory off the path, and the directory goes
    back at the end: it still serves late imports of train.py's neighbours, and ``load_reference``
    puts it first while it loads the entry point."""
    sys.path[:] = platform_first(sys.path, model_dir)[:-1]
    try:
        import indicators  # noqa: F401 - cached in sys.modules from here on
    finally:
        sys.path.append(model_dir)


def main(argv: list[str] | None = None) -> int:
    request_file, result_file = argv if argv is not None else sys.argv[1:]
    load_platform_packages(os.getcwd())
    try:
        outcome: dict[str, Any] = {"result": _run(json.loads(Path(request_file).read_text()))}
    except ModelCodeError as exc:  # its message ends with the model code's frames and the exception
        print(f"error: {exc}", file=sys.stderr)
        outcome = {"error": _describe(exc)}
    except PushbuttonError as exc:
        traceback.print_exc()  # the whole chain into the task log
        outcome = {"error": _describe(exc)}
    Path(result_file).write_text(json.dumps(outcome))
    return 0 if "result" in outcome else 1


if __name__ == "__main__":
    sys.exit(main())
