"""The ``moomarkets_watchdog`` DAG: alert retries and lateness alerts from the warehouse's truth.

Every 15 minutes ``resend_alerts`` re-sends the stored message of every alert whose delivery
failed, or whose sender left it ``sending`` for 10 minutes (a crashed ``record_run``), to its
target, up to 3 attempts in all. Then ``check_lateness`` looks at every enabled group that wants
``late`` alerts: each trading day due in the lookback window (the close, the scheduled run after
it, plus ``late_after``) that no successful run covers makes the group late: one ``late`` alert
per group, keyed by its latest missing day and listing them all (a new late day, a new alert).

Why not Airflow's Deadline Alerts: they are experimental in 3.3, and a deadline exists only once a
DagRun was created, so a scheduler that never created the run, or a paused DAG, would never alert.
This check reads the warehouse and notices a day that was simply never loaded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, TriggerRule, task

from moomarkets import settings
from moomarkets.airflow.factory import OWNER

DAG_ID = "moomarkets_watchdog"
SCHEDULE = "*/15 * * * *"


def build_watchdog_dag() -> DAG:
    """The watchdog DAG (no database access at parse time)."""
    from moomarkets.airflow.warehouse import install

    install()  # the task's settings.database_url() resolves the warehouse Connection
    with DAG(
        dag_id=DAG_ID,
        description="MooMarkets alert retries and lateness alerts (days not completely loaded by their deadline)",
        schedule=SCHEDULE,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(minutes=14),
        is_paused_upon_creation=False,
        tags=["moomarkets", "alerts"],
        default_args={"owner": OWNER, "retries": 1, "retry_delay": timedelta(minutes=1)},
        doc_md=__doc__,
    ) as dag:

        @task(task_id="resend_alerts", execution_timeout=timedelta(minutes=5))
        def resend_alerts(**context: Any) -> list[dict[str, Any]]:
            """Re-send failed or abandoned deliveries (stored messages; at most 3 attempts each)."""
            from moomarkets.airflow.alerts import resend_alerts as resend

            return resend(context, url=settings.database_url())

        # first the retries of earlier failures; a late alert failing now waits for the next tick
        @task(task_id="check_lateness", execution_timeout=timedelta(minutes=8), trigger_rule=TriggerRule.ALL_DONE)
        def check_lateness(**context: Any) -> dict[str, Any]:
            """Send one ``late`` alert per late group and latest overdue day (once: see ``alerts_sent``)."""
            from moomarkets.airflow.alerts import send_late_alerts

            return send_late_alerts(context, url=settings.database_url())

        resend_alerts() >> check_lateness()
    return dag
