"""Bulk files for the LOCAL FAKE J-Quants v2 server (``jquants_fake``): ``/v2/bulk/list``,
``/v2/bulk/get`` and the signed-URL download route, serving gzip CSV with exactly the rows the
fake's API serves (the same ``today``/as-of and plan-date rules).

Which document each behaviour follows (jpx-jquants.com):

- /en/spec/bulk-list: ``endpoint`` or ``date`` required (400 otherwise, wording ours);
  ``endpoint`` alone = every file of the plan's allowed period, ``endpoint`` + ``from``/``to`` = the
  files within that period, ``date`` alone = that date's (month's) files of every endpoint. Answer
  ``{"data": [{"Key", "Size", "LastModified"}]}``; ``Size`` is bytes (numeric), as in JPX's client
  column list and the jquants-api crate's model. ``date`` takes YYYY-MM, YYYYMM, YYYY-MM-DD or
  YYYYMMDD (the official client's docstring); ``from``/``to`` the same.
- /en/spec/bulk-get: ``key`` *or* ``endpoint`` + ``date`` (all three: 400); the answer is
  ``{"url": ...}``, a temporary URL valid 5 minutes, downloaded without the API key. Here it points
  at ``/bulk-files/<token>`` on the same server; the token is HMAC-signed and carries its expiry.
- The download answers like an S3 pre-signed URL: 200 ``application/octet-stream`` with the gzip
  file; expired: 403 XML ``AccessDenied`` / "Request has expired"; tampered: 403 XML
  ``SignatureDoesNotMatch``. Downloads are not under ``/v2``: no key, no rate limit, not in
  ``FakeState.requests`` (logged in ``state.bulk.downloads``).
- Plans (/ja/spec/data-spec; Free has no bulk files): ``FakeConfig.bulk=False`` answers both bulk
  calls with 403 "This API is not available on your subscription plan." (the fake's plan-coverage
  wording; JPX does not publish the exact text).

Not confirmed offline, so chosen here: one file per endpoint per month, keyed like the official
CLI's example ``equities/bars/daily/2026/03/bars_daily_20260301.csv.gz``; CSV header = the API
field names in the API's order (``jquants_fields.BAR_FIELDS``), null = empty cell, numbers as JSON
writes them; gzip with a single member. URLs are reusable until they expire (as S3's are).

Test hooks: ``state.bulk.expire_next(n)`` makes the next ``n`` URLs already expired;
``state.bulk.downloads`` lists ``(key, status)``.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import hmac
import io
import json
import threading
from datetime import date, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from moomarkets.testing import jquants_data as fd
from moomarkets.testing.jquants_fields import BAR_FIELDS

if TYPE_CHECKING:  # no import cycle: jquants_fake imports this module
    from moomarkets.testing.jquants_fake import FakeConfig, FakeState

BULK_PATHS = ("/bulk/list", "/bulk/get")
# /en/spec/bulk-list/endpoints (excerpt) + the official CLI's list: endpoints the API accepts
ACCEPTED_ENDPOINTS = frozenset({
    "/equities/master", "/equities/bars/daily", "/equities/valuation", "/equities/investor-types",
    "/fins/summary", "/fins/earnings-date", "/fins/details", "/fins/dividend", "/indices/bars/daily/topix",
    "/indices/bars/daily", "/derivatives/bars/daily/options/225", "/derivatives/bars/daily/futures",
    "/derivatives/bars/daily/options", "/markets/margin-interest", "/markets/short-ratio",
    "/markets/short-sale-report", "/markets/margin-alert", "/markets/breakdown", "/markets/calendar",
})
# the endpoints this fake has files for: endpoint -> (key prefix, file name stem, fields)
FILES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "/equities/bars/daily": ("equities/bars/daily", "bars_daily", BAR_FIELDS),
}
MSG_NEED_PARAM = "This API requires at least 1 parameter as follows; 'endpoint','date'."
MSG_PLAN_BULK = "This API is not available on your subscription plan."
DOWNLOAD_ROUTE = "/bulk-files"
_SECRET = b"fake-jquants-bulk-signing-key"

_S3_EXPIRED = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
               '<Message>Request has expired</Message><X-Amz-Expires>300</X-Amz-Expires></Error>')
_S3_BAD_SIG = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch</Code>'
               '<Message>The request signature we calculated does not match the signature you provided.'
               '</Message></Error>')


class BulkState:
    """Bulk-file state of one fake server (``state.bulk``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.downloads: list[tuple[str, int]] = []
        self._expire_next = 0

    def expire_next(self, n: int = 1) -> None:
        with self.lock:
            self._expire_next += n

    def _take_expired(self) -> bool:
        with self.lock:
            if self._expire_next > 0:
                self._expire_next -= 1
                return True
            return False


class _Bad(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


# -- files --------------------------------------------------------------------------------------
def _month_param(value: str | None, name: str) -> tuple[date, date] | None:
    """YYYY-MM, YYYYMM, YYYY-MM-DD or YYYYMMDD -> (first, last) day it names (a month or a day)."""
    if value in (None, ""):
        return None
    s = str(value).strip()
    try:
        if len(s) in (8, 10):
            d = fd.to_date(s)
            return d, d
        if len(s) == 7 and s[4] == "-":
            y, m = int(s[:4]), int(s[5:])
        elif len(s) == 6 and s.isdigit():
            y, m = int(s[:4]), int(s[4:])
        else:
            raise ValueError(s)
        first = date(y, m, 1)
    except (ValueError, TypeError):
        raise _Bad(f"Invalid {name}: {value!r}. Use YYYYMMDD, YYYY-MM-DD, YYYYMM or YYYY-MM.") from None
    return first, (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def _window(cfg: FakeConfig) -> tuple[date, date]:
    """The days the plan lets this key download: the API's as-of and plan-date rules."""
    lo = max(fd.DATA_START, cfg.plan_from or fd.DATA_START)
    hi = min(fd.DATA_END, cfg.plan_to or fd.DATA_END, cfg.today or fd.DATA_END)
    return lo, hi


def _month_days(month: date, cfg: FakeConfig) -> list[date]:
    lo, hi = _window(cfg)
    last = (month.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    return fd.trading_days(max(month, lo), min(last, hi)) if max(month, lo) <= min(last, hi) else []


def file_key(endpoint: str, month: date) -> str:
    prefix, stem, _ = FILES[endpoint]
    return f"{prefix}/{month:%Y}/{month:%m}/{stem}_{month:%Y%m}01.csv.gz"


def _parse_key(key: str) -> tuple[str, date] | None:
    for endpoint, (prefix, stem, _) in FILES.items():
        if key.startswith(prefix + "/") and key.endswith(".csv.gz"):
            name = key.rsplit("/", 1)[-1]
            if name.startswith(stem + "_") and len(name) == len(stem) + 1 + 8 + 7:
                try:
                    month = date(int(name[-15:-11]), int(name[-11:-9]), 1)
                except ValueError:
                    return None
                if key == file_key(endpoint, month):
                    return endpoint, month
    return None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return json.dumps(value)
    return str(value)


@lru_cache(maxsize=256)
def _file_bytes(endpoint: str, days: tuple[date, ...], n_issues: int, as_of: date | None) -> bytes:
    """The gzip CSV of ``endpoint`` for ``days``: every row the API's ``date=`` query serves."""
    fields = FILES[endpoint][2]
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    for d in days:
        for row in fd.daily_bars_for_date(d, n_issues=n_issues, as_of=as_of):
            extra = set(row) - set(fields)
            if extra:  # a field the API serves that the file would drop: the fake is out of date
                raise AssertionError(f"bulk CSV fields lack {sorted(extra)}")
            w.writerow([_cell(row.get(f)) for f in fields])
    return gzip.compress(buf.getvalue().encode("utf-8"), mtime=0)


def file_bytes(endpoint: str, month: date, cfg: FakeConfig) -> bytes | None:
    days = tuple(_month_days(month, cfg))
    return _file_bytes(endpoint, days, cfg.n_issues, cfg.today) if days else None


def _months(lo: date, hi: date) -> list[date]:
    out, m = [], lo.replace(day=1)
    while m <= hi:
        out.append(m)
        m = (m.replace(day=28) + timedelta(days=4)).replace(day=1)
    return out


def list_files(params: dict[str, str], cfg: FakeConfig) -> list[dict[str, Any]]:
    endpoint = (params.get("endpoint") or "").strip() or None
    day = _month_param(params.get("date"), "date")
    if endpoint is None and day is None:
        raise _Bad(MSG_NEED_PARAM)
    if endpoint is not None and endpoint not in ACCEPTED_ENDPOINTS:
        raise _Bad(f"Invalid endpoint: {endpoint!r}.")
    lo, hi = _window(cfg)
    frm, to = _month_param(params.get("from"), "from"), _month_param(params.get("to"), "to")
    if day is not None:
        lo, hi = max(lo, day[0]), min(hi, day[1])
    if frm is not None:
        lo = max(lo, frm[0].replace(day=1))
    if to is not None:
        hi = min(hi, to[1])
    endpoints = [endpoint] if endpoint else sorted(FILES)
    if cfg.plan_endpoints is not None:
        endpoints = [e for e in endpoints if e in cfg.plan_endpoints]
    out = []
    for ep in endpoints:
        if ep not in FILES or lo > hi:
            continue
        for month in _months(lo, hi):
            data = file_bytes(ep, month, cfg)
            if data is None:
                continue
            last = _month_days(month, cfg)[-1]
            out.append({"Key": file_key(ep, month), "Size": len(data),
                        "LastModified": f"{last.isoformat()}T10:00:00.000Z"})
    return out


# -- signed URLs -------------------------------------------------------------------------------
def _sign(payload: str) -> str:
    return hmac.new(_SECRET, payload.encode(), hashlib.sha256).hexdigest()[:32]


def make_token(key: str, expires_at: float) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"k": key, "e": expires_at}).encode()).decode().rstrip("=")
    return f"{payload}.{_sign(payload)}"


def read_token(token: str) -> tuple[str, float] | None:
    payload, _, sig = token.partition(".")
    if not hmac.compare_digest(sig, _sign(payload)):
        return None
    raw = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(raw["k"]), float(raw["e"])


def get_url(params: dict[str, str], request: Request, state: FakeState) -> dict[str, str]:
    cfg = state.config
    key, endpoint, day = params.get("key"), params.get("endpoint"), params.get("date")
    if key and (endpoint or day):
        raise _Bad("Specify either 'key' or 'endpoint' and 'date', not both.")
    if not key:
        if not (endpoint and day):
            raise _Bad("This API requires 'key', or 'endpoint' and 'date'.")
        if endpoint not in ACCEPTED_ENDPOINTS:
            raise _Bad(f"Invalid endpoint: {endpoint!r}.")
        span = _month_param(day, "date")
        if endpoint not in FILES or span is None:
            raise _Bad("The specified file does not exist.")
        key = file_key(endpoint, span[0].replace(day=1))
    parsed = _parse_key(key)
    if parsed is None or file_bytes(parsed[0], parsed[1], cfg) is None or (
            cfg.plan_endpoints is not None and parsed[0] not in cfg.plan_endpoints):
        raise _Bad("The specified file does not exist.")
    ttl = -1.0 if state.bulk._take_expired() else cfg.bulk_url_ttl
    token = make_token(key, state.clock() + ttl)
    base = str(request.base_url).rstrip("/")
    return {"url": f"{base}{DOWNLOAD_ROUTE}/{token}"}


# -- wiring into the fake ----------------------------------------------------------------------
def handle(path: str, params: dict[str, str], request: Request, state: FakeState) -> Response:
    """``/v2/bulk/list`` and ``/v2/bulk/get`` after the fake's key, fault and rate-limit checks."""
    if not state.config.bulk:
        return JSONResponse({"message": MSG_PLAN_BULK}, status_code=403)
    try:
        if path == "/bulk/list":
            return JSONResponse({"data": list_files(params, state.config)})
        return JSONResponse(get_url(params, request, state))
    except _Bad as exc:
        return JSONResponse({"message": exc.message}, status_code=exc.status)


def install(app: FastAPI, state: FakeState) -> None:
    """Give ``state`` its :class:`BulkState` and mount the download route (before any catch-all)."""
    state.bulk = BulkState()

    @app.get(DOWNLOAD_ROUTE + "/{token}", include_in_schema=False)
    async def download(token: str) -> Response:
        try:
            read = read_token(token)
        except (ValueError, KeyError, TypeError):  # not base64 / JSON / our payload
            read = None
        if read is None:
            state.bulk.downloads.append(("?", 403))
            return Response(_S3_BAD_SIG, status_code=403, media_type="application/xml")
        key, expires_at = read
        if state.clock() >= expires_at:
            state.bulk.downloads.append((key, 403))
            return Response(_S3_EXPIRED, status_code=403, media_type="application/xml")
        parsed = _parse_key(key)
        data = file_bytes(parsed[0], parsed[1], state.config) if parsed else None
        if data is None:
            state.bulk.downloads.append((key, 404))
            return Response('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code></Error>',
                            status_code=404, media_type="application/xml")
        state.bulk.downloads.append((key, 200))
        return Response(data, status_code=200, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{key.rsplit("/", 1)[-1]}"'})
