"""Helpers shared by the tests that run a group's DAG with a real ``dag.test()``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# One whole-market J-Quants group, as the example config defines it (a high limit: tests are not
# about pacing unless they say so).
CONFIG = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true,
     config: {rate_limit: 600/minute, max_concurrency: 2}}
job_groups:
  - {name: jp_daily_quotes, description: All listed issues, data_source: jquants, dataset: daily_quotes,
     schedule: "0 19 * * 1-5", timezone: Asia/Tokyo, parameters: {universe: all_listed}, is_enabled: true}
"""


def get_dag(dag_id: str):
    """The group's DAG parsed from dags/ the way the DAG processor does.

    Retries stay on (they are part of what runs), but with the product's 1 min exponential delay a
    retryable hiccup on a loaded CI machine parks dag.test() for minutes ("No tasks to run" while
    the task is up_for_retry); here a retry comes after 1-2 s instead.
    """
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags[dag_id]
    for task in dag.tasks:
        task.retry_delay, task.max_retry_delay = timedelta(seconds=1), timedelta(seconds=2)
    return dag
