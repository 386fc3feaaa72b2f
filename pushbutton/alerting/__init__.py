"""Acting on what monitoring sees, framework-free: ``rules`` (the alert rules of ``model.yaml``, named
after ElastAlert's and Alertmanager's: threshold, change, spike, flatline, frequency, missing, each
with ``for``, ``cooldown``, severity and actions), ``evaluate`` (a rule over an indicator series →
pending, firing or resolved, with the values that caused it), ``events`` (the alert history's one
record shape, idempotent by id, kept in the monitoring store), ``dedupe`` (one retrain per storm; a
retrain running or queued, or a release in progress, absorbs new requests), ``rollback`` (when an
automatic rollback on a quality rule is allowed: one step, within a window, never against a person),
``policy`` (the ``auto`` promotion policy's decision and evidence) and ``external`` (Alertmanager,
ElastAlert2 and Grafana webhooks mapped onto the same path). Airflow adapters: ``operators/alerting.py``
and the plugin's ``/alerts`` endpoint."""
