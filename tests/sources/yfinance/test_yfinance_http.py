"""The yahoo source's Connection host redirects every Yahoo request, so the source can be pointed
at a local mirror, a proxy or (here) the local replay server answering with the recorded chart-API
responses of tests/fixtures/yahoo (Yahoo's real JSON format; see that folder's README), over real
HTTP: yfinance runs its own code on our session, end to end through the socket."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from moomarkets.sources.base import Credentials, Interval
from moomarkets.sources.yfinance import YFinanceSource
from moomarkets.sources.yfinance.session import rebase_url
from moomarkets.testing.yahoo_replay import running_replay

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "yahoo"


def test_rebase_url_keeps_path_and_query_and_leaves_other_hosts():
    base = "http://127.0.0.1:9000/yahoo/"
    assert rebase_url("https://query2.finance.yahoo.com/v8/finance/chart/AAPL?range=1d", base) == (
        "http://127.0.0.1:9000/yahoo/v8/finance/chart/AAPL?range=1d"
    )
    assert rebase_url("https://fc.yahoo.com/", base) == "http://127.0.0.1:9000/yahoo/"
    assert rebase_url("https://example.com/x", base) == "https://example.com/x"
    assert rebase_url("https://notyahoo.com/x", base) == "https://notyahoo.com/x"
    assert rebase_url("https://query1.finance.yahoo.com/x", None) == "https://query1.finance.yahoo.com/x"


def test_connection_host_sends_every_request_to_that_server():
    acquired = []
    interval = Interval(datetime(2026, 3, 9, 21, tzinfo=timezone.utc), datetime(2026, 3, 13, 21, tzinfo=timezone.utc))
    with running_replay(FIXTURES / "normal_batch.json") as (base_url, replay):
        src = YFinanceSource("yahoo", {"throttle_backoff": 1}, Credentials(host=base_url),
                             acquire=lambda: acquired.append(1))
        units = src.plan("daily_quotes", {"tickers": ["AAPL", "MSFT"]}, interval, max_units=8)
        result = src.fetch("daily_quotes", units[0])
    assert result.item_errors == {}
    assert {r["code"] for r in result.rows} == {"AAPL", "MSFT"} and len(result.rows) == 8
    seen = [path for _, path, _ in replay.requests]
    assert any(p.startswith("/v8/finance/chart/AAPL") for p in seen)
    assert "/" in seen and "/v1/test/getcrumb" in seen  # yfinance's cookie and crumb handshake came here too
    assert len(acquired) == len(seen) == result.requests  # every request reached the local server, rate-limited
    assert replay.unmatched == []
