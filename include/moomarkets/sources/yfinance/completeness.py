"""Why a ticker has no bars, or fewer than it should: the rules behind ``item_errors``.

yfinance swallows per-ticker errors and returns empty frames; the session records every chart
answer per symbol, so each empty or partial ticker gets a reason: unknown or delisted symbol (404,
"No data found, symbol may be delisted"), rate limited (429), request failed, no trading in the
interval while other tickers of the same exchange traded, or a partial series (a gap on days its
exchange peers traded).

Then, whether or not it has peers in its batch, every ticker of a known market is checked against
its exchange's sessions (:func:`~moomarkets.sources.yfinance.markets.expected_sessions`) over the
dates of the interval whose close has passed, from the symbol's first trade. A session without a
bar is an error, also for a ticker alone in its batch or exchange, and also when no peer in the
batch has that day either (the reason then says so: an unscheduled closure or data Yahoo lacks). A
valid symbol without a bar on days that are no session (weekends, exchange holidays) is not an
error, unless its last trade is more than ``STALE_DAYS`` before the interval (suspended or
delisted).

Limits: a day no calendar covers is expected from weekdays only, so it is checked only for a
ticker with no peer data in the batch, and its reason says "expected from weekdays only ...
unverified: may be an exchange holiday". Symbols of no known market have the peer rule only. The
calendars do not know unscheduled closures (typhoons, closures announced after the library's
release), which then fail every ticker of that exchange for the day; a thinly traded symbol that
Yahoo leaves without a bar on a day it did not trade is reported as a gap.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from moomarkets.sources.yfinance.markets import expected_sessions, local_date, market_of
from moomarkets.sources.yfinance.settings import STALE_DAYS

if TYPE_CHECKING:
    from moomarkets.sources.yfinance.session import ChartCall, RequestLog

# Categories of classify_empty. "empty" is a valid symbol without a bar (not an error by itself);
# RETRYABLE ones may heal when the unit is tried again.
RATE_LIMITED = "rate_limited"
NOT_FOUND = "not_found"
FAILED = "failed"
EMPTY = "empty"
RETRYABLE = frozenset({RATE_LIMITED, FAILED})


def classify_empty(calls: list[ChartCall], meta: dict[str, Any] | None) -> tuple[str, str]:
    """Why a ticker came back without a bar, from the session's record of its chart requests.

    Returns (category, reason); category :data:`EMPTY` means a valid symbol that simply had no bar.
    """
    if any(c.rate_limited for c in calls):
        return RATE_LIMITED, "rate limited by Yahoo (HTTP 429)"
    for c in calls:
        if c.status == 404 or c.yahoo_code == "Not Found":
            return NOT_FOUND, f"unknown or delisted symbol (Yahoo: {c.yahoo_description or 'HTTP 404 Not Found'})"
    for c in calls:
        if c.status is None and c.error:
            if c.error.startswith("skipped: "):
                return FAILED, f"request not sent ({c.error[len('skipped: '):]})"
            return FAILED, f"request failed: {c.error}"
    for c in calls:
        if c.status is not None and c.status >= 500:
            return FAILED, f"Yahoo server error (HTTP {c.status})"
    for c in calls:
        # Yahoo's 400 "Data doesn't exist for startDate..." is an empty range, not a failure
        if c.status is not None and c.status >= 400 and "doesn't exist" not in (c.yahoo_description or ""):
            detail = f": {c.yahoo_description}" if c.yahoo_description else ""
            return FAILED, f"Yahoo answered HTTP {c.status}{detail}"
    if meta or any(c.meta for c in calls):
        return EMPTY, "no bar in the interval"
    if not calls:
        return FAILED, "no data and no request reached Yahoo for it"
    desc = next((c.yahoo_description for c in calls if c.yahoo_description), None)
    return FAILED, f"no data (Yahoo: {desc})" if desc else "no data and no chart metadata from Yahoo"


def missing_bars(
    ticker: str,
    tickers: list[str],
    own_dates: dict[str, set[date]],
    rlog: RequestLog,
    start: date,
    end: date,
    allowed: set[date] | None,
) -> str | None:
    """Why the ticker lacks bars it should have, or None (module docs: peers, then the calendar)."""
    meta = rlog.meta_for(ticker) or {}
    market = market_of(ticker)
    tz = meta.get("exchangeTimezoneName") or (market.tz if market else None)
    first_trade = local_date(meta.get("firstTradeDate"), tz)
    own = own_dates[ticker]
    peers: set[date] = set()
    for other in tickers:  # tickers that failed outright have no dates, so they add nothing
        if other == ticker:
            continue
        other_meta = rlog.meta_for(other) or {}
        other_market = market_of(other)
        other_tz = other_meta.get("exchangeTimezoneName") or (other_market.tz if other_market else None)
        if tz and other_tz == tz:
            peers |= own_dates[other]
    candidates = {
        d for d in (allowed if allowed is not None else _span(start, end))
        if start <= d <= end and (first_trade is None or d >= first_trade)
    }
    if first_trade is not None and first_trade > end:
        return None
    missing = (peers & candidates) - own
    # second check, and the only one for a ticker without peers: the exchange's own sessions
    sessions, unchecked, calendar = expected_sessions(ticker, candidates)
    off_calendar = sessions - own - missing
    # weekdays no calendar covers: a guess, so only for a ticker with no peer data to go by
    off_weekdays = set() if peers else unchecked - own
    if not own and not missing:
        last_trade = local_date(meta.get("regularMarketTime"), tz)
        weekdays = sorted(d for d in candidates if d.weekday() < 5)
        if last_trade is not None and weekdays and last_trade < weekdays[0] - timedelta(days=STALE_DAYS):
            return f"no trading in the interval: last trade on {last_trade.isoformat()} (suspended or delisted?)"
    parts = []
    if missing:
        parts.append(
            f"no bar while other {tz} tickers traded on {fmt_dates(missing)}" if not own
            else f"no bar for {fmt_dates(missing)} while other {tz} tickers traded"
        )
    if off_calendar:
        also = f" and no other {tz} ticker in the batch has a bar that day" if peers else ""
        parts.append(f"no bar for {fmt_dates(off_calendar)}, a session in the {calendar} exchange calendar{also}")
    if off_weekdays:
        basis = f"outside the span the {calendar} calendar knows" if calendar else f"no holiday calendar for {tz}"
        parts.append(
            f"no bar for {fmt_dates(off_weekdays)}, expected from weekdays only ({basis}; unverified: may be an"
            " exchange holiday)"
        )
    if not parts:
        return None
    if not own:
        return "no trading in the interval: " + "; ".join(parts) + " (halted or suspended?)"
    return "partial: " + "; ".join(parts) + " (trading gap)"


def fmt_dates(days: set[date] | list[date], limit: int = 5) -> str:
    ds = sorted(days)
    text = ", ".join(d.isoformat() for d in ds[:limit])
    return text + (f" (+{len(ds) - limit} more)" if len(ds) > limit else "")


def _span(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
