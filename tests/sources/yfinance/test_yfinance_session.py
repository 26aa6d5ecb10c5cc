"""The controlled session yfinance runs on: accepted backends, capped timeouts, the chart log."""

from __future__ import annotations

import json

import pytest
import yfinance  # noqa: F401  (import-time warning filter must come before the tests)

from moomarkets.sources.yfinance.session import _cap_timeout, make_session
from moomarkets.testing.yahoo_replay import running_replay


def test_session_is_a_type_yfinance_accepts_and_caps_timeouts():
    from yfinance.data import YfData

    for backend in ("curl_cffi", "requests"):
        session = make_session(timeout=5, backend=backend)
        YfData(session=session)  # raises for unsupported session types
    assert _cap_timeout(30, 5) == 5 and _cap_timeout(None, 5) == 5 and _cap_timeout(2, 5) == 2
    assert _cap_timeout((10, 60), 5) == (5, 5)


@pytest.mark.parametrize("backend", ["curl_cffi", "requests"])
def test_an_odd_chart_answer_is_logged_per_symbol(tmp_path, backend):
    """Whatever Yahoo answers, the session returns it as the backend's own Response and records
    the chart call (status, probe or not) for the source to explain an empty ticker."""
    fixture = tmp_path / "teapot.json"
    fixture.write_text(json.dumps({"interactions": [{
        "request": {"method": "GET", "url": "https://query2.finance.yahoo.com/v8/finance/chart/AAPL"},
        "response": {"status_code": 418, "json": {"x": 1}},
    }]}))
    acquired: list[int] = []
    with running_replay(fixture) as (url, replay):
        session = make_session(timeout=5, backend=backend, base_url=url, acquire=lambda: acquired.append(1))
        r = session.get("https://query2.finance.yahoo.com/v8/finance/chart/AAPL", params={"range": "1d"})
    assert type(r).__module__.startswith(backend) and r.status_code == 418 and r.json() == {"x": 1}
    (call,) = session.moomarkets_log.charts
    assert call.symbol == "AAPL" and call.probe and call.status == 418
    assert replay.chart_requests("AAPL") == [{"range": "1d"}] and len(acquired) == 1


def test_a_429_opens_the_breaker_for_the_rest_of_the_attempt(tmp_path):
    from yfinance.exceptions import YFRateLimitError

    fixture = tmp_path / "blocked.json"
    fixture.write_text(json.dumps({"interactions": [{
        "request": {"method": "GET", "url": "https://query2.finance.yahoo.com/v8/finance/chart/*"},
        "response": {"status_code": 429, "text": "Too Many Requests", "content_type": "text/plain"},
    }]}))
    throttles: list[float] = []
    with running_replay(fixture) as (url, replay):
        session = make_session(timeout=5, base_url=url, on_throttle=throttles.append, throttle_seconds=9)
        chart = "https://query2.finance.yahoo.com/v8/finance/chart/"
        assert session.get(chart + "AAPL").status_code == 429
        with pytest.raises(YFRateLimitError):
            session.get(chart + "MSFT")  # not sent: Yahoo is blocking us
    assert len(replay.requests) == 1 and throttles == [9.0]
    log = session.moomarkets_log
    assert [c.symbol for c in log.charts] == ["AAPL", "MSFT"] and all(c.rate_limited for c in log.charts)
    log.new_attempt()  # the source's retry after its backoff may send again
    assert log.breaker is None
