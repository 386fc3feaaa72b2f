"""Watching what the platform serves, framework-free (the reference design's four layers): ``records``
and ``events`` (Seldon's request-logger CloudEvents, paired by request id into one record per
request), the logger service and the gateway's emitter (a bounded queue, then an append-only spool on
disk, replayed in order: nothing lost), ``store`` (one interface, a SQL backend — SQLite or PostgreSQL,
features as typed columns — and Elasticsearch), window aggregations, reference data captured at
training and late labels, and the indicator runtime, which runs the ``indicators/`` package's
detectors over a window and writes one fixed-shape ``results.IndicatorResult`` per indicator, version
and window. Airflow adapters (``operators/monitoring.py``) stay thin over it."""
