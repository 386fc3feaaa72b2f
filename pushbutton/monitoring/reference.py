"""Reference data (layer 3): what a model version saw at training, the baseline drift is measured from.

A reference is three small files, logged as the MLflow artifact ``reference/`` of the run that trained
the version (``training.train_and_register`` captures it):

* ``inputs.parquet`` — a bounded sample (``MAX_ROWS``, seeded) of the training split's inputs: the
  ``drift`` indicator compares the window's features with it;
* ``predictions.parquet`` — the holdout (bounded the same way): its inputs, the ``label``, the model's
  ``prediction`` and, when the estimator has ``predict_proba``, ``proba_<class>`` columns. Indicators
  about answers (``class_frequency``, ``prediction_stability``, ``custom``) compare with it: answers on
  data the model never trained on, as in production;
* ``stats.json`` — per-feature statistics of the whole training split (count, null share, mean, std,
  min, max, quantiles; distinct values and the most frequent one for text), the holdout's class shares
  or prediction quantiles, and where the reference came from (``origin``: ``training`` or
  ``on demand``), with its row counts.

Versions registered before references existed get one **on demand** (``ReferenceStore.get``): from
the version's code artifact (its spec and, for ``csv:``/``parquet:`` sources, its data file) the same
deterministic split is cut again, and the holdout is answered by the version's predict class in its
serving environment (``pushbutton.serving.checks.predict_in_env``; no probabilities on that path). The
result is cached under ``<home>/monitoring/reference/`` and logged to the version's run, so it is
computed once. When even that fails (a data file that is gone, a model that does not load), there is
no reference and the indicators that need one answer ``missing_reference`` with the reason.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from pushbutton.registry import Registry
    from pushbutton.spec.model import ModelSpec

log = logging.getLogger(__name__)

ARTIFACT_PATH = "reference"
INPUTS_FILE = "inputs.parquet"
PREDICTIONS_FILE = "predictions.parquet"
STATS_FILE = "stats.json"
FILES = (INPUTS_FILE, PREDICTIONS_FILE, STATS_FILE)
FORMAT = 1
MAX_ROWS = 10_000  # rows kept of the training split and of the holdout: KS on 10k vs a window is exact enough
MEMORY = 32  # references a ReferenceStore keeps in memory
LABEL = "label"
PREDICTION = "prediction"
PROBA_PREFIX = "proba_"
ANSWER_TYPES = ("class_frequency", "prediction_stability", "label_metric", "skew", "custom")


class ReferenceError(Exception):
    """A reference could not be read or computed (the message says why and how to fix it)."""


@dataclass(frozen=True)
class Reference:
    """The training reference of one model version (see the module docstring)."""

    inputs: pd.DataFrame
    predictions: pd.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return str(self.stats.get("origin", "training"))

    def frame_for(self, indicator_type: str) -> pd.DataFrame:
        """The frame an indicator compares with: the training inputs for ``drift``, the holdout with the
        model's answers for every other type."""
        return self.inputs if indicator_type == "drift" else self.predictions

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        self.inputs.to_parquet(directory / INPUTS_FILE, index=False)
        self.predictions.to_parquet(directory / PREDICTIONS_FILE, index=False)
        (directory / STATS_FILE).write_text(json.dumps(self.stats, indent=1, default=_plain, allow_nan=False))
        return directory

    @classmethod
    def load(cls, directory: Path) -> Reference:
        import pandas as pd

        missing = [name for name in FILES if not (directory / name).is_file()]
        if missing:
            raise ReferenceError(f"{directory} lacks {', '.join(missing)}; it is not a complete reference")
        try:
            stats = json.loads((directory / STATS_FILE).read_text())
            inputs = pd.read_parquet(directory / INPUTS_FILE)
            predictions = pd.read_parquet(directory / PREDICTIONS_FILE)
        except (OSError, ValueError) as exc:  # pyarrow's errors are ValueErrors (ArrowInvalid)
            raise ReferenceError(f"cannot read the reference in {directory}: {exc}") from exc
        if stats.get("format") != FORMAT:
            raise ReferenceError(
                f"{directory / STATS_FILE} has format {stats.get('format')!r}, this pushbutton reads {FORMAT}"
            )
        return cls(inputs, predictions, stats)


def capture(
    spec: ModelSpec,
    x_train: pd.DataFrame,
    x_holdout: pd.DataFrame,
    y_holdout: pd.Series,
    *,
    predictions: Any = None,
    probabilities: Any = None,
    classes: Any = None,
    origin: str = "training",
    version: str = "",
    note: str = "",
    max_rows: int = MAX_ROWS,
    now: datetime | None = None,
) -> Reference:
    """A reference from a training split and the model's answers on its holdout (``predictions``: one
    per holdout row; ``probabilities``: a rows x ``classes`` array, or None)."""
    import numpy as np
    import pandas as pd

    from pushbutton.monitoring.aggregate import feature_summary, prediction_summary

    names = [f.name for f in spec.schema_.inputs]
    seed = spec.data.seed
    inputs = _sample(x_train[names], max_rows, seed).reset_index(drop=True)
    holdout = x_holdout[names].assign(**{LABEL: np.asarray(y_holdout)})
    if predictions is not None:
        if len(predictions) != len(holdout):
            raise ReferenceError(f"{len(predictions)} predictions for {len(holdout)} holdout rows")
        holdout[PREDICTION] = np.asarray(predictions)
    if probabilities is not None and classes is not None:
        matrix = np.asarray(probabilities, dtype=float)
        for index, cls in enumerate(classes):
            holdout[PROBA_PREFIX + class_name(cls)] = matrix[:, index]
    holdout = _sample(holdout, max_rows, seed).reset_index(drop=True)
    group = {"predictor": "reference", "version": version or "reference"}
    features = feature_summary(x_train[names].assign(**group), names)
    answers = (
        prediction_summary(holdout.assign(**group), spec.task)
        if PREDICTION in holdout.columns
        else pd.DataFrame()
    )
    stats = {
        "format": FORMAT,
        "model": spec.name,
        "version": version,
        "origin": origin,
        "created": (now or datetime.now(UTC)).isoformat(),
        "task": spec.task,
        "features": {f.name: f.type for f in spec.schema_.inputs},
        "rows": {
            "training": len(x_train),
            "inputs": len(inputs),
            "holdout": len(x_holdout),
            "predictions": len(holdout),
        },
        "has_predictions": PREDICTION in holdout.columns,
        "has_probabilities": probabilities is not None and classes is not None,
        "feature_stats": _records(features.drop(columns=list(group)), "feature"),
        "prediction_stats": _records(answers.drop(columns=list(group), errors="ignore"), None),
        "note": note,
    }
    return Reference(inputs, holdout, stats)


def capture_fitted(spec: ModelSpec, data: Any, estimator: Any, version: str = "") -> Reference:
    """``capture`` for a freshly trained estimator and its ``pushbutton.data.Split``: its own answers on
    the holdout, and its class probabilities where it has ``predict_proba``."""
    predictions = estimator.predict(data.x_holdout)
    probabilities = classes = None
    note = ""
    if spec.task == "classification" and hasattr(estimator, "predict_proba"):
        try:
            probabilities, classes = estimator.predict_proba(data.x_holdout), estimator.classes_
        except Exception as exc:  # a reference without probabilities is still a reference
            note = f"predict_proba failed ({type(exc).__name__}: {exc}); no probabilities captured"
    return capture(spec, data.x_train, data.x_holdout, data.y_holdout, predictions=predictions,
                   probabilities=probabilities, classes=classes, version=version, note=note)  # fmt: skip


def class_name(value: Any) -> str:
    """How a class names its ``proba_<class>`` column (as the request log names them: ``1``, not ``1.0``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    item = getattr(value, "item", None)  # numpy scalars
    return class_name(item()) if callable(item) and not isinstance(value, str) else str(value)


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed).sort_index()


def _records(frame: pd.DataFrame, key: str | None) -> Any:
    rows = json.loads(frame.to_json(orient="records"))  # NaN -> null, numpy -> plain
    if key is None:
        return rows
    return {row.pop(key): row for row in rows}


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# --- where a version's reference comes from -----------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """A version's reference (None when there is none) and how it was found: ``cache``, ``mlflow``,
    ``computed`` (on demand) or ``missing`` (``why`` says what failed)."""

    reference: Reference | None
    origin: str
    why: str = ""


# (model, version) -> the version's spec, code directory and a predict function for a holdout frame
Materialize = Callable[[str, str], tuple["ModelSpec", Path, Callable[["pd.DataFrame"], list[Any]]]]


class ReferenceStore:
    """References of versions: the cache under ``root`` (``<home>/monitoring/reference``), else the
    version's MLflow artifact, else computed on demand (``materialize``) and then cached and logged to
    the version's run. One instance per process keeps what it read in memory."""

    def __init__(self, root: Path, registry: Registry | None = None, materialize: Materialize | None = None):
        self.root = Path(root)
        self.registry = registry
        self.materialize = materialize
        self._memory: OrderedDict[tuple[str, str], Lookup] = OrderedDict()

    def directory(self, model: str, version: str) -> Path:
        return self.root / model / f"v{version}"

    def get(self, model: str, version: str) -> Lookup:
        key = (model, str(version))
        if key not in self._memory or self._memory[key].reference is None:
            self._memory[key] = self._find(model, str(version))
            while len(self._memory) > MEMORY:  # a fleet tick reads hundreds: keep the recent ones
                self._memory.popitem(last=False)
        self._memory.move_to_end(key)
        return self._memory[key]

    def _find(self, model: str, version: str) -> Lookup:
        directory = self.directory(model, version)
        if (directory / STATS_FILE).is_file():
            try:
                return Lookup(Reference.load(directory), "cache")
            except ReferenceError as exc:
                log.warning("ignoring the cached reference of %s v%s: %s", model, version, exc)
        problems: list[str] = []
        if self.registry is not None:
            try:
                if self._download(model, version, directory):
                    return Lookup(Reference.load(directory), "mlflow")
                problems.append("the version's run has no reference/ artifact")
            except Exception as exc:  # MLflow down, a broken artifact: try computing it
                problems.append(f"reading the reference/ artifact failed: {exc}")
        if self.materialize is None:
            return Lookup(None, "missing", "; ".join(problems) or "no reference source configured")
        try:
            reference = compute_on_demand(model, version, self.materialize)
        except Exception as exc:
            problems.append(f"computing it from the training data failed: {type(exc).__name__}: {exc}")
            log.warning("no reference for %s v%s: %s", model, version, "; ".join(problems))
            return Lookup(None, "missing", "; ".join(problems))
        _replace_dir(directory, reference.save)
        if self.registry is not None:
            try:
                log_reference(self.registry, model, version, directory)
            except Exception as exc:  # the cache still holds it; the next machine computes it again
                log.warning(
                    "could not log the computed reference of %s v%s to MLflow: %s", model, version, exc
                )
        return Lookup(reference, "computed")

    def _download(self, model: str, version: str, directory: Path) -> bool:
        """Fetch ``reference/`` of the version's run into ``directory``; False when the run has none."""
        import mlflow.artifacts
        from mlflow import MlflowClient

        from pushbutton.registry import quiet_artifact_transfers

        assert self.registry is not None
        run_id = self.registry.get(model, version).run_id
        listed = MlflowClient(self.registry.tracking_uri).list_artifacts(run_id, ARTIFACT_PATH)
        if not {Path(item.path).name for item in listed} >= set(FILES):
            return False

        def fetch(target: Path) -> None:
            with quiet_artifact_transfers():
                mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=ARTIFACT_PATH,
                                                    dst_path=str(target), tracking_uri=self.registry.tracking_uri)  # type: ignore[union-attr]  # fmt: skip
            for name in FILES:
                shutil.move(str(target / ARTIFACT_PATH / name), target / name)
            shutil.rmtree(target / ARTIFACT_PATH)

        _replace_dir(directory, fetch)
        return True


def compute_on_demand(model: str, version: str, materialize: Materialize) -> Reference:
    """The reference of a version that has none: its spec's split again, answered by its predict class."""
    from pushbutton.data import split

    spec, code_dir, predict = materialize(model, version)
    data = split(spec, code_dir)
    predictions, note = None, "computed on demand from the version's code artifact; no probabilities"
    try:
        predictions = predict(data.x_holdout)
    except Exception as exc:
        note = f"computed on demand; the holdout could not be answered ({exc}), so no predictions"
    return capture(spec, data.x_train, data.x_holdout, data.y_holdout, predictions=predictions,
                   origin="on demand", version=version, note=note)  # fmt: skip


def log_reference(registry: Registry, model: str, version: str, directory: Path) -> None:
    """Log ``directory``'s files as the artifact ``reference/`` of the version's run."""
    from mlflow import MlflowClient

    run_id = registry.get(model, version).run_id
    MlflowClient(registry.tracking_uri).log_artifacts(run_id, str(directory), ARTIFACT_PATH)


def _replace_dir(directory: Path, fill: Callable[[Path], Any]) -> None:
    """Fill a fresh sibling directory, then swap it in: a reader never sees half a reference."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        fill(staging)
        shutil.rmtree(directory, ignore_errors=True)
        staging.replace(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def platform_materialize(platform: Any) -> Materialize:
    """``Materialize`` over a ``pushbutton.lifecycle.Platform``: the version downloaded and its serving
    environment built (both reused when the version serves), predictions in that environment."""

    def materialize(model: str, version: str) -> tuple[ModelSpec, Path, Callable[[pd.DataFrame], list[Any]]]:
        from pushbutton.lifecycle import prepare
        from pushbutton.serving.checks import predict_in_env

        prepared = prepare(platform, model, version)
        spec = prepared.spec

        def predict(frame: pd.DataFrame) -> list[Any]:
            return predict_in_env(prepared.env, prepared.code_dir, spec.predict.class_,
                                  str(prepared.model_dir), frame[spec.feature_names])  # fmt: skip

        return spec, prepared.code_dir, predict

    return materialize
