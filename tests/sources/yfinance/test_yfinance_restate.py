"""Yahoo restatement, offline: a load that sees NVDA's 4:1 split and KO's dividend records both,
and the restate step re-fetches each ticker's stale history with ONE history fetch per ticker.

What the recorded fixture allows: the replay serves one (current) series per symbol, so "stored
before Yahoo restated" is set up by writing the pre-event basis into the stored rows of the first
week (NVDA close x4 and volume / 4, KO's adj_close = close) with an old as-of; Yahoo's answer before
the events is not recorded. After restating, every stored row equals what the replay serves now.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import yfinance  # noqa: F401  (imported before any test: its import-time warning filter)

from moomarkets.config.models import DataSource, GroupSpec, JobGroup
from moomarkets.pipeline import GroupPipeline
from moomarkets.pipeline import restate
from moomarkets.pipeline import run as runner
from moomarkets.sources.base import Credentials, FetchUnit, Interval
from moomarkets.sources.yfinance.source import YFinanceSource
from moomarkets.testing.yahoo_replay import running_replay

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "yahoo"
UTC = timezone.utc
# New York closes at 21:00Z before DST (Mar 8), 20:00Z after; intervals include their start
WEEK1 = Interval(datetime(2026, 2, 27, 22, tzinfo=UTC), datetime(2026, 3, 6, 22, tzinfo=UTC))  # Mar 2..6
WEEKS23 = Interval(datetime(2026, 3, 6, 22, tzinfo=UTC), datetime(2026, 3, 20, 21, tzinfo=UTC))  # Mar 9..20
COLS = ("open", "high", "low", "close", "volume", "adjustment_factor", "adj_open", "adj_high", "adj_low",
        "adj_close", "adj_volume")


class Limiter:
    def __init__(self):
        self.acquired = 0

    def acquire(self):
        self.acquired += 1

    def penalize(self, seconds: float):
        pass

    def close(self):
        pass


def pipeline() -> GroupPipeline:
    return GroupPipeline.resolve(GroupSpec(
        group=JobGroup(name="us_quotes", data_source="yahoo", dataset="daily_quotes", schedule="30 1 * * 2-6",
                       timezone="UTC", parameters={"tickers": ["KO", "NVDA"]}),
        source=DataSource(code="yahoo", name="Yahoo Finance", kind="yfinance", conn_id="yfinance_default",
                          config={"throttle_backoff": 0}),
    ))


def load(url: str, pipe: GroupPipeline, interval: Interval, run_id: str, yahoo: str) -> None:
    for unit in runner.plan_units(pipe, interval, dag_id=pipe.name, run_id=run_id, url=url, max_units=4):
        runner.fetch_and_load(pipe, unit, dag_id=pipe.name, run_id=run_id, credentials=Credentials(host=yahoo),
                              url=url, limiter=Limiter())


def stored(url: str) -> dict[tuple[str, str], tuple]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT code, date::text, {', '.join(COLS)} FROM daily_quotes ORDER BY code, date")
        return {(r[0], r[1]): tuple(float(v) if isinstance(v, Decimal) else v for v in r[2:]) for r in rows}


def test_split_and_dividend_restate_each_ticker_with_one_history_fetch(warehouse_url):
    pipe = pipeline()
    with running_replay(FIXTURES / "split_dividend.json") as (yahoo, replay):
        load(warehouse_url, pipe, WEEK1, "run_1", yahoo)
        with psycopg.connect(warehouse_url) as conn:
            assert conn.execute("SELECT count(*) FROM restatements").fetchone() == (0,)  # no event in week 1
            # what a fetch from before the events would have stored (the old basis), with an old as-of
            conn.execute(
                "UPDATE daily_quotes SET adjusted_as_of = '2026-03-07T00:00Z',"
                " open = open * 4, high = high * 4, low = low * 4, close = close * 4, volume = volume / 4,"
                " adj_open = adj_open * 4, adj_high = adj_high * 4, adj_low = adj_low * 4,"
                " adj_close = adj_close * 4, adj_volume = adj_volume / 4 WHERE code = 'NVDA'")
            conn.execute("UPDATE daily_quotes SET adjusted_as_of = '2026-03-07T00:00Z', adj_close = close,"
                         " adj_open = open, adj_high = high, adj_low = low, adjustment_factor = 1 WHERE code = 'KO'")
        stale = stored(warehouse_url)

        load(warehouse_url, pipe, WEEKS23, "run_2", yahoo)
        with psycopg.connect(warehouse_url) as conn:
            events = conn.execute("SELECT code, event_date::text, action, factor::float8, status FROM restatements"
                                  " ORDER BY code").fetchall()
        assert events == [("KO", "2026-03-13", "dividend", 0.53, "pending"), ("NVDA", "2026-03-16", "split", 4.0, "pending")]

        replay.requests.clear()
        limiter = Limiter()
        summary = restate.restate_run(pipe, dag_id="us_quotes", run_id="run_2", credentials=Credentials(host=yahoo),
                                      url=warehouse_url, limiter=limiter)
        # ONE history fetch per ticker, over the stale span only (the week loaded before the events)
        for sym in ("KO", "NVDA"):
            history = [p for p in replay.chart_requests(sym) if "period1" in p]
            assert len(history) == 1
            assert datetime.fromtimestamp(int(history[0]["period1"]), UTC).date().isoformat() == "2026-03-02"
        assert limiter.acquired == len(replay.requests) == summary["requests"]
        assert summary["restated"] == 2 and summary["failed"] == 0
        assert summary["rows_changed"] == 10  # 5 stale days x 2 tickers

        # every stored row equals what Yahoo serves now
        now = stored(warehouse_url)
        src = YFinanceSource("yahoo", {}, Credentials(host=yahoo))
        fresh = src.fetch("daily_quotes", FetchUnit(key="all", kind="tickers", params={
            "tickers": ["KO", "NVDA"], "start": "2026-03-02", "end": "2026-03-20"}))
        assert not replay.unmatched
    served = {(r["code"], r["date"]): tuple(None if r[c] is None else float(r[c]) for c in COLS) for r in fresh.rows}
    assert set(now) == set(served) and len(now) == 2 * 15  # Mar 2..20: 15 NYSE sessions
    for key in now:
        assert now[key] == pytest.approx(served[key]), key
    assert stale[("NVDA", "2026-03-02")] != now[("NVDA", "2026-03-02")]
    with psycopg.connect(warehouse_url) as conn:
        recs = conn.execute("SELECT code, status, rows_changed, requests > 0 FROM restatements ORDER BY code").fetchall()
    assert recs == [("KO", "done", 5, True), ("NVDA", "done", 5, True)]
