"""Quality gate decisions (pure): metrics, thresholds, golden data, signature, champion comparison,
and what is wrong with a model's answers. Every failed check states which check, which value and
which threshold."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pushbutton.gate.check import Check
from pushbutton.spec.model import LOWER_IS_BETTER, ModelSpec

_MLFLOW_TYPES = {
    "double": "double",
    "float": "float",
    "long": "long",
    "integer": "integer",
    "boolean": "boolean",
    "string": "string",
}


def compute_metrics(task: str, y_true: Sequence[Any], y_pred: Sequence[Any]) -> dict[str, float]:
    from sklearn import metrics as m

    if task == "classification":
        return {
            "accuracy": float(m.accuracy_score(y_true, y_pred)),
            "f1_macro": float(m.f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "precision_macro": float(m.precision_score(y_true, y_pred, average="macro", zero_division=0)),
            "recall_macro": float(m.recall_score(y_true, y_pred, average="macro", zero_division=0)),
        }
    return {
        "rmse": float(math.sqrt(m.mean_squared_error(y_true, y_pred))),
        "mae": float(m.mean_absolute_error(y_true, y_pred)),
        "r2": float(m.r2_score(y_true, y_pred)),
    }


def threshold_checks(spec: ModelSpec, metrics: dict[str, float]) -> list[Check]:
    checks = []
    for name, bound in sorted(spec.gate.metrics.items()):
        value = metrics.get(name)
        if value is None:
            checks.append(Check(f"metric {name}", False, f"{name} was not computed for a {spec.task} model"))
            continue
        problems = []
        if bound.min is not None and value < bound.min:
            problems.append(f"{name} {value:.4f} < min {bound.min}")
        if bound.max is not None and value > bound.max:
            problems.append(f"{name} {value:.4f} > max {bound.max}")
        limits = " ".join(f"{k} {v}" for k, v in (("min", bound.min), ("max", bound.max)) if v is not None)
        detail = "; ".join(problems) or f"{name} {value:.4f} within {limits}"
        checks.append(Check(f"metric {name}", not problems, detail, value, limits))
    return checks


def champion_check(
    spec: ModelSpec, candidate: dict[str, float], champion: dict[str, float], champion_version: str
) -> Check:
    """The challenger may be worse than the champion by at most ``champion_tolerance`` (relative)."""
    metric, tol = spec.primary_metric, spec.gate.champion_tolerance
    new, old = candidate[metric], champion[metric]
    if metric in LOWER_IS_BETTER:
        limit = old * (1 + tol)
        passed, relation = new <= limit + 1e-12, f"<= {limit:.4f}"
    else:
        limit = old * (1 - tol)
        passed, relation = new >= limit - 1e-12, f">= {limit:.4f}"
    detail = (
        f"{metric} {new:.4f} vs champion v{champion_version} {old:.4f} "
        f"(tolerance {tol:.0%}: needs {relation})"
    )
    return Check("champion comparison", passed, detail, new, relation)


def comparison_blocker(candidate: ModelSpec, champion: ModelSpec, champion_version: str) -> str | None:
    """Why the champion cannot be scored on the candidate's holdout; None when it can."""
    who = f"champion v{champion_version}"
    if champion.task != candidate.task:
        return f"{who} is a {champion.task} model, this version a {candidate.task} one"
    if champion.data.target != candidate.data.target:
        return f"{who} predicts '{champion.data.target}', this version '{candidate.data.target}'"
    missing = [f for f in champion.feature_names if f not in candidate.feature_names]
    if missing:
        return (
            f"{who} needs input(s) {', '.join(missing)} that this version's data lacks; clients must "
            "send the new inputs once it serves"
        )
    return None


def skipped_comparison(reason: str) -> Check:
    return Check(
        "champion comparison",
        True,
        f"skipped: {reason} (compare them yourself before approving)",
        skipped=True,
    )


def golden_check(spec: ModelSpec, expected: Sequence[Any], predicted: Sequence[Any]) -> Check:
    if len(expected) != len(predicted):
        return Check("golden data", False, f"{len(predicted)} predictions for {len(expected)} golden rows")
    tol = spec.gate.golden_tolerance
    bad = []
    for row, (want, got) in enumerate(zip(expected, predicted, strict=True), start=1):
        same = want == got if spec.task == "classification" else abs(float(want) - float(got)) <= tol
        if not same:
            bad.append(f"row {row}: expected {want}, got {got}")
    if bad:
        shown = "; ".join(bad[:3]) + (f"; … {len(bad) - 3} more" if len(bad) > 3 else "")
        return Check("golden data", False, f"{len(bad)}/{len(expected)} rows differ: {shown}", len(bad), "0")
    return Check("golden data", True, f"{len(expected)} rows match", 0, "0")


def signature_check(spec: ModelSpec, signature_inputs: list[dict[str, Any]] | None) -> Check:
    """Compare the spec's ``schema.inputs`` with the logged MLflow signature (names, order, types)."""
    if not signature_inputs:
        return Check("input signature", False, "the logged model has no signature; log it with one")
    want = [(f.name, _MLFLOW_TYPES[f.type]) for f in spec.schema_.inputs]
    got = [(c.get("name"), c.get("type")) for c in signature_inputs]
    if [n for n, _ in want] != [n for n, _ in got]:
        return Check(
            "input signature",
            False,
            f"model inputs {[n for n, _ in got]} differ from schema.inputs {[n for n, _ in want]}",
        )
    mismatched = [f"{n}: spec {w}, model {g}" for (n, w), (_, g) in zip(want, got, strict=True) if w != g]
    if mismatched:
        return Check("input signature", False, "type mismatch: " + "; ".join(mismatched))
    return Check("input signature", True, f"{len(want)} inputs match schema.inputs")


def _kind(value: Any) -> str:
    """What a label is, as the data scientist would say it (integral floats count as integers)."""
    if isinstance(value, str):
        return "strings"
    if isinstance(value, bool | int) or (isinstance(value, float) and value.is_integer()):
        return "integers"
    if isinstance(value, float):
        return "numbers"
    return type(value).__name__


_CAST = {"integers": "int(label)", "numbers": "float(label)", "strings": "str(label)"}
_UNCHANGED = "(e.g. `return self.model.predict(X)`"


def _short(value: Any, limit: int = 60) -> str:
    import json

    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def answers_problem(
    task: str, y_true: Sequence[Any], y_pred: Any, train_labels: Sequence[Any] = ()
) -> str | None:
    """Why the answers cannot be scored against the holdout, with the fix; None if they can.

    Names what ``compute_metrics`` would only report as a scikit-learn error: a count other than one
    answer per row, rows instead of values, nulls, and (classification) labels of another type than
    the training labels (``'1'`` for ``1``), or none of them a training label.
    """
    one = "label" if task == "classification" else "number"
    if not isinstance(y_pred, list) or len(y_pred) != len(y_true):
        got = f"{len(y_pred)} answers" if isinstance(y_pred, list) else f"a {type(y_pred).__name__}"
        return (
            f"predict() returned {got} for {len(y_true)} holdout rows; return one {one} per row {_UNCHANGED})"
        )
    nested = next((v for v in y_pred if isinstance(v, list | dict)), None)
    if nested is not None:
        what = "labels, not class probabilities (`predict_proba`)" if one == "label" else "a flat list"
        return (
            f"predict() returned rows like {_short(nested)} instead of one {one} per row; "
            f"return {what} {_UNCHANGED})"
        )
    if any(v is None for v in y_pred):
        row = next(i for i, v in enumerate(y_pred, start=1) if v is None)
        return f"predict() returned null for holdout row {row}; return a {one} for every row"
    if task != "classification":
        text = next((v for v in y_pred if isinstance(v, str)), None)
        if text is None:
            return None
        return (
            f"predict() returned strings like {text!r} but a regression model returns numbers; return the "
            f"estimator's values unchanged {_UNCHANGED}) or convert them (`float(value)`)"
        )
    labels = [*train_labels, *y_true]
    known: dict[str, Any] = {}
    for label in labels:
        known.setdefault(_kind(label), label)
    for value in y_pred:
        kind = _kind(value)
        if kind not in known:
            want, example = next(iter(known.items()))
            return (
                f"predict() returned {kind} like {value!r} but the training labels are {want} like "
                f"{example!r}: return the estimator's labels unchanged {_UNCHANGED}, without "
                f"`.astype(...)`, `str(...)` or a mapping), or convert them back with "
                f"`{_CAST.get(want, want)}`"
            )
    if y_pred and not set(y_pred) & set(labels):
        shown = ", ".join(repr(v) for v in sorted(set(labels), key=str)[:10])
        return (
            f"predict() returned labels like {y_pred[0]!r}, none of which is a training label ({shown}): "
            f"return the estimator's labels unchanged {_UNCHANGED}), not codes or names of your own"
        )
    return None
