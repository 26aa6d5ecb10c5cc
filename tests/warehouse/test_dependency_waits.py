"""Dependency waits in the warehouse: why an upstream has not loaded a day (its failed, partial or
running run), which waits are current (not those of a finished run, nor those long past their
limit), and migration 0008's backfill of what older runs cover."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest
import yaml

from moomarkets.warehouse import config_store
from moomarkets.warehouse import dependencies as deps
from moomarkets.warehouse.db import connect

pytestmark = pytest.mark.integration

CONFIG = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true, config: {}}
job_groups:
  - {name: jp_daily_quotes, data_source: jquants, dataset: daily_quotes, schedule: "0 19 * * 1-5",
     timezone: Asia/Tokyo, parameters: {universe: all_listed}, is_enabled: true, upstream_timeout: 2h,
     depends_on: [jp_trading_calendar]}
  - {name: jp_trading_calendar, data_source: jquants, dataset: trading_calendar, schedule: "0 7 * * *",
     timezone: Asia/Tokyo, parameters: {days_ahead: 30}, is_enabled: true}
"""
DAY = date(2026, 11, 27)


@pytest.fixture
def url(warehouse_url):
    with connect(warehouse_url) as conn, conn.transaction():
        config_store.import_config(conn, yaml.safe_load(CONFIG))
    return warehouse_url


def add_run(url: str, run_id: str, status: str, first: date | None, last: date | None, *, error: str | None = None,
            total: int = 0, failed: int = 0, started: str = "now()", group: str = "jp_trading_calendar") -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO runs (group_name, dag_id, run_id, status, covers_from, covers_to, error, units_total,"
            f" units_failed, started_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, {started})",
            (group, group, run_id, status, first, last, error, total, failed),
        )


def problem(url: str) -> str | None:
    with connect(url) as conn:
        return deps.upstream_problem(conn, "jp_trading_calendar", DAY)


def test_the_reason_names_the_upstream_run_that_did_not_load_the_day(url):
    assert problem(url) is None  # never ran: nothing to say beyond "waiting"
    add_run(url, "scheduled__old", "failed", date(2026, 11, 1), date(2026, 11, 2), error="old trouble")
    assert problem(url) == "its run scheduled__old failed: old trouble"  # none covers the day: the latest
    add_run(url, "scheduled__2026-11-26T22:00:00+00:00", "failed", DAY, date(2026, 12, 26),
            error="\n  HTTP 503 from " + "x" * 300 + "\nTraceback ...", started="now() - interval '1 hour'")
    assert problem(url) == "its run scheduled__2026-11-26T22:00:00+00:00 failed: HTTP 503 from " + "x" * 186
    add_run(url, "manual__p", "partial", DAY, DAY, total=40, failed=2)
    assert problem(url) == "its run manual__p is partial: 2 of 40 units failed"
    add_run(url, "manual__r", "running", DAY, DAY)
    assert problem(url) == "its run manual__r is running"
    add_run(url, "scheduled__later", "failed", date(2026, 12, 1), date(2026, 12, 30), error="later")
    assert problem(url) == "its run manual__r is running"  # the latest run touching the day wins
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE job_groups SET is_enabled = false WHERE name = 'jp_trading_calendar'")
    assert problem(url) == "upstream job group 'jp_trading_calendar' is disabled"  # still comes first


def wait(url: str, run_id: str, *, since: str = "now()") -> None:
    with connect(url) as conn, conn.transaction():
        deps.start_wait(conn, dag_id="jp_daily_quotes", run_id=run_id, group_name="jp_daily_quotes",
                        upstream="jp_trading_calendar", trading_day=DAY, message="waiting")
        conn.execute(f"UPDATE dependency_waits SET since = {since} WHERE run_id = %s", (run_id,))


def current(url: str) -> list[str]:
    with connect(url) as conn:
        return [w["run_id"] for w in deps.current_waits(conn, "jp_daily_quotes")]


def test_current_waits_leave_out_stale_rows(url):
    wait(url, "fresh")
    wait(url, "old", since="now() - interval '2 hours 59 minutes'")  # limit 2h + 1h margin: still current
    wait(url, "stale", since="now() - interval '3 hours 1 minute'")
    wait(url, "finished")  # its run was failed elsewhere (e.g. a dagrun_timeout) after it began waiting
    add_run(url, "finished", "failed", DAY, DAY, group="jp_daily_quotes")
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE runs SET finished_at = now() WHERE run_id = 'finished'")
    wait(url, "cleared")  # an earlier try's finished run record does not hide the wait of a cleared run
    add_run(url, "cleared", "failed", DAY, DAY, group="jp_daily_quotes")
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE runs SET finished_at = now() - interval '1 hour' WHERE run_id = 'cleared'")
    assert sorted(current(url)) == ["cleared", "fresh", "old"]
    with connect(url) as conn, conn.transaction():
        assert deps.abandon_waits(conn, "jp_daily_quotes", "fresh") == 1
        assert conn.execute("SELECT status FROM dependency_waits WHERE run_id = 'fresh'").fetchone()["status"] \
            == "abandoned"
    assert sorted(current(url)) == ["cleared", "old"]


def test_migration_backfills_what_older_runs_cover_by_their_source(url):
    from alembic import command

    from moomarkets.warehouse import migrate

    cfg = migrate.alembic_config(url)
    command.downgrade(cfg, "0007")
    # a 19:00 Tokyo bars run: interval (Mon 10:00Z, Tue 10:00Z] loads Tuesday only (not Mon..Tue)
    mon, tue = datetime(2026, 11, 23, 10, tzinfo=timezone.utc), datetime(2026, 11, 24, 10, tzinfo=timezone.utc)
    with psycopg.connect(url) as conn:
        for group, run_id in (("jp_daily_quotes", "bars"), ("jp_trading_calendar", "cal"), ("ghost", "ghost")):
            start = mon - timedelta(hours=12) if group == "jp_trading_calendar" else mon  # calendar: 07:00 JST
            conn.execute(
                "INSERT INTO runs (group_name, dag_id, run_id, status, data_interval_start, data_interval_end)"
                " VALUES (%s, %s, %s, 'success', %s, %s)",
                (group, group, run_id, start, start + (tue - mon)),
            )
    command.upgrade(cfg, "head")
    with psycopg.connect(url) as conn:
        got = {r[0]: r[1:] for r in conn.execute("SELECT run_id, covers_from, covers_to FROM runs")}
    assert got["bars"] == (date(2026, 11, 24), date(2026, 11, 24))
    # the calendar run (Mon 07:00, Tue 07:00] JST loads Monday and the 30 days ahead it asks for
    assert got["cal"] == (date(2026, 11, 23), date(2026, 12, 23))
    assert got["ghost"] == (None, None)  # an unknown group covers nothing
    with psycopg.connect(url) as conn:  # the CHECK takes the new status
        conn.execute("INSERT INTO dependency_waits (dag_id, run_id, group_name, upstream, status)"
                     " VALUES ('d', 'r', 'g', 'u', 'abandoned')")
