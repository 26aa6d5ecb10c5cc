"""J-Quants API v2 constants: base URL, endpoint paths, plan rates, market hours.

Each constant names the jpx-jquants.com page it follows; client and source import them from here
only, so a changed path or rate is edited once.
"""

from __future__ import annotations

import re
from datetime import time

# /en/spec and /en/spec/migration-v1-v2: the v2 base URL (v1 was discontinued on 2026-06-01).
API_PREFIX = "/v2"  # every v2 resource path starts with it; a Connection host without it gets it
DEFAULT_BASE_URL = "https://api.jquants.com" + API_PREFIX

# Endpoint per dataset, relative to the base URL. Pages: /en/spec/eq-bars-daily,
# /en/spec/eq-master, /en/spec/fin-summary, /en/spec/mkt-cal, /en/spec/idx-bars-daily.
PATHS: dict[str, str] = {
    "daily_quotes": "/equities/bars/daily",
    "listed_info": "/equities/master",
    "fin_summary": "/fins/summary",
    "trading_calendar": "/markets/calendar",
    "index_quotes": "/indices/bars/daily",
}

# /en/spec/rate-limits: requests per minute of each subscription plan.
PLAN_RATES: dict[str, str] = {
    "free": "5/minute",
    "light": "60/minute",
    "standard": "120/minute",
    "premium": "500/minute",
}
DEFAULT_PLAN = "free"  # the safe guess when the config names no plan

# /en/spec/response-status: 5xx answers are worth a retry.
RETRY_STATUSES = frozenset({500, 502, 503, 504})

# /en/spec/eq-bars-daily: issue codes are 4 or 5 letters/digits (5 = with the share-class digit);
# /en/spec/idx-bars-daily: index codes are 4 characters (``0000`` = TOPIX).
CODE_RE = re.compile(r"^[0-9A-Z]{4,5}$")
INDEX_CODE_RE = re.compile(r"^[0-9A-Z]{4}$")

# /en/spec/eq-master/product-category: /equities/master serves ``ProdCat`` (the code) only; the
# warehouse keeps the name from this table too, so stocks (011) and ETFs (014) read apart.
PRODUCT_CATEGORY_NAMES: dict[str, str] = {
    "011": "Domestic Stocks", "012": "Preferred Equity Investment Certificates", "013": "REITs",
    "014": "ETFs", "021": "Foreign Stocks", "022": "Foreign REITs", "023": "Foreign ETFs",
    "024": "Foreign Stock Depositary Receipts",
}

# Tokyo Stock Exchange hours (JPX, close at 15:30 since 2024-11-05): a day's bars, master and
# index values are complete after the close; disclosures (/en/spec/fin-summary) by the day's end.
MARKET_TZ = "Asia/Tokyo"
MARKET_CLOSE = time(15, 30)
DAY_CLOSE: dict[str, time] = {"fin_summary": time(23, 59)}
# Our choice, not the API's: each calendar run also loads about a year of /en/spec/mkt-cal ahead,
# so planning knows upcoming holidays.
CALENDAR_DAYS_AHEAD = 370

# Query shapes per endpoint (the spec pages above) decide the plans the source can make.
# Endpoints with a per-code query that covers a whole date range in one request.
BY_CODE_RANGE_DATASETS = ("daily_quotes", "index_quotes", "fin_summary")
# /en/spec (paging): pages split by size, not rows, and the size is not published. One
# whole-market /equities/master?date=D query (~4,400 issues of a few hundred bytes) should fit one
# page; a ticker list costs one code+date request per ticker per day instead, so code+date only
# pays for lists no longer than this.
MASTER_PAGES_PER_DATE = 1
# Guard against a server whose pagination never ends (the spec promises the key vanishes).
MAX_PAGES = 10_000

# validate_credentials(dataset): ONE request (pages are not followed) to the dataset's own
# endpoint. No dates, so the server answers within whatever date window the plan has (a date
# outside it would be a 403 about dates, not about the API); a 403 then means the plan does not
# cover that API (e.g. /indices on the Free plan).
VALIDATE_PARAMS: dict[str, dict[str, str]] = {
    "listed_info": {"code": "72030"},  # today's master of one issue
    "daily_quotes": {"code": "72030"},
    "fin_summary": {"code": "72030"},
    "trading_calendar": {},
    "index_quotes": {"code": "0000"},  # TOPIX
}
VALIDATE_CALLS: dict[str, tuple[str, dict[str, str]]] = {
    dataset: (PATHS[dataset], params) for dataset, params in VALIDATE_PARAMS.items()
}
DEFAULT_VALIDATE_DATASET = "listed_info"  # on every plan: the check made when no dataset is named
