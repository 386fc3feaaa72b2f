"""The monitoring store, chosen by URL: ``open_store(url)``.

* a SQLAlchemy URL — ``sqlite:///<path>`` (the embedded default, ``<home>/monitoring.db``, WAL mode)
  or ``postgresql+psycopg://user@host:port/db`` — opens ``sql.SqlStore``;
* ``elasticsearch+http(s)://[user:password@]host:port`` opens the Elasticsearch backend
  (``elasticsearch.ElasticsearchStore``; imported only when asked for).

The URL comes from ``PUSHBUTTON_MONITORING_URL`` (CLI, logger) or the Airflow Connection
``pushbutton_monitoring`` (``IndicatorStoreHook``); unset, ``Settings.monitoring`` is the SQLite file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pushbutton.monitoring.store.base import (
    ROW_COLUMNS,
    LabelResult,
    ModelSchema,
    MonitoringStore,
    StoreCounters,
    StoreError,
    StoreUnavailable,
    WriteResult,
    retention_cutoff,
)

if TYPE_CHECKING:
    from pushbutton.config import Settings

__all__ = [
    "ROW_COLUMNS",
    "LabelResult",
    "ModelSchema",
    "MonitoringStore",
    "StoreCounters",
    "StoreError",
    "StoreUnavailable",
    "WriteResult",
    "open_store",
    "retention_cutoff",
]

ES_SCHEMES = ("elasticsearch+http://", "elasticsearch+https://", "elasticsearch://")


def open_store(url: str | None = None, cfg: Settings | None = None) -> MonitoringStore:
    """The store at ``url`` (default: the platform's, ``Settings.monitoring``)."""
    if not url:
        from pushbutton.config import settings

        url = (cfg or settings()).monitoring
    if url.startswith(ES_SCHEMES):
        from pushbutton.monitoring.store.elasticsearch import ElasticsearchStore  # type: ignore[import-not-found]

        return ElasticsearchStore(url)  # type: ignore[no-any-return]
    if "://" not in url:
        raise StoreError(
            f"monitoring store URL {url!r} has no scheme (fix: sqlite:///path/monitoring.db, "
            "postgresql+psycopg://user@host/db or elasticsearch+https://host:9200)"
        )
    from pushbutton.monitoring.store.sql import SqlStore

    return SqlStore(url)
