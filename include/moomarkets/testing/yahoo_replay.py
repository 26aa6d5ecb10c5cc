"""Replay Yahoo chart-API answers instead of the network (tests, demos): no internet needed.

Fixtures are JSON files (``tests/fixtures/yahoo/*.json``) holding *interactions* in the layout of
yfinance's own replay cassettes (``tests/data/responses/*.json`` in ranaroussi/yfinance): a
``request`` (method, url, params to match) and a ``response`` (status_code, content_type, and
``json`` or ``text``), plus an optional ``times`` (serve it that many times, then fall through to
the next match; absent = forever). The ``json`` bodies are Yahoo's ``/v8/finance/chart/{symbol}``
documents exactly as yfinance 1.7 parses them (``scrapers/history.py`` ``PriceHistory.history`` ->
``utils.parse_quotes`` / ``utils.parse_actions``; ``base.py`` ``_fetch_ticker_tz`` for the
``range=1d`` timezone probe).

The replay behaves like Yahoo's server for a recorded series, so one fixture serves any interval
inside it: a ``period1``/``period2`` request gets the bars and events whose timestamps fall in
``[period1, period2)`` (none: Yahoo's empty-range document, meta only), a ``range=1d`` request gets
the last bar. Cookie, consent and crumb handshakes get canned answers; an unknown chart symbol gets
Yahoo's 404 "No data found, symbol may be delisted"; every other unmatched request gets a 404 and is
listed in :attr:`YahooReplay.unmatched`.

Use::

    from moomarkets.testing.yahoo_replay import replaying

    with replaying(FIXTURES / "normal_batch.json", FIXTURES / "split_dividend.json") as replay:
        ...  # YFinanceSource.fetch / dag.test(): every Yahoo request is answered from the files
        assert not replay.unmatched

Earlier files win when several interactions match (put a 429 scenario before the normal series).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from moomarkets.sources.yfinance import session as yfsession
from moomarkets.sources.yfinance.session import CHART_PATH, TransportResponse

_HANDSHAKE_HOSTS = ("fc.yahoo.com", "guce.yahoo.com", "consent.yahoo.com")
_HTML = b"<!doctype html><html><head><title>Yahoo</title></head><body></body></html>"
NOT_FOUND_CHART = {
    "chart": {"result": None, "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"}}
}
_A3 = (("A3", "d=replay", ".yahoo.com"),)


@dataclass
class Interaction:
    method: str
    path: str  # URL path, may contain fnmatch wildcards ("/v8/finance/chart/*")
    params: dict[str, str]
    response: dict[str, Any]
    times: int | None = None  # None = forever
    source: str = ""

    def matches(self, method: str, path: str, params: dict[str, str]) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if method != self.method or not fnmatch.fnmatchcase(path, self.path):
            return False
        return all(params.get(k) == v for k, v in self.params.items())


@dataclass
class YahooReplay:
    """A transport for :func:`moomarkets.sources.yfinance.session.set_transport`."""

    interactions: list[Interaction]
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_files(cls, *paths: str | Path) -> YahooReplay:
        interactions: list[Interaction] = []
        for p in paths:
            doc = json.loads(Path(p).read_text(encoding="utf-8"))
            items = doc["interactions"] if isinstance(doc, dict) else doc
            for item in items:
                req = item["request"]
                interactions.append(
                    Interaction(
                        method=req.get("method", "GET").upper(),
                        path=urlsplit(req["url"]).path,
                        params={str(k): str(v) for k, v in (req.get("params") or {}).items()},
                        response=item["response"],
                        times=item.get("times"),
                        source=Path(p).name,
                    )
                )
        return cls(interactions)

    def chart_requests(self, symbol: str | None = None) -> list[dict[str, str]]:
        """Params of the chart requests served (for one symbol, or all)."""
        out = []
        for _, url, params in self.requests:
            path = urlsplit(url).path
            if CHART_PATH in path and (symbol is None or path.rsplit("/", 1)[-1].upper() == symbol.upper()):
                out.append(params)
        return out

    # -- the transport ---------------------------------------------------------------------
    def __call__(self, method: str, url: str, params: dict[str, str]) -> TransportResponse:
        parts = urlsplit(url)
        path = parts.path
        with self._lock:
            self.requests.append((method, url, dict(params)))
            if parts.hostname == "fc.yahoo.com":  # Yahoo answers 404 and sets the A3 cookie
                return TransportResponse(404, _HTML, "text/html; charset=utf-8", url, _A3)
            if parts.hostname in _HANDSHAKE_HOSTS:  # consent pages: no form, yfinance falls back
                return TransportResponse(200, _HTML, "text/html; charset=utf-8", url)
            if path.endswith("/v1/test/getcrumb"):
                return TransportResponse(200, b"replay-crumb", "text/plain;charset=utf-8", url)
            for it in self.interactions:
                if it.matches(method, path, params):
                    if it.times is not None:
                        it.times -= 1
                    return self._render(it, params, url)
            if CHART_PATH in path:
                self.unmatched.append(f"{method} {url} {params}")
                return _json(404, NOT_FOUND_CHART, url)
            if "/v10/finance/quoteSummary/" in path:
                error = {"code": "Not Found", "description": f"Quote not found for symbol: {path.rsplit('/', 1)[-1]}"}
                return _json(404, {"quoteSummary": {"result": None, "error": error}}, url)
            if path.endswith("/v7/finance/quote"):
                return _json(200, {"quoteResponse": {"result": [], "error": None}}, url)
            if "/fundamentals-timeseries/" in path:
                return _json(200, {"timeseries": {"result": [], "error": None}}, url)
            self.unmatched.append(f"{method} {url} {params}")
            return TransportResponse(404, b"Not Found", "text/plain", url)

    def _render(self, it: Interaction, params: dict[str, str], url: str) -> TransportResponse:
        resp = it.response
        status = int(resp.get("status_code", 200))
        content_type = resp.get("content_type", "application/json;charset=utf-8")
        if "json" not in resp:
            return TransportResponse(status, str(resp.get("text", "")).encode(), content_type, url)
        body = resp["json"]
        if status == 200 and CHART_PATH in urlsplit(url).path:
            body = window_chart(body, params)
        return TransportResponse(status, json.dumps(body, separators=(",", ":")).encode(), content_type, url)


def _json(status: int, body: Any, url: str) -> TransportResponse:
    return TransportResponse(status, json.dumps(body).encode(), "application/json;charset=utf-8", url)


def window_chart(doc: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    """What Yahoo answers from a recorded series for ``params`` (see the module docstring)."""
    results = ((doc or {}).get("chart") or {}).get("result")
    if not isinstance(results, list) or not results:
        return doc
    out = copy.deepcopy(doc)
    result = out["chart"]["result"][0]
    stamps = result.get("timestamp") or []
    if "period1" in params or "period2" in params:
        lo = int(float(params.get("period1", "-1e18")))
        hi = int(float(params.get("period2", "1e18")))
        keep = [i for i, t in enumerate(stamps) if lo <= t < hi]
        result["meta"]["range"] = ""
    elif params.get("range") == "1d" and stamps:
        keep = [len(stamps) - 1]
        lo, hi = stamps[-1], stamps[-1] + 1
        result["meta"]["range"] = "1d"
    else:
        return out
    if "interval" in params:
        result["meta"]["dataGranularity"] = params["interval"]
    if not keep:
        result.pop("timestamp", None)
        result.pop("events", None)
        result["indicators"] = {"quote": [{}], "adjclose": [{}]}
        return out
    result["timestamp"] = [stamps[i] for i in keep]
    for block in ("quote", "adjclose"):
        for series in result.get("indicators", {}).get(block, []):
            for key, values in series.items():
                series[key] = [values[i] for i in keep]
    events = result.get("events")
    if isinstance(events, dict):
        for kind, by_ts in list(events.items()):
            kept = {k: v for k, v in by_ts.items() if lo <= int(v.get("date", k)) < hi}
            if kept:
                events[kind] = kept
            else:
                del events[kind]
        if not events:
            del result["events"]
    return out


@contextmanager
def replaying(*fixtures: str | Path | YahooReplay) -> Iterator[YahooReplay]:
    """Serve every Yahoo request from ``fixtures`` (files, or a ready :class:`YahooReplay`).

    Also isolates yfinance's process-wide state for the duration, so runs are repeatable: its
    on-disk timezone and cookie caches are swapped for empty in-memory ones (nothing is written
    under the user's cache folder; within the context they fill up as the disk caches would, so
    request counts match a fresh production worker), and its cookie/crumb and response memo are
    reset on entry and exit.
    """
    if len(fixtures) == 1 and isinstance(fixtures[0], YahooReplay):
        replay = fixtures[0]
    elif any(isinstance(f, YahooReplay) for f in fixtures):
        raise TypeError("give either one YahooReplay or fixture files, not both")
    else:
        replay = YahooReplay.from_files(*fixtures)
    from yfinance import cache as yfcache

    saved = (yfcache._TzCacheManager._tz_cache, yfcache._CookieCacheManager._Cookie_cache)
    previous = yfsession.get_transport()
    yfcache._TzCacheManager._tz_cache = _MemoryCache()
    yfcache._CookieCacheManager._Cookie_cache = _MemoryCache(with_age=True)
    _reset_yfdata()
    yfsession.set_transport(replay)
    try:
        yield replay
    finally:
        yfsession.set_transport(previous)
        yfcache._TzCacheManager._tz_cache, yfcache._CookieCacheManager._Cookie_cache = saved
        _reset_yfdata()


class _MemoryCache:
    """Stands in for yfinance's sqlite tz cache (key -> tz) or cookie cache (strategy -> cookie)."""

    def __init__(self, with_age: bool = False):
        self._items: dict[str, tuple[Any, float]] = {}
        self._with_age = with_age

    def lookup(self, key):
        item = self._items.get(key)
        if item is None:
            return None
        if not self._with_age:
            return item[0]
        from datetime import timedelta

        return {"cookie": copy.deepcopy(item[0]), "age": timedelta(seconds=time.monotonic() - item[1])}

    def store(self, key, value) -> None:
        if value is None:
            self._items.pop(key, None)
        else:
            self._items[key] = (copy.deepcopy(value) if self._with_age else value, time.monotonic())


def _reset_yfdata() -> None:
    from yfinance.data import YfData

    yfsession.reset_yfinance_state()
    instance = type(YfData)._instances.get(YfData)
    if instance is not None:
        with instance._cookie_lock:
            instance._crumb = None
            instance._cookie = None
            instance._cookie_strategy = "basic"
