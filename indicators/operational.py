"""Operational indicators over requests (not rows): ``error_rate`` and ``latency``.

A request may carry several rows; both count each ``request_id`` once. ``status`` is the request's
HTTP status code (an error from 500 up; from 400 with ``client_errors``) or a word (``ok``/``success``
are fine, ``client_error`` counts only with ``client_errors``, anything else is an error); a request
logged without its response (``complete`` false) counts as failed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from indicators.base import META, Indicator, Inputs, Verdict
from indicators.configs import ErrorRateConfig, LatencyConfig

_FINE = {"ok", "success", "succeeded", "200"}


def requests(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``columns`` of one row per request (the first row of each ``request_id``)."""
    absent = [name for name in columns if name not in frame.columns and name != "complete"]
    if absent:
        raise ValueError(f"the window has no {', '.join(map(repr, absent))} column")
    present = [name for name in ("request_id", *columns) if name in frame.columns]
    frame = frame[present]  # only what is needed: the window may hold a million wide rows
    if "request_id" not in frame.columns:
        return frame
    return frame[~frame["request_id"].duplicated()]


def failed(frame: pd.DataFrame, client_errors: bool) -> np.ndarray:
    """Per request: did it fail?"""
    status = frame["status"]
    floor = 400 if client_errors else 500
    codes = pd.to_numeric(status, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_numeric_dtype(status):
        out = codes >= floor  # a missing code is not counted
    else:
        text = status.astype(str).str.strip().str.lower().to_numpy()
        worded = ~np.isin(text, list(_FINE)) & (client_errors | (text != "client_error"))
        out = np.where(np.isnan(codes), worded & status.notna().to_numpy(), codes >= floor)
    if "complete" in frame.columns:
        out |= frame["complete"].eq(False).to_numpy()
    return out


class ErrorRate(Indicator):
    """Share of the window's requests that failed; flagged above ``max_rate``."""

    type_id = "error_rate"
    Config = ErrorRateConfig

    def evaluate(self, inputs: Inputs) -> Verdict:
        config: ErrorRateConfig = self.config  # type: ignore[assignment]
        per_request = requests(inputs.current, ["status", "complete"])
        short = self.too_few(len(per_request), "requests")
        if short:
            return short
        errors = failed(per_request, config.client_errors)
        count = int(errors.sum())
        rate = count / len(per_request)
        flagged = rate > config.max_rate
        return Verdict(
            "ok",
            value=rate,
            threshold=config.max_rate,
            flagged=flagged,
            details={META: {"requests": len(per_request), "failed": count}},
            message=f"{count} of {len(per_request)} requests failed ({rate:.2%}; threshold {config.max_rate:.2%})",
            sample_size=len(per_request),
        )


class Latency(Indicator):
    """Request latency percentiles (p50, p90, p99, max; milliseconds); value = p99, flagged above
    ``p99_ms`` (or a p50 above ``p50_ms`` when set)."""

    type_id = "latency"
    Config = LatencyConfig

    def evaluate(self, inputs: Inputs) -> Verdict:
        config: LatencyConfig = self.config  # type: ignore[assignment]
        per_request = requests(inputs.current, ["latency_ms"])
        values = pd.to_numeric(per_request["latency_ms"], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        values = values[~np.isnan(values)]
        short = self.too_few(len(values), "requests with a latency")
        if short:
            return short
        p50, p90, p99 = (float(v) for v in np.percentile(values, [50, 90, 99]))
        over = [f"p99 {p99:.1f} ms > {config.p99_ms:g}"] if p99 > config.p99_ms else []
        if config.p50_ms is not None and p50 > config.p50_ms:
            over.append(f"p50 {p50:.1f} ms > {config.p50_ms:g}")
        figures = {
            "p50_ms": p50,
            "p90_ms": p90,
            "p99_ms": p99,
            "max_ms": float(values.max()),
            "requests": len(values),
        }
        return Verdict(
            "ok",
            value=p99,
            threshold=config.p99_ms,
            flagged=bool(over),
            details={META: figures},
            message=(
                f"too slow: {'; '.join(over)}"
                if over
                else f"p50 {p50:.1f} ms, p99 {p99:.1f} ms: within ceilings"
            ),
            sample_size=len(values),
        )
