"""``run_checks`` without Airflow: a run planned and loaded with the pipeline's own functions from
the local J-Quants fake into the real PostgreSQL, then checked. What the fake serves passes (a
split, the illiquid issue, a listing, a delisting); a planted bad row fails an error check (the
run's error list names it with examples) or is only recorded by a warn check; per-group config
changes severities and thresholds."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import psycopg
import pytest
import yaml

from moomarkets.pipeline import GroupPipeline
from moomarkets.pipeline import checks as data_checks
from moomarkets.pipeline import run as runner
from moomarkets.sources.base import Credentials, Interval
from moomarkets.warehouse import check_results
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse.db import connect

pytestmark = pytest.mark.integration

TOKYO = ZoneInfo("Asia/Tokyo")
KEY = "checks-test-key-2718"
CONFIG = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true,
     config: {rate_limit: 6000/minute, max_concurrency: 2}}
job_groups:
  - {name: jp_calendar, data_source: jquants, dataset: trading_calendar, schedule: "0 8 * * *",
     timezone: Asia/Tokyo, parameters: {days_ahead: 30}}
  - {name: jp_master, data_source: jquants, dataset: listed_info, schedule: "0 8 * * 1-5",
     timezone: Asia/Tokyo, parameters: {universe: all_listed}}
  - {name: jp_bars, data_source: jquants, dataset: daily_quotes, schedule: "0 19 * * 1-5",
     timezone: Asia/Tokyo, parameters: {universe: all_listed}}
  - {name: jp_watch, data_source: jquants, dataset: daily_quotes, schedule: "0 19 * * 1-5",
     timezone: Asia/Tokyo, parameters: {tickers: ["7203", "8035", "1999"],
                                        checks: {row_count_drop: {severity: error, max_drop: 0}}}}
"""


def interval(d1: tuple[int, int, int], d2: tuple[int, int, int], hour: int = 19) -> Interval:
    return Interval(datetime(*d1, hour, tzinfo=TOKYO), datetime(*d2, hour, tzinfo=TOKYO))


@pytest.fixture(scope="module")
def fake():
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    with running_fake(FakeConfig(api_key=KEY, page_size=200)) as (base_url, state):
        yield base_url, state


@pytest.fixture
def setup(warehouse_url, fake):
    base_url, _ = fake
    with connect(warehouse_url) as conn:
        store.import_config(conn, yaml.safe_load(CONFIG))
        pipes = {s.group.name: GroupPipeline.resolve(s) for s in store.read_specs(conn)}
    creds = Credentials(secret=KEY, host=base_url)

    def load(name: str, iv: Interval, run_id: str) -> None:
        pipe = pipes[name]
        for unit in runner.plan_units(pipe, iv, dag_id=name, run_id=run_id, url=warehouse_url, max_units=1024):
            runner.fetch_and_load(pipe, unit, dag_id=name, run_id=run_id, credentials=creds, url=warehouse_url)

    return pipes, load


def check(pipes, name: str, run_id: str, url: str) -> dict:
    return data_checks.run_checks(pipes[name], dag_id=name, run_id=run_id, url=url)


def test_what_the_fake_serves_passes_every_check(setup, warehouse_url):
    pipes, load = setup
    load("jp_calendar", interval((2026, 2, 20), (2026, 2, 21), 8), "cal")
    # Thu 26 Feb .. Tue 3 Mar (39990 delisted after the 27th) and 23 .. 31 Mar (285A0 listed on
    # 18 Mar, 80350 splits on the 30th), with the master loaded for each day as in production
    for name in ("jp_master", "jp_bars"):
        load(name, interval((2026, 2, 25), (2026, 3, 3)), "feb")
        load(name, interval((2026, 3, 20), (2026, 3, 31)), "mar")
    for run_id in ("feb", "mar"):
        for name in ("jp_master", "jp_bars"):
            summary = check(pipes, name, run_id, warehouse_url)
            assert summary["status"] == "passed" and not summary["warnings"], summary
    with connect(warehouse_url) as conn:
        results = check_results.run_results(conn, "jp_bars", "mar")
    assert {r["check_name"] for r in results} == {"price_sanity", "completeness", "adjusted_consistency",
                                                  "row_count_drop"}
    assert all(r["passed"] and r["checked"] > 0 for r in results)


def test_an_error_check_fails_the_run_with_examples_and_a_warn_check_only_records(setup, warehouse_url):
    pipes, load = setup
    load("jp_bars", interval((2026, 11, 16), (2026, 11, 18)), "r1")  # Tue 17, Wed 18
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("UPDATE daily_quotes SET low = high + 1, adj_low = adj_high + 1"
                     " WHERE code = '72030' AND date = '2026-11-18'")
        conn.execute("DELETE FROM daily_quotes WHERE date = '2026-11-18' AND code IN (SELECT code FROM daily_quotes"
                     " WHERE date = '2026-11-18' AND code <> '72030' ORDER BY code LIMIT 5)")
    summary = check(pipes, "jp_bars", "r1", warehouse_url)
    assert summary["status"] == "failed"
    by_name = {r["check_name"]: r for r in summary["results"]}
    assert not by_name["price_sanity"]["passed"] and not by_name["completeness"]["passed"]
    assert not by_name["row_count_drop"]["passed"] and by_name["row_count_drop"]["severity"] == "warn"
    assert by_name["adjusted_consistency"]["passed"]
    with connect(warehouse_url) as conn:
        errors = check_results.error_checks(conn, "jp_bars", "r1")
    assert sorted(summary["errors"]) == errors and len(errors) == 2
    assert errors[0].startswith("completeness (error): 5 of") and "e.g. " in errors[0]
    assert errors[1].startswith("price_sanity (error): 1 of") and "72030 2026-11-18 (low/high" in errors[1]
    assert any(w.startswith("row_count_drop (warn)") for w in summary["warnings"])

    # a rerun of the checks replaces the results, never adds
    check(pipes, "jp_bars", "r1", warehouse_url)
    with connect(warehouse_url) as conn:
        assert len(check_results.run_results(conn, "jp_bars", "r1")) == 4


def test_group_config_changes_severity_and_thresholds(setup, warehouse_url):
    pipes, load = setup
    load("jp_watch", interval((2026, 11, 16), (2026, 11, 18)), "w1")
    summary = check(pipes, "jp_watch", "w1", warehouse_url)
    assert summary["status"] == "passed", summary  # the illiquid 19990 has no-trade days: not a failure
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("DELETE FROM daily_quotes WHERE code = '80350' AND date = '2026-11-18'")
    summary = check(pipes, "jp_watch", "w1", warehouse_url)
    # row_count_drop is an error with max_drop 0 for this group; completeness expects the ticker too
    assert {e.split(" ")[0] for e in summary["errors"]} == {"row_count_drop", "completeness"}


def test_failed_units_are_not_checked_and_skipped_runs_are_not_checked(setup, warehouse_url):
    pipes, load = setup
    load("jp_bars", interval((2026, 11, 16), (2026, 11, 18)), "r2")
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("UPDATE run_units SET status = 'failed' WHERE unit_key = 'date:2026-11-18'")
        conn.execute("DELETE FROM daily_quotes WHERE date = '2026-11-18'")  # the failed unit wrote nothing
    assert check(pipes, "jp_bars", "r2", warehouse_url)["status"] == "passed"
    assert check(pipes, "jp_bars", "never-planned", warehouse_url)["status"] == "missing"
    with connect(warehouse_url) as conn, conn.transaction():
        from moomarkets.warehouse import runs

        runs.record_skipped(conn, group_name="jp_bars", dag_id="jp_bars", run_id="off", interval_start=None,
                            interval_end=None, reason="disabled")
    assert check(pipes, "jp_bars", "off", warehouse_url)["status"] == "skipped"
