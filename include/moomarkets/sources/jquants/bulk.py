"""J-Quants v2 bulk files (``/bulk/list``, ``/bulk/get``) for history ranges (no Airflow).

Which document each detail follows (jpx-jquants.com v2 spec pages; what could not be confirmed
offline is marked UNCONFIRMED and handled defensively):

- /en/spec/bulk-list: ``GET /v2/bulk/list`` with the ``x-api-key`` header; ``endpoint`` (or
  ``date``) is required; ``endpoint`` + ``from``/``to`` lists the files within that period. The
  answer is ``{"data": [{"Key", "Size", "LastModified"}]}`` (field names also in JPX's official
  client, ``constants.BULK_LIST_COLUMNS_V2``); we follow a ``pagination_key`` if one comes, as for
  every v2 list. "Files are compressed in gzip format"; "File names include year and month".
- /en/spec/bulk-get: ``GET /v2/bulk/get?key=<Key from the list>`` answers ``{"url": "<signed URL>"}``;
  the URL is temporary (5 minutes) and cannot be reused; GET it *without* the API key and gunzip:
  the file is CSV.
- /en/spec/bulk-list/endpoints: ``/equities/bars/daily`` is a bulk endpoint (``BULK_ENDPOINTS``).
- Plans (/ja/spec/data-spec, as summarised by JPX's jquants-cli ``references/plans.md``; the
  official Python client lists the bulk calls under "Light plan or higher"): the Free plan has no
  bulk files, so ``plan: free`` (and a source without ``plan``, taken as Free like its rate limit)
  never plans bulk units. Any other plan that lacks them answers the
  bulk calls with a 403 that the client raises as :class:`PlanNotCoveredError`: the unit then loads
  its dates through the API, one ``date=`` query per day, and says so in the log.
- /en/spec/rate-limits: the limit is on API requests (per key). ``/bulk/list`` and ``/bulk/get``
  are API requests and take a token from the shared limiter like any other; the signed-URL
  download goes to the file storage host (an S3-style pre-signed URL, authenticated by its
  signature, not by the key), so it does not take a token and is not counted in ``requests``. Our
  reading, not stated by JPX; if the storage ever throttles, the download is retried with a fresh
  URL and then fails the unit as retryable.

UNCONFIRMED offline, and how the code copes:

- File granularity (one file per month is the documented usage, ``date=YYYY-MM``; example keys
  ``.../2026/03/bars_daily_20260301.csv.gz``, ``..._202403.csv.gz``). The planner *assumes* one file
  per month; the fetch trusts only the list: it gets every listed file whose key's year/month
  touches the unit (keys without a recognisable month are taken too) and, if that costs at least as
  many requests as the by-date queries would, uses the API instead.
- CSV headers equal to the API field names (``Date,Code,O,H,L,C,UL,LL,Vo,Va,AdjFactor,...``):
  headers are mapped through :data:`CSV_COLUMN_ALIASES` (the v1 long names), and a file that still
  lacks a column the dataset needs is not loaded (the unit falls back to the API, with a warning).
  Values are typed as JSON would type them, so the rows normalise exactly as API rows do.
- Whether the latest month's file is complete: every unit date with no row in the files is loaded
  through the API (``date=`` query), so a lagging file never leaves a gap.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import re
import zlib
from collections.abc import Iterable
from datetime import date
from typing import Any

import requests

from moomarkets.errors import (
    ConfigError,
    PlanNotCoveredError,
    RetryableSourceError,
    scrub,
)
from moomarkets.sources.base import FetchUnit, chunk
from moomarkets.sources.jquants.client import JQuantsClient
from moomarkets.sources.jquants.settings import DEFAULT_PLAN, PATHS

log = logging.getLogger(__name__)

# /en/spec/bulk-list, /en/spec/bulk-get: paths relative to the v2 base URL
BULK_LIST_PATH = "/bulk/list"
BULK_GET_PATH = "/bulk/get"
# /en/spec/bulk-list/endpoints: the datasets we load from bulk files, and their endpoint
BULK_ENDPOINTS: dict[str, str] = {"daily_quotes": PATHS["daily_quotes"]}  # /equities/bars/daily
BULK_MODES = ("auto", "off")  # source config ``bulk``; default auto
NO_BULK_PLANS = frozenset({"free"})  # /ja/spec/data-spec: no CSV/bulk files on the Free plan
# Planner's cost of one month as a bulk unit: 1 /bulk/list + 1 /bulk/get (one file per month)
BULK_REQUESTS_PER_MONTH = 2
# /en/spec/bulk-get: a URL lives 5 minutes and cannot be reused; a download refused as expired
# (403 from the storage host) or cut off is retried with a fresh /bulk/get, at most this many gets
MAX_GETS_PER_FILE = 3

# v1 long CSV/JSON names -> the v2 API field names the normalizer reads (identity for v2 names)
CSV_COLUMN_ALIASES: dict[str, str] = {
    "Open": "O", "High": "H", "Low": "L", "Close": "C", "UpperLimit": "UL", "LowerLimit": "LL",
    "Volume": "Vo", "TurnoverValue": "Va", "AdjustmentFactor": "AdjFactor", "AdjustmentOpen": "AdjO",
    "AdjustmentHigh": "AdjH", "AdjustmentLow": "AdjL", "AdjustmentClose": "AdjC", "AdjustmentVolume": "AdjVo",
}
# the API fields each dataset's normalizer reads: a file without one of them is not used
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "daily_quotes": ("Date", "Code", "O", "H", "L", "C", "UL", "LL", "Vo", "Va", "AdjFactor",
                     "AdjO", "AdjH", "AdjL", "AdjC", "AdjVo"),
}
# fields /en/spec/eq-bars-daily serves as strings: the limit flags "0"/"1" of the day and of the
# morning (M) and afternoon (A) sessions; every other field of these files is a number or null
STRING_COLUMNS = frozenset({"Date", "Code", "UL", "LL", "MUL", "MLL", "AUL", "ALL"})

_INT_RE = re.compile(r"^-?\d+$")
_KEY_MONTH_RES = (re.compile(r"(?<!\d)(\d{4})/(\d{2})(?:/|$)"), re.compile(r"(?<!\d)(\d{4})(\d{2})(?:\d{2})?(?!\d)"))


class BulkFormatError(Exception):
    """A bulk file that does not match the API's dataset (columns): not loaded."""


# -- config and planning ----------------------------------------------------------------------
def validate_bulk_mode(config: dict[str, Any], subject: str) -> None:
    mode = config.get("bulk", "auto")
    if mode not in BULK_MODES:
        raise ConfigError(f"bulk must be one of {', '.join(BULK_MODES)}, got {mode!r}", field="config.bulk",
                          subject=subject)


def bulk_allowed(dataset: str, config: dict[str, Any]) -> bool:
    """May the planner use bulk files for ``dataset`` under this source config?

    ``bulk: auto`` (the default) uses them when the configured ``plan`` includes them; a source
    without ``plan`` is taken to be on the Free plan, the same safe guess as its rate limit
    (settings.DEFAULT_PLAN), so it never spends a request on a bulk call its key may not have."""
    return (dataset in BULK_ENDPOINTS and config.get("bulk", "auto") == "auto"
            and config.get("plan", DEFAULT_PLAN) not in NO_BULK_PLANS)


def month_of(day: str) -> str:
    return day[:7]


def plan_bulk_units(days: list[date], max_units: int) -> tuple[list[FetchUnit], list[date]]:
    """Bulk units for the months where a file costs fewer requests than their ``date=`` queries,
    and the days left for the by-date plan (months with few days, e.g. the range's ends).

    By date costs at least one request per day (more when the day has several pages); a month as
    a bulk unit costs :data:`BULK_REQUESTS_PER_MONTH`, so bulk wins for months with more days.
    The units stay within ``max_units`` together with the by-date units of the days left."""
    months: dict[str, list[str]] = {}
    for d in days:
        iso = d.isoformat()
        months.setdefault(month_of(iso), []).append(iso)
    bulk_months = [m for m, ds in months.items() if len(ds) > BULK_REQUESTS_PER_MONTH]
    rest = [d for d in days if month_of(d.isoformat()) not in set(bulk_months)]
    if not bulk_months or (rest and max_units < 2):
        return [], days
    rest_units = min(len(rest), max(1, max_units // 2)) if rest else 0
    budget = max(1, max_units - rest_units)
    units = []
    for group in chunk(bulk_months, -(-len(bulk_months) // budget)):
        dates = [d for m in group for d in months[m]]
        key = f"bulk:{group[0]}" if len(group) == 1 else f"bulk:{group[0]}..{group[-1]}"
        units.append(FetchUnit(key=key, kind="bulk", params={"dates": dates, "months": group}))
    return units, rest


# -- fetching ---------------------------------------------------------------------------------
def key_month(key: str) -> str | None:
    """``YYYY-MM`` named by a file key (``.../2026/03/...`` or ``..._202603[01].csv.gz``), else None."""
    name = key.rsplit("/", 1)[-1]
    for rx, text in ((_KEY_MONTH_RES[1], name), (_KEY_MONTH_RES[0], key)):
        m = rx.search(text)
        if m and 1 <= int(m.group(2)) <= 12:
            return f"{m.group(1)}-{m.group(2)}"
    return None


def _value(column: str, text: str | None) -> Any:
    """A CSV cell typed as the API's JSON types it: empty = null, numbers as int/float."""
    if text is None:
        return None
    text = text.strip()
    if text == "":
        return None
    if column in STRING_COLUMNS:
        return text
    if _INT_RE.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def parse_csv(data: bytes, dataset: str) -> list[dict[str, Any]]:
    """A bulk file's rows with the API's field names and value types (``data`` gzip or plain)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)  # handles multi-member files too
    text = data.decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return []
    columns = [CSV_COLUMN_ALIASES.get(h.strip(), h.strip()) for h in header]
    missing = [c for c in REQUIRED_COLUMNS.get(dataset, ()) if c not in columns]
    if missing:
        raise BulkFormatError(f"the file has no column(s) {', '.join(missing)} (header: {', '.join(header[:20])})")
    out = []
    for record in reader:
        if not record:
            continue
        out.append({c: _value(c, v) for c, v in zip(columns, record)})
    return out


def _iso(value: Any) -> str:
    text = str(value)
    return text if "-" in text else f"{text[:4]}-{text[4:6]}-{text[6:8]}"


class BulkFetcher:
    """Loads one ``bulk`` unit: list, get, download, parse; falls back to ``date=`` queries.

    Every API request (list, get, fallback queries) goes through ``client`` (rate limited,
    counted in ``client.requests_made``); downloads use the client's HTTP session without the key
    and are counted in ``downloads``."""

    def __init__(self, client: JQuantsClient, dataset: str):
        self.client = client
        self.dataset = dataset
        self.endpoint = BULK_ENDPOINTS[dataset]
        self.downloads = 0
        self.files_used: list[str] = []
        self.api_dates: list[str] = []  # unit dates loaded through the API instead

    def fetch(self, unit: FetchUnit) -> list[dict[str, Any]]:
        dates = list(unit.params["dates"])
        wanted = set(dates)
        months = set(unit.params.get("months") or {month_of(d) for d in dates})
        rows: list[dict[str, Any]] = []
        try:
            listed = self.client.get_all(BULK_LIST_PATH, {
                "endpoint": self.endpoint,
                "from": (min(months) + "-01").replace("-", ""),
                "to": max(dates).replace("-", ""),
            })
            keys = [str(f["Key"]) for f in listed if isinstance(f, dict) and f.get("Key")]
            keys = sorted(k for k in keys if key_month(k) is None or key_month(k) in months)
            if len(keys) >= len(dates):  # e.g. one file per day: the API is no dearer
                log.info("J-Quants bulk: %d files for %d dates of %s cost no fewer requests than the API; "
                         "loading via the API", len(keys), len(dates), unit.key)
                keys = []
            for key in keys:
                rows.extend(r for r in self._file_rows(key) if _iso(r.get("Date", "")) in wanted)
                self.files_used.append(key)
        except PlanNotCoveredError as exc:
            log.warning("J-Quants bulk files are not included in the plan (%s); loading the %d dates of %s "
                        "via the API (set the source's config bulk: off to skip this request)",
                        exc, len(dates), unit.key)
            return self._by_date(dates)
        except BulkFormatError as exc:
            log.warning("J-Quants bulk file for %s does not match the API's %s columns (%s); loading via the API",
                        unit.key, self.dataset, exc)
            return self._by_date(dates)
        covered = {_iso(r["Date"]) for r in rows}
        gaps = [d for d in dates if d not in covered]
        if gaps:  # no file listed, a file that lags, or days the files do not hold
            log.info("J-Quants bulk: %d of %d dates of %s not in the files (%s%s); loading them via the API",
                     len(gaps), len(dates), unit.key, ", ".join(gaps[:5]), ", ..." if len(gaps) > 5 else "")
            rows.extend(self._by_date(gaps))
        return rows

    def _by_date(self, dates: Iterable[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for day in dates:
            self.api_dates.append(day)
            rows.extend(self.client.get_all(self.endpoint, {"date": day.replace("-", "")}))
        return rows

    def _signed_url(self, key: str) -> str:
        body = self.client.get_object(BULK_GET_PATH, {"key": key}, "url")  # same limiter, retries, errors
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise RetryableSourceError(f"J-Quants {BULK_GET_PATH} for {key} answered without a download url")
        return url

    def _file_rows(self, key: str) -> list[dict[str, Any]]:
        last = ""
        for attempt in range(1, MAX_GETS_PER_FILE + 1):
            url = self._signed_url(key)
            self.downloads += 1
            try:
                resp = self.client.session.get(url, timeout=self.client.timeout,
                                               headers={"User-Agent": "moomarkets-ingest"})
            except requests.RequestException as exc:
                last = f"download failed ({type(exc).__name__})"
            else:
                if resp.status_code == 200:
                    try:
                        return parse_csv(resp.content, self.dataset)
                    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as exc:
                        last = f"file cut off or not gzip CSV ({type(exc).__name__})"
                elif resp.status_code == 403:  # S3: "Request has expired" / AccessDenied
                    last = "signed URL refused (HTTP 403: expired or already used)"
                else:
                    last = f"download answered HTTP {resp.status_code}"
            log.warning("J-Quants bulk file %s: %s; getting a fresh URL (attempt %d/%d)",
                        key, last, attempt, MAX_GETS_PER_FILE)
            if attempt < MAX_GETS_PER_FILE and not last.startswith("signed URL refused"):
                self.client._sleep(self.client._backoff(attempt))
        raise RetryableSourceError(scrub(f"J-Quants bulk file {key}: {last} after {MAX_GETS_PER_FILE} "
                                         f"fresh URLs; try again later", self.client._secret))


def fetch_bulk_unit(client: JQuantsClient, dataset: str, unit: FetchUnit) -> list[dict[str, Any]]:
    """The raw (API-shaped) rows of a ``bulk`` unit; see :class:`BulkFetcher`."""
    fetcher = BulkFetcher(client, dataset)
    rows = fetcher.fetch(unit)
    log.info("J-Quants bulk %s: %d rows from %d file(s) (%d download(s), not rate limited) and %d date(s) via "
             "the API; %d API request(s)", unit.key, len(rows), len(fetcher.files_used), fetcher.downloads,
             len(fetcher.api_dates), client.requests_made)
    return rows
