"""``drift``: has the distribution of the model's inputs moved away from the reference?

The statistics run behind a small ``Detector`` interface with two backends, so no caller imports
alibi-detect (it pins numpy<2 and is source-available since 2024; a third backend needs no change
here):

* ``AlibiDetector`` — alibi-detect's ``KSDrift``, ``CVMDrift``, ``ChiSquareDrift``, ``TabularDrift``
  (categories by schema type), ``FETDrift`` (boolean inputs) and ``ClassifierDrift`` (``backend=
  'sklearn'``). Imported on first use: the import costs seconds (BENCHMARKS.md).
* ``ScipyDetector`` — the same tests from scipy (and scikit-learn for the classifier), with the
  same multiple-testing correction (``correct``); used when alibi-detect is not installed, or
  chosen with ``backend: scipy``.

The univariate methods give each feature a p-value and a distance (the test statistic; the odds
ratio for ``fet``); a feature has drifted when its p-value is below the corrected threshold
(``bonferroni``: ``p_value / n_features``; ``fdr``: Benjamini-Hochberg at q = ``p_value``), exactly
as alibi-detect's batch prediction decides. The value is the share of drifted features, flagged above
``drift_share`` (default 0: any drifted feature, alibi-detect's batch verdict). Windows (and baseline
windows used as reference) above ``max_rows`` are sampled, seeded, before testing. ``classifier`` trains
a classifier to tell reference rows from window rows (out-of-fold, sampled to
``max_classifier_rows`` per side): one p-value; the value is its distance.
"""

from __future__ import annotations

import importlib.util
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from indicators.base import META, Indicator, Inputs, Verdict
from indicators.configs import CATEGORICAL_TYPES, DriftConfig


@dataclass(frozen=True)
class DriftTest:
    """A detector's answer: per tested column (one entry for ``classifier``)."""

    p_values: np.ndarray
    distances: np.ndarray
    threshold: float  # the corrected significance level a p-value must fall below
    drifted: np.ndarray  # bool per column
    is_drift: bool  # the batch verdict
    backend: str


def correct(p_values: np.ndarray, p_value: float, correction: str) -> tuple[float, np.ndarray, bool]:
    """alibi-detect's batch decision over univariate p-values: ``(threshold, drifted, is_drift)``.

    Bonferroni: a feature drifts when its p-value is below ``p_value / n``. FDR (Benjamini-Hochberg,
    alibi-detect's ``fdr``): the largest ``k`` with ``p_(k) < q k / n`` sets the threshold ``q k / n``;
    with none, nothing drifts (the threshold reported is the smallest, ``q / n``).
    """
    p_values = np.asarray(p_values, dtype=float)
    n = len(p_values)
    if correction == "bonferroni":
        threshold = p_value / n
    elif correction == "fdr":
        q_thresholds = p_value * np.arange(1, n + 1) / n
        below = np.flatnonzero(np.sort(p_values) < q_thresholds)
        threshold = float(q_thresholds[below.max()]) if below.size else float(q_thresholds[0])
        if not below.size:
            return threshold, np.zeros(n, dtype=bool), False
    else:
        raise ValueError(f"unknown correction {correction!r}; use bonferroni or fdr")
    drifted = p_values < threshold
    return float(threshold), drifted, bool(drifted.any())


class Detector(ABC):
    """Compares reference columns with window columns by one method.

    ``kinds`` says per column how ``tabular`` tests it (``numeric`` → KS, ``categorical`` → chi²);
    categorical columns arrive as integer codes shared by both sides, boolean ones as 0/1.
    """

    name: ClassVar[str]

    @abstractmethod
    def run(
        self,
        method: str,
        reference: Sequence[np.ndarray],
        current: Sequence[np.ndarray],
        kinds: Sequence[str],
        config: DriftConfig,
    ) -> DriftTest: ...


def alibi_installed() -> bool:
    return importlib.util.find_spec("alibi_detect") is not None


def detector(backend: str) -> Detector:
    """The detector for a config's ``backend`` (``auto``: alibi-detect when installed)."""
    if backend == "alibi" or (backend == "auto" and alibi_installed()):
        return AlibiDetector()
    return ScipyDetector()


def _classifier_model(seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=50, random_state=seed)


class AlibiDetector(Detector):
    name = "alibi-detect"

    def run(self, method, reference, current, kinds, config) -> DriftTest:
        if not alibi_installed():
            raise RuntimeError(
                "backend 'alibi' needs alibi-detect, which is not installed; use backend 'scipy'"
            )
        import logging

        from alibi_detect import cd  # seconds: only here

        logging.getLogger("alibi_detect").setLevel(logging.ERROR)  # it warns about its own defaults
        x_ref, x = np.column_stack(reference), np.column_stack(current)
        common = {"p_val": config.p_value}
        if method == "classifier":
            classifier = cd.ClassifierDrift(
                x_ref,
                _classifier_model(config.seed),
                backend="sklearn",
                n_folds=config.n_folds,
                train_size=None,
                seed=config.seed,
                **common,
            )
            with warnings.catch_warnings():  # its KS test switches to asymptotic p-values, loudly
                warnings.simplefilter("ignore", RuntimeWarning)
                found = classifier.predict(x)["data"]
            p, d = float(found["p_val"]), float(found["distance"])
            drift = bool(found["is_drift"])
            return DriftTest(
                np.array([p]), np.array([d]), config.p_value, np.array([drift]), drift, self.name
            )
        common["correction"] = config.correction
        if method == "ks":
            found = cd.KSDrift(x_ref, **common)
        elif method == "cvm":
            found = cd.CVMDrift(x_ref, **common)
        elif method == "chi2":
            found = cd.ChiSquareDrift(x_ref, **common)
        elif method == "fet":
            found = cd.FETDrift(x_ref, alternative="two-sided", **common)
        else:  # tabular
            categories = {i: None for i, kind in enumerate(kinds) if kind == "categorical"}
            found = cd.TabularDrift(x_ref, categories_per_feature=categories, **common)
        data = found.predict(x, drift_type="batch")["data"]
        p_values = np.asarray(data["p_val"], dtype=float)
        threshold = np.atleast_1d(np.asarray(data["threshold"], dtype=float))
        # fdr with nothing significant returns every candidate threshold: nothing drifted
        cut = float(threshold[0]) if threshold.size == 1 else float(threshold.min())
        drifted = p_values < cut if threshold.size == 1 else np.zeros(len(p_values), dtype=bool)
        distances = np.asarray(data["distance"], dtype=float)
        return DriftTest(p_values, distances, cut, drifted, bool(data["is_drift"]), self.name)


def _ks(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    from scipy.stats import ks_2samp

    found = ks_2samp(ref, cur, alternative="two-sided", method="asymp")  # alibi-detect's call
    return float(found.pvalue), float(found.statistic)


def _cvm(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    from scipy.stats import cramervonmises_2samp

    found = cramervonmises_2samp(ref, cur, method="auto")
    return float(found.pvalue), float(found.statistic)


def _chi2(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    from scipy.stats import chi2_contingency

    categories = np.union1d(ref, cur)
    table = np.vstack(
        [np.bincount(np.searchsorted(categories, side), minlength=len(categories)) for side in (ref, cur)]
    )
    found = chi2_contingency(table)  # Yates' correction for one degree of freedom, as alibi-detect
    return float(found.pvalue), float(found.statistic)


def _fet(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    from scipy.stats import fisher_exact

    if not np.isin(np.union1d(ref, cur), (0, 1)).all():
        raise ValueError("Fisher's exact test needs 0/1 (boolean) values; use method 'tabular'")
    ones_ref, ones_cur = int(ref.sum()), int(cur.sum())
    table = np.array([[ones_cur, ones_ref], [len(cur) - ones_cur, len(ref) - ones_ref]])
    odds_ratio, p = fisher_exact(table, alternative="two-sided")
    return float(p), float(odds_ratio)


_TESTS = {"ks": _ks, "cvm": _cvm, "chi2": _chi2, "fet": _fet}


class ScipyDetector(Detector):
    name = "scipy"

    def run(self, method, reference, current, kinds, config) -> DriftTest:
        if method == "classifier":
            p, d = _classifier_test(np.column_stack(reference), np.column_stack(current), config)
            drift = p < config.p_value
            return DriftTest(
                np.array([p]), np.array([d]), config.p_value, np.array([drift]), drift, self.name
            )
        tests = [univariate_test(method, kind) for kind in kinds]
        pairs = [_TESTS[test](ref, cur) for test, ref, cur in zip(tests, reference, current, strict=True)]
        p_values = np.array([p for p, _ in pairs])
        threshold, drifted, is_drift = correct(p_values, config.p_value, config.correction)
        return DriftTest(p_values, np.array([d for _, d in pairs]), threshold, drifted, is_drift, self.name)


def _classifier_test(x_ref: np.ndarray, x: np.ndarray, config: DriftConfig) -> tuple[float, float]:
    """alibi-detect's ClassifierDrift (sklearn, stratified folds, soft predictions) in scikit-learn."""
    from scipy.stats import ks_2samp
    from sklearn.model_selection import StratifiedKFold

    data = np.concatenate([x_ref, x])
    y = np.concatenate([np.zeros(len(x_ref)), np.ones(len(x))]).astype(np.int64)
    probs = np.empty(len(y))
    folds = StratifiedKFold(n_splits=config.n_folds, shuffle=True, random_state=config.seed)
    for train, test in folds.split(np.zeros(len(y)), y):
        model = _classifier_model(config.seed).fit(data[train], y[train])
        probs[test] = model.predict_proba(data[test])[:, 1]
    with warnings.catch_warnings():  # "exact calculation unsuccessful, switching to asymp", as alibi-detect
        warnings.simplefilter("ignore", RuntimeWarning)
        found = ks_2samp(probs[y == 0], probs[y == 1], alternative="greater")
    return float(found.pvalue), float(found.statistic)


def univariate_test(method: str, kind: str) -> str:
    """The univariate test a column gets: ``tabular`` picks by kind, the others are uniform."""
    if method == "tabular":
        return "chi2" if kind == "categorical" else "ks"
    return method


class DriftIndicator(Indicator):
    """Input drift against the training reference (or a baseline window): per-feature tests with
    alibi-detect's multiple-testing correction; value = share of drifted features (``classifier``:
    the classifier's distance), flagged above ``drift_share``."""

    type_id = "drift"
    Config = DriftConfig
    needs_reference = True

    def evaluate(self, inputs: Inputs) -> Verdict:
        config: DriftConfig = self.config  # type: ignore[assignment]
        names = list(config.features or inputs.features)
        if not names:
            raise ValueError("the model declares no inputs to test (schema.inputs is empty)")
        current, reference = inputs.current, inputs.reference
        assert reference is not None  # compute() answers missing_reference before
        absent = [name for name in names if name not in current.columns]
        if absent:
            raise ValueError(f"the window has no column for input(s) {', '.join(absent)}")
        lacking = [name for name in names if name not in reference.columns]
        if lacking:
            return Verdict(
                "missing_reference",
                message=f"the {inputs.reference_kind} has no column for {', '.join(lacking)}",
                sample_size=len(current),
            )
        kinds = [self._kind(name, inputs) for name in names]
        window_rows = len(current)
        current = _sample_rows(current[names], config.max_rows, config.seed)
        reference = _sample_rows(reference[names], config.max_rows, config.seed + 1)
        ref_cols, cur_cols, dropped = _columns(reference, current, names, kinds)
        n_ref, n_cur = len(ref_cols[0]), len(cur_cols[0])
        short = self.too_few(n_cur, "rows with every tested input present", reference_size=n_ref)
        if short:
            return short
        if n_ref < 2:
            return Verdict(
                "missing_reference",
                message=f"the {inputs.reference_kind} has {n_ref} usable row(s)",
                sample_size=n_cur,
            )
        if config.method == "classifier":
            ref_cols, cur_cols = _sample(ref_cols, config), _sample(cur_cols, config)
        found = detector(config.backend).run(config.method, ref_cols, cur_cols, kinds, config)
        verdict = self._verdict(names, kinds, found, ref_cols, cur_cols, dropped, n_cur, n_ref)
        verdict.details[META]["window_rows"] = window_rows
        return verdict

    def _kind(self, name: str, inputs: Inputs) -> str:
        config: DriftConfig = self.config  # type: ignore[assignment]
        declared = inputs.features.get(name, "double")
        if config.method in ("ks", "cvm") and declared == "string":
            raise ValueError(
                f"method '{config.method}' compares numbers, but '{name}' is a string input; use method 'tabular'"
            )
        if config.method == "chi2" or (
            config.method == "tabular" and (declared in CATEGORICAL_TYPES or name in config.categorical)
        ):
            return "categorical"
        if config.method == "classifier" and declared == "string":
            return "categorical"  # integer codes: enough for a tree-based classifier
        return "numeric"

    def _verdict(self, names, kinds, found: DriftTest, ref_cols, cur_cols, dropped, n_cur, n_ref) -> Verdict:
        config: DriftConfig = self.config  # type: ignore[assignment]
        meta = {
            "method": config.method,
            "backend": found.backend,
            "correction": config.correction,
            "p_value_threshold": found.threshold,
            "rows_dropped": dropped,
        }
        if config.method == "classifier":
            p, distance = float(found.p_values[0]), float(found.distances[0])
            word = "drift" if found.is_drift else "no drift"
            return Verdict(
                "ok",
                value=distance,
                flagged=found.is_drift,
                details={META: {**meta, "p_value": p, "distance": distance}},
                message=f"{word}: classifier p-value {p:.3g} (threshold {config.p_value:g}; {found.backend})",
                sample_size=n_cur,
                reference_size=n_ref,
            )
        details: dict[str, object] = {}
        for index, name in enumerate(names):
            entry = {
                "test": univariate_test(config.method, kinds[index]),
                "p_value": _finite(found.p_values[index]),
                "distance": _finite(found.distances[index]),
                "flagged": bool(found.drifted[index]),
            }
            if kinds[index] == "numeric":
                entry["mean"] = _finite(np.mean(cur_cols[index]))
                entry["reference_mean"] = _finite(np.mean(ref_cols[index]))
            details[name] = entry
        details[META] = meta
        drifted = [name for name, flag in zip(names, found.drifted, strict=True) if flag]
        share = len(drifted) / len(names)
        flagged = share > config.drift_share
        listed = f": {', '.join(drifted)}" if drifted else ""
        return Verdict(
            "ok",
            value=share,
            threshold=config.drift_share,
            flagged=flagged,
            details=details,
            message=(
                f"{'drift' if flagged else 'no drift'}: {len(drifted)} of {len(names)} features drifted "
                f"({config.method}, {config.correction}: p < {found.threshold:.3g}; {found.backend}){listed}"
            ),
            sample_size=n_cur,
            reference_size=n_ref,
        )


def _finite(value: float) -> float | None:
    """JSON-safe (PostgreSQL's jsonb rejects NaN and infinity)."""
    value = float(value)
    return value if np.isfinite(value) else None


def _columns(
    reference: pd.DataFrame, current: pd.DataFrame, names: list[str], kinds: list[str]
) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, int]]:
    """Per tested input, the reference and window values as arrays: numbers as float64 (rows with a
    missing number dropped on each side, the same rows for every column), categories as integer codes
    shared by both sides (a missing value is a category of its own)."""
    ref_cols: list[np.ndarray] = []
    cur_cols: list[np.ndarray] = []
    for name, kind in zip(names, kinds, strict=True):
        if kind == "categorical":
            ref_values, cur_values = reference[name], current[name]
            codes, _ = pd.factorize(
                pd.concat([ref_values, cur_values], ignore_index=True), use_na_sentinel=False
            )
            ref_cols.append(codes[: len(ref_values)].astype(np.int64))
            cur_cols.append(codes[len(ref_values) :].astype(np.int64))
        else:
            ref_cols.append(_numbers(reference[name]))
            cur_cols.append(_numbers(current[name]))
    dropped = {}
    for side, cols in (("reference", ref_cols), ("current", cur_cols)):
        numeric = [col for col, kind in zip(cols, kinds, strict=True) if kind == "numeric"]
        if not numeric:
            continue
        keep = np.logical_and.reduce([~np.isnan(col) for col in numeric])
        if not keep.all():
            dropped[side] = int((~keep).sum())
            cols[:] = [col[keep] for col in cols]
    return ref_cols, cur_cols, dropped


def _numbers(series: pd.Series) -> np.ndarray:
    if series.dtype == object:
        series = pd.to_numeric(series, errors="coerce")
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def _sample_rows(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """At most ``limit`` rows, drawn without replacement (seeded: the same window gives the same
    answer). A univariate test's power is bounded by its smaller sample — the reference, a few thousand
    rows — so testing 200 000 of a million window rows changes its effective size by a few percent."""
    if limit is None or len(frame) <= limit:
        return frame
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), limit, replace=False))
    return frame.iloc[keep]


def _sample(columns: list[np.ndarray], config: DriftConfig) -> list[np.ndarray]:
    rows = len(columns[0])
    if rows <= config.max_classifier_rows:
        return columns
    keep = np.sort(np.random.default_rng(config.seed).choice(rows, config.max_classifier_rows, replace=False))
    return [col[keep] for col in columns]
