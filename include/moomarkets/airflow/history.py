"""Airflow's side of history mode: queue the manual runs (with ``conf``) that load a long range,
and read their state. Airflow is imported inside the functions, as in ``moomarkets.airflow.ops``."""

from __future__ import annotations

from datetime import datetime
from typing import Any


RUN_ID_PREFIX = "history__"


def trigger_history_run(
    dag_id: str, *, run_id: str, conf: dict[str, Any], run_after: datetime, user_name: str | None = None,
    note: str | None = None, from_ui: bool = False,
) -> str:
    """Queue one manual run with ``conf`` and no logical date (so no data interval: ``plan_units``
    reads the range from ``conf``); returns its run id. Runs of a DAG start in ``run_after`` order,
    one at a time (the group DAG's ``max_active_runs`` is 1)."""
    from moomarkets.airflow.ops import trigger

    return trigger(dag_id, run_id=run_id, conf=conf, logical_date=None, run_after=run_after, user_name=user_name,
                   note=note, from_ui=from_ui, exists_message=f"run {run_id} of {dag_id} already exists")


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
