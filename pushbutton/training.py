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
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pushbutton import registry as reg
from pushbutton.errors import PushbuttonError, SpecError, SpecIssue
from pushbutton.spec.model import ModelSpec

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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def model_code(model_dir: Path) -> Iterator[None]:
    """Make the model directory importable, and forget its modules afterwards (no leaks between models)."""
    before = set(sys.modules)
    sys.path.insert(0, str(model_dir))
    try:
        yield
    finally:
        sys.path.remove(str(model_dir))
        for name in set(sys.modules) - before:
            module = sys.modules.get(name)
            if str(getattr(module, "__file__", "") or "").startswith(str(model_dir)):
                del sys.modules[name]


def load_entry_point(spec: ModelSpec, model_dir: Path) -> Any:
    module_name, _, attr = spec.train.entry_point.partition(":")
    file = str(model_dir / "model.yaml")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise SpecError(
            [
                SpecIssue(
                    file,
                    "train.entry_point",
                    f"importing '{module_name}' failed: {exc!r}",
                    "make the module importable (missing package? add it to requirements.txt)",
                )
            ]
        ) from exc
    if importlib.util.find_spec(module_name) is None or not hasattr(module, attr):
        raise SpecError(
            [
                SpecIssue(
                    file,
                    "train.entry_point",
                    f"'{module_name}' has no attribute '{attr}'",
                    "define the train function or correct train.entry_point",
                )
            ]
        )
    return getattr(module, attr)


def _skops_types(fitted: Any) -> list[str]:
    """Types skops must be told to trust to load this estimator again (e.g. tree internals).

    We trained the model ourselves; loading stays gated by MLflow's MLFLOW_ALLOW_PICKLE_DESERIALIZATION.
    """
    import skops.io

    return skops.io.get_untrusted_types(data=skops.io.dumps(fitted))


def git_commit(path: Path) -> str:
    """HEAD of the repository holding ``path`` (suffixed ``-dirty`` with local changes), or 'unknown'."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, check=True
        ).stdout

    try:
        head = git("rev-parse", "HEAD").strip()
        dirty = git("status", "--porcelain", "--", ".").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def train_and_register(
    spec: ModelSpec, model_dir: Path, registry: reg.Registry, *, source: str = "push", actor: str = ""
) -> TrainResult:
    """Train on the deterministic split, log everything, register a new version (tags set atomically)."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from pushbutton.data import split
    from pushbutton.gate import compute_metrics

    model_dir = model_dir.resolve()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    data = split(spec, model_dir)
    with model_code(model_dir):
        train = load_entry_point(spec, model_dir)
        fitted = train(data.x_train, data.y_train, dict(spec.train.params))
    if fitted is None or not hasattr(fitted, "predict"):
        raise PushbuttonError(
            f"{model_dir / 'model.yaml'}: train.entry_point '{spec.train.entry_point}' returned "
            f"{type(fitted).__name__}; return the fitted estimator (an object with predict())"
        )
    predictions = fitted.predict(data.x_holdout)
    metrics = compute_metrics(spec.task, data.y_holdout, predictions)
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
        "pushbutton.actor": actor,
    }
    requirements = model_dir / (spec.requirements or "requirements.txt")
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
        info = mlflow.sklearn.log_model(
            fitted,
            name="model",
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=_skops_types(fitted),
            signature=infer_signature(data.x_train, fitted.predict(data.x_train.head(5))),
            input_example=data.x_train.head(3),
            pip_requirements=str(requirements) if requirements.is_file() else None,
        )
    registry.ensure_model(
        spec.name, spec.description.strip(), {"owner": spec.owner, "pushbutton.task": spec.task}
    )
    version_tags = {**tags, reg.STATUS: "registered", "pushbutton.run_id": run.info.run_id}
    mv = mlflow.register_model(info.model_uri, spec.name, tags=version_tags)
    timings["log_and_register"] = time.perf_counter() - started
    return TrainResult(
        spec.name, str(mv.version), run.info.run_id, metrics, data.fingerprint, commit, timings
    )
