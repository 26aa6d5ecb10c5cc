"""The Yahoo replay server tests point the yfinance source at (the fixtures, windowing, handshakes)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import requests

from moomarkets.testing.yahoo_replay import recorded_chart, NOT_FOUND_CHART, YahooReplay, running_replay, window_chart

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "yahoo"
UTC = timezone.utc
CHART = "/v8/finance/chart/"


def chart_of(fixture: str, symbol: str) -> dict:
    return recorded_chart(FIXTURES / f"{fixture}.json", symbol)


def test_fixtures_say_what_format_they_follow():
    paths = sorted(FIXTURES.glob("*.json"))
    assert len(paths) == 7
    for path in paths:
        doc = json.loads(path.read_text())
        assert "yfinance" in doc["about"] and "parse_quotes" in doc["about"], path.name
        assert doc["scenario"] and doc["interactions"], path.name
        YahooReplay.from_files(path)


def test_replay_windows_a_series_like_yahoo():
    doc = {"chart": {"result": [chart_of("normal_batch", "AAPL")], "error": None}}
    saturday = int(datetime(2026, 3, 14, 5, tzinfo=UTC).timestamp())
    empty = window_chart(doc, {"period1": str(saturday), "period2": str(saturday + 86400), "interval": "1d"})
    result = empty["chart"]["result"][0]
    assert "timestamp" not in result and result["indicators"] == {"quote": [{}], "adjclose": [{}]}
    assert result["meta"]["exchangeTimezoneName"] == "America/New_York"
    last = window_chart(doc, {"range": "1d", "interval": "1d"})["chart"]["result"][0]
    assert last["timestamp"] == doc["chart"]["result"][0]["timestamp"][-1:]
    assert len(last["indicators"]["quote"][0]["close"]) == 1


def test_the_server_answers_over_http_like_yahoo():
    with running_replay(FIXTURES / "rate_limited.json", FIXTURES / "normal_batch.json") as (url, replay):
        cookie = requests.get(url + "/", timeout=5)  # fc.yahoo.com, rebased
        crumb = requests.get(url + "/v1/test/getcrumb", timeout=5)
        first = requests.get(url + CHART + "AAPL", params={"range": "1d", "interval": "1d"}, timeout=5)
        again = requests.get(url + CHART + "AAPL", params={"range": "1d", "interval": "1d"}, timeout=5)
        unknown = requests.get(url + CHART + "NOPE", params={"range": "1d"}, timeout=5)
        other = requests.get(url + "/somewhere/else", timeout=5)
    assert cookie.status_code == 404 and cookie.cookies.get("A3") == "d=replay"
    assert crumb.status_code == 200 and crumb.text == "replay-crumb"
    assert first.status_code == 429  # rate_limited.json: served once, then falls through
    assert again.status_code == 200 and len(again.json()["chart"]["result"][0]["timestamp"]) == 1
    assert unknown.status_code == 404 and unknown.json() == NOT_FOUND_CHART
    assert other.status_code == 404
    assert [p for _, p, _ in replay.requests] == ["/", "/v1/test/getcrumb", CHART + "AAPL", CHART + "AAPL",
                                                   CHART + "NOPE", "/somewhere/else"]
    assert replay.chart_requests("AAPL") == [{"range": "1d", "interval": "1d"}] * 2
    assert replay.unmatched == ["GET /v8/finance/chart/NOPE {'range': '1d'}", "GET /somewhere/else {}"]


def test_the_server_stops_with_the_context():
    with running_replay(YahooReplay([])) as (url, _):
        assert requests.get(url + "/", timeout=5).status_code == 404
    try:
        requests.get(url + "/", timeout=2)
    except requests.ConnectionError:
        pass
    else:
        raise AssertionError("the replay server still answers after its context ended")
