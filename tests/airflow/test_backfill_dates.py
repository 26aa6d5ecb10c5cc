"""A backfill of trading days D1..D2 loads exactly those days, whichever way it is asked for.

The timetable is checked on its own (every run a range creates, and the days each run loads), and
through Airflow itself: ``airflow backfill create --dry-run`` (the user path), the ``moomarkets
backfill`` CLI and Airflow's backfill model on a real metadata DB with the serialized group DAG.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml
from airflow.timetables.base import TimeRestriction
from airflow.timetables.interval import CronDataIntervalTimetable

from moomarkets.airflow.timetables import TradingDayTimetable
from moomarkets.sources.base import Interval, market_dates
from moomarkets.testing.jpx_calendar import trading_days
from moomarkets.warehouse import config_store
from moomarkets.warehouse.db import connect
from dagtest import CONFIG  # noqa: E402

BIN = Path(sys.executable).parent
TOKYO, CLOSE = "Asia/Tokyo", dt.time(15, 30)
# Mon 2026-11-16 follows a weekend; Fri 2026-11-20 is the business day before Labour Thanksgiving
# Day (Mon 2026-11-23, a holiday).
D1, D2 = dt.date(2026, 11, 16), dt.date(2026, 11, 20)


def utc_midnight(day: dt.date) -> dt.datetime:
    """How Airflow's CLI parses --from-date/--to-date (default_timezone UTC)."""
    from pendulum import instance

    return instance(dt.datetime.combine(day, dt.time(0), tzinfo=dt.timezone.utc))


def runs_for(timetable, first: dt.date, last: dt.date) -> list:
    """The DagRunInfos Airflow's backfill enumerates (iter_dagrun_infos_between's loop)."""
    restriction = TimeRestriction(utc_midnight(first), utc_midnight(last), catchup=True)
    infos, info = [], None
    while (info := timetable.next_dagrun_info_v2(last_dagrun_info=info, restriction=restriction)) is not None:
        infos.append(info)
    return infos


def loaded_days(infos, market_tz: str, close: dt.time, *, trading_only: bool = True) -> list[dt.date]:
    """What the runs load: the days whose close is in their interval (the sources' rule), kept to
    the exchange's trading days (the planners skip the rest with the trading calendar)."""
    days = [d for i in infos for d in market_dates(Interval(i.data_interval.start, i.data_interval.end), market_tz, close)]
    if not trading_only:
        return days
    open_days = set(trading_days(days[0], days[-1])) if days else set()
    return [d for d in days if d in open_days]


def test_a_range_of_trading_days_creates_exactly_their_runs():
    tt = TradingDayTimetable("0 19 * * 1-5", TOKYO, market_timezone=TOKYO, market_close=CLOSE)
    infos = runs_for(tt, D1, D2)
    assert loaded_days(infos, TOKYO, CLOSE) == trading_days(D1, D2)  # every one, nothing outside the range
    # the only other days those runs cover are the weekend before Monday (no trading, nothing loaded)
    extra = set(loaded_days(infos, TOKYO, CLOSE, trading_only=False)) - set(trading_days(D1, D2))
    assert extra == {dt.date(2026, 11, 14), dt.date(2026, 11, 15)}
    # the plain cron timetable (what groups used before) drops the first day: the bug this fixes
    plain = CronDataIntervalTimetable("0 19 * * 1-5", TOKYO)
    assert D1 not in loaded_days(runs_for(plain, D1, D2), TOKYO, CLOSE)


def test_one_day_is_one_run_and_run_history_is_unchanged():
    tt = TradingDayTimetable("0 19 * * 1-5", TOKYO, market_timezone=TOKYO, market_close=CLOSE)
    (info,) = runs_for(tt, D2, D2)
    assert loaded_days([info], TOKYO, CLOSE) == [D2]
    # the same interval and logical date the plain timetable gives that run: ids and history stay
    plain = CronDataIntervalTimetable("0 19 * * 1-5", TOKYO)
    scheduled = [i for i in runs_for(plain, D1, D2 + dt.timedelta(days=1)) if i.data_interval == info.data_interval]
    assert len(scheduled) == 1 and scheduled[0].logical_date == info.logical_date


def test_a_weekend_end_does_not_pull_in_the_next_monday_and_a_close_on_a_run_time_counts():
    tt = TradingDayTimetable("0 19 * * 1-5", TOKYO, market_timezone=TOKYO, market_close=CLOSE)
    sunday = D1 - dt.timedelta(days=1)
    assert loaded_days(runs_for(tt, D1 - dt.timedelta(days=7), sunday), TOKYO, CLOSE) == trading_days(
        D1 - dt.timedelta(days=7), sunday)  # Mon 9 .. Fri 13, not Mon 16
    # a run time exactly at the close: the close belongs to the interval starting then
    on_tick = TradingDayTimetable("30 15 * * 1-5", TOKYO, market_timezone=TOKYO, market_close=CLOSE)
    assert loaded_days(runs_for(on_tick, D1, D2), TOKYO, CLOSE) == trading_days(D1, D2)


def test_a_morning_schedule_loads_the_previous_days_disclosures():
    # /fins/summary: a day "closes" at 23:59 Tokyo; the 08:00 run loads yesterday
    close = dt.time(23, 59)
    tt = TradingDayTimetable("0 8 * * *", TOKYO, market_timezone=TOKYO, market_close=close)
    days = loaded_days(runs_for(tt, D1, D2), TOKYO, close, trading_only=False)
    assert days == [D1 + dt.timedelta(days=n) for n in range(5)]


def test_new_york_group_loads_the_first_day_too():
    ny, close = "America/New_York", dt.time(16)
    tt = TradingDayTimetable("30 17 * * 1-5", ny, market_timezone=ny, market_close=close)
    days = loaded_days(runs_for(tt, dt.date(2026, 3, 2), dt.date(2026, 3, 12)), ny, close, trading_only=False)
    days = [d for d in days if d.weekday() < 5]  # no US holiday in that range
    assert days[0] == dt.date(2026, 3, 2) and days[-1] == dt.date(2026, 3, 12)  # across the DST change (Mar 8)
    assert len(days) == 9


def test_the_timetable_survives_serialization():
    from airflow.serialization.encoders import encode_timetable

    tt = TradingDayTimetable("0 19 * * 1-5", TOKYO, market_timezone=TOKYO, market_close=CLOSE)
    encoded = encode_timetable(tt)  # raises unless the plugin registered the class
    assert encoded["__type"] == "moomarkets.airflow.timetables.TradingDayTimetable"
    again = TradingDayTimetable.deserialize(encoded["__var"])
    assert again == tt and again.market_close == CLOSE and again.summary == "0 19 * * 1-5"


# -- through Airflow ------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.airflow
def test_airflow_backfill_create_and_the_cli_pick_the_same_trading_days(warehouse_url, airflow_db, tmp_path):
    with connect(warehouse_url) as conn:
        config_store.import_config(conn, yaml.safe_load(CONFIG))
    env = {**os.environ, "MOOMARKETS_DATABASE_URL": warehouse_url,
           "MOOMARKETS_SNAPSHOT_PATH": str(tmp_path / "snapshot.json")}

    def run(*cmd: str) -> str:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout

    run(str(BIN / "airflow"), "dags", "reserialize")
    # the user path named in the product's design
    out = run(str(BIN / "airflow"), "backfill", "create", "--dag-id", "jp_daily_quotes",
              "--from-date", str(D1), "--to-date", str(D2), "--dry-run")
    logical = sorted(line.split("|")[1].strip() for line in out.splitlines()
                     if line.startswith("|") and "2026-" in line)
    tt = TradingDayTimetable("0 19 * * 1-5", TOKYO, market_timezone=TOKYO, market_close=CLOSE)
    expected = runs_for(tt, D1, D2)
    assert logical == [i.logical_date.isoformat(sep=" ") for i in expected]
    # the moomarkets CLI creates exactly those runs (queued for the scheduler)
    out = run(str(BIN / "moomarkets"), "backfill", "jp_daily_quotes", "--from", str(D1), "--to", str(D2))
    assert f"{len(expected)} run(s) of jp_daily_quotes for trading days {D1}..{D2}" in out
    airflow_db_file = airflow_db / "airflow.db"
    import sqlite3

    with sqlite3.connect(airflow_db_file) as db:
        rows = db.execute(
            "SELECT data_interval_start, data_interval_end FROM dag_run WHERE dag_id = 'jp_daily_quotes'"
            " AND run_type = 'backfill' ORDER BY data_interval_start"
        ).fetchall()
    from pendulum import parse

    intervals = [Interval(parse(s), parse(e)) for s, e in rows]
    days = [d for i in intervals for d in market_dates(i, TOKYO, CLOSE)]
    assert [d for d in days if d in set(trading_days(D1, D2))] == trading_days(D1, D2)
    assert set(days) - set(trading_days(D1, D2)) == {dt.date(2026, 11, 14), dt.date(2026, 11, 15)}  # the weekend
    with psycopg.connect(warehouse_url):
        pass  # the warehouse was only read (config); the runs wait for a scheduler
