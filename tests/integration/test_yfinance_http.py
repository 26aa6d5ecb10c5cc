"""The yahoo source's Connection host redirects every Yahoo request, so the source can be pointed
at a local mirror, a proxy or (here) a local HTTP server. The server answers with the recorded
chart-API responses of tests/fixtures/yahoo (Yahoo's real JSON format; see that folder's README),
over real HTTP: yfinance runs its own code on our session, end to end through the socket."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from moomarkets.sources.base import Credentials, Interval
from moomarkets.sources.yfinance import session as yfsession
from moomarkets.testing.yahoo_replay import YahooReplay, replaying
from moomarkets.sources.yfinance.session import rebase_url
from moomarkets.sources.yfinance.source import YFinanceSource

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "yahoo"


def test_rebase_url_keeps_path_and_query_and_leaves_other_hosts():
    base = "http://127.0.0.1:9000/yahoo/"
    assert rebase_url("https://query2.finance.yahoo.com/v8/finance/chart/AAPL?range=1d", base) == (
        "http://127.0.0.1:9000/yahoo/v8/finance/chart/AAPL?range=1d"
    )
    assert rebase_url("https://fc.yahoo.com/", base) == "http://127.0.0.1:9000/yahoo/"
    assert rebase_url("https://example.com/x", base) == "https://example.com/x"
    assert rebase_url("https://notyahoo.com/x", base) == "https://notyahoo.com/x"
    assert rebase_url("https://query1.finance.yahoo.com/x", None) == "https://query1.finance.yahoo.com/x"


@pytest.fixture
def yahoo_server():
    replay = YahooReplay.from_files(FIXTURES / "normal_batch.json")
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            parts = urlsplit(self.path)
            seen.append(parts.path)
            answer = replay("GET", f"https://query2.finance.yahoo.com{parts.path}", dict(parse_qsl(parts.query)))
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_connection_host_sends_every_request_to_that_server(yahoo_server):
    base_url, seen = yahoo_server
    acquired = []
    src = YFinanceSource("yahoo", {"throttle_backoff": 1}, Credentials(host=base_url), acquire=lambda: acquired.append(1))
    interval = Interval(datetime(2026, 3, 9, 21, tzinfo=timezone.utc), datetime(2026, 3, 13, 21, tzinfo=timezone.utc))
    # replaying() only isolates yfinance's caches here; the transport is removed so requests use the socket
    with replaying(YahooReplay([])):
        yfsession.set_transport(None)
        units = src.plan("daily_quotes", {"tickers": ["AAPL", "MSFT"]}, interval, max_units=8)
        result = src.fetch("daily_quotes", units[0])
    assert result.item_errors == {}
    assert {r["code"] for r in result.rows} == {"AAPL", "MSFT"} and len(result.rows) == 8
    assert any(p.startswith("/v8/finance/chart/AAPL") for p in seen)
    assert len(acquired) == len(seen) == result.requests  # every request reached the local server, rate-limited
