"""The synthetic TSE calendar the local fake J-Quants server serves (/en/spec/mkt-cal).

Weekends, Japanese national holidays computed by the holiday law (fixed days, Happy Mondays,
equinoxes, substitute and "citizens'" holidays, the 2019 enthronement, the 2020/2021 Olympic
moves) and the exchange's own Dec 31 - Jan 3 closure. ``HolDiv``: "1" business day, "0" closed,
"3" weekday national holiday with derivatives holiday trading (JPX began it on 2022-09-23;
approximated as every weekday national holiday from then on). No "2" (half day) is generated.
Pure functions of their arguments: no clock, no randomness.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import date, timedelta
from functools import lru_cache

DATA_START = date(2015, 1, 1)
DATA_END = date(2027, 12, 31)
HOLIDAY_TRADING_START = date(2022, 9, 23)


def to_date(value: date | str) -> date:
    """``date``, ``YYYYMMDD`` or ``YYYY-MM-DD`` (the two forms J-Quants accepts) to ``date``."""
    if isinstance(value, date):
        return value
    s = str(value).strip()
    if len(s) == 8 and s.isdigit():
        return date(int(s[:4]), int(s[4:6]), int(s[6:8]))
    if len(s) == 10 and s[4] == "-" and s[7] == "-":
        return date.fromisoformat(s)
    raise ValueError(f"not a date (YYYYMMDD or YYYY-MM-DD): {value!r}")


def _nth_monday(year: int, month: int, n: int) -> date:
    d = date(year, month, 1)
    d += timedelta(days=(0 - d.weekday()) % 7)
    return d + timedelta(weeks=n - 1)


@lru_cache(maxsize=None)
def jp_national_holidays(year: int) -> frozenset[date]:
    """Japanese national holidays of ``year`` (valid 2015-2027), substitute holidays included."""
    y = year
    hol = {date(y, 1, 1), _nth_monday(y, 1, 2), date(y, 2, 11), date(y, 4, 29), date(y, 5, 3),
           date(y, 5, 4), date(y, 5, 5), _nth_monday(y, 9, 3), date(y, 11, 3), date(y, 11, 23)}
    k = y - 1980
    hol.add(date(y, 3, int(20.8431 + 0.242194 * k - k // 4)))  # vernal equinox
    hol.add(date(y, 9, int(23.2488 + 0.242194 * k - k // 4)))  # autumnal equinox
    if y <= 2018:
        hol.add(date(y, 12, 23))  # Emperor Akihito's birthday
    elif y >= 2020:
        hol.add(date(y, 2, 23))  # Emperor Naruhito's birthday
    if y == 2019:
        hol |= {date(2019, 4, 30), date(2019, 5, 1), date(2019, 5, 2), date(2019, 10, 22)}
    if y == 2020:  # Olympic year moves
        hol |= {date(2020, 7, 23), date(2020, 7, 24), date(2020, 8, 10)}
    elif y == 2021:
        hol |= {date(2021, 7, 22), date(2021, 7, 23), date(2021, 8, 8)}
    else:
        hol.add(_nth_monday(y, 7, 3))  # Marine Day
        hol.add(_nth_monday(y, 10, 2))  # Sports Day
        if y >= 2016:
            hol.add(date(y, 8, 11))  # Mountain Day
    # citizens' holiday: a weekday sandwiched between two holidays
    for d in sorted(hol):
        mid = d + timedelta(days=1)
        if d + timedelta(days=2) in hol and mid not in hol and mid.weekday() != 6:
            hol.add(mid)
    # substitute holiday: a holiday on Sunday moves to the next non-holiday day
    for d in sorted(hol):
        if d.weekday() == 6:
            sub = d + timedelta(days=1)
            while sub in hol:
                sub += timedelta(days=1)
            hol.add(sub)
    return frozenset(hol)


def hol_div(day: date | str) -> str:
    """The calendar's ``HolDiv`` for ``day``: "1" business day, "0" closed, "3" holiday trading."""
    d = to_date(day)
    if d.weekday() >= 5 or (d.month, d.day) in ((1, 1), (1, 2), (1, 3), (12, 31)):
        return "0"
    if d in jp_national_holidays(d.year):
        return "3" if d >= HOLIDAY_TRADING_START else "0"
    return "1"


def is_trading_day(day: date | str) -> bool:
    return hol_div(day) == "1"


@lru_cache(maxsize=1)
def _all_trading_days() -> tuple[date, ...]:
    out, d = [], DATA_START
    while d <= DATA_END:
        if is_trading_day(d):
            out.append(d)
        d += timedelta(days=1)
    return tuple(out)


def trading_days(start: date | str, end: date | str) -> list[date]:
    """Business days (HolDiv "1") from ``start`` to ``end``, both inclusive, within the data range."""
    days = _all_trading_days()
    return list(days[bisect_left(days, to_date(start)) : bisect_right(days, to_date(end))])


def next_trading_day(day: date | str) -> date:
    """``day`` itself when it is a business day, else the next one (``day`` beyond the data range)."""
    d = to_date(day)
    days = _all_trading_days()
    i = bisect_left(days, d)
    return days[i] if d >= DATA_START and i < len(days) else d


def calendar_rows(start: date | str = DATA_START, end: date | str = DATA_END,
                  hol_div_filter: str | None = None) -> list[dict[str, str]]:
    """Rows of /markets/calendar (Date, HolDiv) for every calendar day in [start, end]."""
    d, last = max(to_date(start), DATA_START), min(to_date(end), DATA_END)
    out = []
    while d <= last:
        hd = hol_div(d)
        if hol_div_filter is None or hd == hol_div_filter:
            out.append({"Date": d.isoformat(), "HolDiv": hd})
        d += timedelta(days=1)
    return out
