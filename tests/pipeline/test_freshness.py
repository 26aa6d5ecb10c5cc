"""Freshness of a job group: the last completely loaded trading day against the one expected by
now, at fixed moments (weekend, a holiday in the calendar table, before and after the grace)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from moomarkets.pipeline.freshness import group_freshness
from moomarkets.warehouse import config_store
from moomarkets.warehouse.db import connect

pytestmark = pytest.mark.integration

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
CONFIG = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default}
  - {code: yahoo, name: Yahoo, kind: yfinance, conn_id: yfinance_default}
job_groups:
  - {name: jp_quotes, data_source: jquants, dataset: daily_quotes, schedule: "0 19 * * 1-5",
     timezone: Asia/Tokyo, parameters: {universe: all_listed}}
  - {name: jp_calendar, data_source: jquants, dataset: trading_calendar, schedule: "0 7 * * *",
     timezone: Asia/Tokyo, parameters: {days_ahead: 370}}
  - {name: us_quotes, data_source: yahoo, dataset: daily_quotes, schedule: "30 17 * * 1-5",
     timezone: America/New_York, parameters: {tickers: [AAPL, MSFT]}}
"""


@pytest.fixture
def conn(warehouse_url):
    with connect(warehouse_url) as c:
        config_store.import_config(c, yaml.safe_load(CONFIG))
    with connect(warehouse_url, autocommit=True) as c:
        # the groups exist since January: the fixed moments below are after their creation
        c.execute("UPDATE job_groups SET created_at = '2026-01-01T00:00:00Z'")
        yield c


def spec(conn, name):
    return next(s for s in config_store.read_specs(conn) if s.group.name == name)


def loaded(conn, group: str, covers_to: date, status: str = "success", since: date = date(2026, 10, 1)) -> None:
    """A run of ``group`` covering ``since`` .. ``covers_to`` (by default: everything up to ``covers_to``)."""
    conn.execute(
        "INSERT INTO runs (group_name, dag_id, run_id, status, covers_from, covers_to) VALUES (%s, %s, %s, %s, %s, %s)",
        (group, group, f"run_{since}_{covers_to}_{status}", status, since, covers_to),
    )


def at(y, m, d, hh, mm=0, tz=TOKYO) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=tz)


def test_weekend_expects_friday(conn):
    # Sun 2026-11-22: Friday's bars came with Friday's 19:00 run; nothing more is due
    loaded(conn, "jp_quotes", date(2026, 11, 19))
    loaded(conn, "jp_quotes", date(2026, 11, 20), status="failed")  # a failed run is not a complete load
    f = group_freshness(conn, spec(conn, "jp_quotes"), now=at(2026, 11, 22, 12))
    assert (f.group, f.last_complete, f.expected, f.late) == ("jp_quotes", date(2026, 11, 19), date(2026, 11, 20), True)
    assert f.due_at == at(2026, 11, 20, 19) and f.missing == [date(2026, 11, 20)]
    loaded(conn, "jp_quotes", date(2026, 11, 20))
    f = group_freshness(conn, spec(conn, "jp_quotes"), now=at(2026, 11, 22, 12))
    assert (f.last_complete, f.expected, f.late) == (date(2026, 11, 20), date(2026, 11, 20), False)


def test_holiday_in_the_calendar_table_is_not_expected(conn):
    # Mon 2026-11-23 is Labor Thanksgiving Day. Without a calendar Monday counts (a weekday) ...
    loaded(conn, "jp_quotes", date(2026, 11, 20))
    now = at(2026, 11, 24, 12)  # Tuesday noon: Tuesday's run is still ahead
    f = group_freshness(conn, spec(conn, "jp_quotes"), now=now)
    assert (f.expected, f.late) == (date(2026, 11, 23), True)
    # ... with the calendar loaded it is a holiday, and Friday is the last expected day
    days = [date(2026, 10, 1) + timedelta(days=i) for i in range(92)]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO trading_calendar (source, date, hol_div) VALUES ('jquants', %s, %s)",
            [(d, 0 if d.weekday() >= 5 or d == date(2026, 11, 23) else 1) for d in days],
        )
    f = group_freshness(conn, spec(conn, "jp_quotes"), now=now)
    assert (f.last_complete, f.expected, f.late) == (date(2026, 11, 20), date(2026, 11, 20), False)


def test_grace_delays_lateness(conn):
    loaded(conn, "jp_quotes", date(2026, 11, 19))
    sq = spec(conn, "jp_quotes")
    # Fri 19:30: Friday's run started at 19:00. Without grace Friday is expected (late) ...
    f = group_freshness(conn, sq, now=at(2026, 11, 20, 19, 30))
    assert (f.expected, f.late, f.due_at) == (date(2026, 11, 20), True, at(2026, 11, 20, 19))
    # ... with an hour's grace only Thursday is, which is loaded
    f = group_freshness(conn, sq, now=at(2026, 11, 20, 19, 30), grace=timedelta(hours=1))
    assert (f.expected, f.late) == (date(2026, 11, 19), False)
    f = group_freshness(conn, sq, now=at(2026, 11, 20, 20, 1), grace=timedelta(hours=1))
    assert (f.expected, f.late, f.due_at) == (date(2026, 11, 20), True, at(2026, 11, 20, 20))


def test_never_loaded_is_late_and_calendar_days_ahead_are_capped(conn):
    f = group_freshness(conn, spec(conn, "jp_quotes"), now=at(2026, 11, 20, 12))
    assert (f.last_complete, f.expected, f.late) == (None, date(2026, 11, 19), True)
    # every weekday due in the lookback window (21 days back: from Fri 2026-10-30) is missing
    weekdays = [date(2026, 10, 30) + timedelta(days=i) for i in range(21)]
    assert f.missing == [d for d in weekdays if d.weekday() < 5] and len(f.missing) == 15
    assert f.deadlines[date(2026, 10, 30)] == at(2026, 10, 30, 19)
    # a calendar run loads the year ahead; only days up to today count as loaded
    loaded(conn, "jp_calendar", date(2027, 11, 25))
    f = group_freshness(conn, spec(conn, "jp_calendar"), now=at(2026, 11, 20, 12))
    assert (f.last_complete, f.expected, f.late) == (date(2026, 11, 20), date(2026, 11, 19), False)


def test_yahoo_uses_the_exchange_calendar(conn):
    # Thu 2026-11-26 is Thanksgiving (NYSE closed): on Friday morning Wednesday is the last expected day
    loaded(conn, "us_quotes", date(2026, 11, 25))
    f = group_freshness(conn, spec(conn, "us_quotes"), now=at(2026, 11, 27, 9, tz=NEW_YORK))
    assert (f.expected, f.late, f.due_at) == (date(2026, 11, 25), False, at(2026, 11, 25, 17, 30, tz=NEW_YORK))


def test_source_less_group_is_never_late(conn):
    s = spec(conn, "jp_quotes")
    s.source = None
    assert group_freshness(conn, s, now=at(2026, 11, 20, 12)).late is False



def test_a_new_group_is_not_late_for_days_before_it_existed(conn):
    # created Mon 2026-11-16 20:00 Tokyo, after that day's 19:00 run: its DAG does not catch up, so
    # Monday was never due; Tuesday's bars are, from Tuesday 19:00
    conn.execute("UPDATE job_groups SET created_at = %s WHERE name = 'jp_quotes'", (at(2026, 11, 16, 20),))
    before = group_freshness(conn, spec(conn, "jp_quotes"), now=at(2026, 11, 17, 12))
    assert (before.expected, before.late) == (None, False)
    after = group_freshness(conn, spec(conn, "jp_quotes"), now=at(2026, 11, 17, 19, 30))
    assert (after.expected, after.late) == (date(2026, 11, 17), True)


def test_a_failed_day_stays_missing_after_a_later_day_loaded(conn):
    # loaded through Fri 2026-11-13; Monday's run failed, Tuesday's succeeded: Monday is still missing
    loaded(conn, "jp_quotes", date(2026, 11, 13))
    loaded(conn, "jp_quotes", date(2026, 11, 16), status="failed", since=date(2026, 11, 16))
    loaded(conn, "jp_quotes", date(2026, 11, 17), since=date(2026, 11, 17))
    f = group_freshness(conn, spec(conn, "jp_quotes"), now=at(2026, 11, 18, 12))  # Wednesday's run is ahead
    assert (f.last_complete, f.expected, f.late) == (date(2026, 11, 17), date(2026, 11, 17), True)
    assert f.missing == [date(2026, 11, 16)] and f.deadlines == {date(2026, 11, 16): at(2026, 11, 16, 19)}
    assert f.due_at == at(2026, 11, 17, 19)
    # a backfill of Monday closes the gap
    loaded(conn, "jp_quotes", date(2026, 11, 16), since=date(2026, 11, 16))
    f = group_freshness(conn, spec(conn, "jp_quotes"), now=at(2026, 11, 18, 12))
    assert (f.missing, f.late) == ([], False)
