"""Example user DAG: daily returns and market breadth after every complete load of J-Quants bars.

How to hang your own analysis on a job group: schedule on the asset the group updates when a run
loaded every unit (``moomarkets://<source>/<dataset>``; a partial or failed load emits nothing),
read the days it loaded from the triggering events' ``extra``, and keep your SQL in your own module
(here ``moomarkets.examples.market_breadth``), not in the DAG file. The results go to the warehouse
tables ``analysis_daily_returns`` and ``analysis_market_breadth``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Asset, dag, task

# the same uri and name as the asset the DAG factory's record_run updates (factory.dataset_asset)
DAILY_QUOTES = Asset(uri="moomarkets://jquants/daily_quotes", name="moomarkets.jquants.daily_quotes",
                     group="moomarkets")


@dag(
    dag_id="example_market_breadth",
    schedule=[DAILY_QUOTES],
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["moomarkets", "example"],
    default_args={"owner": "data-engineering", "retries": 2, "retry_delay": timedelta(minutes=1)},
    doc_md=__doc__,
)
def example_market_breadth():
    @task
    def compute_breadth(triggering_asset_events=None) -> dict:
        """Returns and breadth for the days the triggering loads covered (or the latest stored day)."""
        from moomarkets import settings
        from moomarkets.airflow.warehouse import install
        from moomarkets.examples import market_breadth

        install()  # the warehouse is the moomarkets_warehouse Connection, as for the groups' tasks
        events = triggering_asset_events[DAILY_QUOTES] if triggering_asset_events else []
        windows = [w for w in (market_breadth.window_of(e.extra or {}) for e in events) if w]
        return market_breadth.compute(settings.database_url(), windows=windows)

    compute_breadth()


example_market_breadth()
