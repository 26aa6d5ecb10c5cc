"""A Yahoo Finance job group runs as a real Airflow DAG (`dag.test()`) into the real Postgres,
with Yahoo answered by the local replay server of the recorded chart-API fixtures (the
`yfinance_default` Connection's host points there, as it would at a proxy): good tickers load, a delisted ticker and
a trading gap are recorded as failures with their reasons, and the run does not claim success."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
import yaml
import yfinance  # noqa: F401  (import-time warning filter must come before the tests)

from moomarkets.testing.yahoo_replay import running_replay
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse.db import connect

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "yahoo"
NEW_YORK = ZoneInfo("America/New_York")
CONFIG = """
data_sources:
  - {code: yahoo, name: Yahoo Finance, kind: yfinance, conn_id: yfinance_default, is_active: true,
     config: {rate_limit: 100/second, max_concurrency: 1, throttle_backoff: 0}}
job_groups:
  - {name: us_quotes, description: US large caps, data_source: yahoo, dataset: daily_quotes,
     schedule: "0 17 * * 1,5", timezone: America/New_York,
     parameters: {tickers: [AAPL, INTC, MSFT, TWTR]}, is_enabled: true}
"""


def test_yfinance_group_through_dag_test(warehouse_url, airflow_db, monkeypatch, tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("MOOMARKETS_SNAPSHOT_PATH", str(tmp_path / "snapshot.json"))
    with connect(warehouse_url) as conn:
        store.import_config(conn, yaml.safe_load(CONFIG))
    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["us_quotes"]
    for task in dag.tasks:  # a retry (if any) after 1-2 s, not the product's minutes (see test_group_run)
        task.retry_delay, task.max_retry_delay = timedelta(seconds=1), timedelta(seconds=2)
    fixtures = (FIXTURES / "delisted.json", FIXTURES / "trading_gap.json", FIXTURES / "normal_batch.json")
    with running_replay(*fixtures) as (yahoo, replay):
        monkeypatch.setenv("AIRFLOW_CONN_YFINANCE_DEFAULT", json.dumps({"conn_type": "yfinance", "host": yahoo}))
        # (Mon 2026-03-09 17:00, Fri 2026-03-13 17:00] New York: the sessions of Tue 10th .. Fri 13th
        run = dag.test(logical_date=datetime(2026, 3, 13, 18, 0, tzinfo=NEW_YORK))
    assert replay.chart_requests("AAPL")  # Yahoo was reached through the Connection host
    assert run.state == "failed"  # two tickers lack data: never a silent success
    with psycopg.connect(warehouse_url) as conn:
        loaded = conn.execute(
            "SELECT code, count(*) FROM daily_quotes WHERE source = 'yahoo' GROUP BY code ORDER BY code"
        ).fetchall()
        unit = conn.execute("SELECT status, rows, error FROM run_units").fetchone()
        status = conn.execute("SELECT last_run_status, units_failed, rows_loaded FROM job_group_status").fetchone()
    assert loaded == [("AAPL", 4), ("INTC", 3), ("MSFT", 4)]
    assert unit[0] == "failed" and unit[1] == 11
    assert "INTC: partial" in unit[2] and "TWTR: unknown or delisted symbol" in unit[2]
    assert status == ("failed", 1, 11)
