"""``pushbutton__monitor_fleet``: scheduled monitoring of a large platform in one process per tick.

Defined only while the platform has more than ``FLEET_THRESHOLD`` models (its DAG stubs) and time
schedules are on: then every ``FLEET_TICK`` it runs each model whose ``schedules.monitor`` ticked since
its previous tick, and the per-model ``<model>__monitor`` DAGs keep no time schedule (they stay for
on-demand runs). Why, with the measurements: ``pushbutton.monitoring.fleet``. Parsing stays cheap: the
monitoring code is imported inside the task.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, CronTriggerTimetable

from operators.alerting import RETRAIN_ALIAS
from operators.monitoring import FleetMonitorOperator
from pushbutton.config import settings
from pushbutton.monitoring.fleet import (
    FLEET_DAG_ID,
    FLEET_THRESHOLD,
    FLEET_TICK,
    fleet_shape,
    fleet_since,
    stub_count,
)

_shape = settings().schedules == "on" and fleet_shape(stub_count(settings().stub_root))
_since = fleet_since(settings().stub_root, _shape)  # never a tick from before the fleet appeared

if _shape:
    with DAG(
        dag_id=FLEET_DAG_ID,
        description="Monitor every model whose monitor schedule is due, all in one task per tick",
        schedule=CronTriggerTimetable(FLEET_TICK, timezone="UTC"),
        start_date=_since,
        catchup=False,
        max_active_runs=1,
        tags=["pushbutton", "monitor"],
        doc_md=f"Scheduled monitoring of the platform's models (more than {FLEET_THRESHOLD}): each tick runs "
        "every model whose `schedules.monitor` ticked since the previous one, in one process. Trigger a "
        "`<model>__monitor` DAG to monitor one model on demand.",
        default_args={"owner": "pushbutton", "retries": 1, "retry_delay": timedelta(seconds=30)},
    ) as fleet_dag:
        FleetMonitorOperator(  # judges each model's alert rules too; retrain requests leave through the alias
            task_id="monitor_due_models", execution_timeout=timedelta(minutes=25), outlets=[RETRAIN_ALIAS]
        )
