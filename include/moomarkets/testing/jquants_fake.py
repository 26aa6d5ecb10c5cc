"""A LOCAL FAKE J-Quants API v2 server (FastAPI) serving SYNTHETIC data from ``jquants_data``.

It speaks the real v2 contract so the client, the source and whole DAG runs can be exercised
without the internet or a key. Which real spec page each behaviour follows:

- Authentication (jpx-jquants.com/en/spec, /en/spec/migration-v1-v2): every request must carry
  ``x-api-key``; a missing or wrong key answers 403 ``{"message": "The incoming api key is invalid
  or expired."}``.
- Status codes (/en/spec/response-status): 200; 400 with a ``message`` for bad or missing
  parameters; 403 for a bad key, for an API or dates the plan does not cover, and for a wrong
  resource path; 429 when the per-minute rate limit is exceeded, **without** ``Retry-After``;
  500 "retry later". No 401/404. The exact wording of the plan-coverage 403 messages is not
  published; the texts here follow the v1-era "Your subscription covers the following dates"
  message, and the unknown-path message is the API gateway's "Missing Authentication Token".
- Pagination (/en/spec, "paging"): ``{"data": [...], "pagination_key": "..."}``; the key is opaque,
  changes on every page, is absent on the last page and must be sent back with the *same* query
  (a key sent with a different query answers 400). Zero rows: ``{"data": []}``.
- Gzip: responses above 1 KB are gzip-compressed when the request sends ``Accept-Encoding: gzip``.
- /equities/bars/daily (/en/spec/eq-bars-daily): ``code`` or ``date`` required, else 400 "This API
  requires at least 1 parameter as follows; 'date','code'."; ``from``/``to`` with ``code``;
  ``date`` alone returns every listed issue of that day; dates as YYYYMMDD or YYYY-MM-DD; a
  4-character code means the common stock (suffix 0); non-business days have no rows; a listed
  issue with no trade that day has null O/H/L/C/Vo/Va.
- /equities/master (/en/spec/eq-master), /fins/summary (/en/spec/fin-summary; ``code`` or ``date``
  required), /markets/calendar (/en/spec/mkt-cal; ``hol_div``, ``from``, ``to``),
  /indices/bars/daily (/en/spec/idx-bars-daily; ``code`` or ``date``) and
  /indices/bars/daily/topix (/en/spec/idx-bars-daily-topix; ``from``/``to``).
- /bulk/list, /bulk/get (/en/spec/bulk-list, /en/spec/bulk-get) and the signed-URL downloads:
  gzip CSV files with the same rows as the API, in ``jquants_bulk`` (``FakeConfig.bulk``).
- Fields: every field of each endpoint, in the v2 names (daily bars with the morning/afternoon
  sessions, the master with ``ProdCat``, all 111 /fins/summary fields); the lists, and the spec page
  and official client column list each follows, are in ``jquants_fields``.
  tests/testing/test_jquants_official_client.py runs JPX's own client against this server.

Not the real API: a sliding 60-second window for the rate limit (the real algorithm is not
published), no 5-minute key block after sustained excess, page size counted in rows (the real
API splits pages by size), no 210 partial responses.

Test hooks: ``app.state.fake`` is a :class:`FakeState` with the request log (``requests``: list of
``(path, params)``, path relative to ``/v2``), ``statuses``, ``inject(kind, count)`` to make the
next requests fail, and ``reset()``. Fault kinds: ``"429"``, ``"500"``/``"502"``/``"503"``/any
status code, ``"slow"`` (answer after ``seconds``), ``"garbage"`` (200 with an HTML body),
``"truncated"`` (200 with a cut-off JSON body), ``"nodata"`` (200 JSON without ``data``),
``"loop_pagination"`` (a pagination key that never changes), ``"403"`` (plan not covered).

Run it: ``python -m moomarkets.testing.jquants_fake --port 8765 [--api-key K] [--page-size N]
[--rate-limit N]``; in tests use :func:`running_fake`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, Response

from moomarkets.testing import jquants_bulk
from moomarkets.testing import jquants_data as fd

BANNER = "FAKE J-Quants v2 server (local, synthetic data)"
MSG_BAD_KEY = "The incoming api key is invalid or expired."
MSG_RATE = "Rate limit exceeded"
MSG_NEED_PARAM = "This API requires at least 1 parameter as follows; 'date','code'."
MSG_NO_PATH = "Missing Authentication Token"
MSG_PLAN_API = "This API is not available on your subscription plan."
MSG_SERVER = "Internal Server Error. Please retry after some time."

# Written out from the spec pages, not imported from sources.jquants.settings: a path the client
# gets wrong must be refused here (403 "Missing Authentication Token"), as the real API would.
ENDPOINTS = ("/equities/bars/daily", "/equities/master", "/fins/summary", "/markets/calendar",
             "/indices/bars/daily", "/indices/bars/daily/topix")
FAULT_KINDS = {"429", "slow", "garbage", "truncated", "nodata", "loop_pagination"}


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class Fault:
    kind: str
    count: int = 1
    seconds: float = 0.0
    message: str | None = None


@dataclass
class FakeConfig:
    api_key: str = "fake-key"
    page_size: int = 500  # rows per page
    rate_limit_per_minute: int | None = None  # above it: 429, no Retry-After
    rate_limit_window: float = 60.0  # seconds; tests shrink it to prove limits quickly
    plan_endpoints: frozenset[str] | set[str] | None = None  # paths the plan covers; None = all
    plan_from: date | None = None  # first date the plan covers (earlier dates: 403)
    plan_to: date | None = None  # last date the plan covers (Free plan: 12 weeks ago)
    # faults for the first requests: ("500", 3), ("slow", 2.0) = one request answered after 2 s,
    # ("slow", n, seconds), or Fault(...) objects
    faults: list[Any] = field(default_factory=list)
    n_issues: int = fd.DEFAULT_N_ISSUES
    today: date | None = None  # data up to this day (and splits applied as of it); None = all
    bulk: bool = True  # the plan includes bulk files (/bulk/list, /bulk/get); False: 403 (jquants_bulk)
    bulk_url_ttl: float = 300.0  # seconds a signed download URL lives (/en/spec/bulk-get: 5 minutes)


def _as_fault(spec: Any) -> Fault:
    if isinstance(spec, Fault):
        return spec
    kind, *rest = spec
    kind = str(kind)
    if kind == "slow":
        if len(rest) >= 2:
            return Fault("slow", int(rest[0]), float(rest[1]))
        return Fault("slow", 1, float(rest[0]) if rest else 1.0)
    return Fault(kind, int(rest[0]) if rest else 1)


class FakeState:
    """Mutable server state shared with tests (thread-safe)."""

    def __init__(self, config: FakeConfig):
        self.config = config
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.statuses: list[int] = []
        self.headers: list[dict[str, str]] = []
        self.faults: deque[Fault] = deque(_as_fault(f) for f in config.faults)
        self.clock: Callable[[], float] = time.monotonic
        self._window: deque[float] = deque()

    def inject(self, kind: str | int, count: int = 1, *, seconds: float = 1.0, message: str | None = None) -> None:
        """Make the next ``count`` requests fail with ``kind`` (queued after earlier faults)."""
        kind = str(kind)
        if kind not in FAULT_KINDS and not kind.isdigit():
            raise ValueError(f"unknown fault kind {kind!r}")
        with self.lock:
            self.faults.append(Fault(kind, count, seconds, message))

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.statuses.clear()
            self.headers.clear()
            self.faults.clear()
            self._window.clear()

    def count(self, path: str | None = None) -> int:
        with self.lock:
            return sum(1 for p, _ in self.requests if path is None or p == path)

    # -- internals ------------------------------------------------------------------------
    def _log(self, path: str, params: dict[str, str], headers: dict[str, str]) -> int:
        with self.lock:
            self.requests.append((path, params))
            self.statuses.append(0)
            self.headers.append(headers)
            return len(self.requests) - 1

    def _take_fault(self) -> Fault | None:
        with self.lock:
            if not self.faults:
                return None
            f = self.faults[0]
            f.count -= 1
            if f.count <= 0:
                self.faults.popleft()
            return f

    def _rate_ok(self) -> bool:
        limit = self.config.rate_limit_per_minute
        if not limit:
            return True
        now = self.clock()
        with self.lock:
            while self._window and now - self._window[0] >= self.config.rate_limit_window:
                self._window.popleft()
            if len(self._window) >= limit:
                return False
            self._window.append(now)
            return True


# ----------------------------------------------------------------------------------------------
# Pagination keys: opaque, bound to the query, different on every page
# ----------------------------------------------------------------------------------------------
def _query_hash(path: str, params: dict[str, str]) -> str:
    q = {k: v for k, v in sorted(params.items()) if k != "pagination_key"}
    return hashlib.sha256(json.dumps([path, q]).encode()).hexdigest()[:16]


def _make_key(qh: str, offset: int) -> str:
    raw = json.dumps({"q": qh, "o": offset, "n": hashlib.md5(f"{qh}{offset}".encode()).hexdigest()[:8]})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _read_key(key: str, qh: str) -> int:
    try:
        raw = json.loads(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)))
        offset = int(raw["o"])
        ok = raw["q"] == qh and offset > 0
    except Exception:
        ok = False
    if not ok:
        raise BadRequest("The pagination_key is invalid for this query.")
    return offset


# ----------------------------------------------------------------------------------------------
# Endpoint data
# ----------------------------------------------------------------------------------------------
def _date_param(params: dict[str, str], name: str) -> date | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return fd.to_date(value)
    except ValueError:
        raise BadRequest(f"Invalid {name}: {value!r}. Use YYYYMMDD or YYYY-MM-DD.") from None


def _check_plan_dates(cfg: FakeConfig, *days: date | None) -> None:
    lo, hi = cfg.plan_from, cfg.plan_to
    if lo is None and hi is None:
        return
    for d in days:
        if d is not None and ((lo and d < lo) or (hi and d > hi)):
            raise BadRequest(
                f"Your subscription covers the following dates: {lo.isoformat() if lo else ''} ~ "
                f"{hi.isoformat() if hi else ''}. If you want more data, please check other plans: "
                "https://jpx-jquants.com/",
                status=403,
            )


def _clip(cfg: FakeConfig, start: date | None, end: date | None) -> tuple[date | None, date | None]:
    if cfg.plan_from and (start is None or start < cfg.plan_from):
        start = cfg.plan_from
    if cfg.plan_to and (end is None or end > cfg.plan_to):
        end = cfg.plan_to
    return start, end


def _rows(path: str, params: dict[str, str], cfg: FakeConfig) -> list[dict[str, Any]]:
    n, as_of = cfg.n_issues, cfg.today
    code = (params.get("code") or "").strip()
    day, frm, to = _date_param(params, "date"), _date_param(params, "from"), _date_param(params, "to")
    if path != "/markets/calendar":
        _check_plan_dates(cfg, day, frm, to)
    if path == "/equities/bars/daily":
        if not code and not day:
            raise BadRequest(MSG_NEED_PARAM)
        if code:
            if day:
                frm = to = day
            frm, to = _clip(cfg, frm, to)
            return fd.daily_bars_for_code(code, frm, to, n_issues=n, as_of=as_of)
        return fd.daily_bars_for_date(day, n_issues=n, as_of=as_of)
    if path == "/equities/master":
        if day is None:
            day = as_of or cfg.plan_to or min(date.today(), fd.DATA_END)
        return fd.master_rows(day, code or None, n_issues=n, as_of=as_of)
    if path == "/fins/summary":
        if not code and not day:
            raise BadRequest(MSG_NEED_PARAM)
        rows = fd.fins_summary_rows(code or None, day, n_issues=n, as_of=as_of)
        lo, hi = _clip(cfg, None, None)
        return [r for r in rows if (lo is None or r["DiscDate"] >= lo.isoformat())
                and (hi is None or r["DiscDate"] <= hi.isoformat())]
    if path == "/markets/calendar":
        hd = params.get("hol_div")
        if hd is not None and hd not in ("0", "1", "2", "3"):
            raise BadRequest(f"Invalid hol_div: {hd!r}.")
        return fd.calendar_rows(frm or fd.DATA_START, to or fd.DATA_END, hd)
    if path == "/indices/bars/daily":
        if not code and not day:
            raise BadRequest(MSG_NEED_PARAM)
        if day:
            frm = to = day
        frm, to = _clip(cfg, frm, to)
        return fd.index_bars(code or None, frm, to, as_of=as_of)
    if path == "/indices/bars/daily/topix":
        frm, to = _clip(cfg, frm, to)
        return [{k: v for k, v in r.items() if k != "Code"} for r in fd.index_bars("0000", frm, to, as_of=as_of)]
    raise BadRequest(MSG_NO_PATH, status=403)


# ----------------------------------------------------------------------------------------------
# App
# ----------------------------------------------------------------------------------------------
def _msg(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


def create_app(config: FakeConfig | None = None) -> FastAPI:
    """The fake v2 API; ``app.state.fake`` is its :class:`FakeState`."""
    config = config or FakeConfig()
    state = FakeState(config)
    app = FastAPI(title=BANNER, description="Synthetic data only. Not affiliated with JPX.", version="2")
    app.add_middleware(GZipMiddleware, minimum_size=1000)
    app.state.fake = state

    @app.get("/", include_in_schema=False)
    async def root() -> dict[str, Any]:
        return {"server": BANNER, "base_url": "/v2", "endpoints": list(ENDPOINTS)}

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v2/{path:path}")
    async def v2(path: str, request: Request) -> Response:
        path = "/" + path.strip("/")
        params = dict(request.query_params)
        idx = state._log(path, params, {k.lower(): v for k, v in request.headers.items() if k.lower() != "x-api-key"})
        resp = await _handle(path, params, request)
        with state.lock:
            if idx < len(state.statuses):  # a test may reset() the log while this request was in flight
                state.statuses[idx] = resp.status_code
        return resp

    jquants_bulk.install(app, state)  # /bulk-files/<token> downloads, before the catch-all below

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    async def unknown(path: str) -> Response:
        return _msg(403, MSG_NO_PATH)  # the real API gateway: 403, never 404

    async def _handle(path: str, params: dict[str, str], request: Request) -> Response:
        fault = state._take_fault()
        loop_pages = False
        if fault is not None:
            if fault.kind == "slow":
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "429":
                return _msg(429, fault.message or MSG_RATE)
            elif fault.kind == "garbage":
                return Response("<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=200,
                                media_type="text/html")
            elif fault.kind == "truncated":
                return Response('{"data": [{"Date": "2026-01-05", "Code": "72030", "O": 24', status_code=200,
                                media_type="application/json")
            elif fault.kind == "nodata":
                return JSONResponse({"message": "temporarily unavailable"}, status_code=200)
            elif fault.kind == "loop_pagination":
                loop_pages = True
            elif fault.kind == "403":
                return _msg(403, fault.message or MSG_PLAN_API)
            elif fault.kind.isdigit():
                status = int(fault.kind)
                return _msg(status, fault.message or (MSG_SERVER if status >= 500 else "Bad Request"))
        if not state._rate_ok():
            return _msg(429, MSG_RATE)  # no Retry-After, as the real API
        if path not in ENDPOINTS and path not in jquants_bulk.BULK_PATHS:
            return _msg(403, MSG_NO_PATH)
        if request.headers.get("x-api-key") != config.api_key:
            return _msg(403, MSG_BAD_KEY)
        if path in jquants_bulk.BULK_PATHS:  # the plan's bulk flag and endpoints apply inside
            return jquants_bulk.handle(path, params, request, state)
        if config.plan_endpoints is not None and path not in config.plan_endpoints:
            return _msg(403, MSG_PLAN_API)
        qh = _query_hash(path, params)
        try:
            offset = 0
            if params.get("pagination_key") and not loop_pages:
                offset = _read_key(params["pagination_key"], qh)
            rows = _rows(path, {k: v for k, v in params.items() if k != "pagination_key"}, config)
        except BadRequest as exc:
            return _msg(exc.status, exc.message)
        size = max(1, config.page_size)
        body: dict[str, Any] = {"data": rows[offset : offset + size]}
        if loop_pages:
            body["pagination_key"] = "bG9vcA"  # the same key every time: a broken server
        elif offset + size < len(rows):
            body["pagination_key"] = _make_key(qh, offset + size)
        return JSONResponse(body)

    return app


# ----------------------------------------------------------------------------------------------
# Running it
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def running_fake(config: FakeConfig | None = None, host: str = "127.0.0.1") -> Iterator[tuple[str, FakeState]]:
    """Serve the fake on a free port in a background thread; yields ``(base_url, state)``.

    ``base_url`` ends with ``/v2`` (``http://127.0.0.1:PORT/v2``).
    """
    import uvicorn

    app = create_app(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"fake-jquants-{port}",
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake J-Quants server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}/v2", app.state.fake
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def _parse_today(value: str) -> date | None:
    if value.lower() in ("none", "all", ""):
        return None
    if value.lower() == "now":
        return datetime.now(ZoneInfo("Asia/Tokyo")).date()
    return fd.to_date(value)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    ap = argparse.ArgumentParser(prog="python -m moomarkets.testing.jquants_fake", description=BANNER)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--api-key", default=FakeConfig.api_key)
    ap.add_argument("--page-size", type=int, default=FakeConfig.page_size, help="rows per page")
    ap.add_argument("--rate-limit", type=int, default=None, help="requests per minute (default: unlimited)")
    ap.add_argument("--n-issues", type=int, default=fd.DEFAULT_N_ISSUES)
    ap.add_argument("--today", default="now",
                    help="serve data up to this date (YYYY-MM-DD), 'now' (Tokyo date, default) or 'none'")
    ap.add_argument("--plan-endpoints", default=None, help="comma-separated paths the plan covers (default: all)")
    args = ap.parse_args(argv)
    cfg = FakeConfig(
        api_key=args.api_key,
        page_size=args.page_size,
        rate_limit_per_minute=args.rate_limit,
        n_issues=args.n_issues,
        today=_parse_today(args.today),
        plan_endpoints=frozenset(p.strip() for p in args.plan_endpoints.split(",")) if args.plan_endpoints else None,
    )
    print(BANNER, flush=True)
    print(f"  base URL   http://{args.host}:{args.port}/v2   (docs: http://{args.host}:{args.port}/docs)", flush=True)
    print(f"  data       SYNTHETIC: {cfg.n_issues} issues, calendar {fd.DATA_START}..{fd.DATA_END}, "
          f"served up to {cfg.today or 'the end of the calendar'}", flush=True)
    print(f"  page size  {cfg.page_size} rows; rate limit "
          f"{f'{cfg.rate_limit_per_minute}/minute' if cfg.rate_limit_per_minute else 'none'}", flush=True)
    print("  This is NOT the real J-Quants API; set JQUANTS_API_KEY to use the real one.", flush=True)
    uvicorn.run(create_app(cfg), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
