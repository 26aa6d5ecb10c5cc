"""What a source's requests met, counted where they are sent and answered: the J-Quants client and
the Yahoo session count requests, 429s and 5xx into the source's counters (a failed call too), and
the source adds the time every rate-limit acquire blocked."""

from __future__ import annotations

import json
import time

import pytest

from moomarkets.errors import PermanentSourceError
from moomarkets.sources.base import Credentials, RequestCounters
from moomarkets.sources.jquants.client import JQuantsClient
from moomarkets.sources.jquants.source import JQuantsSource
from moomarkets.testing.jquants_fake import FakeConfig, running_fake

KEY = "counters-key-5150"


def test_jquants_client_counts_every_request_and_its_status():
    counters = RequestCounters()
    with running_fake(FakeConfig(api_key=KEY, page_size=50)) as (url, state):
        client = JQuantsClient(KEY, url, sleep=lambda s: None, backoff_base=0.01, counters=counters)
        state.inject("429", 1)
        state.inject("503", 2)
        client.get_all("/equities/bars/daily", {"date": "20261120"})
        assert (counters.requests, counters.http_429, counters.http_5xx) == (state.count(), 1, 2)
        state.inject("400", 1)
        with pytest.raises(PermanentSourceError):
            client.get_all("/equities/bars/daily", {"date": "20261120"})
        assert counters.requests == state.count() == client.requests_made
    assert counters.to_dict() == {"requests": state.count(), "http_429": 1, "http_5xx": 2, "wait_seconds": 0.0}


def test_source_adds_the_time_acquire_blocked():
    source = JQuantsSource("jquants", {}, Credentials(secret=KEY), acquire=lambda: time.sleep(0.05))
    assert source._client().counters is source.counters  # the client counts into the source's
    source.acquire()
    source.acquire()
    assert 0.1 <= source.counters.wait_seconds < 1.0
    assert JQuantsSource("jquants", {}, Credentials()).acquire is None  # no limiter: nothing to time


def test_yahoo_session_counts_requests_and_429s(tmp_path):
    from moomarkets.sources.yfinance.session import make_session
    from moomarkets.testing.yahoo_replay import running_replay

    fixture = tmp_path / "answers.json"
    fixture.write_text(json.dumps({"interactions": [
        {"request": {"method": "GET", "url": "https://query2.finance.yahoo.com/v8/finance/chart/AAPL"},
         "response": {"status_code": 502, "text": "bad gateway", "content_type": "text/plain"}},
        {"request": {"method": "GET", "url": "https://query2.finance.yahoo.com/v8/finance/chart/MSFT"},
         "response": {"status_code": 429, "text": "Too Many Requests", "content_type": "text/plain"}},
    ]}))
    counters = RequestCounters()
    with running_replay(fixture) as (url, replay):
        session = make_session(timeout=5, backend="requests", base_url=url, counters=counters)
        chart = "https://query2.finance.yahoo.com/v8/finance/chart/"
        assert session.get(chart + "AAPL").status_code == 502
        assert session.get(chart + "MSFT").status_code == 429
    assert (counters.requests, counters.http_429, counters.http_5xx) == (len(replay.requests), 1, 1) == (2, 1, 1)
