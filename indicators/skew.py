"""``skew``: do two predictors of one deployment answer alike?

``current`` is one predictor's rows of the window (a canary candidate or a shadow), ``other`` the
other predictor's rows of the same window (the champion):

* **paired** (shadow traffic: both answered the same requests) — rows joined by ``request_id`` and
  ``row``; the value is the share of disagreeing answers (classification) or the mean absolute
  difference in standard deviations of the other predictor's answers (regression);
* **distribution** (canary: each request went to one of them) — the value is the total variation
  distance of the class shares (classification, chi² p-value in details) or the Kolmogorov-Smirnov
  statistic of the answers (regression).

``mode: auto`` pairs when at least half of the window's requests were answered by both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from indicators.base import META, Indicator, Inputs, Verdict, match_rows
from indicators.configs import SkewConfig
from indicators.frequency import chi2_test, class_counts


def _predictor(frame: pd.DataFrame, default: str) -> str:
    if "predictor" in frame.columns and len(frame):
        return str(frame["predictor"].iloc[0])
    return default


def comparable(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Both columns as numbers when both are numeric, else as text (1 and "1" compare equal)."""
    x, y = pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce")
    if not (x.isna() & a.notna()).any() and not (y.isna() & b.notna()).any():
        return x.to_numpy(dtype=np.float64, na_value=np.nan), y.to_numpy(dtype=np.float64, na_value=np.nan)
    return a.astype(str).to_numpy(), b.astype(str).to_numpy()


class Skew(Indicator):
    """Agreement between two predictors of one deployment: paired by request on shadow traffic
    (disagreement share or normalised mean absolute difference), by output distribution on a canary
    (total variation distance or KS statistic); flagged above ``threshold``."""

    type_id = "skew"
    Config = SkewConfig

    def evaluate(self, inputs: Inputs) -> Verdict:
        config: SkewConfig = self.config  # type: ignore[assignment]
        other = inputs.other
        if other is None or not len(other):
            return Verdict(
                "missing_reference",
                message="no other predictor answered in this window (no canary or shadow deployed)",
                sample_size=len(inputs.current),
            )
        for name, frame in (("window", inputs.current), ("other predictor's rows", other)):
            if "prediction" not in frame.columns:
                raise ValueError(f"the {name} has no 'prediction' column")
        this, that = _predictor(inputs.current, "this predictor"), _predictor(other, "the other predictor")
        mode, matched = config.mode, None
        if mode != "distribution":
            if "request_id" in inputs.current.columns and "request_id" in other.columns:
                matched = match_rows(inputs.current, other)
            elif mode == "paired":
                raise ValueError(
                    "mode 'paired' joins by request_id, which the rows lack; use mode 'distribution'"
                )
        if mode == "auto":  # shadow traffic: most of the window's rows were answered by both
            shared = len(matched[0]) / len(inputs.current) if matched is not None else 0.0
            mode = "paired" if shared >= 0.5 else "distribution"
        classification = inputs.task == "classification"
        if mode == "paired":
            assert matched is not None
            found = self._paired(inputs, classification, matched)
        else:
            found = self._distribution(inputs, classification)
        if isinstance(found, Verdict):
            return found
        value, details, stats, n_cur, n_other, what = found
        flagged = value > config.threshold
        details[META] = {"mode": mode, "predictor": this, "other_predictor": that, **stats}
        return Verdict(
            "ok",
            value=value,
            threshold=config.threshold,
            flagged=flagged,
            details=details,
            message=f"{this} vs {that} ({mode}): {what} {value:.3g} "
            f"({'above' if flagged else 'within'} threshold {config.threshold:g})",
            sample_size=n_cur,
            reference_size=n_other,
        )

    def _paired(self, inputs: Inputs, classification: bool, matched: tuple[np.ndarray, np.ndarray]):
        assert inputs.other is not None
        mine_at, theirs_at = matched
        right = inputs.other
        pairs = pd.DataFrame(
            {
                "prediction": inputs.current["prediction"].to_numpy()[mine_at],
                "prediction_other": right["prediction"].to_numpy()[theirs_at],
            }
        )
        short = self.too_few(
            len(pairs), "request rows answered by both predictors", reference_size=len(right)
        )
        if short:
            return short
        mine, theirs = comparable(pairs["prediction"], pairs["prediction_other"])
        stats: dict[str, float] = {"pairs": len(pairs)}
        if classification:
            disagreement = float(np.mean(mine != theirs))
            stats["agreement"] = 1 - disagreement
            return disagreement, {}, stats, len(pairs), len(right), "disagreement"
        if mine.dtype.kind != "f":
            raise ValueError("regression predictions are not numbers")
        mad = float(np.nanmean(np.abs(mine - theirs)))
        scale = float(np.nanstd(theirs, ddof=1)) if len(theirs) > 1 else 0.0
        stats.update({"mean_absolute_difference": mad, "other_std": scale})
        value = mad / scale if scale > 0 else mad
        return value, {}, stats, len(pairs), len(right), "mean |difference| in std"

    def _distribution(self, inputs: Inputs, classification: bool):
        assert inputs.other is not None
        n_cur, n_other = len(inputs.current), len(inputs.other)
        short = self.too_few(min(n_cur, n_other), "rows (the smaller predictor's)", reference_size=n_other)
        if short:
            return short
        if classification:
            mine, theirs = (
                class_counts(inputs.current["prediction"]),
                class_counts(inputs.other["prediction"]),
            )
            classes = sorted(set(mine.index) | set(theirs.index))
            a = mine.reindex(classes, fill_value=0).to_numpy(dtype=float)
            b = theirs.reindex(classes, fill_value=0).to_numpy(dtype=float)
            distance = 0.5 * float(np.abs(a / a.sum() - b / b.sum()).sum())
            statistic, p = chi2_test(b, a)
            details: dict[str, object] = {
                cls: {"share": a[i] / a.sum(), "other_share": b[i] / b.sum()} for i, cls in enumerate(classes)
            }
            stats = {"chi2": statistic, "p_value": p}
            return distance, details, stats, n_cur, n_other, "total variation distance"
        from scipy.stats import ks_2samp

        mine, theirs = comparable(inputs.current["prediction"], inputs.other["prediction"])
        if mine.dtype.kind != "f":
            raise ValueError("regression predictions are not numbers")
        mine, theirs = mine[~np.isnan(mine)], theirs[~np.isnan(theirs)]
        found = ks_2samp(mine, theirs, method="asymp")
        stats = {"ks_statistic": float(found.statistic), "p_value": float(found.pvalue)}
        return float(found.statistic), {}, stats, n_cur, n_other, "KS distance"
