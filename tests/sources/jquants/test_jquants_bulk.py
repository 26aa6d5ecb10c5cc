"""J-Quants bulk files as fetch units: the planner's choice, same rows as the API, fallbacks."""

from __future__ import annotations

import gzip
import logging
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from moomarkets.errors import ConfigError
from moomarkets.sources.base import Credentials, FetchUnit, Interval
from moomarkets.sources.jquants import JQuantsSource
from moomarkets.sources.jquants.bulk import BulkFormatError, key_month, parse_csv
from moomarkets.testing import jquants_data as fd
from moomarkets.testing.jquants_fake import FakeConfig, running_fake

TOKYO = ZoneInfo("Asia/Tokyo")
KEY = "fake-bulk-key"
ALL = {"universe": "all_listed"}


def iv(first: date, last: date) -> Interval:
    """The data interval whose runs load the trading days ``first``..``last``."""
    start = datetime.combine(first - timedelta(days=1), datetime.min.time(), TOKYO).replace(hour=19)
    return Interval(start, datetime.combine(last, datetime.min.time(), TOKYO).replace(hour=19))


def src(config=None, base: str | None = None) -> JQuantsSource:
    return JQuantsSource("jquants", {"plan": "light"} if config is None else config,
                         Credentials(secret=KEY, host=base))


def cal(a: date, b: date) -> list[date]:
    return fd.trading_days(a, b)


def plan(source: JQuantsSource, a: date, b: date, params=ALL, max_units: int = 1024):
    return source.plan("daily_quotes", params, iv(a, b), max_units=max_units, business_days=cal)


def fetch_all(source: JQuantsSource, units) -> tuple[list[dict], int]:
    rows, requests = [], 0
    for u in units:
        res = source.fetch("daily_quotes", FetchUnit.from_dict(u.to_dict()))  # through XCom's shape
        rows.extend(res.rows)
        requests += res.requests
    return sorted(rows, key=lambda r: (r["date"], r["code"])), requests


# -- planner -----------------------------------------------------------------------------------
def test_planner_chooses_bulk_only_when_it_costs_fewer_requests():
    s = src()
    assert [u.kind for u in plan(s, date(2026, 3, 2), date(2026, 3, 2))] == ["dates"]  # 1 request < 2
    assert [u.kind for u in plan(s, date(2026, 3, 2), date(2026, 3, 3))] == ["dates", "dates"]  # 2 == 2
    units = plan(s, date(2026, 3, 2), date(2026, 3, 4))  # 3 days by date > 1 list + 1 get
    assert [(u.kind, u.key) for u in units] == [("bulk", "bulk:2026-03")]
    assert units[0].params == {"dates": ["2026-03-02", "2026-03-03", "2026-03-04"], "months": ["2026-03"]}
    # the range's ends with few days stay by date; whole months in between are files
    units = plan(s, date(2026, 3, 30), date(2026, 5, 1))
    assert [u.key for u in units] == ["bulk:2026-04", "date:2026-03-30", "date:2026-03-31", "date:2026-05-01"]
    assert sum(len(u.params["dates"]) for u in units) == len(cal(date(2026, 3, 30), date(2026, 5, 1)))


def test_planner_keeps_by_date_where_bulk_is_not_allowed():
    a, b = date(2026, 1, 5), date(2026, 6, 30)
    for config in ({}, {"plan": "free"}, {"plan": "light", "bulk": "off"}):  # no plan = Free, like the rate
        assert {u.kind for u in plan(src(config), a, b)} == {"dates"}, config
    assert {u.kind for u in plan(src(), a, b, {**ALL, "plan": "by_date"})} == {"dates"}
    assert {u.kind for u in plan(src(), a, b, {"tickers": ["72030"]})} == {"codes"}
    s = src()
    assert {u.kind for u in s.plan("listed_info", ALL, iv(a, b), max_units=1024, business_days=cal)} == {"dates"}


def test_planner_respects_max_units_over_years():
    units = plan(src(), date(2021, 1, 4), date(2025, 12, 30), max_units=10)
    assert len(units) <= 10 and {u.kind for u in units} == {"bulk"}
    dates = [d for u in units for d in u.params["dates"]]
    assert dates == [d.isoformat() for d in cal(date(2021, 1, 4), date(2025, 12, 30))]
    assert sum(len(u.params["months"]) for u in units) == 60


def test_bulk_config_is_validated():
    assert JQuantsSource.validate_config({"plan": "light", "bulk": "off"})["bulk"] == "off"
    assert JQuantsSource.validate_config({"bulk": "auto"}) == {"bulk": "auto"}
    with pytest.raises(ConfigError, match="bulk must be one of auto, off"):
        JQuantsSource.validate_config({"bulk": "on"})


# -- fetching against the fake -----------------------------------------------------------------
def test_bulk_rows_equal_api_rows_every_column_and_cost_fewer_requests():
    a, b = date(2026, 1, 5), date(2026, 6, 30)
    with running_fake(FakeConfig(api_key=KEY, page_size=500)) as (base, state):
        bulk_units = plan(src(None, base), a, b)
        assert {u.kind for u in bulk_units} == {"bulk"} and len(bulk_units) == 6
        bulk_rows, bulk_requests = fetch_all(src(None, base), bulk_units)
        assert bulk_requests == state.count() == 12  # 1 list + 1 get per month; downloads are not API calls
        assert [k for k, status in state.bulk.downloads] == sorted(k for k, _ in state.bulk.downloads)
        state.reset()
        by_date = plan(src({"plan": "light", "bulk": "off"}, base), a, b)
        api_rows, api_requests = fetch_all(src({"plan": "light", "bulk": "off"}, base), by_date)
        assert api_requests == state.count() == len(cal(a, b)) == 119
    assert len(bulk_rows) == len(api_rows) > 0
    assert bulk_rows == api_rows  # every Dataset column, same types: the same upsert and checks


def test_plan_without_bulk_falls_back_to_the_api_with_the_same_rows(caplog):
    a, b = date(2026, 3, 2), date(2026, 3, 31)
    with running_fake(FakeConfig(api_key=KEY, bulk=False)) as (base, state):
        units = plan(src(None, base), a, b)
        assert [u.kind for u in units] == ["bulk"]
        with caplog.at_level(logging.WARNING, logger="moomarkets.sources.jquants.bulk"):
            rows, requests = fetch_all(src(None, base), units)
        assert "not included in the plan" in caplog.text and "via the API" in caplog.text
        assert state.requests[0][0] == "/bulk/list" and state.statuses[0] == 403
        assert requests == 1 + len(cal(a, b)) == state.count()
        api_rows, _ = fetch_all(src({"plan": "light", "bulk": "off"}, base), plan(src({"bulk": "off"}, base), a, b))
    assert rows == api_rows and rows


def test_expired_url_is_retried_with_a_fresh_get():
    a, b = date(2026, 3, 2), date(2026, 3, 31)
    with running_fake(FakeConfig(api_key=KEY)) as (base, state):
        state.bulk.expire_next(1)
        s = src(None, base)
        units = plan(s, a, b)
        rows, requests = fetch_all(s, units)
        assert [st for _, st in state.bulk.downloads] == [403, 200]
        assert state.count("/bulk/get") == 2 and requests == 3  # list + the expired get + a fresh get
        assert {r["date"] for r in rows} == {d.isoformat() for d in cal(a, b)}


def test_url_that_never_works_fails_the_unit_as_retryable():
    from moomarkets.errors import RetryableSourceError

    with running_fake(FakeConfig(api_key=KEY, bulk_url_ttl=-1)) as (base, state):
        units = plan(src(None, base), date(2026, 3, 2), date(2026, 3, 31))
        with pytest.raises(RetryableSourceError, match="fresh URLs"):
            fetch_all(src(None, base), units)
        assert state.count("/bulk/get") == 3


def test_dates_missing_from_the_files_are_loaded_via_the_api():
    # the fake's "today" is mid-month: the March file ends on the 18th; the later dates of a unit
    # (as a lagging file would leave them) go to the API, which has nothing for them either
    with running_fake(FakeConfig(api_key=KEY, today=date(2026, 3, 18))) as (base, state):
        days = [d.isoformat() for d in cal(date(2026, 3, 2), date(2026, 3, 31))]
        unit = FetchUnit("bulk:2026-03", "bulk", {"dates": days, "months": ["2026-03"]})
        res = src(None, base).fetch("daily_quotes", unit)
        late = [d for d in days if d > "2026-03-18"]
        assert state.count("/equities/bars/daily") == len(late)
        assert max(r["date"] for r in res.rows) == "2026-03-18"
        assert res.requests == 2 + len(late)


# -- file format -------------------------------------------------------------------------------
def test_key_month_reads_the_documented_key_shapes():
    assert key_month("equities/bars/daily/2026/03/bars_daily_20260301.csv.gz") == "2026-03"
    assert key_month("indices/bars/daily/historical/2024/indices_bars_daily_202403.csv.gz") == "2024-03"
    assert key_month("equities/bars/daily/2026/03/x.csv.gz") == "2026-03"
    assert key_month("weird.csv.gz") is None


def test_csv_with_v1_names_maps_and_a_missing_column_is_refused():
    header = ("Date,Code,Open,High,Low,Close,UpperLimit,LowerLimit,Volume,TurnoverValue,AdjustmentFactor,"
              "AdjustmentOpen,AdjustmentHigh,AdjustmentLow,AdjustmentClose,AdjustmentVolume")
    body = f"{header}\n2026-03-02,72030,1,2,0.5,1.5,0,1,100,150.5,1.0,,,,,\n"
    rows = parse_csv(gzip.compress(body.encode()), "daily_quotes")
    assert rows == [{"Date": "2026-03-02", "Code": "72030", "O": 1, "H": 2, "L": 0.5, "C": 1.5, "UL": "0", "LL": "1",
                     "Vo": 100, "Va": 150.5, "AdjFactor": 1.0, "AdjO": None, "AdjH": None, "AdjL": None,
                     "AdjC": None, "AdjVo": None}]
    with pytest.raises(BulkFormatError, match="AdjVo"):
        parse_csv(b"Date,Code,O,H,L,C,UL,LL,Vo,Va,AdjFactor,AdjO,AdjH,AdjL,AdjC\n", "daily_quotes")
