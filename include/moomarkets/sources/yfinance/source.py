"""Yahoo Finance (through yfinance) as a MooMarkets source (no Airflow): validate, plan, fetch.

Every request yfinance makes (cookie and crumb handshakes, timezone probes, chart requests) goes
through the shared rate limit via the controlled session (``session``); exchanges and dates are in
``markets``, the rules for missing bars in ``completeness``.

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

**Plan.** One unit per batch of tickers (``batch_size``) over ``[first, last]`` date of its
tickers' markets (:func:`~moomarkets.sources.yfinance.markets.dates_for`). Tickers are ordered by
exchange (timezone, suffix, then symbol; symbols of no known market last) before they are cut into
batches, so an exchange's tickers share batches and can be compared with each other.

**Fetch.** Tickers rate limited by Yahoo (429) are retried after a backoff, ``throttle_retries``
times, then reported; every other ticker without all its bars becomes an ``item_errors`` entry
with its reason (``completeness``).
"""

from __future__ import annotations

import logging
import time as _time
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Callable

from moomarkets.errors import ConfigError, MooMarketsError, PermanentSourceError, RetryableSourceError
from moomarkets.sources.base import CorporateAction, FetchResult, FetchUnit, Interval, Source, chunk
from moomarkets.sources.yfinance.completeness import EMPTY, RATE_LIMITED, RETRYABLE, classify_empty, missing_bars
from moomarkets.sources.yfinance.frames import bar_dates, num, records, rounded, ticker_frame
from moomarkets.sources.yfinance.markets import US, Market, allowed_dates, dates_for, market_of, market_sort_key
from moomarkets.sources.yfinance.session import make_session, reset_yfinance_state
from moomarkets.sources.yfinance.settings import (
    CONFIG_KEYS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_RATE_LIMIT,
    DEFAULT_THROTTLE_BACKOFF,
    DEFAULT_THROTTLE_RETRIES,
    DEFAULT_TIMEOUT,
    ISIN_RE,
    MAX_TICKERS,
    PROBE_URL,
    TICKER_RE,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

sleep = _time.sleep  # module-level so tests can skip the throttle backoff


def _utc_close(market: Market) -> datetime:
    """A market's close on a fixed reference day, in UTC (to compare exchanges)."""
    from zoneinfo import ZoneInfo

    return datetime.combine(date(2026, 1, 15), market.close, tzinfo=ZoneInfo(market.tz)).astimezone(ZoneInfo("UTC"))


class YFinanceSource(Source):
    kind = "yfinance"
    datasets = ("daily_quotes", "corporate_actions")
    default_rate_limit = DEFAULT_RATE_LIMIT
    default_max_concurrency = DEFAULT_MAX_CONCURRENCY
    default_conn_id = "yfinance_default"

    CONFIG_KEYS = CONFIG_KEYS

    # -- config -----------------------------------------------------------------------------
    @classmethod
    def normalize_code(cls, code: str) -> str:
        return code.strip().upper()  # Yahoo symbols are upper case (7203.T, BRK-B)

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
    def trading_day_close(cls, dataset: str, params: dict[str, Any]) -> tuple[str, time]:
        # A ticker list may span exchanges: the one that closes last (in UTC) dates the day, so a
        # run scheduled after it has every exchange's session of that day (indices, FX: US hours).
        markets = {market_of(t) for t in params.get("tickers") or []} - {None} or {US}
        latest = max(markets, key=lambda m: _utc_close(m))
        return latest.tz, latest.close

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

    def _session(self) -> Any:
        return make_session(
            timeout=self.timeout,
            acquire=self.acquire,
            on_throttle=self.on_throttle,
            throttle_seconds=max(self.throttle_backoff, 1.0),
            base_url=self.credentials.host,
            counters=self.counters,
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
                sub = ticker_frame(data, t)
                if sub is not None:
                    frames[t] = sub
                    failed.pop(t, None)
                else:
                    failed[t] = classify_empty(rlog.chart_calls(t), rlog.meta_for(t))
            limited = [t for t in pending if failed.get(t, ("",))[0] == RATE_LIMITED]
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
        retryable = {t for t, (category, _) in failed.items() if category in RETRYABLE}
        for t, (category, reason) in failed.items():
            if category == RATE_LIMITED:
                attempts = retries + 1
                errors[t] = f"{reason} (after {attempts} attempt{'s' if attempts > 1 else ''})"
            elif category != EMPTY:
                errors[t] = reason

        allowed = {t: allowed_dates(t, interval) for t in tickers}
        own_dates = {t: bar_dates(frames.get(t), start, end, allowed[t]) for t in tickers}
        if dataset == "daily_quotes":
            for t in tickers:
                if t in errors:
                    continue
                problem = missing_bars(t, tickers, own_dates, rlog, start, end, allowed[t])
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
        # Yahoo restates Adj Close on every dividend and split, and its OHLCV on every split
        # (dividend amounts in corporate_actions are split-adjusted too): the events restate history
        actions = [
            CorporateAction(code=a["code"], date=date.fromisoformat(a["date"]), action=a["action"],
                            factor=float(a["value"]))
            for t in tickers if t in frames
            for a in self._actions(t, frames[t], start, end, allowed[t])
            if dataset == "daily_quotes" or a["action"] == "split"
        ]
        return FetchResult(rows=rows, requests=rlog.requests, item_errors=errors,
                           retryable_items=retryable & set(errors), actions=actions)

    def fetch_history(self, dataset: str, code: str, start: date, end: date) -> FetchResult:
        """ONE history fetch (``yf.download`` of this ticker alone) over ``[start, end]``; bars missing
        from the span are not an error here (only stored rows are brought in line)."""
        ticker = code.strip().upper()
        unit = FetchUnit(key=f"ticker:{ticker}", kind="tickers",
                         params={"tickers": [ticker], "start": start.isoformat(), "end": end.isoformat()})
        result = self.fetch(dataset, unit)
        if ticker in result.item_errors and not result.rows:
            cls = RetryableSourceError if ticker in result.retryable_items else PermanentSourceError
            raise cls(f"{ticker}: {result.item_errors[ticker]}")
        return FetchResult(rows=result.rows, requests=result.requests, actions=result.actions)

    def _download(self, session: Any, tickers: list[str], start: date, end: date) -> pd.DataFrame | None:
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

    def _bars(
        self, ticker: str, frame: pd.DataFrame, days: set[date], meta: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        hint = meta.get("priceHint") if meta else None
        digits = int(hint) if isinstance(hint, int) and 0 <= hint <= 8 else None
        out = []
        for day, rec in records(frame):
            if day not in days:
                continue
            close = num(rec.get("Close"))
            if close is None:
                continue
            o, h, lo = (num(rec.get(k)) for k in ("Open", "High", "Low"))
            vol = num(rec.get("Volume"))
            adj = num(rec.get("Adj Close"))
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
                "adj_open": rounded(o * factor, 6) if o is not None and factor is not None else None,
                "adj_high": rounded(h * factor, 6) if h is not None and factor is not None else None,
                "adj_low": rounded(lo * factor, 6) if lo is not None and factor is not None else None,
                "adj_close": rounded(adj, 6),
                "adj_volume": None if vol is None else int(vol),
            })
        return out

    def _actions(
        self, ticker: str, frame: pd.DataFrame, start: date, end: date, allowed: set[date] | None
    ) -> list[dict[str, Any]]:
        out = []
        for day, rec in records(frame):
            if not start <= day <= end or (allowed is not None and day not in allowed):
                continue
            div = num(rec.get("Dividends"))
            if div:
                out.append({"source": self.code, "code": ticker, "date": day.isoformat(), "action": "dividend",
                            "value": round(div, 8)})
            split = num(rec.get("Stock Splits"))
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
def _check_int(d: dict[str, Any], key: str, lo: int, hi: int, field: str, subject: str) -> None:
    if key in d:
        v = d[key]
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ConfigError(f"{key} must be an integer from {lo} to {hi}, got {v!r}", field=field, subject=subject)


def _check_number(d: dict[str, Any], key: str, lo: float, hi: float, field: str, subject: str) -> None:
    if key in d:
        v = d[key]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
            raise ConfigError(f"{key} must be a number from {lo:g} to {hi:g}, got {v!r}", field=field, subject=subject)


def _fmt_list(items: list[str], limit: int = 5) -> str:
    return ", ".join(items[:limit]) + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


