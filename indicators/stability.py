"""``prediction_stability``: are the model's numeric answers where they used to be?

Compares the window's predictions with the reference predictions (the model's answers on its
holdout) and with the previous window's: the mean's shift in standard deviations of the baseline
(the value: the larger of the two), the ratio of spreads, and the PSI over the baseline's quantile
bins. Meant for regression outputs and scores; class labels are ``class_frequency``'s job.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from indicators.base import META, Indicator, Inputs, Verdict
from indicators.configs import PredictionStabilityConfig
from indicators.frequency import psi


def predictions(frame: pd.DataFrame) -> np.ndarray:
    """The ``prediction`` column as float64 without missing values."""
    if "prediction" not in frame.columns:
        raise ValueError("no 'prediction' column")
    column = frame["prediction"]
    if column.dtype == object:
        column = pd.to_numeric(column, errors="coerce")
        if column.isna().all():
            raise ValueError("the predictions are not numbers; use class_frequency for class labels")
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return values[~np.isnan(values)]


def compare(baseline: np.ndarray, current: np.ndarray, bins: int, epsilon: float = 1e-4) -> dict[str, float]:
    """Shift of the mean in baseline standard deviations, spread ratio and PSI over baseline quantiles."""
    mean_b, mean_c = float(baseline.mean()), float(current.mean())
    std_b, std_c = float(baseline.std(ddof=1)), float(current.std(ddof=1)) if len(current) > 1 else 0.0
    scale = std_b if std_b > 0 else (abs(mean_b) or 1.0)
    edges = np.unique(np.quantile(baseline, np.linspace(0, 1, bins + 1))[1:-1])
    shares_b = np.bincount(np.searchsorted(edges, baseline, side="right"), minlength=len(edges) + 1)
    shares_c = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    total, _ = psi(shares_b / len(baseline), shares_c / len(current), epsilon)
    return {
        "mean": mean_c,
        "baseline_mean": mean_b,
        "std": std_c,
        "baseline_std": std_b,
        "shift": (mean_c - mean_b) / scale,
        "std_ratio": std_c / std_b if std_b > 0 else float(std_c == 0),
        "psi": total,
        "baseline_rows": len(baseline),
    }


class PredictionStability(Indicator):
    """Numeric predictions vs the reference predictions and vs the previous window: value = the
    largest |mean shift| in baseline standard deviations, flagged above ``max_shift`` (or a PSI above
    ``max_psi`` when set)."""

    type_id = "prediction_stability"
    Config = PredictionStabilityConfig

    def evaluate(self, inputs: Inputs) -> Verdict:
        config: PredictionStabilityConfig = self.config  # type: ignore[assignment]
        current = predictions(inputs.current)
        baselines = {
            name: predictions(frame)
            for name, frame in (("reference", inputs.reference), ("previous", inputs.previous))
            if frame is not None and len(frame) and "prediction" in frame.columns
        }
        baselines = {name: values for name, values in baselines.items() if len(values) >= 2}
        reference_size = len(baselines.get("reference", ()))
        short = self.too_few(len(current), "predictions", reference_size=reference_size)
        if short:
            return short
        if not baselines:
            return Verdict(
                "missing_reference",
                message=f"neither a {inputs.reference_kind} with predictions nor a previous window to compare with",
                sample_size=len(current),
            )
        details: dict[str, object] = {
            name: compare(values, current, config.bins) for name, values in baselines.items()
        }
        shifts = {name: abs(entry["shift"]) for name, entry in details.items()}  # type: ignore[index]
        worst = max(shifts, key=shifts.__getitem__)
        value = shifts[worst]
        psi_over = [
            name
            for name, entry in details.items()
            if config.max_psi is not None and entry["psi"] > config.max_psi  # type: ignore[index]
        ]
        flagged = value > config.max_shift or bool(psi_over)
        details[META] = {"compared_with": list(baselines)}
        text = ", ".join(f"{shifts[name]:.2f} std vs {name}" for name in baselines)
        if psi_over:
            text += f"; PSI above {config.max_psi:g} vs {', '.join(psi_over)}"
        return Verdict(
            "ok",
            value=value,
            threshold=config.max_shift,
            flagged=flagged,
            details=details,
            message=f"{'predictions moved' if flagged else 'predictions stable'}: mean shift {text}",
            sample_size=len(current),
            reference_size=reference_size,
        )
