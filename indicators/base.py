"""What every indicator shares: the ``Inputs`` it reads, the ``Verdict`` it answers, the ``Indicator`` base.

An indicator is a class with a stable ``type_id`` (its key in ``indicators.registry.REGISTRY``), a
``Config`` (``indicators.configs``: pydantic, unknown keys rejected) validated from the spec's
``params``, and ``evaluate(inputs) -> Verdict``. Callers use ``compute(inputs)``, which answers the
cases without a verdict before ``evaluate`` runs — no rows in the window → ``empty`` (never "no
drift"), no reference where one is needed → ``missing_reference`` — and turns an exception into
status ``error`` with the traceback in ``details["traceback"]``, so one failing indicator never
stops the others. ``evaluate`` answers ``insufficient`` itself (too few rows, labels or pairs).

The runtime (``pushbutton.monitoring.runtime``) turns a verdict into the stored
``pushbutton.monitoring.results.IndicatorResult`` with ``Verdict.to_result``, adding the model,
version, predictor, window and run. This module imports neither numpy nor pandas at import time.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

from indicators.configs import IndicatorConfig, params_problem
from pushbutton.monitoring.results import IndicatorResult, Status

if TYPE_CHECKING:
    import pandas as pd

META = "_meta"  # the one key of ``details`` that is not a feature or class: how the verdict was reached


def _empty_frame() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame()


@dataclass(frozen=True)
class Inputs:
    """The layers an indicator reads, as pandas frames (any of them may be empty).

    * ``current`` — the window's rows for one version and predictor: one row per served input row,
      the typed feature columns of ``schema.inputs``, ``prediction``, optional ``proba_<class>``,
      ``request_id``, ``row`` (the row's position in its request; derived when absent), ``predictor``,
      ``version``, ``latency_ms`` and ``status`` (the HTTP status of the request, or ``ok``/``error``);
    * ``reference`` — the training reference sample (feature columns + ``prediction``), or a
      production baseline window the runtime chose instead (``reference_kind`` says which);
    * ``previous`` — the previous window's rows (same columns as ``current``);
    * ``labels`` — late labels: ``request_id``, ``row``, ``label``;
    * ``other`` — another predictor's rows of the same window (``skew``: champion vs candidate/shadow);
    * ``features`` — ``schema.inputs`` as name → type, in order; ``task``; the window bounds;
      ``model_dir`` (where a ``custom`` indicator's ``indicators.py`` lives).
    """

    current: pd.DataFrame = field(default_factory=_empty_frame)
    reference: pd.DataFrame | None = None
    previous: pd.DataFrame | None = None
    labels: pd.DataFrame | None = None
    other: pd.DataFrame | None = None
    features: Mapping[str, str] = field(default_factory=dict)
    task: str = "classification"
    window_start: datetime | None = None
    window_end: datetime | None = None
    model_dir: Path | None = None
    reference_kind: str = "training reference"

    @classmethod
    def from_spec(cls, spec: Any, model_dir: Path | None = None, **frames: Any) -> Inputs:
        """``Inputs`` for a ``pushbutton.spec.ModelSpec``: its logged inputs (``logging.exclude``d ones
        never reach the window), task and model directory."""
        logging = getattr(spec, "logging", None)
        excluded = set(getattr(logging, "exclude", None) or ())
        features = {f.name: f.type for f in spec.schema_.inputs if f.name not in excluded}
        return cls(features=features, task=spec.task, model_dir=model_dir, **frames)

    @property
    def has_reference(self) -> bool:
        return _rows(self.reference) > 0


def _rows(frame: Any) -> int:
    return 0 if frame is None else len(frame)


@dataclass(frozen=True)
class Verdict:
    """What an indicator answers; the runtime adds who and when (``to_result``)."""

    status: Status
    value: float | None = None
    threshold: float | None = None
    flagged: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    sample_size: int = 0
    reference_size: int = 0

    def __post_init__(self) -> None:
        if self.status != "ok" and self.flagged is not None:
            raise ValueError(f"a verdict with status {self.status!r} has no flag: flagged must be None")

    @classmethod
    def error(cls, exc: BaseException, what: str, sample_size: int = 0) -> Verdict:
        """Status ``error``: the exception in ``message``, its traceback in ``details``."""
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(
            "error",
            message=f"{what} raised {type(exc).__name__}: {exc}",
            details={"traceback": text},
            sample_size=sample_size,
        )

    def to_result(
        self,
        *,
        indicator_id: str,
        indicator_type: str,
        model: str,
        version: str,
        predictor: str,
        window_start: datetime,
        window_end: datetime,
        params: dict[str, Any] | None = None,
        run_id: str = "",
        computed_at: datetime | None = None,
    ) -> IndicatorResult:
        extra = {} if computed_at is None else {"computed_at": computed_at}
        return IndicatorResult(
            indicator_id=indicator_id,
            indicator_type=indicator_type,
            model=model,
            version=version,
            predictor=predictor,
            window_start=window_start,
            window_end=window_end,
            status=self.status,
            value=self.value,
            threshold=self.threshold,
            flagged=self.flagged,
            sample_size=self.sample_size,
            reference_size=self.reference_size,
            details=self.details,
            message=self.message,
            params=dict(params or {}),
            run_id=run_id,
            **extra,
        )


class IndicatorConfigError(ValueError):
    """Params an indicator cannot run with: ``<type>: params.<field>: problem (fix: …)``."""


class Indicator:
    """Base of every indicator. Subclasses set ``type_id``, ``Config`` and ``needs_reference``, write
    a docstring (the registry test requires one) and implement ``evaluate``."""

    type_id: ClassVar[str] = ""
    Config: ClassVar[type[IndicatorConfig]] = IndicatorConfig
    needs_reference: ClassVar[bool] = False

    def __init__(self, params: Mapping[str, Any] | IndicatorConfig | None = None) -> None:
        if isinstance(params, self.Config):
            self.config = params
            return
        raw = dict(params or {})
        try:
            self.config = self.Config.model_validate(raw)
        except ValidationError:
            line = params_problem(self.type_id, self.Config, raw) or "invalid params; correct them"
            problem, _, fix = line.rpartition("; ")
            raise IndicatorConfigError(f"{self.type_id}: {problem} (fix: {fix})") from None

    @property
    def name(self) -> str:
        """How messages name this indicator."""
        return f"{self.type_id} indicator"

    @property
    def params(self) -> dict[str, Any]:
        """The validated configuration, JSON-ready (``IndicatorResult.params``)."""
        return self.config.model_dump(mode="json")

    def compute(self, inputs: Inputs) -> Verdict:
        """The verdict for ``inputs``; never raises (an exception becomes status ``error``)."""
        rows = _rows(inputs.current)
        if rows == 0:
            return Verdict("empty", message="no traffic in this window: nothing to judge (not 'no drift')")
        if self.needs_reference and not inputs.has_reference:
            return Verdict(
                "missing_reference",
                message=f"no {inputs.reference_kind} to compare with (capture one for this version)",
                sample_size=rows,
            )
        try:
            verdict = self.evaluate(inputs)
        except Exception as exc:  # one failing indicator never stops the others
            return Verdict.error(exc, self.name, sample_size=rows)
        if verdict.status == "ok" and not verdict.message:
            verdict = replace(verdict, message=_default_message(verdict))
        return verdict

    def evaluate(self, inputs: Inputs) -> Verdict:
        raise NotImplementedError(f"{type(self).__name__} does not implement evaluate()")

    def too_few(self, count: int, what: str = "rows", reference_size: int = 0) -> Verdict | None:
        """An ``insufficient`` verdict when ``count`` is below the config's ``min_rows``, else ``None``."""
        need = self.config.min_rows
        if count >= need:
            return None
        return Verdict(
            "insufficient",
            message=f"{count} {what} in this window; {self.type_id} needs at least {need} (min_rows)",
            sample_size=count,
            reference_size=reference_size,
        )


def _default_message(verdict: Verdict) -> str:
    value = "n/a" if verdict.value is None else f"{verdict.value:.4g}"
    if verdict.flagged is None or verdict.threshold is None:
        return f"value {value}"
    return f"value {value} {'crosses' if verdict.flagged else 'within'} threshold {verdict.threshold:.4g}"


def flag_above(value: float | None, threshold: float | None) -> bool | None:
    """``value > threshold``; ``None`` when either is missing."""
    return None if value is None or threshold is None else bool(value > threshold)


def with_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``row`` column (position within the request, in order of appearance)."""
    if "row" in frame.columns:
        return frame
    return frame.assign(row=frame.groupby("request_id", sort=False).cumcount())


def match_rows(left: pd.DataFrame, right: pd.DataFrame) -> tuple[Any, Any]:
    """Positions in ``left`` and in ``right`` of the rows that are the same request row (equal
    ``request_id`` and ``row``; a frame without ``row`` numbers each request's rows in order).

    Single-row requests on both sides (the usual case) are matched through one hash index, several
    times faster than a two-key merge over a million rows."""
    import numpy as np
    import pandas as pd

    for frame in (left, right):
        if "request_id" not in frame.columns:
            raise ValueError("rows are matched by request_id, which is missing")
    left_ids, right_ids = pd.Index(left["request_id"]), pd.Index(right["request_id"])
    if left_ids.is_unique and right_ids.is_unique and _first_rows(left) and _first_rows(right):
        if len(right_ids) <= len(left_ids):  # look the smaller side up in the larger one's index
            found = left_ids.get_indexer(right_ids)
            keep = np.flatnonzero(found >= 0)
            order = np.argsort(found[keep], kind="stable")  # in the left frame's order
            return found[keep][order], keep[order]
        found = right_ids.get_indexer(left_ids)
        keep = np.flatnonzero(found >= 0)
        return keep, found[keep]
    keys = ["request_id", "row"]
    mine = with_rows(left[[c for c in keys if c in left.columns]]).assign(_left=np.arange(len(left)))
    theirs = with_rows(right[[c for c in keys if c in right.columns]]).assign(_right=np.arange(len(right)))
    pairs = mine.merge(theirs, on=keys)
    return pairs["_left"].to_numpy(), pairs["_right"].to_numpy()


def _first_rows(frame: pd.DataFrame) -> bool:
    return "row" not in frame.columns or bool((frame["row"] == 0).all())
