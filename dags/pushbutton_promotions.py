"""pushbutton Airflow DAGs to promote a version to champion or roll back, with a Params form.

Trigger from the Airflow UI (Trigger → form) or ``pushbutton promote|rollback MODEL``. Promotions of
one model serialise on the platform store's per-model lock; every change lands in the serving history.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from operators.lifecycle import SeldonPromoteOperator

_MODEL = Param(
    "",
    type="string",
    pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$",
    title="Model",
    description="registered model name (as in its model.yaml)",
)


def _dag(action: str, default: str, help_text: str) -> DAG:
    with DAG(
        dag_id=f"pushbutton__{action}",
        description=help_text,
        schedule=None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        tags=["pushbutton", "release"],
        params={
            "model": _MODEL,
            "version": Param(
                default,
                type="string",
                pattern=r"^(candidate|previous|[0-9]+)$",
                title="Version",
                description=f"a version number, 'candidate' or 'previous' (default '{default}')",
            ),
        },
        doc_md=f"## {action}\n\n{help_text}. Version accepts a number, `candidate` or `previous`.",
        # one retry, for a promotion lock another promotion held past its wait (LockBusy); decisions
        # (untested version, unknown model) fail without retry, and a retry of a finished move is a no-op
        default_args={"owner": "pushbutton", "retries": 1, "retry_delay": timedelta(seconds=30)},
    ) as dag:
        SeldonPromoteOperator(
            task_id=action, action=action, model="{{ params.model }}", version="{{ params.version }}"
        )
    return dag


promote = _dag(
    "promote", "candidate", "Make a tested version the champion: 100% of traffic, alias `champion`"
)
rollback = _dag("rollback", "previous", "Restore the previous champion's alias and traffic")
