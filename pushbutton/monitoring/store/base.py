"""The ``MonitoringStore`` interface: one contract, a SQL backend (``sql.py``) and Elasticsearch.

What a backend keeps, per model (= deployment):

* **raw request log** — one record per (request id, predictor, model id): the request paired with its
  response (``records.InferenceRecord``), and one row per input row with the model's features as
  typed values (the spec's ``schema.inputs``: double/float/long/integer/boolean/string), the
  prediction (typed as ``schema.output``) and class probabilities ``proba_<class>``;
* **labels** — late ground truth keyed by (request id, row), matched to logged rows on read;
* **indicator results** — ``results.IndicatorResult`` keyed by its ``key`` (replaced on recompute).

Contract every backend keeps (the tests in tests/unit/test_monitoring_store*.py check the SQL one):

* writes are **idempotent**: writing the same records again (a replay) changes nothing; a half written
  alone (``complete`` False) and its other half written later merge into one complete record (a
  value already stored is never overwritten by a missing one);
* windows are half-open, ``start <= time < end``, times are timezone-aware UTC; a record's time is
  its request time (its response time when only the response arrived);
* ``rows`` answers a pandas frame with the columns ``ROW_COLUMNS`` first, then the model's features
  in schema order, ``prediction`` and the ``proba_<class>`` columns — empty (with those columns) when
  the window holds nothing, never an error;
* a transient outage (database unreachable, locked, disk full) raises ``StoreUnavailable`` (the logger
  answers 503 and the gateway's emitter spools and replays); anything else a ``StoreError``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

import pandas as pd

from pushbutton.alerting.events import AlertEvent
from pushbutton.errors import PushbuttonError
from pushbutton.monitoring.records import InferenceRecord, Label
from pushbutton.monitoring.results import IndicatorResult

if TYPE_CHECKING:
    from pushbutton.monitoring.aggregate import WindowAggregates

FeatureType = Literal["double", "float", "long", "integer", "boolean", "string"]
FEATURE_TYPES: tuple[str, ...] = ("double", "float", "long", "integer", "boolean", "string")
# the columns every frame of ``rows`` starts with, in this order
ROW_COLUMNS: tuple[str, ...] = (
    "request_id",
    "row",
    "time",  # pandas datetime64[ns, UTC]
    "predictor",
    "version",
    "model_id",
    "latency_ms",  # float (NaN when unknown)
    "status",  # Int64 (<NA> without a response half)
    "complete",  # bool
)
PREDICTION = "prediction"
PROBA_PREFIX = "proba_"


class StoreError(PushbuttonError):
    """The monitoring store refused an operation (bad input, schema conflict, corrupt data)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now (transient): retry later, nothing was written."""


class FeatureLike(Protocol):
    name: str
    type: str


@dataclass(frozen=True)
class Column:
    """A typed column of a model's table: a feature, or the prediction."""

    name: str
    type: FeatureType = "double"

    @classmethod
    def of(cls, feature: FeatureLike | tuple[str, str] | str) -> Column:
        if isinstance(feature, str):
            return cls(feature)
        if isinstance(feature, tuple):
            return cls(feature[0], feature[1])  # type: ignore[arg-type]
        return cls(feature.name, feature.type)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ModelSchema:
    """What the store knows of a model: its typed features, its prediction's type and its classes."""

    model: str
    features: tuple[Column, ...]
    prediction: Column = Column(PREDICTION, "double")
    classes: tuple[str, ...] = ()  # seen in responses' probabilities, in first-seen order
    exclude: tuple[str, ...] = ()  # features never stored (logging.exclude)
    inputs: tuple[str, ...] = ()  # the spec's input order, for requests that name no columns

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.features]


@dataclass(frozen=True)
class WriteResult:
    records: int  # records handed in
    rows: int  # feature rows handed in
    untyped: int = 0  # records of models without a schema (kept in the request table only)


@dataclass(frozen=True)
class LabelResult:
    """What ``write_labels`` did: every label is kept; ``unknown`` lists request ids not (yet) logged."""

    written: int
    matched: int
    unknown: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoreCounters:
    """Totals for ``pushbutton status`` (one model, or all with ``model=None``)."""

    records: int = 0
    incomplete: int = 0
    errors: int = 0  # records answered with a status >= 400
    rows: int = 0
    labels: int = 0
    indicators: int = 0
    flagged: int = 0  # latest result per indicator/version/predictor that is flagged
    first: datetime | None = None
    last: datetime | None = None
    per_model: dict[str, int] = field(default_factory=dict)  # records per model


def retention_cutoff(now: datetime, days: float) -> datetime:
    """Records older than this are purged: ``purge(model, retention_cutoff(now, retention_days))``."""
    if days <= 0:
        raise ValueError(f"retention_days must be > 0, got {days}")
    return now - timedelta(days=days)


class MonitoringStore(abc.ABC):
    """Request log, labels and indicator results of every model the platform serves."""

    url: str

    # --- lifecycle -------------------------------------------------------------------------------

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless a write could succeed now (the logger's health)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> MonitoringStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def ensure_model(
        self,
        model: str,
        features: Sequence[FeatureLike | tuple[str, str] | str],
        prediction: FeatureLike | tuple[str, str] | None = None,
        exclude: Sequence[str] = (),
    ) -> ModelSchema:
        """Create (or extend) the model's typed storage: one column per feature not in ``exclude``.

        Idempotent. A feature added to the schema later gets a new column (older rows: null); a
        feature whose type changed raises ``StoreError`` naming it (the old rows would not fit)."""

    @abc.abstractmethod
    def schema(self, model: str) -> ModelSchema | None:
        """The model's schema as stored, or None if ``ensure_model`` never ran for it."""

    @abc.abstractmethod
    def models(self) -> list[str]:
        """Every model with a schema or logged records."""

    # --- layer 1: the request log ----------------------------------------------------------------

    @abc.abstractmethod
    def write_records(self, records: Sequence[InferenceRecord]) -> WriteResult:
        """Store records (batched; idempotent; halves merge — see the module docstring).

        Records of a model without a schema are kept in the request table (raw bodies) only and
        counted ``untyped``. Feature values that do not fit their column's type are stored null."""

    @abc.abstractmethod
    def rows(
        self,
        model: str,
        start: datetime,
        end: datetime,
        *,
        version: str | None = None,
        predictor: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """One row per logged input row in ``[start, end)``: ``ROW_COLUMNS``, features, prediction,
        ``proba_*`` (``columns`` narrows the feature/prediction columns read)."""

    @abc.abstractmethod
    def records(self, model: str, start: datetime, end: datetime, *, limit: int | None = None) -> list[dict]:
        """The request-level log in ``[start, end)`` (no feature rows), oldest first, as dicts with the
        ``InferenceRecord`` fields plus ``complete`` (for inspection, the CLI and tests)."""

    @abc.abstractmethod
    def versions(self, model: str, start: datetime, end: datetime) -> list[tuple[str, str, int]]:
        """``(predictor, version, records)`` that served in ``[start, end)``, most records first."""

    def aggregate(
        self,
        model: str,
        start: datetime,
        end: datetime,
        *,
        task: str = "",
    ) -> WindowAggregates:
        """Window aggregations per predictor/version (``aggregate.WindowAggregates``); this default
        aggregates the ``rows`` frame in pandas, a backend may answer from its own queries."""
        from pushbutton.monitoring.aggregate import window_aggregates

        schema = self.schema(model)
        frame = self.rows(model, start, end)
        return window_aggregates(frame, schema.feature_names if schema else [], task=task)

    # --- layer 3: labels -------------------------------------------------------------------------

    @abc.abstractmethod
    def write_labels(
        self, model: str, labels: Iterable[Label], *, now: datetime | None = None
    ) -> LabelResult:
        """Keep every label (latest wins per request id and row); report the ids not in the log."""

    @abc.abstractmethod
    def labels(
        self,
        model: str,
        start: datetime,
        end: datetime,
        *,
        version: str | None = None,
        predictor: str | None = None,
    ) -> pd.DataFrame:
        """Labels of the rows logged in ``[start, end)``: columns ``request_id``, ``row``, ``label``
        (typed like the prediction)."""

    # --- layer 4: indicator results --------------------------------------------------------------

    @abc.abstractmethod
    def write_indicators(self, results: Iterable[IndicatorResult]) -> int:
        """Store results; one with the ``key`` of a stored one replaces it. Answers how many."""

    @abc.abstractmethod
    def indicators(
        self,
        model: str,
        *,
        version: str | None = None,
        predictor: str | None = None,
        indicator_id: str | None = None,
        last: int = 1,
    ) -> list[IndicatorResult]:
        """The ``last`` most recent windows' results of each (indicator, version, predictor), newest
        window first."""

    # --- alert history (pushbutton.alerting) -----------------------------------------------------

    @abc.abstractmethod
    def write_alerts(self, events: Iterable[AlertEvent]) -> int:
        """Store alert events; one with the ``id`` of a stored one replaces it. Answers how many."""

    @abc.abstractmethod
    def alerts(
        self,
        model: str,
        *,
        rule: str | None = None,
        version: str | None = None,
        predictor: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AlertEvent]:
        """The alert history of ``model``, newest first (by ``at``, then when recorded)."""

    # --- retention and status --------------------------------------------------------------------

    @abc.abstractmethod
    def purge(self, model: str, before: datetime) -> int:
        """Delete the raw log (records, rows, their labels) older than ``before``; the number of records
        deleted. A record at exactly ``before`` is kept. Indicator results are kept."""

    @abc.abstractmethod
    def counters(self, model: str | None = None) -> StoreCounters:
        """Totals for status displays."""
