"""Airflow's side of history mode: queue the manual runs (with ``conf``) that load a long range,
and read their state. Airflow is imported inside the functions, as in ``moomarkets.airflow.ops``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from moomarkets.errors import AirflowOpError

RUN_ID_PREFIX = "history__"


def trigger_history_run(
    dag_id: str, *, run_id: str, conf: dict[str, Any], run_after: datetime, user_name: str | None = None,
    note: str | None = None, from_ui: bool = False,
) -> str:
    """Queue one manual run with ``conf`` and no logical date (so no data interval: ``plan_units``
    reads the range from ``conf``); returns its run id. Runs of a DAG start in ``run_after`` order,
    one at a time (the group DAG's ``max_active_runs`` is 1)."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType

    try:
        run = trigger_dag(
            dag_id,
            run_id=run_id,
            conf=conf,
            triggered_by=DagRunTriggeredByType.UI if from_ui else DagRunTriggeredByType.CLI,
            triggering_user_name=user_name,
            logical_date=None,
            run_after=run_after,
            note=note,
        )
    except DagNotFound:
        raise AirflowOpError(f"DAG {dag_id} is not parsed yet; try again in a minute") from None
    except DagRunAlreadyExists:
        raise AirflowOpError(f"run {run_id} of {dag_id} already exists") from None
    except ValueError as exc:
        raise AirflowOpError(str(exc)) from None
    if run is None:
        raise AirflowOpError(f"Airflow did not create a run for {dag_id}")
    return run.run_id


def unfinished_history_runs(dag_id: str) -> list[tuple[str, str]]:
    """(run id, state) of the DAG's history runs that are queued or running."""
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    with create_session() as session:
        rows = session.execute(
            select(DagRun.run_id, DagRun.state).where(
                DagRun.dag_id == dag_id,
                DagRun.run_id.like(f"{RUN_ID_PREFIX}%"),
                DagRun.state.in_([DagRunState.QUEUED, DagRunState.RUNNING]),
            ).order_by(DagRun.run_after)
        ).all()
    return [(r[0], str(r[1])) for r in rows]
