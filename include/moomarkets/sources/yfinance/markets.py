"""Which exchange a Yahoo symbol trades on, its sessions, and the dates a batch needs.

The market is read from the symbol's suffix (no suffix = New York, 16:00; ``.T`` = Tokyo 15:30;
...). A run loads the trading days whose close falls in its data interval
(:func:`~moomarkets.sources.base.market_dates`), per exchange, weekends dropped. A batch mixing
markets takes the union of its markets' dates; each ticker then keeps only its own market's dates,
so no bar of a session that has not closed is loaded. Symbols whose market the suffix does not tell
(indices ``^...``, FX/futures ``...=X``, crypto ``BTC-USD``, unknown suffixes) use the widest range
over every known market, weekends kept, and keep every bar in it.

Sessions come from the exchange's ``exchange_calendars`` calendar (``Market.calendar``: XNYS for
US symbols, XTKS for ``.T``, ...; early-close days are sessions). Days a calendar does not cover
(before :data:`~moomarkets.sources.yfinance.settings.CALENDAR_START` or its own first year, after
the last year it records) can only be expected from weekdays.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from moomarkets.sources.base import Interval, market_dates
from moomarkets.sources.yfinance.settings import CALENDAR_START, CRYPTO_RE


@dataclass(frozen=True)
class Market:
    tz: str
    close: time  # latest regular close incl. closing auction, local time
    calendar: str | None = None  # exchange_calendars name of its holiday calendar (None: weekdays only)


US = Market("America/New_York", time(16, 0), "XNYS")  # NYSE and Nasdaq close on the same days
_EU = time(17, 30)
SUFFIX_MARKETS: dict[str, Market] = {
    ".T": Market("Asia/Tokyo", time(15, 30), "XTKS"),
    ".L": Market("Europe/London", time(16, 35), "XLON"),
    ".IL": Market("Europe/London", time(16, 35), "XLON"),
    ".HK": Market("Asia/Hong_Kong", time(16, 10), "XHKG"),
    ".SS": Market("Asia/Shanghai", time(15, 0), "XSHG"),
    ".SZ": Market("Asia/Shanghai", time(15, 0), "XSHG"),  # Shenzhen closes on Shanghai's holidays
    ".KS": Market("Asia/Seoul", time(15, 30), "XKRX"),
    ".KQ": Market("Asia/Seoul", time(15, 30), "XKRX"),  # KOSDAQ is part of KRX
    ".TW": Market("Asia/Taipei", time(13, 30), "XTAI"),
    ".TWO": Market("Asia/Taipei", time(13, 30), "XTAI"),  # TPEx follows TWSE's holidays
    ".SI": Market("Asia/Singapore", time(17, 6), "XSES"),
    ".NS": Market("Asia/Kolkata", time(15, 30), "XBOM"),  # NSE and BSE share the holiday list
    ".BO": Market("Asia/Kolkata", time(15, 30), "XBOM"),
    ".AX": Market("Australia/Sydney", time(16, 12), "XASX"),
    ".NZ": Market("Pacific/Auckland", time(17, 0), "XNZE"),
    ".TO": Market("America/Toronto", time(16, 0), "XTSE"),
    ".V": Market("America/Toronto", time(16, 0), "XTSE"),  # TSX Venture closes on TSX's holidays
    ".NE": Market("America/Toronto", time(16, 0), "XTSE"),  # Cboe Canada follows TSX's holidays
    ".SA": Market("America/Sao_Paulo", time(18, 0), "BVMF"),
    ".MX": Market("America/Mexico_City", time(15, 0), "XMEX"),
    ".DE": Market("Europe/Berlin", _EU, "XETR"),
    ".F": Market("Europe/Berlin", time(22, 0), "XFRA"),
    ".PA": Market("Europe/Paris", _EU, "XPAR"),
    ".AS": Market("Europe/Amsterdam", _EU, "XAMS"),
    ".BR": Market("Europe/Brussels", _EU, "XBRU"),
    ".LS": Market("Europe/Lisbon", time(16, 30), "XLIS"),
    ".MI": Market("Europe/Rome", _EU, "XMIL"),
    ".MC": Market("Europe/Madrid", _EU, "XMAD"),
    ".VI": Market("Europe/Vienna", _EU, "XWBO"),
    ".SW": Market("Europe/Zurich", _EU, "XSWX"),
    ".ST": Market("Europe/Stockholm", _EU, "XSTO"),
    ".CO": Market("Europe/Copenhagen", _EU, "XCSE"),
    ".HE": Market("Europe/Helsinki", time(18, 30), "XHEL"),
    ".OL": Market("Europe/Oslo", _EU, "XOSL"),
    ".JO": Market("Africa/Johannesburg", time(17, 0), "XJSE"),
}
# Crypto and other 24h symbols close their daily bar at UTC midnight.
_WIDEST = sorted(
    {US, Market("UTC", time(23, 59, 59)), *SUFFIX_MARKETS.values()}, key=lambda m: (m.tz, m.close, m.calendar or "")
)


def market_of(ticker: str) -> Market | None:
    """The exchange a Yahoo symbol trades on, from its suffix; None when the symbol does not say."""
    t = ticker.upper()
    if t.startswith("^") or "=" in t or CRYPTO_RE.match(t):
        return None
    if "." in t:
        return SUFFIX_MARKETS.get(t[t.rindex(".") :])
    return US


def market_sort_key(ticker: str) -> tuple[bool, str, str, str]:
    """Orders symbols so one exchange's tickers sit together (then by symbol): batches keep peers."""
    t = ticker.upper()
    m = market_of(t)
    suffix = t[t.rindex(".") :] if m is not None and "." in t else ""
    return (m is None, m.tz if m else "", suffix, t)


@lru_cache(maxsize=None)
def _calendar_sessions(name: str) -> tuple[frozenset[date], date, date]:
    """The sessions of an exchange_calendars calendar (early closes included), and the span it knows."""
    import exchange_calendars

    with warnings.catch_warnings():  # exchange_calendars 4.13 uses pandas APIs pandas 3.1 deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            cal = exchange_calendars.get_calendar(name, start=CALENDAR_START)
        except ValueError:  # the calendar's holidays start later: use its default span
            cal = exchange_calendars.get_calendar(name)
        sessions = frozenset(ts.date() for ts in cal.sessions)
        return sessions, cal.first_session.date(), cal.last_session.date()


def expected_sessions(ticker: str, days: set[date]) -> tuple[set[date], set[date], str | None]:
    """Split ``days`` into the ticker's exchange sessions: (confirmed by the exchange's holiday
    calendar, weekdays no calendar covers (its market has none, or the day is outside the span the
    calendar knows), the calendar's name). Weekends and calendar holidays are in neither set; a
    symbol whose market the suffix does not tell gets two empty sets.
    """
    m = market_of(ticker)
    if m is None:
        return set(), set(), None
    weekdays = {d for d in days if d.weekday() < 5}
    if m.calendar is None:
        return set(), weekdays, None
    sessions, first, last = _calendar_sessions(m.calendar)
    covered = {d for d in weekdays if first <= d <= last}
    return covered & sessions, weekdays - covered, m.calendar


def dates_for(tickers: list[str], interval: Interval) -> list[date]:
    """The local trading dates a batch needs: the union over its tickers' markets (module docs)."""
    markets = {market_of(t) for t in tickers}
    days: set[date] = set()
    for m in markets - {None}:
        days.update(d for d in market_dates(interval, m.tz, m.close) if d.weekday() < 5)
    if None in markets:
        for m in _WIDEST:
            days.update(market_dates(interval, m.tz, m.close))
    return sorted(days)


def allowed_dates(ticker: str, interval: Interval | None) -> set[date] | None:
    """The dates whose close of the ticker's own market falls in the interval (None: keep every bar)."""
    m = market_of(ticker)
    if m is None or interval is None:
        return None
    return set(market_dates(interval, m.tz, m.close))


def local_date(epoch: object, tz: str | None) -> date | None:
    """An epoch second as a date in ``tz`` (Yahoo's meta times), or None when either is unusable."""
    if not isinstance(epoch, (int, float)) or not tz:
        return None
    try:
        return datetime.fromtimestamp(epoch, timezone.utc).astimezone(ZoneInfo(tz)).date()
    except (KeyError, ValueError, OverflowError, OSError):
        return None
