"""Every J-Quants dataset end to end, without Airflow: plan and fetch through ``JQuantsSource``
against the in-process fake v2 server (real HTTP, small pages), load with ``loads.upsert_rows``
into the real PostgreSQL, twice. The expected rows come from ``moomarkets.testing.jquants_data`` (what the fake serves),
not from the source under test. Also: business days come from the ``trading_calendar`` table."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
import yaml

from moomarkets.pipeline import GroupPipeline
from moomarkets.pipeline import run as runner
from moomarkets.warehouse import loads
from moomarkets.warehouse import config_store as store
from moomarkets.warehouse.datasets import get_dataset
from moomarkets.warehouse.db import connect
from moomarkets.sources.base import Credentials, Interval
from moomarkets.testing import jquants_data as fd
from moomarkets.sources.jquants.source import JQuantsSource

pytestmark = pytest.mark.integration

TOKYO = ZoneInfo("Asia/Tokyo")
KEY = "datasets-test-key-4711"
PAGE = 20  # rows per page: the whole-market queries span several pages


def tokyo(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=TOKYO)


def weekdays(a: date, b: date) -> list[date]:
    return [a + timedelta(days=i) for i in range((b - a).days + 1) if (a + timedelta(days=i)).weekday() < 5]


def _same_day_pair_2026() -> date:
    days = Counter(r["DiscDate"] for r in fd.fins_summary_rows(code=fd.SAME_DAY_CODE))
    return min(date.fromisoformat(d) for d, n in days.items() if n > 1 and d.startswith("2026"))


FIN_DAY = _same_day_pair_2026()  # 72030 publishes its 2Q results and a forecast revision that day
WEEK = (date(2026, 11, 16), date(2026, 11, 20))  # Mon..Fri, no holiday

# dataset: (parameters, interval, expected keys as the fake serves them)
CASES = {
    "listed_info": (
        {"universe": "all_listed"},
        Interval(tokyo(2026, 11, 15, 19), tokyo(2026, 11, 20, 19)),
        lambda: {(r["Code"], r["Date"]) for d in weekdays(*WEEK) for r in fd.master_rows(d)},
    ),
    "daily_quotes": (
        {"universe": "all_listed"},
        Interval(tokyo(2026, 11, 15, 19), tokyo(2026, 11, 20, 19)),
        lambda: {(r["Code"], r["Date"]) for d in weekdays(*WEEK) for r in fd.daily_bars_for_date(d)},
    ),
    "fin_summary": (
        {"universe": "all_listed"},
        # disclosures are complete at day end: (day-2 00:00, day+1 00:00] loads day-2 .. day
        Interval(tokyo(FIN_DAY.year, FIN_DAY.month, FIN_DAY.day) - timedelta(days=2),
                 tokyo(FIN_DAY.year, FIN_DAY.month, FIN_DAY.day) + timedelta(days=1)),
        lambda: {(r["DiscNo"],) for d in weekdays(FIN_DAY - timedelta(days=2), FIN_DAY)
                 for r in fd.fins_summary_rows(day=d)},
    ),
    "trading_calendar": (
        {"days_ahead": 60},
        Interval(tokyo(2026, 11, 15, 19), tokyo(2026, 11, 20, 19)),
        lambda: {(r["Date"],) for r in fd.calendar_rows(date(2026, 11, 16), date(2026, 11, 20) + timedelta(days=60))},
    ),
    "index_quotes": (
        {"universe": "all_indices"},
        Interval(tokyo(2026, 11, 15, 19), tokyo(2026, 11, 20, 19)),
        lambda: {(r["Code"], r["Date"]) for d in weekdays(*WEEK) for r in fd.index_bars(None, d, d)},
    ),
}


@pytest.fixture(scope="module")
def fake():
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    with running_fake(FakeConfig(api_key=KEY, page_size=PAGE)) as (url, state):
        yield url, state


def source(url: str) -> JQuantsSource:
    return JQuantsSource("jquants", {}, Credentials(secret=KEY, host=url))


def fetch_all(url: str, dataset: str) -> tuple[list[dict], int]:
    params, interval, _ = CASES[dataset]
    src = source(url)
    units = src.plan(dataset, src.validate_parameters(dataset, params), interval, max_units=64)
    assert units
    rows, requests = [], 0
    for unit in units:
        result = src.fetch(dataset, unit)
        rows += result.rows
        requests += result.requests
    return rows, requests


def table_rows(url: str, dataset: str) -> list[tuple]:
    ds = get_dataset(dataset)
    cols = ", ".join((*ds.key, *ds.value_columns, "loaded_at"))
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT {cols} FROM {ds.table} ORDER BY {', '.join(ds.key)}").fetchall()


def as_key(dataset: str, row: tuple) -> tuple:
    """A table row's key without ``source``, as strings (dates ISO), to compare with the fake's."""
    n = len(get_dataset(dataset).key)
    return tuple(v.isoformat() if isinstance(v, date) else str(v) for v in row[1:n])


@pytest.mark.parametrize("dataset", sorted(CASES))
def test_dataset_loads_exactly_what_the_fake_served_and_reload_changes_nothing(warehouse_url, fake, dataset):
    url, state = fake
    ds = get_dataset(dataset)
    expected = CASES[dataset][2]()
    assert len(expected) > PAGE or dataset in ("index_quotes", "fin_summary")  # paging exercised where it can be

    state.reset()
    rows, requests = fetch_all(url, dataset)
    assert requests == state.count() and set(state.statuses) == {200}
    assert len(rows) == len(expected)  # the source neither drops nor duplicates a served row
    with psycopg.connect(warehouse_url) as conn, conn.transaction():
        assert loads.upsert_rows(conn, ds, rows) == len(expected)
    first = table_rows(warehouse_url, dataset)
    assert {as_key(dataset, r) for r in first} == expected
    assert len(first) == len(expected) and all(r[0] == "jquants" for r in first)

    # a rerun of the same interval: fetched again, loaded again, nothing inserted or rewritten
    again, _ = fetch_all(url, dataset)
    assert state.count() == 2 * requests
    with psycopg.connect(warehouse_url) as conn, conn.transaction():
        assert loads.upsert_rows(conn, ds, again) == 0
    assert table_rows(warehouse_url, dataset) == first  # loaded_at included


def test_fin_summary_keeps_both_same_day_disclosures(warehouse_url, fake):
    url, _ = fake
    rows, _ = fetch_all(url, "fin_summary")
    with psycopg.connect(warehouse_url) as conn:
        with conn.transaction():
            loads.upsert_rows(conn, get_dataset("fin_summary"), rows)
        stored = conn.execute(
            "SELECT disclosure_number, document_type, disclosed_time, payload->>'FSales' FROM fin_summary"
            " WHERE code = %s AND disclosed_date = %s ORDER BY disclosure_number",
            (fd.SAME_DAY_CODE, FIN_DAY),
        ).fetchall()
    served = [r for r in fd.fins_summary_rows(code=fd.SAME_DAY_CODE, day=FIN_DAY)]
    assert len(served) == 2
    assert stored == sorted((r["DiscNo"], r["DocType"], r["DiscTime"], r["FSales"]) for r in served)
    assert {s[1] for s in stored} == {"2QFinancialStatements_Consolidated_JP", "EarnForecastRevision"}


def test_listed_info_tells_stocks_from_etfs(warehouse_url, fake):
    url, _ = fake
    rows, _ = fetch_all(url, "listed_info")
    with psycopg.connect(warehouse_url) as conn:
        with conn.transaction():
            loads.upsert_rows(conn, get_dataset("listed_info"), rows)
        stored = dict(conn.execute(
            "SELECT code, (product_category, product_category_name) FROM listed_info WHERE date = %s",
            (WEEK[0],),
        ).fetchall())
    served = {r["Code"]: r["ProdCat"] for r in fd.master_rows(WEEK[0])}
    assert {code: cat for code, (cat, _) in stored.items()} == served
    assert stored[fd.ETF_CODE] == ("014", "ETFs")
    assert stored[fd.SAME_DAY_CODE] == ("011", "Domestic Stocks")
    assert {cat for cat, _ in stored.values()} == {"011", "014"}


def test_index_group_on_a_plan_without_indices_fails_fast_with_a_clear_403():
    from moomarkets.errors import PlanNotCoveredError
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    free = FakeConfig(api_key=KEY, plan_endpoints={"/equities/master", "/equities/bars/daily", "/fins/summary",
                                                   "/markets/calendar"})
    with running_fake(free) as (url, state):
        src = source(url)
        (unit, *_) = src.plan("index_quotes", {"tickers": ["0000"]}, CASES["index_quotes"][1], max_units=8)
        with pytest.raises(PlanNotCoveredError) as ei:
            src.fetch("index_quotes", unit)
        assert state.statuses == [403]  # not retried
        assert "plan does not cover" in str(ei.value) and KEY not in str(ei.value)
        assert not ei.value.retryable


# -- business days come from the trading_calendar table ------------------------------------------
GROUP = """
data_sources:
  - {code: jquants, name: J-Quants, kind: jquants, conn_id: jquants_default, is_active: true,
     config: {rate_limit: 600/minute}}
job_groups:
  - {name: jp_bars, data_source: jquants, dataset: daily_quotes, schedule: "0 19 * * 5",
     timezone: Asia/Tokyo, parameters: {universe: all_listed}, is_enabled: true}
"""


def test_runner_plans_business_days_from_the_calendar_table(warehouse_url, fake):
    url, _ = fake
    with connect(warehouse_url) as conn:
        store.import_config(conn, yaml.safe_load(GROUP))
        (spec,) = store.read_specs(conn, only="jp_bars")
    week1 = Interval(tokyo(2026, 11, 13, 19), tokyo(2026, 11, 20, 19))  # Mon 16 .. Fri 20
    week2 = Interval(tokyo(2026, 11, 20, 19), tokyo(2026, 11, 27, 19))  # Mon 23 (holiday) .. Fri 27

    def planned(interval: Interval, run_id: str) -> list[str]:
        units = runner.plan_units(GroupPipeline.resolve(spec), interval, dag_id="jp_bars", run_id=run_id, url=warehouse_url, max_units=64)
        return [d for u in units for d in u["params"]["dates"]]

    # no calendar loaded yet: every weekday, the 23rd included
    assert planned(week2, "r0") == [f"2026-11-{d}" for d in range(23, 28)]

    # load the calendar the way its group does (from the fake), then mark two days by hand:
    # Wed 18 closed (a day the fake calls a business day: only the table can say so), Thu 19 half day
    cal = source(url)
    rows = [r for u in cal.plan("trading_calendar", {}, week1, max_units=8) for r in cal.fetch("trading_calendar", u).rows]
    with psycopg.connect(warehouse_url) as conn, conn.transaction():
        loads.upsert_rows(conn, get_dataset("trading_calendar"), rows)
        conn.execute("UPDATE trading_calendar SET hol_div = 0 WHERE date = '2026-11-18'")
        conn.execute("UPDATE trading_calendar SET hol_div = 2 WHERE date = '2026-11-19'")
        assert conn.execute("SELECT hol_div FROM trading_calendar WHERE date = '2026-11-23'").fetchone() == (3,)

    assert planned(week1, "r1") == ["2026-11-16", "2026-11-17", "2026-11-19", "2026-11-20"]
    assert planned(week2, "r2") == [f"2026-11-{d}" for d in range(24, 28)]  # Labour Thanksgiving Day skipped
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("SELECT units_total FROM runs WHERE run_id = 'r2'").fetchone() == (4,)

    # a calendar that does not cover the whole interval is not trusted: back to weekdays
    with psycopg.connect(warehouse_url) as conn, conn.transaction():
        conn.execute("DELETE FROM trading_calendar WHERE date = '2026-11-17'")
    assert planned(week1, "r3") == [f"2026-11-{d}" for d in range(16, 21)]
