"""``label_metric``: how good were the answers, now that labels have come in?

Joins the window's rows with late labels by ``request_id`` and ``row`` and computes, vectorised:
classification — accuracy, precision/recall/F1 (macro over the classes seen in labels or answers,
0 for a class never predicted, as scikit-learn's ``zero_division=0``), the confusion matrix, and log
loss where ``proba_<class>`` columns exist; regression — MSE, MAE, RMSE, R² (scikit-learn's
conventions); nDCG@k within groups when ``group`` names a column (gain = the label, as scikit-learn's
``ndcg_score``; ties in the score keep row order; groups without a relevant row are left out).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from indicators.base import META, Indicator, Inputs, Verdict, match_rows
from indicators.configs import LABEL_METRICS_HIGHER, LabelMetricConfig
from indicators.frequency import class_key
from indicators.skew import comparable

LOG_LOSS_EPS = 1e-15


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, object]:
    n = len(y_true)
    labels, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    k = len(labels)
    matrix = np.bincount(codes[:n] * k + codes[n:], minlength=k * k).reshape(k, k)  # rows: truth
    hits = np.diag(matrix).astype(float)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros(k), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(k), where=both > 0)
    return {
        "accuracy": float(hits.sum() / n),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
        "confusion_matrix": {"labels": [class_key(v) for v in labels], "matrix": matrix.tolist()},
    }


def log_loss(rows: pd.DataFrame, y_true: np.ndarray) -> float | None:
    """Mean negative log probability of the true class over rows with ``proba_<class>`` values
    (rows normalised to sum 1, clipped at 1e-15); ``None`` without probability columns."""
    columns = _proba_columns(rows)
    if not columns:
        return None
    probabilities = rows[columns].to_numpy(dtype=np.float64, na_value=np.nan)
    keep = ~np.isnan(probabilities).any(axis=1)
    if not keep.any():
        return None
    probabilities = probabilities[keep]
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    classes = [class_key(_number_or_text(str(c)[len("proba_") :])) for c in columns]
    index = {cls: i for i, cls in enumerate(classes)}
    distinct, inverse = np.unique(y_true[keep], return_inverse=True)  # few classes, many rows
    position = np.array([index.get(class_key(v), -1) for v in distinct], dtype=np.int64)[inverse]
    chosen = np.where(position >= 0, probabilities[np.arange(len(position)), np.maximum(position, 0)], 0.0)
    return float(-np.mean(np.log(np.clip(chosen, LOG_LOSS_EPS, 1.0))))


def _proba_columns(frame: pd.DataFrame) -> list[str]:
    return [str(c) for c in frame.columns if str(c).startswith("proba_")]


def _number_or_text(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        return text


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    errors = y_true - y_pred
    mse = float(np.mean(errors**2))
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    residual = float(np.sum(errors**2))
    r2 = 1 - residual / total if total > 0 else (1.0 if residual == 0 else 0.0)
    return {"mse": mse, "mae": float(np.mean(np.abs(errors))), "rmse": mse**0.5, "r2": r2}


def ndcg(
    groups: np.ndarray, scores: np.ndarray, relevance: np.ndarray, k: int | None
) -> tuple[float | None, int]:
    """Mean nDCG@k over groups with a relevant row, and how many groups that was."""
    frame = pd.DataFrame({"group": groups, "score": scores, "rel": relevance})

    def dcg(by: str) -> pd.Series:
        ranked = frame.sort_values(["group", by], ascending=[True, False], kind="stable")
        position = ranked.groupby("group", sort=False).cumcount().to_numpy()
        gain = ranked["rel"].to_numpy() / np.log2(position + 2)
        if k is not None:
            gain = np.where(position < k, gain, 0.0)
        return pd.Series(gain, index=ranked["group"].to_numpy()).groupby(level=0).sum()

    ideal = dcg("rel")
    found = dcg("score").reindex(ideal.index)
    valid = ideal > 0
    if not valid.any():
        return None, 0
    return float((found[valid] / ideal[valid]).mean()), int(valid.sum())


class LabelMetric(Indicator):
    """A quality metric from late labels (accuracy, precision/recall/F1 macro, log loss, MSE, MAE,
    RMSE, R², nDCG@k), all of them in details with the confusion matrix; flagged when the chosen
    ``metric`` is worse than ``threshold``."""

    type_id = "label_metric"
    Config = LabelMetricConfig

    def evaluate(self, inputs: Inputs) -> Verdict:
        config: LabelMetricConfig = self.config  # type: ignore[assignment]
        classification = inputs.task == "classification"
        metric = config.metric or ("accuracy" if classification else "rmse")
        labels = inputs.labels
        if labels is None or not len(labels):
            return Verdict("insufficient", message="no labels have arrived for this window's requests yet")
        for column in ("request_id", "label"):
            if column not in labels.columns:
                raise ValueError(f"the labels have no '{column}' column")
        if "row" not in labels.columns:
            labels = labels.assign(row=0)
        frame = inputs.current
        if "prediction" not in frame.columns or "request_id" not in frame.columns:
            raise ValueError("the window needs 'request_id' and 'prediction' columns to join labels")
        labels = labels.drop_duplicates(["request_id", "row"], keep="last")  # a corrected label wins
        rows_at, labels_at = match_rows(frame, labels)
        wanted = ["prediction", config.group or "", *_proba_columns(frame)]
        joined = frame[[c for c in dict.fromkeys(wanted) if c in frame.columns]].iloc[rows_at]
        joined = joined.reset_index(drop=True).assign(label=labels["label"].to_numpy()[labels_at])
        joined = joined[joined["label"].notna() & joined["prediction"].notna()]
        short = self.too_few(len(joined), "labelled rows")
        if short:
            return short
        y_true, y_pred = comparable(joined["label"], joined["prediction"])
        if classification:
            values = classification_metrics(y_true, y_pred)
            values["log_loss"] = log_loss(joined, y_true)
        else:
            if y_true.dtype.kind != "f" or y_pred.dtype.kind != "f":
                raise ValueError("regression labels and predictions must be numbers")
            values = dict(regression_metrics(y_true, y_pred))
        if config.group:
            if config.group not in joined.columns:
                raise ValueError(f"the window has no group column '{config.group}'")
            if y_true.dtype.kind != "f" or y_pred.dtype.kind != "f":
                raise ValueError("nDCG needs numeric scores (predictions) and relevance labels")
            values["ndcg"], values["ndcg_groups"] = ndcg(
                joined[config.group].to_numpy(), y_pred, y_true, config.k
            )
        value = values.get(metric)
        if value is None:
            raise ValueError(
                f"{metric} cannot be computed from this window"
                + (
                    "; it needs proba_<class> columns (a model that returns probabilities)"
                    if metric == "log_loss"
                    else ""
                )
            )
        value = float(value)  # type: ignore[arg-type]
        higher_better = metric in LABEL_METRICS_HIGHER
        flagged = None
        if config.threshold is not None:
            flagged = value < config.threshold if higher_better else value > config.threshold
        verdict = "n/a" if flagged is None else ("worse than" if flagged else "within")
        return Verdict(
            "ok",
            value=value,
            threshold=config.threshold,
            flagged=flagged,
            details={META: {"metric": metric, **values, "labelled_rows": len(joined)}},
            message=f"{metric} {value:.4g} over {len(joined)} labelled rows"
            + ("" if flagged is None else f" ({verdict} threshold {config.threshold:g})"),
            sample_size=len(joined),
        )
