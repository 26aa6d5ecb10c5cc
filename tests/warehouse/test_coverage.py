"""Coverage: every run records the trading days it loads (``runs.covers_from`` / ``covers_to``),
which is what a downstream group's run waits for. A calendar run also covers the days ahead it
loads, so this morning's calendar run covers tonight's bars; a history run covers its range."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import yaml

from moomarkets.pipeline import GroupPipeline
from moomarkets.pipeline import history
from moomarkets.pipeline import run as runner
from moomarkets.sources.base import Interval
from moomarkets.sources.jquants.source import JQuantsSource
from moomarkets.warehouse import config_store
from moomarkets.warehouse import dependencies as deps
from moomarkets.warehouse.db import connect

TOKYO = ZoneInfo("Asia/Tokyo")
CONFIG = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true, config: {}}
job_groups:
  - {name: jp_daily_quotes, data_source: jquants, dataset: daily_quotes, schedule: "0 19 * * 1-5",
     timezone: Asia/Tokyo, parameters: {universe: all_listed}, is_enabled: true}
  - {name: jp_trading_calendar, data_source: jquants, dataset: trading_calendar, schedule: "0 7 * * *",
     timezone: Asia/Tokyo, parameters: {days_ahead: 370}, is_enabled: true}
"""


def tokyo(*args: int) -> datetime:
    return datetime(*args, tzinfo=TOKYO)


def test_covered_days_are_the_days_whose_close_falls_in_the_interval():
    # (Fri 19:00, Mon 19:00]: Saturday .. Monday (the planner drops the weekend, nothing to wait for)
    assert JQuantsSource.covered_days("daily_quotes", {}, Interval(tokyo(2026, 11, 20, 19), tokyo(2026, 11, 23, 19))) \
        == (date(2026, 11, 21), date(2026, 11, 23))
    # a calendar run at Fri 07:00 loads Thursday and the days ahead: it covers Friday's bars
    assert JQuantsSource.covered_days("trading_calendar", {"days_ahead": 10},
                                      Interval(tokyo(2026, 11, 19, 7), tokyo(2026, 11, 20, 7))) \
        == (date(2026, 11, 19), date(2026, 11, 29))
    assert JQuantsSource.covered_days("trading_calendar", {},
                                      Interval(tokyo(2026, 11, 19, 7), tokyo(2026, 11, 20, 7)))[1] == date(2027, 11, 24)
    assert JQuantsSource.covered_days("daily_quotes", {}, Interval(tokyo(2026, 11, 20, 16), tokyo(2026, 11, 20, 17))) \
        is None


@pytest.fixture
def pipes(warehouse_url):
    with connect(warehouse_url) as conn, conn.transaction():
        config_store.import_config(conn, yaml.safe_load(CONFIG))
        return {s.group.name: GroupPipeline.resolve(s) for s in config_store.read_specs(conn)}


def covers(url: str, run_id: str) -> tuple:
    with connect(url) as conn:
        row = conn.execute("SELECT covers_from, covers_to FROM runs WHERE run_id = %s", (run_id,)).fetchone()
    return row["covers_from"], row["covers_to"]


def test_plan_units_records_what_a_run_covers(warehouse_url, pipes):
    runner.plan_units(pipes["jp_trading_calendar"], Interval(tokyo(2026, 11, 19, 7), tokyo(2026, 11, 20, 7)),
                      dag_id="jp_trading_calendar", run_id="cal", url=warehouse_url, max_units=100)
    assert covers(warehouse_url, "cal") == (date(2026, 11, 19), date(2027, 11, 24))
    runner.plan_units(pipes["jp_daily_quotes"], Interval(tokyo(2026, 11, 19, 19), tokyo(2026, 11, 20, 19)),
                      dag_id="jp_daily_quotes", run_id="fri", url=warehouse_url, max_units=100)
    assert covers(warehouse_url, "fri") == (date(2026, 11, 20), date(2026, 11, 20))
    spec = history.parse_conf({"history": {"from": "2026-11-02", "to": "2026-11-20"}})
    history.plan_units(pipes["jp_daily_quotes"], spec, dag_id="jp_daily_quotes", run_id="hist", url=warehouse_url,
                       max_units=100)
    assert covers(warehouse_url, "hist") == (date(2026, 11, 2), date(2026, 11, 20))


def test_only_successful_runs_cover_a_day(warehouse_url, pipes):
    runner.plan_units(pipes["jp_daily_quotes"], Interval(tokyo(2026, 11, 19, 19), tokyo(2026, 11, 20, 19)),
                      dag_id="jp_daily_quotes", run_id="fri", url=warehouse_url, max_units=100)
    days = [date(2026, 11, 19), date(2026, 11, 20)]
    with connect(warehouse_url) as conn:
        for status in ("running", "partial", "failed", "skipped"):
            conn.execute("UPDATE runs SET status = %s WHERE run_id = 'fri'", (status,))
            assert deps.first_uncovered_day(conn, "jp_daily_quotes", days[1:]) == days[1]
        conn.execute("UPDATE runs SET status = 'success' WHERE run_id = 'fri'")
        assert deps.first_uncovered_day(conn, "jp_daily_quotes", days[1:]) is None
        assert deps.first_uncovered_day(conn, "jp_daily_quotes", days) == days[0]  # Thursday is not Friday's run
        assert deps.first_uncovered_day(conn, "jp_daily_quotes", []) is None
