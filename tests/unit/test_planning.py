"""Interval-to-dates semantics and the J-Quants cheapest-plan choice."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from moomarkets.sources.base import Credentials, Interval, market_dates
from moomarkets.sources.jquants.source import JQuantsSource

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
