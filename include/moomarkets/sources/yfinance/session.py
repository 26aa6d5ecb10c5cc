"""The HTTP session yfinance uses for MooMarkets: timeouts, the shared rate limit, 429 handling.

yfinance accepts only a ``curl_cffi`` or ``requests`` Session (Yahoo rejects plain TLS
fingerprints, so ``curl_cffi`` impersonating Chrome is the default) and swallows per-ticker errors.
The session below subclasses the same backend class yfinance would build itself and wraps every
request:

* before it leaves, ``acquire()`` (the source's shared cross-process rate limit) is called, and the
  request's timeout is capped at the configured one (yfinance hard-codes 10-30 s in places);
* after it returns, the outcome is written to a :class:`RequestLog`, including a summary of every
  chart-API answer per symbol (status, Yahoo's error, meta): this is how the source learns *why* a
  ticker came back empty after yfinance swallowed the error;
* a 429 from the chart API reports ``on_throttle`` (slowing the whole source) and opens a breaker:
  the rest of this download attempt fails fast with yfinance's own ``YFRateLimitError`` instead of
  hammering a Yahoo that is blocking us (bursts after a 429 are what earn multi-hour blocks). The
  source retries the affected tickers after a backoff.

Every Yahoo URL is sent to the Connection's host instead when one is set (:func:`rebase_url`):
that is how a proxy, a local mirror or the tests' replay server
(``moomarkets.testing.yahoo_replay``) is used. There is no other way in.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from moomarkets.sources.base import RequestCounters
from moomarkets.sources.yfinance.settings import CHART_PATH, USER_AGENT


@dataclass
class ChartCall:
    """One chart-API request for a symbol, summarized."""

    symbol: str
    attempt: int
    probe: bool  # ``range=`` request (yfinance's timezone probe) rather than a period1/period2 one
    status: int | None = None  # None: no HTTP answer (see error)
    error: str | None = None  # network error, or "skipped: ..." when the breaker refused it
    yahoo_code: str | None = None  # chart.error.code, e.g. "Not Found"
    yahoo_description: str | None = None
    meta: dict[str, Any] | None = None
    bars: int = 0  # timestamps in the answer

    @property
    def rate_limited(self) -> bool:
        return self.status == 429 or (self.error or "").startswith("skipped: rate limited")


@dataclass
class RequestLog:
    """What the session did; the source reads it after each ``yf.download``."""

    requests: int = 0  # requests sent (each one took a rate-limit token)
    attempt: int = 0
    charts: list[ChartCall] = field(default_factory=list)
    throttled: int = 0  # 429 answers
    breaker: str | None = None  # set once this attempt saw a 429
    abort: BaseException | None = None  # acquire() failed: every later request fails with it

    def new_attempt(self) -> None:
        self.attempt += 1
        self.breaker = None

    def chart_calls(self, symbol: str, attempt: int | None = None) -> list[ChartCall]:
        attempt = self.attempt if attempt is None else attempt
        return [c for c in self.charts if c.symbol == symbol and c.attempt == attempt]

    def meta_for(self, symbol: str) -> dict[str, Any] | None:
        """The latest chart meta seen for ``symbol`` in any attempt (it proves the symbol exists)."""
        for call in reversed(self.charts):
            if call.symbol == symbol and call.meta:
                return call.meta
        return None


def chart_symbol(url: str) -> str | None:
    path = urlsplit(url).path
    if CHART_PATH not in path:
        return None
    return unquote(path.split(CHART_PATH, 1)[1].strip("/")).upper() or None


def _summarize_chart(call: ChartCall, content: bytes) -> None:
    try:
        data = json.loads(content)
    except (ValueError, TypeError):
        return
    chart = (data or {}).get("chart") if isinstance(data, dict) else None
    if not isinstance(chart, dict):
        return
    err = chart.get("error")
    if isinstance(err, dict):
        call.yahoo_code = err.get("code")
        call.yahoo_description = err.get("description")
    results = chart.get("result")
    if isinstance(results, list) and results and isinstance(results[0], dict):
        meta = results[0].get("meta")
        if isinstance(meta, dict):
            keep = ("symbol", "exchangeTimezoneName", "firstTradeDate", "regularMarketTime", "priceHint",
                    "instrumentType", "currency", "exchangeName")
            call.meta = {k: meta.get(k) for k in keep if k in meta}
        call.bars = len(results[0].get("timestamp") or [])


class _Controlled:
    """Mixin over a backend Session class; see the module docstring."""

    moomarkets_log: RequestLog
    _mm_timeout: float
    _mm_acquire: Callable[[], Any] | None
    _mm_on_throttle: Callable[[float], None] | None
    _mm_throttle_seconds: float
    _mm_last_throttle: float
    _mm_base_url: str | None
    _mm_counters: RequestCounters | None

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # noqa: C901 - one linear wrapper
        from yfinance.exceptions import YFRateLimitError

        url = rebase_url(url, self._mm_base_url)
        rlog = self.moomarkets_log
        params = kwargs.get("params", args[0] if args else None)
        query = dict(parse_qsl(urlsplit(url).query))
        if isinstance(params, dict):
            query.update({str(k): str(v) for k, v in params.items() if v is not None})
        symbol = chart_symbol(url)
        call = ChartCall(symbol, rlog.attempt, probe="range" in query) if symbol else None
        if call is not None:
            rlog.charts.append(call)
        if rlog.abort is not None:
            if call is not None:
                call.error = f"skipped: {type(rlog.abort).__name__}"
            raise rlog.abort
        if rlog.breaker is not None:
            if call is not None:
                call.error = "skipped: rate limited earlier in this attempt"
            raise YFRateLimitError()
        kwargs["timeout"] = _cap_timeout(kwargs.get("timeout"), self._mm_timeout)
        if self._mm_acquire is not None:
            try:
                self._mm_acquire()
            except BaseException as exc:
                rlog.abort = exc
                if call is not None:
                    call.error = f"skipped: {type(exc).__name__}"
                raise
        rlog.requests += 1
        if self._mm_counters is not None:
            self._mm_counters.requests += 1
        try:
            response = super().request(method, url, *args, **kwargs)
        except Exception as exc:
            if call is not None:
                call.error = f"{type(exc).__name__}: {exc}"[:300]
            raise
        status = int(response.status_code)
        if self._mm_counters is not None:
            self._mm_counters.answered(status)
        if call is not None:
            call.status = status
            _summarize_chart(call, response.content)
        if status == 429:
            rlog.throttled += 1
            # Only the chart API counts: yfinance tolerates a 429 from getcrumb (the chart API
            # needs no crumb), and Yahoo throttles that endpoint on its own.
            if call is not None:
                rlog.breaker = f"HTTP 429 from {urlsplit(url).path}"
                self._mm_throttle()
        return response

    def _mm_throttle(self) -> None:
        now = time.monotonic()
        if self._mm_on_throttle is not None and now - self._mm_last_throttle >= self._mm_throttle_seconds:
            self._mm_last_throttle = now
            self._mm_on_throttle(self._mm_throttle_seconds)


def rebase_url(url: str, base_url: str | None) -> str:
    """Send a Yahoo URL to ``base_url`` instead (the source Connection's host: a local mirror, a
    proxy or a test server), keeping path and query: ``https://query2.finance.yahoo.com/v8/...``
    with base ``http://127.0.0.1:9000/yahoo`` becomes ``http://127.0.0.1:9000/yahoo/v8/...``.
    Non-Yahoo URLs are left alone."""
    if not base_url:
        return url
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host != "yahoo.com" and not host.endswith(".yahoo.com"):
        return url
    base = urlsplit(base_url)  # Credentials gives every host a scheme
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, parts.fragment))


def _cap_timeout(requested: Any, cap: float) -> Any:
    if requested is None or isinstance(requested, (int, float)):
        return cap if requested is None else min(float(requested), cap)
    if isinstance(requested, tuple):
        return tuple(cap if t is None else min(float(t), cap) for t in requested)
    return cap  # curl_cffi's NOT_SET sentinel


def _curl_class() -> type:
    from curl_cffi import requests as curl_requests

    class CurlControlledSession(_Controlled, curl_requests.Session):
        pass

    return CurlControlledSession


def _requests_class() -> type:
    import requests

    class RequestsControlledSession(_Controlled, requests.Session):
        pass

    return RequestsControlledSession


def make_session(
    *,
    timeout: float = 20.0,
    acquire: Callable[[], Any] | None = None,
    on_throttle: Callable[[float], None] | None = None,
    throttle_seconds: float = 30.0,
    backend: str | None = None,
    base_url: str | None = None,
    counters: RequestCounters | None = None,
) -> Any:
    """A Session yfinance accepts, wrapped as described in the module docstring.

    ``backend`` is ``"curl_cffi"`` or ``"requests"``; by default the one yfinance itself would use
    (``curl_cffi`` unless it is missing or ``YF_DISABLE_CURL_CFFI`` is set). ``base_url`` (the
    Connection's host) redirects every Yahoo request there (:func:`rebase_url`). ``counters`` (the
    source's) count every request sent and its 429 / 5xx answers, across downloads and retries.
    """
    if backend is None:
        from yfinance import _http

        backend = "curl_cffi" if _http.HAS_CURL_CFFI else "requests"
    if backend == "curl_cffi":
        session = _curl_class()(impersonate="chrome", timeout=timeout)
    elif backend == "requests":
        session = _requests_class()()
        session.headers.update({"User-Agent": USER_AGENT, "Accept-Language": "en-US,en;q=0.5"})
    else:
        raise ValueError(f"unknown session backend {backend!r}")
    session.moomarkets_log = RequestLog()
    session._mm_timeout = float(timeout)
    session._mm_acquire = acquire
    session._mm_on_throttle = on_throttle
    session._mm_throttle_seconds = float(throttle_seconds)
    session._mm_last_throttle = float("-inf")
    session._mm_base_url = base_url or None
    session._mm_counters = counters
    return session


def reset_yfinance_state() -> None:
    """Forget yfinance's in-process response cache, so every attempt really asks Yahoo.

    ``YfData.cache_get`` memoizes responses for past date ranges for the life of the process; a
    retry must not be answered from it.
    """
    from yfinance.data import YfData

    YfData.cache_get.cache_clear()
