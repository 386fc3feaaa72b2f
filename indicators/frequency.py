"""``class_frequency``: do the classes the model predicts come in the shares they came in on the reference?

Compares the window's predicted class shares with the reference's (the model's predictions on its
holdout, captured at training): the population stability index (PSI, the value) and a chi² test of
the 2-by-k count table (``scipy.stats.chi2_contingency``, as alibi-detect's ``ChiSquareDrift``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from indicators.base import META, Indicator, Inputs, Verdict
from indicators.configs import ClassFrequencyConfig


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = 1e-4) -> tuple[float, np.ndarray]:
    """Population stability index of two share vectors over the same bins, and its per-bin terms.

    ``sum((actual - expected) * ln(actual / expected))``; a share of 0 counts as ``epsilon``.
    """
    e = np.clip(np.asarray(expected, dtype=float), epsilon, None)
    a = np.clip(np.asarray(actual, dtype=float), epsilon, None)
    terms = (a - e) * np.log(a / e)
    return float(terms.sum()), terms


def class_key(value: object) -> str:
    """One spelling per class across frames: 1, 1.0 and "1" are the same class."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        if np.isnan(number):
            return "null"
        return str(int(number)) if number.is_integer() else repr(number)
    return "null" if value is None else str(value)


def class_counts(values: pd.Series) -> pd.Series:
    """Counts per class key (the distinct values are few, so the key mapping is cheap)."""
    counts = values.value_counts(dropna=False, sort=False)
    counts.index = [class_key(v) for v in counts.index]
    return counts.groupby(level=0).sum()


class ClassFrequency(Indicator):
    """Shares of predicted classes in the window vs the reference predictions: PSI (value, flagged
    above ``max_psi``) and a chi² test (p-value in details; also flags below ``p_value`` if set)."""

    type_id = "class_frequency"
    Config = ClassFrequencyConfig
    needs_reference = True

    def evaluate(self, inputs: Inputs) -> Verdict:
        config: ClassFrequencyConfig = self.config  # type: ignore[assignment]
        reference = inputs.reference
        assert reference is not None
        if "prediction" not in inputs.current.columns:
            raise ValueError("the window has no 'prediction' column")
        if "prediction" not in reference.columns:
            return Verdict(
                "missing_reference",
                message=f"the {inputs.reference_kind} has no predictions (capture the holdout's predictions)",
                sample_size=len(inputs.current),
            )
        current = class_counts(inputs.current["prediction"])
        expected = class_counts(reference["prediction"])
        n_cur, n_ref = int(current.sum()), int(expected.sum())
        short = self.too_few(n_cur, "predictions", reference_size=n_ref)
        if short:
            return short
        classes = sorted(set(current.index) | set(expected.index))
        cur = current.reindex(classes, fill_value=0).to_numpy(dtype=float)
        ref = expected.reindex(classes, fill_value=0).to_numpy(dtype=float)
        total, terms = psi(ref / n_ref, cur / n_cur, config.epsilon)
        statistic, p = chi2_test(ref, cur)
        flagged = total > config.max_psi or (config.p_value is not None and p < config.p_value)
        details: dict[str, object] = {
            cls: {
                "share": cur[i] / n_cur,
                "reference_share": ref[i] / n_ref,
                "count": int(cur[i]),
                "reference_count": int(ref[i]),
                "psi": float(terms[i]),
            }
            for i, cls in enumerate(classes)
        }
        details[META] = {"chi2": statistic, "p_value": p, "psi": total}
        moved = max(classes, key=lambda c: abs(details[c]["share"] - details[c]["reference_share"]))  # type: ignore[index]
        return Verdict(
            "ok",
            value=total,
            threshold=config.max_psi,
            flagged=flagged,
            details=details,
            message=(
                f"{'class shares moved' if flagged else 'class shares stable'}: PSI {total:.3g} "
                f"(threshold {config.max_psi:g}), chi2 p-value {p:.3g}; largest change: class {moved} "
                f"{details[moved]['reference_share']:.1%} → {details[moved]['share']:.1%}"  # type: ignore[index]
            ),
            sample_size=n_cur,
            reference_size=n_ref,
        )


def chi2_test(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Chi² test of homogeneity of two count vectors; one class only: nothing can differ (0, 1)."""
    from scipy.stats import chi2_contingency

    keep = (ref_counts + cur_counts) > 0
    if keep.sum() < 2:
        return 0.0, 1.0
    found = chi2_contingency(np.vstack([ref_counts[keep], cur_counts[keep]]))
    return float(found.statistic), float(found.pvalue)
