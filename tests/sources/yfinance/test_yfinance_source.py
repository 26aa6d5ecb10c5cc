"""The Yahoo Finance source: validation, planning, and fetches replayed offline.

Every fetch runs the real ``yf.download`` on the production (curl_cffi) session over real HTTP;
only Yahoo is replaced, by the local replay server of ``moomarkets.testing.yahoo_replay`` serving
``tests/fixtures/yahoo/*.json`` (Yahoo chart-API documents in the shape yfinance parses), reached
through the Connection host like any proxy.
"""

from __future__ import annotations

import json
import socket
from datetime import date, datetime, time, timezone
from pathlib import Path

import pytest
import yfinance  # noqa: F401  (see below)

from moomarkets.errors import ConfigError, RateLimitTimeout, RetryableSourceError
from moomarkets.sources.base import Credentials, FetchUnit, Interval
from moomarkets.sources.registry import get_source_class
from moomarkets.sources.yfinance import YFinanceSource
from moomarkets.sources.yfinance import source as yfsource
from moomarkets.sources.yfinance.markets import SUFFIX_MARKETS, US, Market, dates_for, expected_sessions, market_of
from moomarkets.testing.yahoo_replay import recorded_chart, isolated_yfinance, running_replay

# yfinance is imported at collection, not first inside a test: on import it puts a "default" filter
# for its DeprecationWarnings in front of pytest's, and yfinance 1.7 calls pandas APIs pandas 3 deprecates.
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "yahoo"
UTC = timezone.utc
US_TICKERS = ["AAPL", "GOOGL", "MSFT"]


def fx(*names: str) -> list[Path]:
    return [FIXTURES / f"{n}.json" for n in names]


def closed_port_url() -> str:
    """A local URL nothing listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def week() -> Interval:
    """(Mon 2026-03-09 21:00Z, Fri 2026-03-13 21:00Z]: New York closes of Tue..Fri (20:00Z, EDT)."""
    return Interval(utc(2026, 3, 9, 21), utc(2026, 3, 13, 21))


def one_day(d: int) -> Interval:
    """The New York session of 2026-03-d, as a daily run at 01:30 UTC the next morning sees it."""
    return Interval(utc(2026, 3, d, 1, 30), utc(2026, 3, d + 1, 1, 30))


class Recorder:
    def __init__(self):
        self.acquired = 0
        self.throttles: list[float] = []
        self.sleeps: list[float] = []

    def acquire(self):
        self.acquired += 1

    def on_throttle(self, seconds: float):
        self.throttles.append(seconds)


@pytest.fixture
def rec(monkeypatch) -> Recorder:
    r = Recorder()
    monkeypatch.setattr(yfsource, "sleep", r.sleeps.append)
    return r


def make(rec: Recorder, host: str | None = None, **config) -> YFinanceSource:
    """The source with ``host`` as its Connection host (the replay server's base URL)."""
    config.setdefault("throttle_backoff", 7)
    return YFinanceSource("yahoo", config, Credentials(host=host), acquire=rec.acquire, on_throttle=rec.on_throttle)


def fetch(src: YFinanceSource, dataset: str, tickers: list[str], interval: Interval):
    units = src.plan(dataset, {"tickers": tickers}, interval, max_units=64)
    assert len(units) == 1, units
    return src.fetch(dataset, units[0])


def chart_of(fixture: str, symbol: str) -> dict:
    return recorded_chart(FIXTURES / f"{fixture}.json", symbol)


def by(rows, code: str) -> dict[str, dict]:
    return {r["date"]: r for r in rows if r["code"] == code}


# -- config and parameters ---------------------------------------------------------------------
def test_registered_with_conservative_defaults():
    cls = get_source_class("yfinance")
    assert cls is YFinanceSource
    assert cls.datasets == ("daily_quotes", "corporate_actions")
    assert cls.rate_limit({}) == ["1/second"]
    assert cls.max_concurrency({}) == 1


def test_parameters_are_upper_cased_deduplicated_and_sorted():
    out = YFinanceSource.validate_parameters(
        "daily_quotes", {"tickers": ["msft", " AAPL", "7203.t", "AAPL", "^GSPC", "USDJPY=X", "BRK-B"], "batch_size": 5}
    )
    assert out == {"tickers": ["7203.T", "AAPL", "BRK-B", "MSFT", "USDJPY=X", "^GSPC"], "batch_size": 5}


@pytest.mark.parametrize(
    "params, needle",
    [
        ({}, "non-empty list"),
        ({"tickers": []}, "non-empty list"),
        ({"tickers": "AAPL"}, "non-empty list"),
        ({"tickers": ["AAPL", "BAD TICKER"]}, "not a Yahoo symbol"),
        ({"tickers": ["A" * 21]}, "not a Yahoo symbol"),
        ({"tickers": [7203]}, "not a Yahoo symbol"),
        ({"tickers": ["US0378331005"]}, "looks like an ISIN"),
        ({"tickers": ["AAPL"], "batch_size": 0}, "batch_size must be an integer from 1 to 500"),
        ({"tickers": ["AAPL"], "universe": "all"}, "unknown parameter(s) universe"),
    ],
)
def test_bad_parameters_are_rejected_with_the_field(params, needle):
    with pytest.raises(ConfigError) as err:
        YFinanceSource.validate_parameters("daily_quotes", params, subject="job group 'g'")
    assert needle in str(err.value)
    assert str(err.value).startswith("job group 'g': parameters")


@pytest.mark.parametrize(
    "config, needle",
    [
        ({"token": "x"}, "unknown setting(s) token"),
        ({"batch_size": 1000}, "batch_size must be an integer from 1 to 500"),
        ({"timeout": 0}, "timeout must be a number from 1 to 300"),
        ({"throttle_retries": -1}, "throttle_retries must be an integer from 0 to 10"),
        ({"throttle_backoff": "30s"}, "throttle_backoff must be a number"),
    ],
)
def test_bad_config_is_rejected(config, needle):
    with pytest.raises(ConfigError) as err:
        YFinanceSource.validate_config(config)
    assert needle in str(err.value)


def test_good_config_passes_unchanged():
    pytest.importorskip("moomarkets.ratelimit")  # the base class checks rate_limit/max_concurrency with it
    with pytest.raises(ConfigError, match="max_concurrency must be an integer"):
        YFinanceSource.validate_config({"max_concurrency": 0})
    cfg = {"batch_size": 50, "timeout": 15, "throttle_retries": 3, "throttle_backoff": 60, "max_concurrency": 1}
    assert YFinanceSource.validate_config(dict(cfg)) == cfg


# -- planning --------------------------------------------------------------------------------
def test_markets_from_suffixes():
    assert market_of("AAPL").tz == "America/New_York"
    assert market_of("BRK-B").tz == "America/New_York"
    assert market_of("7203.T").tz == "Asia/Tokyo"
    assert market_of("BHP.AX").tz == "Australia/Sydney"
    for unknown in ("^GSPC", "USDJPY=X", "BTC-USD", "FOO.XX"):
        assert market_of(unknown) is None


def test_plan_batches_tickers_and_respects_max_units(rec):
    src = make(rec, batch_size=20)
    tickers = [f"T{i:03d}" for i in range(45)]
    units = src.plan("daily_quotes", {"tickers": tickers}, week(), max_units=64)
    assert [u.key for u in units] == ["tickers:T000..T019", "tickers:T020..T039", "tickers:T040..T044"]
    assert all(u.kind == "tickers" and u.params["start"] == "2026-03-10" and u.params["end"] == "2026-03-13"
               for u in units)
    assert sum(len(u.params["tickers"]) for u in units) == 45
    capped = src.plan("daily_quotes", {"tickers": tickers}, week(), max_units=2)
    assert len(capped) == 2 and [len(u.params["tickers"]) for u in capped] == [23, 22]
    single = src.plan("daily_quotes", {"tickers": ["AAPL"], "batch_size": 5}, week(), max_units=64)
    assert [u.key for u in single] == ["ticker:AAPL"]
    json.dumps([u.to_dict() for u in units])  # travels through XCom


def test_plan_a_us_run_after_midnight_utc_loads_the_new_york_date(rec):
    # 01:30 UTC on the 11th is 21:30 on the 10th in New York: the 10th's session is the one that closed.
    units = make(rec).plan("daily_quotes", {"tickers": ["IBM"]}, one_day(10), max_units=8)
    assert [(u.params["start"], u.params["end"]) for u in units] == [("2026-03-10", "2026-03-10")]


def test_plan_skips_weekends_for_exchanges_but_not_for_24h_symbols(rec):
    weekend = Interval(utc(2026, 3, 13, 21), utc(2026, 3, 15, 21))  # Sat and Sun closes only
    src = make(rec)
    assert src.plan("daily_quotes", {"tickers": ["AAPL", "7203.T"]}, weekend, max_units=8) == []
    (unit,) = src.plan("daily_quotes", {"tickers": ["BTC-USD"]}, weekend, max_units=8)
    assert unit.params["end"] == "2026-03-15"  # a Sunday: crypto trades every day


def test_plan_mixed_markets_takes_the_widest_range():
    # (Tue 07:00Z, Wed 07:00Z]: Tokyo's Wednesday close (06:30Z) and New York's Tuesday close (20:00Z)
    interval = Interval(utc(2026, 3, 10, 7), utc(2026, 3, 11, 7))
    assert dates_for(["7203.T"], interval) == [date(2026, 3, 11)]
    assert dates_for(["AAPL"], interval) == [date(2026, 3, 10)]
    assert dates_for(["AAPL", "7203.T"], interval) == [date(2026, 3, 10), date(2026, 3, 11)]


def test_plan_keeps_each_exchange_together_before_batching(rec):
    tickers = ["MSFT", "7203.T", "^GSPC", "BHP.AX", "6758.T", "AAPL", "600519.SS", "000001.SZ", "9984.T", "INTC"]
    units = make(rec).plan("daily_quotes", {"tickers": tickers, "batch_size": 3}, week(), max_units=64)
    batches = [u.params["tickers"] for u in units]
    # by exchange timezone, then suffix, then symbol; symbols of no known market last
    assert batches == [
        ["AAPL", "INTC", "MSFT"],
        ["600519.SS", "000001.SZ", "6758.T"],  # Shanghai and Shenzhen share a timezone and calendar
        ["7203.T", "9984.T", "BHP.AX"],
        ["^GSPC"],
    ]
    assert [u.key for u in units][:2] == ["tickers:AAPL..MSFT", "tickers:600519.SS..6758.T"]
    # plain alphabetical batching mixed them: 000001.SZ, 600519.SS, 6758.T | 7203.T, 9984.T, AAPL | BHP.AX, ...
    again = make(rec).plan("daily_quotes", {"tickers": list(reversed(tickers)), "batch_size": 3}, week(),
                           max_units=64)
    assert [u.params["tickers"] for u in again] == batches  # deterministic whatever the input order


def test_every_known_market_has_an_exchange_calendar():
    import exchange_calendars

    names = set(exchange_calendars.get_calendar_names(include_aliases=False))
    for suffix, market in {"": US, **SUFFIX_MARKETS}.items():
        assert market.calendar in names, suffix
    # holidays drop out, early closes stay sessions, weekends are neither
    days = {date(2026, 4, 2), date(2026, 4, 3), date(2026, 4, 4), date(2026, 11, 27)}
    assert expected_sessions("AAPL", days) == ({date(2026, 4, 2), date(2026, 11, 27)}, set(), "XNYS")
    tokyo = {date(2026, 3, 19), date(2026, 3, 20), date(2025, 12, 31), date(2026, 1, 2), date(2026, 1, 5)}
    assert expected_sessions("7203.T", tokyo) == ({date(2026, 3, 19), date(2026, 1, 5)}, set(), "XTKS")
    assert expected_sessions("BTC-USD", days) == (set(), set(), None)


# -- fetching, replayed ----------------------------------------------------------------------
def test_normal_batch_loads_every_bar_with_explicit_adjustments(rec):
    with running_replay(*fx("normal_batch")) as (url, replay):
        src = make(rec, url)
        result = fetch(src, "daily_quotes", US_TICKERS, week())
    assert result.item_errors == {}
    assert len(result.rows) == 3 * 4
    aapl = by(result.rows, "AAPL")
    assert sorted(aapl) == ["2026-03-10", "2026-03-11", "2026-03-12", "2026-03-13"]
    chart = chart_of("normal_batch", "AAPL")
    stamp = int(datetime(2026, 3, 10, 13, 30, tzinfo=UTC).timestamp())  # 09:30 New York (EDT)
    i = chart["timestamp"].index(stamp)
    quote = chart["indicators"]["quote"][0]
    row = aapl["2026-03-10"]
    assert row["source"] == "yahoo" and row["code"] == "AAPL"
    assert row["close"] == round(quote["close"][i], 2)  # float32 noise removed at priceHint decimals
    assert row["open"] == round(quote["open"][i], 2) and row["volume"] == quote["volume"][i]
    assert row["adjustment_factor"] == 1.0 and row["adj_close"] == pytest.approx(row["close"], abs=1e-5)
    assert row["upper_limit"] is None and row["lower_limit"] is None and row["turnover"] is None
    # every request went through the shared limiter, and nothing unexpected was asked
    assert result.requests == rec.acquired == len(replay.requests)
    assert replay.unmatched == []
    history = replay.chart_requests("AAPL")[-1]
    assert history["interval"] == "1d" and history["events"] == "div,splits,capitalGains"


def test_split_and_dividend(rec):
    interval = Interval(utc(2026, 3, 11, 21), utc(2026, 3, 17, 21))  # New York closes of Mar 12..17
    with running_replay(*fx("split_dividend")) as (url, _):
        src = make(rec, url)
        quotes = fetch(src, "daily_quotes", ["KO", "NVDA"], interval)
        actions = fetch(src, "corporate_actions", ["KO", "NVDA"], interval)
    assert quotes.item_errors == {} and actions.item_errors == {}
    assert sorted((a["code"], a["date"], a["action"], a["value"]) for a in actions.rows) == [
        ("KO", "2026-03-13", "dividend", 0.53),
        ("NVDA", "2026-03-16", "split", 4.0),
    ]
    ko = by(quotes.rows, "KO")
    before = ko["2026-03-12"]  # last day before the ex-date: dividend-adjusted
    assert before["adjustment_factor"] == pytest.approx(1 - 0.53 / before["close"], rel=1e-6)
    assert before["adj_close"] == pytest.approx(before["close"] * before["adjustment_factor"], abs=1e-4)
    assert before["adj_open"] == pytest.approx(before["open"] * before["adjustment_factor"], abs=1e-4)
    assert ko["2026-03-13"]["adjustment_factor"] == 1.0
    nvda = by(quotes.rows, "NVDA")
    # Yahoo's closes are split-adjusted: no 4x jump across the split, and the factor ignores splits
    assert 0.9 < nvda["2026-03-16"]["close"] / nvda["2026-03-13"]["close"] < 1.1
    assert all(r["adjustment_factor"] == 1.0 for r in nvda.values())


def test_delisted_ticker_is_a_failed_item_and_the_others_load(rec):
    with running_replay(*fx("delisted", "normal_batch")) as (url, _):
        src = make(rec, url)
        result = fetch(src, "daily_quotes", ["AAPL", "MSFT", "TWTR"], week())
    assert result.item_errors == {
        "TWTR": "unknown or delisted symbol (Yahoo: No data found, symbol may be delisted)"
    }
    assert {r["code"] for r in result.rows} == {"AAPL", "MSFT"} and len(result.rows) == 8


def test_rate_limited_tickers_are_retried_after_a_backoff(rec):
    with running_replay(*fx("rate_limited", "normal_batch")) as (url, replay):
        src = make(rec, url)
        result = fetch(src, "daily_quotes", US_TICKERS, week())
    assert result.item_errors == {}
    assert len(result.rows) == 12
    assert rec.sleeps == [7.0]  # one backoff, then every ticker loaded
    assert rec.throttles == [7.0]  # the whole source was slowed down when the 429 came
    statuses = [c for c in replay.requests if "/v8/finance/chart/" in c[1]]
    assert len(statuses) >= 4  # the blocked request + each ticker on the retry
    assert result.requests == rec.acquired


def test_lasting_rate_limit_is_reported_per_ticker_after_bounded_retries(rec):
    with running_replay(*fx("rate_limited_blocked", "normal_batch")) as (url, replay):
        src = make(rec, url, throttle_retries=2, throttle_backoff=5)
        result = fetch(src, "daily_quotes", US_TICKERS, week())
    assert result.rows == []
    assert set(result.item_errors) == set(US_TICKERS)
    assert all(v == "rate limited by Yahoo (HTTP 429) (after 3 attempts)" for v in result.item_errors.values())
    assert rec.sleeps == [5.0, 10.0]
    # the breaker stops each attempt at the first 429 instead of hammering a blocking Yahoo
    assert len([r for r in replay.requests if "/v8/finance/chart/" in r[1]]) == 3


def test_trading_gap_is_a_partial_failure_and_the_other_bars_load(rec):
    with running_replay(*fx("trading_gap", "normal_batch")) as (url, _):
        src = make(rec, url)
        result = fetch(src, "daily_quotes", ["AAPL", "INTC", "MSFT"], week())
    assert result.item_errors == {
        "INTC": "partial: no bar for 2026-03-11 while other America/New_York tickers traded (trading gap)"
    }
    assert sorted(by(result.rows, "INTC")) == ["2026-03-10", "2026-03-12", "2026-03-13"]
    assert len(result.rows) == 4 + 3 + 4


def test_no_trading_on_a_day_its_exchange_traded_is_a_failure(rec):
    with running_replay(*fx("trading_gap", "normal_batch")) as (url, _):
        src = make(rec, url)
        result = fetch(src, "daily_quotes", ["AAPL", "INTC"], one_day(11))
    assert result.item_errors == {
        "INTC": "no trading in the interval: no bar while other America/New_York tickers traded on 2026-03-11"
                " (halted or suspended?)"
    }
    assert [r["code"] for r in result.rows] == ["AAPL"]


def test_market_holiday_is_not_an_error(rec):
    good_friday = Interval(utc(2026, 4, 3, 1, 30), utc(2026, 4, 4, 1, 30))
    with running_replay(*fx("normal_batch", "trading_gap")) as (url, _):
        src = make(rec, url)
        result = fetch(src, "daily_quotes", US_TICKERS, good_friday)
        alone = fetch(src, "daily_quotes", ["AAPL"], good_friday)
    assert result.rows == [] and result.item_errors == {}
    assert alone.rows == [] and alone.item_errors == {}


def test_lone_ticker_gap_is_flagged(rec):
    # no peer in the batch: the New York exchange calendar says 2026-03-11 was a session
    with running_replay(*fx("trading_gap")) as (url, _):
        src = make(rec, url)
        alone = fetch(src, "daily_quotes", ["INTC"], week())
        day = fetch(src, "daily_quotes", ["INTC"], one_day(11))
    assert alone.item_errors == {
        "INTC": "partial: no bar for 2026-03-11, a session in the XNYS exchange calendar (trading gap)"
    }
    assert sorted(by(alone.rows, "INTC")) == ["2026-03-10", "2026-03-12", "2026-03-13"]
    assert day.rows == [] and day.item_errors == {
        "INTC": "no trading in the interval: no bar for 2026-03-11, a session in the XNYS exchange calendar"
                " (halted or suspended?)"
    }


def test_gap_is_flagged_when_the_batch_has_only_other_exchanges(rec):
    with running_replay(*fx("trading_gap", "timezone_edge")) as (url, _):
        src = make(rec, url)
        result = fetch(src, "daily_quotes", ["INTC", "7203.T"], week())
    assert set(result.item_errors) == {"INTC"}
    assert "no bar for 2026-03-11" in result.item_errors["INTC"] and "XNYS" in result.item_errors["INTC"]
    assert sorted(by(result.rows, "7203.T")) == ["2026-03-10", "2026-03-11", "2026-03-12", "2026-03-13"]


def test_session_no_peer_traded_either_is_flagged(tmp_path, rec):
    """The calendar also checks tickers with peers: a session missing for the whole batch is reported."""
    doc = json.loads((FIXTURES / "normal_batch.json").read_text())
    gone = int(datetime(2026, 3, 11, 13, 30, tzinfo=UTC).timestamp())
    for it in doc["interactions"]:
        result = it["response"]["json"]["chart"]["result"][0]
        i = result["timestamp"].index(gone)
        del result["timestamp"][i]
        for block in ("quote", "adjclose"):
            for series in result["indicators"][block]:
                for values in series.values():
                    del values[i]
    path = tmp_path / "missing_day.json"
    path.write_text(json.dumps(doc))
    with running_replay(path) as (url, _):
        result = fetch(make(rec, url), "daily_quotes", ["AAPL", "MSFT"], week())
    assert result.item_errors == {
        t: "partial: no bar for 2026-03-11, a session in the XNYS exchange calendar and no other America/New_York"
           " ticker in the batch has a bar that day (trading gap)"
        for t in ("AAPL", "MSFT")
    }
    assert len(result.rows) == 2 * 3


HOLIDAYS = Interval(utc(2026, 3, 16), utc(2026, 4, 8))  # Tokyo 2026-03-20; Good Friday; Easter Monday (Sydney)


def test_lone_tickers_over_their_exchange_holidays_are_not_flagged(rec):
    # three tickers, three exchanges: no peers, so only the calendars tell holidays from gaps
    with running_replay(*fx("timezone_edge")) as (url, _):
        src = make(rec, url)
        result = fetch(src, "daily_quotes", ["7203.T", "BHP.AX", "IBM"], HOLIDAYS)
    assert result.item_errors == {}
    tokyo, sydney, new_york = (sorted(by(result.rows, t)) for t in ("7203.T", "BHP.AX", "IBM"))
    assert "2026-03-19" in tokyo and "2026-03-20" not in tokyo and len(tokyo) == 16  # 17 weekdays 16th..7th
    assert "2026-04-03" not in sydney and "2026-04-06" not in sydney and len(sydney) == 15
    assert "2026-04-03" not in new_york and len(new_york) == 16


def test_a_market_without_a_calendar_falls_back_to_weekdays_and_says_so(monkeypatch, rec):
    monkeypatch.setitem(SUFFIX_MARKETS, ".T", Market("Asia/Tokyo", time(15, 30)))  # no holiday calendar
    with running_replay(*fx("timezone_edge")) as (url, _):
        result = fetch(make(rec, url), "daily_quotes", ["7203.T"], HOLIDAYS)
    assert result.item_errors == {
        "7203.T": "partial: no bar for 2026-03-20, expected from weekdays only (no holiday calendar for Asia/Tokyo;"
                  " unverified: may be an exchange holiday) (trading gap)"
    }


def test_timezone_edge_dates_are_the_exchange_local_dates(rec):
    # ends 01:30 UTC on the 11th: New York's 10th (closed 20:00Z), Tokyo's and Sydney's 10th
    with running_replay(*fx("timezone_edge")) as (url, _):
        src = make(rec, url)
        result = fetch(src, "daily_quotes", ["7203.T", "BHP.AX", "IBM"], one_day(10))
    assert result.item_errors == {}
    assert sorted((r["code"], r["date"]) for r in result.rows) == [
        ("7203.T", "2026-03-10"), ("BHP.AX", "2026-03-10"), ("IBM", "2026-03-10"),
    ]
    # the Sydney bar of the 10th is stamped 23:00Z on the 9th (10:00 AEDT)
    chart = chart_of("timezone_edge", "BHP.AX")
    i = chart["timestamp"].index(int(datetime(2026, 3, 9, 23, 0, tzinfo=UTC).timestamp()))
    bhp = by(result.rows, "BHP.AX")["2026-03-10"]
    assert bhp["close"] == round(chart["indicators"]["quote"][0]["close"][i], 2)


def test_a_rate_limit_timeout_fails_the_unit_without_more_requests():
    calls = []

    def acquire():
        calls.append(1)
        raise RateLimitTimeout("no token for source 'yahoo' within 60 s")

    with running_replay(*fx("normal_batch")) as (url, replay):
        src = YFinanceSource("yahoo", {}, Credentials(host=url), acquire=acquire)
        with pytest.raises(RateLimitTimeout):
            fetch(src, "daily_quotes", US_TICKERS, week())
    assert len(calls) == 1 and replay.requests == []


def test_a_network_error_is_reported_per_ticker(rec):
    # a Connection host where nothing listens: every request (handshakes, charts) is refused
    with isolated_yfinance():
        result = fetch(make(rec, closed_port_url()), "daily_quotes", ["AAPL"], week())
    assert result.rows == []
    assert set(result.item_errors) == {"AAPL"}
    reason = result.item_errors["AAPL"]
    assert reason.startswith("request failed: ") and "ConnectionError" in reason, reason
    assert result.retryable_items == {"AAPL"}  # the network may be back on the next try
    assert result.requests == rec.acquired > 0  # refused requests still took their rate-limit token


def test_validate_credentials_makes_one_cheap_request(rec):
    with running_replay(*fx("normal_batch")) as (url, replay):
        make(rec, url).validate_credentials()  # any HTTP answer but 429/5xx means Yahoo is reachable
    assert len(replay.requests) == 1 and rec.acquired == 1
    assert replay.chart_requests("SPY") == [{"range": "1d", "interval": "1d"}]
    with running_replay(*fx("rate_limited_blocked")) as (url, _):
        with pytest.raises(RetryableSourceError, match="429"):
            make(rec, url).validate_credentials()


def test_validate_credentials_unreachable(rec):
    with pytest.raises(RetryableSourceError, match="unreachable"):
        make(rec, closed_port_url()).validate_credentials()


def test_unit_from_dict_roundtrip(rec):
    (unit,) = make(rec).plan("daily_quotes", {"tickers": ["AAPL"]}, week(), max_units=4)
    assert FetchUnit.from_dict(json.loads(json.dumps(unit.to_dict()))) == unit
