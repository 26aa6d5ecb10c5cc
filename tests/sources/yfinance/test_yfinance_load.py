"""Yahoo units end to end into the real warehouse, offline: plan, fetch (replayed) and load.

The pipeline's own functions run against a fresh Postgres; Yahoo is replaced by the local replay
server (the Connection host) serving the chart-API fixtures in ``tests/fixtures/yahoo``. A batch
with a delisted symbol and a trading gap loads the good bars and records the unit as failed with
one reason per bad ticker; nothing is silent.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
import yfinance  # noqa: F401  (imported before any test: its import-time warning filter)

from moomarkets.config.models import DataSource, GroupSpec, JobGroup
from moomarkets.errors import SourceError
from moomarkets.pipeline import GroupPipeline
from moomarkets.pipeline import run as runner
from moomarkets.sources.base import Credentials, Interval
from moomarkets.testing.yahoo_replay import running_replay

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "yahoo"
UTC = timezone.utc
# (Mon 2026-03-09 21:00Z, Fri 2026-03-13 21:00Z]: the New York sessions of Tue 10th .. Fri 13th
WEEK = Interval(datetime(2026, 3, 9, 21, tzinfo=UTC), datetime(2026, 3, 13, 21, tzinfo=UTC))


class Limiter:
    """Stands in for the Postgres-backed SourceRateLimiter: counts, never waits."""

    def __init__(self):
        self.acquired = 0
        self.penalties: list[float] = []

    def acquire(self):
        self.acquired += 1

    def penalize(self, seconds: float):
        self.penalties.append(seconds)

    def close(self):
        pass


def pipeline(dataset: str, tickers: list[str], name: str) -> GroupPipeline:
    return GroupPipeline.resolve(GroupSpec(
        group=JobGroup(name=name, data_source="yahoo", dataset=dataset, schedule="30 1 * * 2-6", timezone="UTC",
                       parameters={"tickers": tickers, "batch_size": 10}),
        source=DataSource(code="yahoo", name="Yahoo Finance", kind="yfinance", conn_id="yfinance_default",
                          config={"throttle_backoff": 0}),
    ))


def run_units(url: str, pipe: GroupPipeline, run_id: str, limiter: Limiter, yahoo: str) -> list[dict | Exception]:
    """Plan and run every unit of the week; ``yahoo`` is the Connection host (the replay server)."""
    dag_id = pipe.name
    units = runner.plan_units(pipe, WEEK, dag_id=dag_id, run_id=run_id, url=url, max_units=16)
    out: list[dict | Exception] = []
    for unit in units:
        try:
            out.append(runner.fetch_and_load(pipe, unit, dag_id=dag_id, run_id=run_id,
                                             credentials=Credentials(host=yahoo), url=url, limiter=limiter))
        except SourceError as exc:
            out.append(exc)
    return out


def test_good_bars_land_and_bad_tickers_are_recorded_per_item(warehouse_url):
    pipe = pipeline("daily_quotes", ["AAPL", "INTC", "MSFT", "TWTR"], "us_quotes")
    limiter = Limiter()
    fixtures = (FIXTURES / "delisted.json", FIXTURES / "trading_gap.json", FIXTURES / "normal_batch.json")
    with running_replay(*fixtures) as (yahoo, replay):
        (outcome,) = run_units(warehouse_url, pipe, "scheduled__2026-03-13", limiter, yahoo)
    assert isinstance(outcome, SourceError) and "2 item(s) failed" in str(outcome)
    assert limiter.acquired == len(replay.requests) > 0

    with psycopg.connect(warehouse_url) as conn:
        rows = conn.execute(
            "SELECT code, date::text, close, adj_close, adjustment_factor, volume FROM daily_quotes"
            " WHERE source = 'yahoo' ORDER BY code, date"
        ).fetchall()
        unit = conn.execute("SELECT unit_key, status, rows, requests, error FROM run_units").fetchone()
        summary = runner.record_run(dag_id="us_quotes", run_id="scheduled__2026-03-13", url=warehouse_url)

    by_code: dict[str, list[str]] = {}
    for code, day, *_ in rows:
        by_code.setdefault(code, []).append(day)
    assert by_code == {
        "AAPL": ["2026-03-10", "2026-03-11", "2026-03-12", "2026-03-13"],
        "INTC": ["2026-03-10", "2026-03-12", "2026-03-13"],
        "MSFT": ["2026-03-10", "2026-03-11", "2026-03-12", "2026-03-13"],
    }
    assert all(r[2] is not None and r[3] is not None and r[4] == 1 and r[5] > 0 for r in rows)
    key, status, nrows, requests, error = unit
    assert (key, status, nrows) == ("tickers:AAPL..TWTR", "failed", 11)
    assert requests == limiter.acquired
    assert error == (
        "INTC: partial: no bar for 2026-03-11 while other America/New_York tickers traded (trading gap); "
        "TWTR: unknown or delisted symbol (Yahoo: No data found, symbol may be delisted)"
    )
    assert summary["status"] == "failed" and summary["units_failed"] == 1


def test_corporate_actions_load_and_a_rerun_changes_nothing(warehouse_url):
    pipe = pipeline("corporate_actions", ["KO", "NVDA"], "us_actions")
    with running_replay(FIXTURES / "split_dividend.json") as (yahoo, _):
        first = run_units(warehouse_url, pipe, "manual__1", Limiter(), yahoo)
        again = run_units(warehouse_url, pipe, "manual__2", Limiter(), yahoo)
    assert [o["rows"] for o in first] == [1] and [o["rows"] for o in again] == [1]  # KO's dividend in the week
    assert first[0]["changed"] == 1 and again[0]["changed"] == 0
    with psycopg.connect(warehouse_url) as conn:
        actions = conn.execute(
            "SELECT source, code, date::text, action, value::float8 FROM corporate_actions ORDER BY code"
        ).fetchall()
    assert actions == [("yahoo", "KO", "2026-03-13", "dividend", 0.53)]

    week2 = Interval(datetime(2026, 3, 13, 21, tzinfo=UTC), datetime(2026, 3, 20, 21, tzinfo=UTC))
    with running_replay(FIXTURES / "split_dividend.json") as (yahoo, _):
        (unit,) = runner.plan_units(pipe, week2, dag_id="us_actions", run_id="manual__3", url=warehouse_url,
                                    max_units=4)
        done = runner.fetch_and_load(pipe, unit, dag_id="us_actions", run_id="manual__3",
                                     credentials=Credentials(host=yahoo), url=warehouse_url, limiter=Limiter())
    assert done["rows"] == 1 and done["item_errors"] == 0
    with psycopg.connect(warehouse_url) as conn:
        split = conn.execute(
            "SELECT date::text, value::float8 FROM corporate_actions WHERE action = 'split'"
        ).fetchone()
    assert split == ("2026-03-16", 4.0)
