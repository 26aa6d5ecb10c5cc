"""A LOCAL HTTP server replaying Yahoo chart-API answers (tests, demos): no internet needed.

The Yahoo source sends every Yahoo request to its Connection's host when one is set
(:func:`moomarkets.sources.yfinance.session.rebase_url`), so tests point it here with
``Credentials(host=base_url)`` (or an ``AIRFLOW_CONN_YFINANCE_DEFAULT`` whose host is
``base_url``): yfinance then runs its own code on the production session, through a real socket.
This is the same seam as the J-Quants fake (``moomarkets.testing.jquants_fake``).

Fixtures are JSON files (``tests/fixtures/yahoo/*.json``) holding *interactions* in the layout of
yfinance's own replay cassettes (``tests/data/responses/*.json`` in ranaroussi/yfinance): a
``request`` (method, url, params to match) and a ``response`` (status_code, content_type, and
``json`` or ``text``), plus an optional ``times`` (serve it that many times, then fall through to
the next match; absent = forever). The ``json`` bodies are Yahoo's ``/v8/finance/chart/{symbol}``
documents exactly as yfinance 1.7 parses them (``scrapers/history.py`` ``PriceHistory.history`` ->
``utils.parse_quotes`` / ``utils.parse_actions``; ``base.py`` ``_fetch_ticker_tz`` for the
``range=1d`` timezone probe). Only the URL *path* is matched: the rebased request no longer names
Yahoo's host.

The replay behaves like Yahoo's server for a recorded series, so one fixture serves any interval
inside it: a ``period1``/``period2`` request gets the bars and events whose timestamps fall in
``[period1, period2)`` (none: Yahoo's empty-range document, meta only), a ``range=1d`` request gets
the last bar. The cookie handshake (``fc.yahoo.com``, rebased to ``/``), consent pages and the
crumb get canned answers; an unknown chart symbol gets Yahoo's 404 "No data found, symbol may be
delisted"; every other unmatched request gets a 404 and is listed in :attr:`YahooReplay.unmatched`.

Use::

    from moomarkets.testing.yahoo_replay import running_replay

    with running_replay(FIXTURES / "normal_batch.json", FIXTURES / "split_dividend.json") as (base_url, replay):
        source = YFinanceSource("yahoo", {}, Credentials(host=base_url))
        ...  # fetch / fetch_and_load / dag.test(): every Yahoo request is answered from the files
        assert not replay.unmatched

Earlier files win when several interactions match (put a 429 scenario before the normal series).
Run it by hand: ``python -m moomarkets.testing.yahoo_replay --port 8766 FIXTURE.json ...``.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlsplit

from moomarkets.sources.yfinance.session import reset_yfinance_state
from moomarkets.sources.yfinance.settings import CHART_PATH

BANNER = "Yahoo chart-API REPLAY server (local, recorded fixtures)"
_HTML = b"<!doctype html><html><head><title>Yahoo</title></head><body></body></html>"
_HTML_TYPE = "text/html; charset=utf-8"
_JSON_TYPE = "application/json;charset=utf-8"
NOT_FOUND_CHART = {
    "chart": {"result": None, "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"}}
}
# Paths of Yahoo's consent pages (guce.yahoo.com, consent.yahoo.com) after rebasing: no form, so
# yfinance falls back to its basic cookie strategy, as it does outside the EU.
_CONSENT_PATHS = ("/consent", "/v2/collectConsent", "/copyConsent")


@dataclass(frozen=True)
class Reply:
    """One answer of the replay server."""

    status: int
    body: bytes = b""
    content_type: str = _JSON_TYPE
    cookies: tuple[tuple[str, str], ...] = ()  # (name, value) set on the answer


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
    """The recorded interactions, and what was asked of them (``requests``: method, path, params)."""

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
        for _, path, params in self.requests:
            if CHART_PATH in path and (symbol is None or path.rsplit("/", 1)[-1].upper() == symbol.upper()):
                out.append(params)
        return out

    def answer(self, method: str, path: str, params: dict[str, str]) -> Reply:
        """What Yahoo would answer to ``method path?params`` (see the module docstring)."""
        with self._lock:  # the server is threaded; ``times`` counters and logs must not race
            self.requests.append((method, path, dict(params)))
            if path in ("", "/"):  # fc.yahoo.com: Yahoo answers 404 and sets the A3 cookie
                return Reply(404, _HTML, _HTML_TYPE, (("A3", "d=replay"),))
            if path in _CONSENT_PATHS:
                return Reply(200, _HTML, _HTML_TYPE)
            if path.endswith("/v1/test/getcrumb"):
                return Reply(200, b"replay-crumb", "text/plain;charset=utf-8")
            for it in self.interactions:
                if it.matches(method, path, params):
                    if it.times is not None:
                        it.times -= 1
                    return _render(it, path, params)
            if CHART_PATH in path:
                self.unmatched.append(f"{method} {path} {params}")
                return _json(404, NOT_FOUND_CHART)
            if "/v10/finance/quoteSummary/" in path:
                error = {"code": "Not Found", "description": f"Quote not found for symbol: {path.rsplit('/', 1)[-1]}"}
                return _json(404, {"quoteSummary": {"result": None, "error": error}})
            if path.endswith("/v7/finance/quote"):
                return _json(200, {"quoteResponse": {"result": [], "error": None}})
            if "/fundamentals-timeseries/" in path:
                return _json(200, {"timeseries": {"result": [], "error": None}})
            self.unmatched.append(f"{method} {path} {params}")
            return Reply(404, b"Not Found", "text/plain")


def recorded_chart(fixture: str | Path, symbol: str) -> dict[str, Any]:
    """The recorded chart ``result`` of ``symbol`` in a fixture file (what the replay serves for it)."""
    doc = json.loads(Path(fixture).read_text())
    for it in doc["interactions"]:
        if it["request"]["url"].endswith("/" + symbol):
            return it["response"]["json"]["chart"]["result"][0]
    raise KeyError(f"{symbol} is not recorded in {fixture}")


def _render(it: Interaction, path: str, params: dict[str, str]) -> Reply:
    resp = it.response
    status = int(resp.get("status_code", 200))
    content_type = resp.get("content_type", _JSON_TYPE)
    if "json" not in resp:
        return Reply(status, str(resp.get("text", "")).encode(), content_type)
    body = resp["json"]
    if status == 200 and CHART_PATH in path:
        body = window_chart(body, params)
    return Reply(status, json.dumps(body, separators=(",", ":")).encode(), content_type)


def _json(status: int, body: Any) -> Reply:
    return Reply(status, json.dumps(body).encode(), _JSON_TYPE)


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


# -- the HTTP server -----------------------------------------------------------------------------
def _handler(replay: YahooReplay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)  # a POST body is not matched on; drain it
            reply = replay.answer(self.command, parts.path, dict(parse_qsl(parts.query)))
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.cookies:
                self.send_header("Set-Cookie", f"{name}={value}; Path=/; Max-Age=31536000")
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = _serve  # noqa: N815 - http.server API

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server API
            pass  # the test log is the place for failures, not for every request

    return Handler


@contextmanager
def serving(replay: YahooReplay, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``replay`` over HTTP on a background thread; yields the base URL (``http://host:port``)."""
    httpd = ThreadingHTTPServer((host, port), _handler(replay))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="yahoo-replay", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@contextmanager
def running_replay(*fixtures: str | Path | YahooReplay) -> Iterator[tuple[str, YahooReplay]]:
    """Serve ``fixtures`` (files, or one ready :class:`YahooReplay`) on a free local port, with
    yfinance's process-wide state isolated (:func:`isolated_yfinance`); yields (base URL, replay)."""
    if len(fixtures) == 1 and isinstance(fixtures[0], YahooReplay):
        replay = fixtures[0]
    elif any(isinstance(f, YahooReplay) for f in fixtures):
        raise TypeError("give either one YahooReplay or fixture files, not both")
    else:
        replay = YahooReplay.from_files(*fixtures)  # type: ignore[arg-type]
    with isolated_yfinance(), serving(replay) as base_url:
        yield base_url, replay


@contextmanager
def isolated_yfinance() -> Iterator[None]:
    """Make yfinance runs in this process repeatable for the duration.

    Its on-disk timezone and cookie caches are swapped for empty in-memory ones (nothing is
    written under the user's cache folder; within the context they fill up as the disk caches
    would, so request counts match a fresh production worker), and its cookie/crumb and response
    memo are reset on entry and exit.
    """
    from yfinance import cache as yfcache

    saved = (yfcache._TzCacheManager._tz_cache, yfcache._CookieCacheManager._Cookie_cache)
    yfcache._TzCacheManager._tz_cache = _MemoryCache()
    yfcache._CookieCacheManager._Cookie_cache = _MemoryCache(with_age=True)
    _reset_yfdata()
    try:
        yield
    finally:
        yfcache._TzCacheManager._tz_cache, yfcache._CookieCacheManager._Cookie_cache = saved
        _reset_yfdata()


class _MemoryCache:
    """Stands in for yfinance's sqlite tz cache (key -> tz) or cookie cache (strategy -> cookie)."""

    def __init__(self, with_age: bool = False) -> None:
        self._items: dict[str, tuple[Any, float]] = {}
        self._with_age = with_age

    def lookup(self, key: str) -> Any:
        item = self._items.get(key)
        if item is None:
            return None
        if not self._with_age:
            return item[0]
        return {"cookie": copy.deepcopy(item[0]), "age": timedelta(seconds=time.monotonic() - item[1])}

    def store(self, key: str, value: Any) -> None:
        if value is None:
            self._items.pop(key, None)
        else:
            self._items[key] = (copy.deepcopy(value) if self._with_age else value, time.monotonic())


def _reset_yfdata() -> None:
    from yfinance.data import YfData

    reset_yfinance_state()
    instance = type(YfData)._instances.get(YfData)
    if instance is not None:
        with instance._cookie_lock:
            instance._crumb = None
            instance._cookie = None
            instance._cookie_strategy = "basic"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=BANNER)
    ap.add_argument("fixtures", nargs="+", type=Path, help="fixture files (earlier ones win)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8766)
    args = ap.parse_args(argv)
    replay = YahooReplay.from_files(*args.fixtures)
    with serving(replay, args.host, args.port) as base_url:
        print(f"{BANNER}\n  base URL   {base_url}   (the yfinance connection's host)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
