"""Yahoo Finance constants: symbol formats, config defaults and the URLs the source touches."""

from __future__ import annotations

import re

# Yahoo symbols: letters, digits and the separators Yahoo uses (``BRK-B``, ``7203.T``, ``^GSPC``,
# ``USDJPY=X``). An ISIN would make yfinance run an extra search request per run, so it is refused.
TICKER_RE = re.compile(r"^[A-Za-z0-9.\-^=]{1,20}$")
ISIN_RE = re.compile(r"^[A-Z]{2}[A-Z0-9]{9}[0-9]$")
CRYPTO_RE = re.compile(r"^[A-Z0-9]+-[A-Z]{3}$")
MAX_TICKERS = 10_000

# Yahoo publishes no limits; users report blocks above about one request per second and
# multi-hour blocks after bursts, hence one request per second from one worker.
DEFAULT_RATE_LIMIT = "1/second"
DEFAULT_MAX_CONCURRENCY = 1
# yfinance makes one chart request per ticker whatever the batch: the batch only sets how many
# mapped tasks a group has.
DEFAULT_BATCH_SIZE = 20
DEFAULT_TIMEOUT = 20.0
DEFAULT_THROTTLE_RETRIES = 2
DEFAULT_THROTTLE_BACKOFF = 30.0
CONFIG_KEYS = ("rate_limit", "max_concurrency", "batch_size", "timeout", "throttle_retries", "throttle_backoff")

# A valid symbol without bars whose last trade is this many days before the interval is reported
# as suspended or delisted rather than as "no bar in the interval".
STALE_DAYS = 10
# How far back the exchange holiday calendars are built (or from their own first year).
CALENDAR_START = "2000-01-01"

# The chart API (the one endpoint yf.download needs) and the cheap request validate_credentials makes.
CHART_PATH = "/v8/finance/chart/"
PROBE_URL = "https://query2.finance.yahoo.com/v8/finance/chart/SPY"
# Yahoo turns away python-requests' default User-Agent; the requests backend sends a browser's.
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
