"""Interval-to-dates semantics and the J-Quants cheapest-plan choice."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from moomarkets.sources.base import Credentials, Interval, market_dates
from moomarkets.sources.jquants import JQuantsSource

TOKYO = ZoneInfo("Asia/Tokyo")


def iv(a: datetime, b: datetime) -> Interval:
    return Interval(a.replace(tzinfo=TOKYO), b.replace(tzinfo=TOKYO))


def test_interval_loads_the_day_that_closed_in_it():
    # (Thu 19:00, Fri 19:00] -> Friday; (Fri 19:00, Mon 19:00] -> Sat, Sun, Mon closes -> Mon after weekday filter
    assert market_dates(iv(datetime(2026, 11, 19, 19), datetime(2026, 11, 20, 19)), "Asia/Tokyo", time(15, 30)) == [
        date(2026, 11, 20)
    ]
    weekend = market_dates(iv(datetime(2026, 11, 20, 19), datetime(2026, 11, 23, 19)), "Asia/Tokyo", time(15, 30))
    assert weekend == [date(2026, 11, 21), date(2026, 11, 22), date(2026, 11, 23)]


def test_interval_in_other_timezone():
    utc = ZoneInfo("UTC")
    # midnight-to-midnight UTC covers 09:00 Tokyo to 09:00 Tokyo next day: that day's 15:30 close
    days = market_dates(
        Interval(datetime(2026, 11, 18, tzinfo=utc), datetime(2026, 11, 19, tzinfo=utc)), "Asia/Tokyo", time(15, 30)
    )
    assert days == [date(2026, 11, 18)]


def source() -> JQuantsSource:
    return JQuantsSource("jquants", {}, Credentials())


def test_all_listed_is_one_unit_per_business_day():
    units = source().plan(
        "daily_quotes", {"universe": "all_listed"}, iv(datetime(2026, 11, 1, 19), datetime(2026, 11, 29, 19)),
        max_units=1024,
    )
    assert [u.key for u in units][:3] == ["date:2026-11-02", "date:2026-11-03", "date:2026-11-04"]
    assert len(units) == 20  # weekdays in Nov 2..27 (no calendar loaded yet)
    assert all(u.kind == "dates" and len(u.params["dates"]) == 1 for u in units)


def test_calendar_removes_holidays():
    holidays = {date(2026, 11, 3), date(2026, 11, 23)}

    def business_days(a, b):
        out, d = [], a
        while d <= b:
            if d.weekday() < 5 and d not in holidays:
                out.append(d)
            d = date.fromordinal(d.toordinal() + 1)
        return out

    units = source().plan(
        "daily_quotes", {"universe": "all_listed"}, iv(datetime(2026, 11, 1, 19), datetime(2026, 11, 29, 19)),
        max_units=1024, business_days=business_days,
    )
    assert "date:2026-11-03" not in {u.key for u in units}
    assert len(units) == 18


def test_short_ticker_list_over_long_range_is_per_code():
    units = source().plan(
        "daily_quotes", {"tickers": ["72030", "67580"]}, iv(datetime(2026, 1, 1, 19), datetime(2026, 11, 1, 19)),
        max_units=1024,
    )
    assert [u.key for u in units] == ["code:72030", "code:67580"]
    assert units[0].params == {"codes": ["72030"], "from": "2026-01-02", "to": "2026-10-30"}


def test_ticker_list_for_one_day_is_by_date_filtered():
    units = source().plan(
        "daily_quotes", {"tickers": ["72030", "67580"]}, iv(datetime(2026, 11, 19, 19), datetime(2026, 11, 20, 19)),
        max_units=1024,
    )
    assert [(u.key, u.params["codes"]) for u in units] == [("date:2026-11-20", ["72030", "67580"])]


def test_units_never_exceed_max_map_length():
    units = source().plan(
        "daily_quotes", {"universe": "all_listed"}, iv(datetime(2016, 1, 1, 19), datetime(2026, 1, 1, 19)),
        max_units=100,
    )
    assert len(units) <= 100
    days = [d for u in units for d in u.params["dates"]]
    assert len(days) == len(set(days)) > 2500  # every business day exactly once
    assert units[0].key.startswith("dates:2016-01-04..")


def test_weekend_interval_plans_nothing():
    units = source().plan(
        "daily_quotes", {"universe": "all_listed"}, iv(datetime(2026, 11, 21, 0), datetime(2026, 11, 22, 23)),
        max_units=10,
    )
    assert units == []


# -- which query shapes each endpoint accepts ---------------------------------------------------
# /equities/master takes only code and/or date: a range request (code+from/to) is not refused, it
# silently answers with *today's* master, so a listed_info plan must never contain one.
def test_listed_info_ticker_list_over_days_is_by_date_never_a_range():
    units = source().plan(
        "listed_info", {"tickers": ["72030", "67580", "80350"]},
        iv(datetime(2026, 11, 1, 19), datetime(2026, 11, 29, 19)), max_units=1024,
    )
    assert len(units) == 20  # one whole-market date query per weekday, filtered to the tickers
    assert all(u.kind == "dates" and "from" not in u.params and "to" not in u.params for u in units)
    assert units[0].params == {"dates": ["2026-11-02"], "codes": ["72030", "67580", "80350"]}


def test_listed_info_single_ticker_is_code_and_date_per_day():
    units = source().plan(
        "listed_info", {"tickers": ["72030"]}, iv(datetime(2026, 11, 15, 19), datetime(2026, 11, 20, 19)),
        max_units=1024,
    )
    assert [(u.key, u.kind, u.params) for u in units] == [
        (f"date:2026-11-{d}", "code_dates", {"dates": [f"2026-11-{d}"], "codes": ["72030"]}) for d in range(16, 21)
    ]


def test_listed_info_forced_by_code_and_capped_units_stay_by_date():
    tickers = [f"{1300 + i}0" for i in range(40)]
    units = source().plan(
        "listed_info", {"tickers": tickers, "plan": "by_code"},
        iv(datetime(2025, 1, 1, 19), datetime(2026, 1, 1, 19)), max_units=10,
    )
    assert 1 <= len(units) <= 10
    assert {u.kind for u in units} == {"code_dates"}
    assert all(set(u.params) == {"dates", "codes"} for u in units)
    days = [d for u in units for d in u.params["dates"]]
    assert len(days) == len(set(days)) > 240


def test_index_tickers_over_long_range_are_code_ranges():
    units = source().plan(
        "index_quotes", {"tickers": ["0000"]}, iv(datetime(2026, 1, 1, 19), datetime(2026, 11, 1, 19)),
        max_units=1024,
    )
    assert [(u.kind, u.params) for u in units] == [
        ("codes", {"codes": ["0000"], "from": "2026-01-02", "to": "2026-10-30"})
    ]


def test_calendar_is_one_range_request():
    units = source().plan(
        "trading_calendar", {"days_ahead": 30}, iv(datetime(2026, 11, 1, 19), datetime(2026, 11, 29, 19)),
        max_units=1024,
    )
    assert [(u.kind, u.params) for u in units] == [("range", {"from": "2026-11-02", "to": "2026-12-29"})]


# -- the plans against the fake: every request is a query shape the v2 spec accepts ---------------
ALLOWED = {  # path: (parameters it takes, parameters that need "code")
    "/equities/master": ({"code", "date"}, set()),
    "/equities/bars/daily": ({"code", "date", "from", "to"}, {"from", "to"}),
    "/fins/summary": ({"code", "date"}, set()),
    "/markets/calendar": ({"hol_div", "from", "to"}, set()),
    "/indices/bars/daily": ({"code", "date", "from", "to"}, {"from", "to"}),
}
KEY = "plan-test-key-1234"


@pytest.fixture(scope="module")
def fake():
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    with running_fake(FakeConfig(api_key=KEY, page_size=1000)) as (url, state):
        yield url, state


def live_source(url: str) -> JQuantsSource:
    return JQuantsSource("jquants", {}, Credentials(secret=KEY, host=url))


@pytest.mark.parametrize(
    "dataset, params",
    [
        ("listed_info", {"tickers": ["72030", "67580"]}),
        ("listed_info", {"tickers": ["72030"]}),
        ("listed_info", {"tickers": ["72030"], "plan": "by_code"}),
        ("listed_info", {"universe": "all_listed"}),
        ("daily_quotes", {"tickers": ["72030"]}),
        ("daily_quotes", {"universe": "all_listed"}),
        ("fin_summary", {"tickers": ["72030"]}),
        ("fin_summary", {"universe": "all_listed"}),
        ("index_quotes", {"tickers": ["0000"]}),
        ("index_quotes", {"universe": "all_indices"}),
        ("trading_calendar", {}),
    ],
)
def test_every_request_is_a_query_the_endpoint_accepts(fake, dataset, params):
    url, state = fake
    state.reset()
    src = live_source(url)
    units = src.plan(dataset, params, iv(datetime(2026, 10, 30, 19), datetime(2026, 11, 13, 19)), max_units=1024)
    assert units
    for u in units:
        src.fetch(dataset, u)
    assert state.requests and set(state.statuses) == {200}
    for path, query in state.requests:
        allowed, need_code = ALLOWED[path]
        assert set(query) <= allowed, (path, query)
        assert "code" in query or not (set(query) & need_code), (path, query)
        if path == "/equities/master":
            assert "date" in query, query  # without a date the master is today's, whatever the interval


def test_listed_info_rows_are_dated_by_the_interval_not_today(fake):
    url, state = fake
    state.reset()
    src = live_source(url)
    for tickers in (["72030"], ["72030", "67580", "80350"]):
        units = src.plan("listed_info", {"tickers": tickers}, iv(datetime(2026, 11, 15, 19), datetime(2026, 11, 20, 19)),
                         max_units=1024)
        rows = [r for u in units for r in src.fetch("listed_info", u).rows]
        assert sorted({(r["code"], r["date"]) for r in rows}) == sorted(
            (c, f"2026-11-{d}") for c in tickers for d in range(16, 21)
        )
