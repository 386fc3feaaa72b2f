"""Train a model through its entry point, log the run to MLflow and register a new version."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pushbutton import registry as reg
from pushbutton.errors import ModelCodeError, SpecError, SpecIssue
from pushbutton.spec.model import ModelSpec

if TYPE_CHECKING:
    from pushbutton.data import Split

_CODE_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".git", ".ipynb_checkpoints")


@dataclass(frozen=True)
class TrainResult:
    name: str
    version: str
    run_id: str
    metrics: dict[str, float]
    data_fingerprint: str
    git_commit: str
    seconds: dict[str, float]
    actor: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_reference(model_dir: Path, ref: str, field: str = "train.entry_point") -> Any:
    """Import ``module:attribute`` from ``model_dir``.

    Every model has ``train`` and ``predict`` modules, so the module gets a private name (it is not
    put in ``sys.modules``) and ``model_dir`` is on ``sys.path`` only while it is imported.
    """
    model_dir = Path(model_dir).resolve()
    module_name, _, attr = ref.partition(":")
    path = model_dir / f"{module_name.replace('.', '/')}.py"
    if not path.is_file():
        path = path.with_suffix("") / "__init__.py"
    file = str(model_dir / "model.yaml")
    digest = hashlib.sha256(str(model_dir).encode()).hexdigest()[:12]
    module_spec = importlib.util.spec_from_file_location(f"_pushbutton_model_{digest}_{module_name}", path)
    if module_spec is None or module_spec.loader is None or not path.is_file():
        raise SpecError(
            [
                SpecIssue(
                    file,
                    field,
                    f"module '{module_name}' not found in {model_dir}",
                    f"create {module_name.replace('.', '/')}.py or correct '{ref}'",
                )
            ]
        )
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(model_dir))
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # sys.exit() at import time is model code failing too
        where = _innermost_model_line(exc, model_dir)
        raise SpecError(
            [
                SpecIssue(
                    file,
                    field,
                    f"importing '{module_name}' failed" + (f" at {where}" if where else "") + f": {exc!r}",
                    "make the module importable (missing package? add it to requirements.txt)",
                )
            ]
        ) from exc
    finally:
        sys.path.remove(str(model_dir))
    if not hasattr(module, attr):
        raise SpecError(
            [
                SpecIssue(
                    file,
                    field,
                    f"'{module_name}' has no attribute '{attr}'",
                    f"define '{attr}' in {path.name} or correct '{ref}'",
                )
            ]
        )
    return getattr(module, attr)


@dataclass(frozen=True)
class Fitted:
    """A model trained on its spec's deterministic split, not yet logged anywhere."""

    spec: ModelSpec
    model_dir: Path
    data: Split
    estimator: Any


def fit(spec: ModelSpec, model_dir: Path) -> Fitted:
    """Split the data and call the spec's train entry point; the result must have ``predict``."""
    from pushbutton.data import split

    model_dir = Path(model_dir).resolve()
    data = split(spec, model_dir)
    train = load_reference(model_dir, spec.train.entry_point)
    where = f"{model_dir / 'model.yaml'}: train.entry_point '{spec.train.entry_point}'"
    try:
        estimator = train(data.x_train, data.y_train, dict(spec.train.params))
    except (Exception, SystemExit) as exc:
        raise ModelCodeError(
            f"{where} {_raised(exc)}; fix the train function and push again" + model_traceback(exc, model_dir)
        ) from exc
    if estimator is None or not hasattr(estimator, "predict"):
        raise ModelCodeError(
            f"{where} returned {type(estimator).__name__}; return the fitted estimator (an object with predict())"
        )
    _check_predicts(estimator, data, where, model_dir)
    return Fitted(spec, model_dir, data, estimator)


def _raised(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}); raise an exception instead of exiting"
    return f"raised {type(exc).__name__}: {exc}"


def model_traceback(exc: BaseException, model_dir: Path) -> str:
    """The part of ``exc``'s traceback a data scientist can act on, as Python prints it: the frames in
    files under ``model_dir`` (file, line, source line), the innermost frame when a library raised
    there, and the exception. Empty when no frame is in the model directory. Starts with a newline."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    inside = [i for i, frame in enumerate(frames) if _in_dir(frame.filename, model_dir)]
    if not inside:
        return ""
    shown = traceback.format_list([frames[i] for i in inside])
    if inside[-1] != len(frames) - 1:  # raised inside a library the model code called
        skipped = len(frames) - 1 - inside[-1] - 1
        if skipped:
            shown.append(f"  ... {skipped} library frame{'s' if skipped > 1 else ''} ...\n")
        shown += traceback.format_list([frames[-1]])
    last = traceback.format_exception_only(type(exc), exc)[-1]
    return "\nTraceback of the model code (most recent call last):\n" + "".join(shown) + last.rstrip("\n")


def _in_dir(filename: str, directory: Path) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(Path(directory).resolve())
    except (OSError, ValueError):
        return False


def _innermost_model_line(exc: BaseException, model_dir: Path) -> str:
    """``file:line`` of the innermost frame in the model directory (a SyntaxError's own position)."""
    import traceback

    if isinstance(exc, SyntaxError) and exc.filename and _in_dir(exc.filename, model_dir):
        return f"{exc.filename}:{exc.lineno}"
    inside = [f for f in traceback.extract_tb(exc.__traceback__) if _in_dir(f.filename, model_dir)]
    return f"{inside[-1].filename}:{inside[-1].lineno}" if inside else ""


def _check_predicts(estimator: Any, data: Split, where: str, model_dir: Path) -> None:
    """The returned estimator must predict: an unfitted one fails here, not deep in logging."""
    from sklearn.exceptions import NotFittedError

    try:
        estimator.predict(data.x_train.head(5))
    except NotFittedError as exc:
        raise ModelCodeError(
            f"{where} returned an unfitted {type(estimator).__name__}; train must return a fitted "
            "estimator: call estimator.fit(X, y) and return it"
        ) from exc
    except (Exception, SystemExit) as exc:
        raise ModelCodeError(
            f"{where} returned a {type(estimator).__name__} whose predict() {_raised(exc)} on 5 training "
            "rows; train must return a fitted estimator that predicts the schema's inputs"
            + model_traceback(exc, model_dir)
        ) from exc


def flavor_kwargs(fitted: Fitted, infer_requirements: bool = True) -> dict[str, Any]:
    """How ``mlflow.sklearn`` saves/logs a fitted model: skops with the model's own trusted types, and
    the model directory's requirements plus ``skops`` (needed to load it; MLflow records it only when
    it infers requirements). Without a requirements file MLflow infers them, unless told not to."""
    import importlib.metadata

    import mlflow.sklearn

    from pushbutton.serving.envs import read_requirements

    skops = f"skops=={importlib.metadata.version('skops')}"
    file = fitted.model_dir / (fitted.spec.requirements or "requirements.txt")
    if file.is_file():
        requirements: list[str] | None = [*read_requirements(file), skops]
    else:
        requirements = None if infer_requirements else [skops]
    return {
        "serialization_format": mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        "skops_trusted_types": _skops_types(fitted.estimator),
        "pip_requirements": requirements,
    }


def _skops_types(fitted: Any) -> list[str]:
    """Types skops must be told to trust to load this estimator again (e.g. tree internals).

    We trained the model ourselves; loading stays gated by MLflow's MLFLOW_ALLOW_PICKLE_DESERIALIZATION.
    """
    import warnings

    import skops.io

    with warnings.catch_warnings():  # skops scans many modules; keep their deprecation noise out of logs
        warnings.simplefilter("ignore")
        return skops.io.get_untrusted_types(data=skops.io.dumps(fitted))


_REGISTER_CHATTER = (
    "Successfully registered model",
    "already exists. Creating a new version",
    "Created version",
)


def _register(model_uri: str, name: str, tags: dict[str, str]) -> Any:
    """``mlflow.register_model`` without its status lines on stderr: the registered model always exists
    by now (``Registry.ensure_model``), so "already exists. Creating a new version" would mislead on a
    first push. Anything else it writes (warnings) still reaches stderr."""
    import io

    import mlflow

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return mlflow.register_model(model_uri, name, tags=tags)
    finally:
        lines = captured.getvalue().splitlines(keepends=True)
        sys.stderr.write("".join(line for line in lines if not any(c in line for c in _REGISTER_CHATTER)))


def _git(path: Path, *args: str) -> str:
    """Output of ``git -C path ARGS``; ``CalledProcessError``/``OSError`` when git fails or is missing."""
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, check=True).stdout


def git_commit(path: Path) -> str:
    """HEAD of the repository holding ``path`` (suffixed ``-dirty`` with local changes), or 'unknown'."""
    try:
        head = _git(path, "rev-parse", "HEAD").strip()
        dirty = _git(path, "status", "--porcelain", "--", ".").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def pusher(path: Path) -> str:
    """Who pushes: the git identity configured for the repository holding ``path``, else the OS user."""
    import getpass

    with contextlib.suppress(OSError, subprocess.CalledProcessError):  # unset: git config exits 1
        email = _git(path, "config", "user.email").strip()
        if email:
            return email
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


def _log_reference(fitted: Fitted, directory: Path) -> float:
    """Capture the monitoring reference (a sample of the training inputs, the model's answers on the
    holdout, per-feature statistics) and log it as the run's artifact ``reference/``; seconds taken.
    A failure is a warning, not a failed training: the monitor computes a missing reference on demand."""
    import mlflow

    from pushbutton.monitoring.reference import ARTIFACT_PATH, capture_fitted

    started = time.perf_counter()
    try:
        capture_fitted(fitted.spec, fitted.data, fitted.estimator).save(directory)
        mlflow.log_artifacts(str(directory), artifact_path=ARTIFACT_PATH)
    except Exception as exc:  # monitoring's reference must never fail a training
        print(f"warning: no monitoring reference logged ({type(exc).__name__}: {exc}); the monitor will "
              "compute it from the training data when it first needs it", file=sys.stderr)  # fmt: skip
    return time.perf_counter() - started


def train_and_register(
    spec: ModelSpec,
    model_dir: Path,
    registry: reg.Registry,
    *,
    source: str = "push",
    actor: str = "",
    extra_tags: dict[str, str] | None = None,
) -> TrainResult:
    """Train on the deterministic split, log everything, register a new version (tags set atomically)."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from pushbutton.gate import compute_metrics

    timings: dict[str, float] = {}
    started = time.perf_counter()
    fitted = fit(spec, model_dir)
    model_dir, data = fitted.model_dir, fitted.data
    metrics = compute_metrics(spec.task, data.y_holdout, fitted.estimator.predict(data.x_holdout))
    timings["train"] = time.perf_counter() - started

    started = time.perf_counter()
    mlflow.set_tracking_uri(registry.tracking_uri)
    mlflow.set_experiment(f"pushbutton/{spec.name}")
    commit = git_commit(model_dir)
    spec_text = (model_dir / "model.yaml").read_text()
    spec_hash = hashlib.sha256(spec_text.encode()).hexdigest()[:16]
    tags = {
        "pushbutton.model": spec.name,
        "pushbutton.source": source,
        "pushbutton.git_commit": commit,
        "pushbutton.data_fingerprint": data.fingerprint,
        "pushbutton.spec_hash": spec_hash,
        reg.ACTOR: actor,
        **(extra_tags or {}),
    }
    with mlflow.start_run(run_name=f"{spec.name}-{source}", tags=tags) as run:
        mlflow.log_params(
            {
                **spec.train.params,
                "data.source": spec.data.source,
                "data.seed": spec.data.seed,
                "data.holdout_fraction": spec.data.holdout_fraction,
            }
        )
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            code = Path(tmp) / "code"
            shutil.copytree(model_dir, code, ignore=_CODE_IGNORE)
            mlflow.log_artifacts(str(code), artifact_path="code")
            timings["reference"] = _log_reference(fitted, Path(tmp) / "reference")
        info = mlflow.sklearn.log_model(
            fitted.estimator,
            name="model",
            signature=infer_signature(data.x_train, fitted.estimator.predict(data.x_train.head(5))),
            input_example=data.x_train.head(3),
            **flavor_kwargs(fitted),
        )
    registry.ensure_model(
        spec.name, spec.description.strip(), {"owner": spec.owner, "pushbutton.task": spec.task}
    )
    version_tags = {**tags, reg.STATUS: "registered", reg.MLFLOW_RUN: run.info.run_id}
    mv = _register(info.model_uri, spec.name, version_tags)
    timings["log_and_register"] = time.perf_counter() - started
    return TrainResult(
        spec.name, str(mv.version), run.info.run_id, metrics, data.fingerprint, commit, timings, actor
    )
