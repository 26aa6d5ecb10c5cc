"""The data checks' SQL on a real PostgreSQL: each check passes on what the fake J-Quants serves
(split, illiquid no-trade days, listings and delistings) and catches a planted bad row."""

from __future__ import annotations

from datetime import date

import pytest

from moomarkets.config.checks import Check, dataset_checks
from moomarkets.sources.base import Credentials
from moomarkets.sources.jquants.source import JQuantsSource
from moomarkets.testing import jquants_data as fd
from moomarkets.warehouse import check_results, checks, loads
from moomarkets.warehouse.datasets import get_dataset
from moomarkets.warehouse.db import connect

pytestmark = pytest.mark.integration

SRC = JQuantsSource("jquants", {}, Credentials())
DQ = get_dataset("daily_quotes")
# Thu 26 Feb .. Tue 3 Mar 2026: 39990's last trading day is Fri 27 Feb
AROUND_DELISTING = [date(2026, 2, 26), date(2026, 2, 27), date(2026, 3, 2), date(2026, 3, 3)]
# Thu 26 Mar .. Tue 31 Mar 2026: 80350 splits 1:2 effective Mon 30 Mar (AdjFactor 0.5)
AROUND_SPLIT = [date(2026, 3, 26), date(2026, 3, 27), date(2026, 3, 30), date(2026, 3, 31)]


def load_bars(url: str, days: list[date], *, as_of: date | None = None) -> None:
    rows = [SRC.normalize_daily_quotes(r) for d in days for r in fd.daily_bars_for_date(d, as_of=as_of)]
    with connect(url) as conn, conn.transaction():
        loads.upsert_rows(conn, DQ, rows)


def load_master(url: str, days: list[date]) -> None:
    rows = [SRC.normalize_listed_info(r) for d in days for r in fd.master_rows(d)]
    with connect(url) as conn, conn.transaction():
        loads.upsert_rows(conn, get_dataset("listed_info"), rows)


def load_calendar(url: str, start: date, end: date) -> None:
    rows = [SRC.normalize_trading_calendar(r) for r in fd.calendar_rows(start, end)]
    with connect(url) as conn, conn.transaction():
        loads.upsert_rows(conn, get_dataset("trading_calendar"), rows)


def check(url: str, name: str, days: list[date], *, dataset=DQ, codes=None, ranges=(), **thresholds) -> dict:
    (decl,) = [c for c in dataset_checks(dataset.name) if c.name == name]
    decl = Check(decl.name, decl.severity, {**decl.thresholds, **thresholds}, decl.kinds)
    scope = checks.Scope("jquants", days=set(days), ranges=list(ranges))
    with connect(url) as conn, conn.transaction():
        (result,) = checks.run_checks(conn, dataset=dataset, source="jquants", kind="jquants", scope=scope,
                                      checks=[decl], codes=codes)
    return result


def execute(url: str, statement: str, *params) -> None:
    with connect(url) as conn, conn.transaction():
        conn.execute(statement, params)


ALL = ("price_sanity", "completeness", "adjusted_consistency", "row_count_drop")


@pytest.mark.parametrize("days", [AROUND_DELISTING, AROUND_SPLIT], ids=["delisting", "split"])
def test_every_check_passes_on_what_the_fake_serves(warehouse_url, days):
    load_calendar(warehouse_url, date(2026, 2, 1), date(2026, 4, 30))
    load_master(warehouse_url, days)
    load_bars(warehouse_url, days)
    for name in ALL:
        result = check(warehouse_url, name, days[1:])  # the first day is the "previous business day"
        assert result["passed"] and result["failed"] == 0, result["message"]
        assert result["checked"] > 0, name


def test_the_illiquid_issue_has_no_trade_days_and_they_pass(warehouse_url):
    days = fd.trading_days(date(2026, 1, 5), date(2026, 2, 27))
    no_trade = [d for d in days if fd.daily_bars_for_code(fd.ILLIQUID_CODE, d, d)[0]["C"] is None]
    assert no_trade  # the fake really has some
    load_bars(warehouse_url, days)
    for name in ("price_sanity", "adjusted_consistency"):
        assert check(warehouse_url, name, days)["passed"]


def test_split_rows_loaded_before_the_split_existed_check_against_the_later_factor(warehouse_url):
    # the pre-split rows as the source served them on 27 Mar (adj == raw), then the split day:
    # loading 27 Mar again as served today (adj = raw x 0.5) is consistent with the stored factor
    load_bars(warehouse_url, AROUND_SPLIT[:2], as_of=date(2026, 3, 27))
    load_bars(warehouse_url, AROUND_SPLIT[2:])
    load_bars(warehouse_url, AROUND_SPLIT[:2])  # restated
    assert check(warehouse_url, "adjusted_consistency", AROUND_SPLIT)["passed"]


def test_price_sanity_catches_each_planted_bad_row(warehouse_url):
    day = date(2026, 3, 3)
    load_bars(warehouse_url, [day])
    plants = {
        "72030": "UPDATE daily_quotes SET low = high + 1 WHERE code = %s",
        "13010": "UPDATE daily_quotes SET open = -5, low = -5 WHERE code = %s",
        "67580": "UPDATE daily_quotes SET volume = -100 WHERE code = %s",
        "83060": "UPDATE daily_quotes SET high = NULL WHERE code = %s",
        "80580": "UPDATE daily_quotes SET volume = NULL WHERE code = %s",
    }
    for code, stmt in plants.items():
        execute(warehouse_url, stmt, code)
    result = check(warehouse_url, "price_sanity", [day])
    assert not result["passed"] and result["failed"] == len(plants)
    assert {s["code"] for s in result["sample"]} == set(plants)
    assert result["failed_days"] == [day]
    assert "price_sanity (error): 5 of" in result["message"] and "72030 2026-03-03" in result["message"]


def test_completeness_catches_a_missing_issue_and_a_row_on_a_closed_day(warehouse_url):
    days = [date(2026, 3, 18), date(2026, 3, 19)]  # 285A0 lists on the 18th
    load_calendar(warehouse_url, date(2026, 3, 1), date(2026, 3, 31))
    load_master(warehouse_url, days)
    load_bars(warehouse_url, days)
    assert check(warehouse_url, "completeness", days)["passed"]
    execute(warehouse_url, "DELETE FROM daily_quotes WHERE code = '72030' AND date = '2026-03-19'")
    execute(warehouse_url, "INSERT INTO daily_quotes (source, code, date, open, high, low, close, volume)"
                           " VALUES ('jquants', '72030', '2026-03-20', 1, 1, 1, 1, 100)")  # Vernal Equinox
    result = check(warehouse_url, "completeness", [], ranges=[("72030", date(2026, 3, 18), date(2026, 3, 20))])
    assert not result["passed"]
    whys = {(s["code"], s["date"]): s["why"] for s in result["sample"]}
    assert whys[("72030", "2026-03-19")] == "missing, listed per listed_info"
    assert whys[("72030", "2026-03-20")] == "row on a closed day"
    # max_missing tolerates them (recorded, not failed)
    assert check(warehouse_url, "completeness", [], ranges=[("72030", date(2026, 3, 18), date(2026, 3, 20))],
                 max_missing=2)["passed"]


def test_completeness_without_listed_info_compares_with_the_previous_business_day(warehouse_url):
    load_bars(warehouse_url, AROUND_DELISTING)
    # no master: 39990 (delisted after the 27th) looks missing on Mon 2 Mar; new listings never do
    result = check(warehouse_url, "completeness", AROUND_DELISTING[2:])
    assert [(s["code"], s["date"]) for s in result["sample"]] == [("39990", "2026-03-02")]
    assert result["sample"][0]["why"] == "missing, listed per previous day 2026-02-27"
    # a master loaded for a later day tells the delisting apart
    load_master(warehouse_url, [date(2026, 3, 4)])
    assert check(warehouse_url, "completeness", AROUND_DELISTING[2:])["passed"]
    # a ticker group only expects its tickers
    execute(warehouse_url, "DELETE FROM daily_quotes WHERE code = '13010' AND date = '2026-03-03'")
    assert check(warehouse_url, "completeness", [], codes=["72030"],
                 ranges=[("72030", date(2026, 3, 2), date(2026, 3, 3))])["passed"]
    assert not check(warehouse_url, "completeness", AROUND_DELISTING[2:])["passed"]


def test_adjusted_consistency_catches_a_wrong_adjusted_price_and_a_missing_factor(warehouse_url):
    load_bars(warehouse_url, AROUND_SPLIT)
    assert check(warehouse_url, "adjusted_consistency", AROUND_SPLIT)["passed"]
    execute(warehouse_url, "UPDATE daily_quotes SET adj_open = adj_open + 1 WHERE code = '72030' AND date = '2026-03-26'")
    # the split factor "lost": the pre-split adjusted prices no longer match the later factors
    execute(warehouse_url, "UPDATE daily_quotes SET adjustment_factor = 1 WHERE code = '80350' AND date = '2026-03-30'")
    result = check(warehouse_url, "adjusted_consistency", AROUND_SPLIT)
    got = {(s["code"], s["date"]): s["why"] for s in result["sample"]}
    assert got[("72030", "2026-03-26")] == "adj_* do not share one factor"
    assert got[("80350", "2026-03-27")].startswith("adj_close is not close x the later factors")
    assert ("80350", "2026-03-26") not in got  # its next row (27th) carries the same basis
    assert result["failed"] == 2


def test_row_count_drop_against_the_previous_business_day(warehouse_url):
    load_bars(warehouse_url, AROUND_SPLIT[:2])
    execute(warehouse_url, "DELETE FROM daily_quotes WHERE date = '2026-03-27' AND code IN "
                           "(SELECT code FROM daily_quotes WHERE date = '2026-03-27' ORDER BY code LIMIT 5)")
    result = check(warehouse_url, "row_count_drop", [date(2026, 3, 27)])
    assert not result["passed"] and result["failed_days"] == [date(2026, 3, 27)]
    assert result["sample"][0]["previous_day"] == "2026-03-26"
    assert check(warehouse_url, "row_count_drop", [date(2026, 3, 27)], max_drop=0.2)["passed"]


def test_index_quotes_checks(warehouse_url):
    ds = get_dataset("index_quotes")
    days = AROUND_SPLIT
    rows = [SRC.normalize_index_quotes(r) for d in days for r in fd.index_bars(None, d, d)]
    with connect(warehouse_url) as conn, conn.transaction():
        loads.upsert_rows(conn, ds, rows)
    for name in ("price_sanity", "completeness", "row_count_drop"):
        assert check(warehouse_url, name, days[1:], dataset=ds)["passed"], name
    execute(warehouse_url, "DELETE FROM index_quotes WHERE code = '0028' AND date = '2026-03-31'")
    execute(warehouse_url, "UPDATE index_quotes SET high = low - 1 WHERE code = '0000' AND date = '2026-03-30'")
    assert check(warehouse_url, "completeness", days[1:], dataset=ds)["failed"] == 1
    assert check(warehouse_url, "price_sanity", days[1:], dataset=ds)["failed"] == 1


def test_results_are_saved_replaced_on_rerun_and_error_checks_name_them(warehouse_url):
    day = date(2026, 3, 3)
    load_bars(warehouse_url, [day])
    execute(warehouse_url, "UPDATE daily_quotes SET low = high + 1 WHERE code = '72030'")
    result = check(warehouse_url, "price_sanity", [day])
    warn = {**check(warehouse_url, "row_count_drop", [day]), "severity": "warn"}
    with connect(warehouse_url) as conn, conn.transaction():
        for _ in range(2):
            check_results.save_results(conn, group_name="g", dag_id="g", run_id="r1", dataset="daily_quotes",
                                results=[result, warn])
    with connect(warehouse_url) as conn:
        assert check_results.error_checks(conn, "g", "r1") == [result["message"]]
        assert len(check_results.run_results(conn, "g", "r1")) == 2
        assert [r["check_name"] for r in check_results.latest_results(conn, "g")] == ["price_sanity", "row_count_drop"]
        assert check_results.error_checks(conn, "g", "other") == []
