"""Yahoo Finance (through yfinance) as a MooMarkets source (no Airflow).

Yahoo has no key and publishes no limits; users report blocks above about one request per second
and multi-hour blocks after bursts, so the default rate is ``1/second`` with one worker, and every
request yfinance makes (cookie and crumb handshakes, timezone probes, chart requests) goes through
the shared limiter via the controlled session (``session.py``).

**Datasets.** ``daily_quotes`` (the J-Quants table; ``source`` tells the rows apart) and
``corporate_actions``. Column conventions for Yahoo rows, stated explicitly:

* ``date`` is the exchange's local trading date (Yahoo's bar timestamp converted to the exchange
  timezone, e.g. a Sydney bar stamped 23:00Z on the 9th is the 10th);
* ``open``/``high``/``low``/``close``/``volume`` are Yahoo's chart values with ``auto_adjust=False``:
  never dividend-adjusted, but, as Yahoo publishes them, split-adjusted as of the fetch. A daily run
  stores the prices as traded; a backfill across a later split stores split-adjusted values;
* ``adj_close`` is Yahoo's Adj Close (splits and dividends); ``adjustment_factor = adj_close /
  close``; ``adj_open``/``adj_high``/``adj_low`` = raw x factor (yfinance's own ``auto_adjust``
  rule); ``adj_volume`` = ``volume`` (yfinance does not rescale volume either);
* ``upper_limit``, ``lower_limit``, ``turnover`` are NULL (Yahoo has no such fields);
* ``code`` is the Yahoo symbol, upper-cased (``AAPL``, ``7203.T``);
* ``corporate_actions``: ``dividend`` = cash per share in the listing currency, ``split`` = new
  shares per old share (Yahoo's numerator / denominator), both on the ex-date.

Raw prices are rounded to Yahoo's ``priceHint`` decimals (Yahoo serves float32 values, so
231.93 arrives as 231.92999267578125); adjusted values to 6 decimals.

**Plan.** A run loads the trading days whose close falls in its data interval
(:func:`~moomarkets.sources.base.market_dates`), per exchange: the market is read from the symbol's
suffix (no suffix = New York, 16:00; ``.T`` = Tokyo 15:30; ...), weekends dropped. One unit per batch
of tickers (``batch_size``, default 20: yfinance makes one chart request per ticker whatever the
batch, so the batch only sets how many mapped tasks a group has) over ``[first, last]`` date of its
tickers' markets. Tickers are ordered by exchange (timezone, suffix, then symbol; symbols of no
known market last) before they are cut into batches, so an exchange's tickers share batches. A
batch mixing markets takes the widest range (the union of its markets' dates); each ticker then
keeps only its own market's dates, so no bar of a session that has not closed is loaded. Symbols
whose market the suffix does not tell (indices ``^...``, FX/futures ``...=X``, crypto ``BTC-USD``,
unknown suffixes) use the widest range over every known market, weekends kept, and keep every bar
in it.

**Failures.** yfinance swallows per-ticker errors and returns empty frames; the session records
every chart answer per symbol, so each empty or partial ticker becomes an ``item_errors`` entry
with its reason: unknown or delisted symbol (404, "No data found, symbol may be delisted"), rate
limited (429; retried after a backoff, ``throttle_retries`` times, then reported), request failed,
no trading in the interval while other tickers of the same exchange traded, or a partial series
(a gap on days its exchange peers traded).

Then, whether or not it has peers in its batch, every ticker of a known market is checked against
its exchange's sessions: weekdays minus that exchange's holidays in its ``exchange_calendars``
calendar (``Market.calendar``: XNYS for US symbols, XTKS for ``.T``, ...; early-close days are
sessions), over the dates of the interval whose close has passed, from the symbol's first trade.
A session without a bar is an error, also for a ticker alone in its batch or exchange (a
one-ticker group, INTC batched with 7203.T), and also when no peer in the batch has that day
either (the reason then says so: an unscheduled closure or data Yahoo lacks). A valid symbol
without a bar on days that are no session (weekends, exchange holidays) is not an error, unless
its last trade is more than ``STALE_DAYS`` before the interval (suspended or delisted).

Limits: days a calendar does not cover (before ``CALENDAR_START`` or its own first year, after the
last year it records, e.g. XSHG's hard-coded holiday list) are expected from weekdays only; such a
day is checked only for a ticker with no peer data in the batch, and its reason says
"expected from weekdays only ... unverified: may be an exchange holiday". Symbols of no known
market (indices, FX, crypto, unknown suffixes) have the peer rule only. The calendars do not know
unscheduled closures (typhoons, closures announced at short notice after the library's release),
which then fail every ticker of that exchange for the day; a thinly traded symbol that Yahoo
leaves without a bar on a day it did not trade is reported as a gap, as the peer rule always did.
"""

from __future__ import annotations

import logging
import math
import re
import time as _time
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable
from zoneinfo import ZoneInfo

from moomarkets.errors import ConfigError, MooMarketsError, RetryableSourceError
from moomarkets.sources.base import FetchResult, FetchUnit, Interval, Source, chunk, market_dates

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

sleep = _time.sleep  # tests replace it

TICKER_RE = re.compile(r"^[A-Za-z0-9.\-^=]{1,20}$")
ISIN_RE = re.compile(r"^[A-Z]{2}[A-Z0-9]{9}[0-9]$")
CRYPTO_RE = re.compile(r"^[A-Z0-9]+-[A-Z]{3}$")
MAX_TICKERS = 10_000
DEFAULT_BATCH_SIZE = 20
DEFAULT_TIMEOUT = 20.0
DEFAULT_THROTTLE_RETRIES = 2
DEFAULT_THROTTLE_BACKOFF = 30.0
STALE_DAYS = 10
PROBE_URL = "https://query2.finance.yahoo.com/v8/finance/chart/SPY"


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
CALENDAR_START = "2000-01-01"  # how far back the holiday calendars are built (or their own first year)
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


def market_sort_key(ticker: str) -> tuple:
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


def _allowed(ticker: str, interval: Interval | None) -> set[date] | None:
    m = market_of(ticker)
    if m is None or interval is None:
        return None
    return set(market_dates(interval, m.tz, m.close))


def _num(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def _round(x: float | None, digits: int | None) -> float | None:
    return None if x is None or digits is None else round(x, digits)


def _local_date(epoch: Any, tz: str | None) -> date | None:
    if not isinstance(epoch, (int, float)) or not tz:
        return None
    try:
        return datetime.fromtimestamp(epoch, timezone.utc).astimezone(ZoneInfo(tz)).date()
    except (KeyError, ValueError, OverflowError, OSError):
        return None


def _fmt_dates(days: set[date] | list[date], limit: int = 5) -> str:
    ds = sorted(days)
    text = ", ".join(d.isoformat() for d in ds[:limit])
    return text + (f" (+{len(ds) - limit} more)" if len(ds) > limit else "")


class YFinanceSource(Source):
    kind = "yfinance"
    datasets = ("daily_quotes", "corporate_actions")
    default_rate_limit = "1/second"
    default_max_concurrency = 1
    default_conn_id = "yfinance_default"

    CONFIG_KEYS = ("rate_limit", "max_concurrency", "batch_size", "timeout", "throttle_retries", "throttle_backoff")

    # -- config -----------------------------------------------------------------------------
    @classmethod
    def validate_config(cls, config: dict[str, Any], subject: str = "data source") -> dict[str, Any]:
        unknown = set(config) - set(cls.CONFIG_KEYS)
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(sorted(map(str, unknown)))} (allowed: {', '.join(cls.CONFIG_KEYS)})",
                field="config",
                subject=subject,
            )
        _check_int(config, "batch_size", 1, 500, "config.batch_size", subject)
        _check_int(config, "throttle_retries", 0, 10, "config.throttle_retries", subject)
        _check_number(config, "timeout", 1, 300, "config.timeout", subject)
        _check_number(config, "throttle_backoff", 0, 3600, "config.throttle_backoff", subject)
        return super().validate_config(config, subject)

    @classmethod
    def validate_parameters(cls, dataset: str, params: dict[str, Any], subject: str = "job group") -> dict[str, Any]:
        unknown = set(params) - {"tickers", "batch_size"}
        if unknown:
            raise ConfigError(
                f"unknown parameter(s) {', '.join(sorted(map(str, unknown)))} (allowed: tickers, batch_size)",
                field="parameters",
                subject=subject,
            )
        tickers = params.get("tickers")
        if not isinstance(tickers, list) or not tickers:
            raise ConfigError(
                "tickers must be a non-empty list of Yahoo symbols (e.g. [AAPL, 7203.T])",
                field="parameters.tickers",
                subject=subject,
            )
        if len(tickers) > MAX_TICKERS:
            raise ConfigError(f"at most {MAX_TICKERS} tickers per group", field="parameters.tickers", subject=subject)
        out = set()
        for t in tickers:
            sym = t.strip().upper() if isinstance(t, str) else None
            if not sym or not TICKER_RE.match(sym):
                raise ConfigError(
                    f"{t!r} is not a Yahoo symbol (1-20 of letters, digits, '.', '-', '^', '=')",
                    field="parameters.tickers",
                    subject=subject,
                )
            if ISIN_RE.match(sym):
                raise ConfigError(
                    f"{t!r} looks like an ISIN; give the Yahoo symbol instead (yfinance would resolve ISINs with an"
                    " extra search request per run)",
                    field="parameters.tickers",
                    subject=subject,
                )
            out.add(sym)
        result: dict[str, Any] = {"tickers": sorted(out)}
        if "batch_size" in params:
            _check_int(params, "batch_size", 1, 500, "parameters.batch_size", subject)
            result["batch_size"] = params["batch_size"]
        return result

    # -- settings ---------------------------------------------------------------------------
    @property
    def timeout(self) -> float:
        return float(self.config.get("timeout", DEFAULT_TIMEOUT))

    @property
    def throttle_retries(self) -> int:
        return int(self.config.get("throttle_retries", DEFAULT_THROTTLE_RETRIES))

    @property
    def throttle_backoff(self) -> float:
        return float(self.config.get("throttle_backoff", DEFAULT_THROTTLE_BACKOFF))

    def _session(self):
        from moomarkets.sources.yfinance.session import make_session

        return make_session(
            timeout=self.timeout,
            acquire=self.acquire,
            on_throttle=self.on_throttle,
            throttle_seconds=max(self.throttle_backoff, 1.0),
            base_url=self.credentials.host,
        )

    # -- planning ---------------------------------------------------------------------------
    def plan(
        self,
        dataset: str,
        params: dict[str, Any],
        interval: Interval,
        *,
        max_units: int,
        business_days: Callable[[date, date], list[date] | None] | None = None,
    ) -> list[FetchUnit]:
        """One unit per ticker batch; ``business_days`` (a JPX calendar) is not used for Yahoo."""
        if dataset not in self.datasets:
            raise ConfigError(f"Yahoo Finance has no dataset {dataset!r}")
        # grouped by exchange (see market_sort_key) so a batch's tickers have peers to compare with
        tickers = sorted({str(t).strip().upper() for t in params.get("tickers") or []}, key=market_sort_key)
        if not tickers:
            return []
        size = int(params.get("batch_size") or self.config.get("batch_size") or DEFAULT_BATCH_SIZE)
        size = max(size, -(-len(tickers) // max(1, max_units)))
        window = [interval.start.isoformat(), interval.end.isoformat()]
        units = []
        for batch in chunk(tickers, size):
            days = dates_for(batch, interval)
            if not days:
                continue
            units.append(
                FetchUnit(
                    key=f"ticker:{batch[0]}" if len(batch) == 1 else f"tickers:{batch[0]}..{batch[-1]}",
                    kind="tickers",
                    params={"tickers": batch, "start": days[0].isoformat(), "end": days[-1].isoformat(),
                            "interval": window},
                )
            )
        return units

    # -- fetching ---------------------------------------------------------------------------
    def fetch(self, dataset: str, unit: FetchUnit) -> FetchResult:
        if dataset not in self.datasets:
            raise ConfigError(f"Yahoo Finance dataset {dataset!r} is not supported")
        if unit.kind != "tickers":
            raise ValueError(f"unknown unit kind {unit.kind!r}")
        from moomarkets.sources.yfinance.session import reset_yfinance_state

        tickers = [str(t).upper() for t in unit.params["tickers"]]
        start = date.fromisoformat(unit.params["start"])
        end = date.fromisoformat(unit.params["end"])
        window = unit.params.get("interval")
        interval = (
            Interval(datetime.fromisoformat(window[0]), datetime.fromisoformat(window[1])) if window else None
        )
        session = self._session()
        rlog = session.moomarkets_log

        frames: dict[str, pd.DataFrame] = {}
        failed: dict[str, tuple[str, str]] = {}  # ticker -> (category, reason) for tickers without bars
        pending = list(tickers)
        retries = 0
        while pending:
            rlog.new_attempt()
            reset_yfinance_state()
            data = self._download(session, pending, start, end)
            if rlog.abort is not None:  # the shared rate limit gave no token: fail the unit, retry later
                raise rlog.abort
            for t in pending:
                sub = _ticker_frame(data, t)
                if sub is not None:
                    frames[t] = sub
                    failed.pop(t, None)
                else:
                    failed[t] = _classify_empty(rlog.chart_calls(t), rlog.meta_for(t))
            limited = [t for t in pending if failed.get(t, ("",))[0] == "rate_limited"]
            if not limited or retries >= self.throttle_retries:
                break
            retries += 1
            delay = self.throttle_backoff * 2 ** (retries - 1)
            log.warning(
                "Yahoo rate limited %d ticker(s) (%s); retry %d/%d in %.0f s",
                len(limited), _fmt_list(limited), retries, self.throttle_retries, delay,
            )
            sleep(delay)
            pending = limited

        errors: dict[str, str] = {}
        retryable = {t for t, (category, _) in failed.items() if category in ("rate_limited", "failed")}
        for t, (category, reason) in failed.items():
            if category == "rate_limited":
                attempts = retries + 1
                errors[t] = f"{reason} (after {attempts} attempt{'s' if attempts > 1 else ''})"
            elif category != "empty":
                errors[t] = reason

        allowed = {t: _allowed(t, interval) for t in tickers}
        own_dates = {t: _bar_dates(frames.get(t), start, end, allowed[t]) for t in tickers}
        if dataset == "daily_quotes":
            for t in tickers:
                if t in errors:
                    continue
                problem = _completeness(t, tickers, own_dates, rlog, start, end, allowed[t])
                if problem:
                    errors[t] = problem

        rows: list[dict[str, Any]] = []
        for t in tickers:
            if t not in frames:
                continue
            if dataset == "daily_quotes":
                rows.extend(self._bars(t, frames[t], own_dates[t], rlog.meta_for(t)))
            else:
                rows.extend(self._actions(t, frames[t], start, end, allowed[t]))
        log.info(
            "%s %s..%s: %d row(s) for %d/%d ticker(s), %d request(s), %d failed",
            unit.key, start, end, len(rows), len(tickers) - len(errors), len(tickers), rlog.requests, len(errors),
        )
        return FetchResult(rows=rows, requests=rlog.requests, item_errors=errors, retryable_items=retryable & set(errors))

    def _download(self, session, tickers: list[str], start: date, end: date):
        import yfinance as yf

        try:
            return yf.download(
                tickers,
                start=start.isoformat(),
                end=(end + timedelta(days=1)).isoformat(),  # yfinance's end is exclusive
                interval="1d",
                group_by="ticker",
                auto_adjust=False,
                actions=True,
                threads=False,  # one request at a time, paced by the shared limiter
                progress=False,
                repair=False,
                keepna=False,
                multi_level_index=True,
                session=session,
                timeout=self.timeout,
            )
        except MooMarketsError:
            raise
        except Exception as exc:  # yfinance catches per-ticker errors; this is a failure of the whole call
            raise RetryableSourceError(f"yfinance download failed: {type(exc).__name__}: {exc}") from exc

    def _bars(self, ticker: str, frame: pd.DataFrame, days: set[date], meta: dict | None) -> list[dict[str, Any]]:
        hint = meta.get("priceHint") if meta else None
        digits = int(hint) if isinstance(hint, int) and 0 <= hint <= 8 else None
        out = []
        for day, rec in _records(frame):
            if day not in days:
                continue
            close = _num(rec.get("Close"))
            if close is None:
                continue
            o, h, lo = (_num(rec.get(k)) for k in ("Open", "High", "Low"))
            vol = _num(rec.get("Volume"))
            adj = _num(rec.get("Adj Close"))
            raw = {k: (v if digits is None else round(v, digits)) if v is not None else None
                   for k, v in (("open", o), ("high", h), ("low", lo), ("close", close))}
            factor = round(adj / close, 10) if adj is not None and close else None
            out.append({
                "source": self.code,
                "code": ticker,
                "date": day.isoformat(),
                **raw,
                "upper_limit": None,
                "lower_limit": None,
                "volume": None if vol is None else int(vol),
                "turnover": None,
                "adjustment_factor": factor,
                "adj_open": _round(o * factor, 6) if o is not None and factor is not None else None,
                "adj_high": _round(h * factor, 6) if h is not None and factor is not None else None,
                "adj_low": _round(lo * factor, 6) if lo is not None and factor is not None else None,
                "adj_close": _round(adj, 6),
                "adj_volume": None if vol is None else int(vol),
            })
        return out

    def _actions(self, ticker: str, frame: pd.DataFrame, start: date, end: date, allowed: set[date] | None):
        out = []
        for day, rec in _records(frame):
            if not start <= day <= end or (allowed is not None and day not in allowed):
                continue
            div = _num(rec.get("Dividends"))
            if div:
                out.append({"source": self.code, "code": ticker, "date": day.isoformat(), "action": "dividend",
                            "value": round(div, 8)})
            split = _num(rec.get("Stock Splits"))
            if split:
                out.append({"source": self.code, "code": ticker, "date": day.isoformat(), "action": "split",
                            "value": round(split, 10)})
        return out

    def validate_credentials(self, dataset: str | None = None) -> None:
        """Yahoo has no key: one cheap chart request proves it is reachable and not blocking us."""
        session = self._session()
        try:
            response = session.get(PROBE_URL, params={"range": "1d", "interval": "1d"}, timeout=self.timeout)
        except MooMarketsError:
            raise
        except Exception as exc:
            raise RetryableSourceError(f"Yahoo Finance is unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 429:
            raise RetryableSourceError("Yahoo Finance is rate limiting this host (HTTP 429); try again later")
        if response.status_code >= 500:
            raise RetryableSourceError(f"Yahoo Finance answered HTTP {response.status_code}")


# -- helpers --------------------------------------------------------------------------------
def _check_int(d: dict, key: str, lo: int, hi: int, field: str, subject: str) -> None:
    if key in d:
        v = d[key]
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ConfigError(f"{key} must be an integer from {lo} to {hi}, got {v!r}", field=field, subject=subject)


def _check_number(d: dict, key: str, lo: float, hi: float, field: str, subject: str) -> None:
    if key in d:
        v = d[key]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
            raise ConfigError(f"{key} must be a number from {lo:g} to {hi:g}, got {v!r}", field=field, subject=subject)


def _fmt_list(items: list[str], limit: int = 5) -> str:
    return ", ".join(items[:limit]) + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _ticker_frame(data, ticker: str):
    """The ticker's rows with a bar (Close present), or None when it has none."""
    if data is None or getattr(data, "empty", True):
        return None
    cols = data.columns
    if getattr(cols, "nlevels", 1) > 1:
        if ticker not in set(cols.get_level_values(0)):
            return None
        sub = data[ticker]
    else:
        sub = data
    if "Close" not in sub.columns:
        return None
    sub = sub.dropna(how="all")
    if sub["Close"].notna().sum() == 0:
        return None
    return sub


def _records(frame) -> list[tuple[date, dict[str, Any]]]:
    out = []
    for idx, rec in zip(frame.index, frame.to_dict("records")):
        out.append((idx.date() if hasattr(idx, "date") else date.fromisoformat(str(idx)[:10]), rec))
    return out


def _bar_dates(frame, start: date, end: date, allowed: set[date] | None) -> set[date]:
    if frame is None:
        return set()
    days = set()
    for day, rec in _records(frame):
        if _num(rec.get("Close")) is not None and start <= day <= end and (allowed is None or day in allowed):
            days.add(day)
    return days


def _classify_empty(calls: list, meta: dict | None) -> tuple[str, str]:
    """Why a ticker came back without a bar, from the session's record of its chart requests.

    Returns (category, reason); category "empty" means a valid symbol that simply had no bar.
    """
    if any(c.rate_limited for c in calls):
        return "rate_limited", "rate limited by Yahoo (HTTP 429)"
    for c in calls:
        if c.status == 404 or c.yahoo_code == "Not Found":
            return "not_found", f"unknown or delisted symbol (Yahoo: {c.yahoo_description or 'HTTP 404 Not Found'})"
    for c in calls:
        if c.status is None and c.error:
            if c.error.startswith("skipped: "):
                return "failed", f"request not sent ({c.error[len('skipped: '):]})"
            return "failed", f"request failed: {c.error}"
    for c in calls:
        if c.status is not None and c.status >= 500:
            return "failed", f"Yahoo server error (HTTP {c.status})"
    for c in calls:
        if c.status is not None and c.status >= 400 and "doesn't exist" not in (c.yahoo_description or ""):
            detail = f": {c.yahoo_description}" if c.yahoo_description else ""
            return "failed", f"Yahoo answered HTTP {c.status}{detail}"
    if meta or any(c.meta for c in calls):
        return "empty", "no bar in the interval"
    if not calls:
        return "failed", "no data and no request reached Yahoo for it"
    desc = next((c.yahoo_description for c in calls if c.yahoo_description), None)
    return "failed", f"no data (Yahoo: {desc})" if desc else "no data and no chart metadata from Yahoo"


def _completeness(
    ticker: str,
    tickers: list[str],
    own_dates: dict[str, set[date]],
    rlog,
    start: date,
    end: date,
    allowed: set[date] | None,
) -> str | None:
    """Why the ticker lacks bars it should have, or None (module docs: peers, then the calendar)."""
    meta = rlog.meta_for(ticker) or {}
    market = market_of(ticker)
    tz = meta.get("exchangeTimezoneName") or (market.tz if market else None)
    first_trade = _local_date(meta.get("firstTradeDate"), tz)
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
        last_trade = _local_date(meta.get("regularMarketTime"), tz)
        weekdays = sorted(d for d in candidates if d.weekday() < 5)
        if last_trade is not None and weekdays and last_trade < weekdays[0] - timedelta(days=STALE_DAYS):
            return f"no trading in the interval: last trade on {last_trade.isoformat()} (suspended or delisted?)"
    parts = []
    if missing:
        parts.append(
            f"no bar while other {tz} tickers traded on {_fmt_dates(missing)}" if not own
            else f"no bar for {_fmt_dates(missing)} while other {tz} tickers traded"
        )
    if off_calendar:
        also = f" and no other {tz} ticker in the batch has a bar that day" if peers else ""
        parts.append(f"no bar for {_fmt_dates(off_calendar)}, a session in the {calendar} exchange calendar{also}")
    if off_weekdays:
        basis = f"outside the span the {calendar} calendar knows" if calendar else f"no holiday calendar for {tz}"
        parts.append(
            f"no bar for {_fmt_dates(off_weekdays)}, expected from weekdays only ({basis}; unverified: may be an"
            " exchange holiday)"
        )
    if not parts:
        return None
    if not own:
        return "no trading in the interval: " + "; ".join(parts) + " (halted or suspended?)"
    return "partial: " + "; ".join(parts) + " (trading gap)"


def _span(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
