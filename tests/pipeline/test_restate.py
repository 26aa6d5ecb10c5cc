"""Restatement after a corporate action, end to end without Airflow: load with the source's clock
before a split, let the source restate (move the fake's "today" past the split), load the split day,
restate, and compare EVERY stored row with what the source serves now.

The fake J-Quants v2 server (real HTTP, small pages) serves ``moomarkets.testing.jquants_data``:
``80350`` splits 1:2 on 2026-03-30 and the fake applies splits only up to its ``today``.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest

from moomarkets.config.models import DataSource, GroupSpec, JobGroup
from moomarkets.pipeline import GroupPipeline
from moomarkets.pipeline import restate
from moomarkets.pipeline import run as runner
from moomarkets.sources.base import Credentials, Interval
from moomarkets.sources.jquants.source import JQuantsSource
from moomarkets.testing import jquants_data as fd
from moomarkets.warehouse import restatements

pytestmark = pytest.mark.integration

TOKYO = ZoneInfo("Asia/Tokyo")
KEY = "restate-test-key-8812"
N = 12  # the special-case issues only: 80350 among them
PAGE = 4  # rows per page: the restatement's code query spans several pages
BEFORE = date(2026, 3, 27)  # Friday before the split
AFTER = date(2026, 3, 31)
COLS = ("open", "high", "low", "close", "upper_limit", "lower_limit", "volume", "turnover", "adjustment_factor",
        "adj_open", "adj_high", "adj_low", "adj_close", "adj_volume")


def tokyo(y: int, m: int, d: int, h: int = 19) -> datetime:
    return datetime(y, m, d, h, tzinfo=TOKYO)


@pytest.fixture
def fake():
    from moomarkets.testing.jquants_fake import FakeConfig, running_fake

    with running_fake(FakeConfig(api_key=KEY, page_size=PAGE, n_issues=N, today=BEFORE)) as (base_url, state):
        yield base_url, state


def pipeline() -> GroupPipeline:
    return GroupPipeline.resolve(GroupSpec(
        group=JobGroup(name="jp_bars", data_source="jquants", dataset="daily_quotes", schedule="0 19 * * 1-5",
                       timezone="Asia/Tokyo", parameters={"universe": "all_listed"}),
        source=DataSource(code="jquants", name="J-Quants", kind="jquants", conn_id="jquants_default",
                          config={"rate_limit": "6000/minute"}),
    ))


def load(url: str, pipe: GroupPipeline, base_url: str, interval: Interval, run_id: str) -> list[dict]:
    units = runner.plan_units(pipe, interval, dag_id=pipe.name, run_id=run_id, url=url, max_units=64)
    creds = Credentials(secret=KEY, host=base_url)
    return [runner.fetch_and_load(pipe, u, dag_id=pipe.name, run_id=run_id, credentials=creds, url=url)
            for u in units]


def stored(url: str) -> dict[tuple[str, str], tuple]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT code, date::text, {', '.join(COLS)} FROM daily_quotes ORDER BY code, date")
        return {(r[0], r[1]): tuple(float(v) if isinstance(v, Decimal) else v for v in r[2:]) for r in rows}


def served_now(keys, today: date) -> dict[tuple[str, str], tuple]:
    """What the source serves now for the stored keys, normalized as the source normalizes it."""
    src = JQuantsSource("jquants", {}, Credentials())
    out = {}
    for day in sorted({d for _, d in keys}):
        for raw in fd.daily_bars_for_date(day, n_issues=N, as_of=today):
            row = src.normalize_daily_quotes(raw)
            out[(row["code"], row["date"])] = tuple(
                float(row[c]) if isinstance(row[c], (int, float)) and not isinstance(row[c], bool) else row[c]
                for c in COLS
            )
    return {k: v for k, v in out.items() if k in keys}


def test_split_restates_stored_history_in_the_same_run(warehouse_url, fake):
    base_url, state = fake
    pipe = pipeline()
    # 1. the source's clock before the split: two weeks of the whole market, old basis
    load(warehouse_url, pipe, base_url, Interval(tokyo(2026, 3, 13), tokyo(2026, 3, 27)), "run_1")
    before = stored(warehouse_url)
    old_adj = before[(fd.SPLIT_CODE, "2026-03-26")][COLS.index("adj_close")]
    assert old_adj == before[(fd.SPLIT_CODE, "2026-03-26")][COLS.index("close")]  # no split applied yet
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("SELECT count(*) FROM restatements").fetchone() == (0,)

    # 2. the source restates (its today passes the split); the run loading the split day restates
    state.config.today = AFTER
    state.reset()
    loaded = load(warehouse_url, pipe, base_url, Interval(tokyo(2026, 3, 27), tokyo(2026, 3, 30)), "run_2")
    assert [u["unit"] for u in loaded] == ["date:2026-03-30"]
    load_requests = len(state.requests)
    with psycopg.connect(warehouse_url) as conn:
        pending = conn.execute("SELECT code, event_date::text, action, factor::float8, status FROM restatements"
                               " WHERE run_id = 'run_2'").fetchall()
    assert pending == [(fd.SPLIT_CODE, "2026-03-30", "split", 0.5, "pending")]

    limiter = pipe.limiter(warehouse_url)
    try:
        summary = restate.restate_run(pipe, dag_id="jp_bars", run_id="run_2",
                                      credentials=Credentials(secret=KEY, host=base_url), url=warehouse_url,
                                      limiter=limiter)
    finally:
        limiter.close()
    restate_requests = state.requests[load_requests:]
    stored_days = sorted(d for c, d in before if c == fd.SPLIT_CODE)
    pages = -(-len(stored_days) // PAGE)
    # exactly one code + from/to query over the stored span, its pages followed, each through the limiter
    assert len(restate_requests) == pages == limiter.acquired == summary["requests"] >= 2
    for path, params in restate_requests:
        assert path == "/equities/bars/daily"
        assert (params["code"], params["from"], params["to"]) == (
            fd.SPLIT_CODE, stored_days[0].replace("-", ""), stored_days[-1].replace("-", ""))
    assert summary["restated"] == 1 and summary["failed"] == 0
    assert summary["rows_changed"] == len(stored_days)  # every earlier row of the code had the old basis

    # 3. EVERY stored row equals what the source serves now
    now = stored(warehouse_url)
    assert set(now) == set(before) | {(r["Code"], r["Date"]) for r in fd.daily_bars_for_date("2026-03-30", n_issues=N)}
    assert now == served_now(set(now), AFTER)
    assert now[(fd.SPLIT_CODE, "2026-03-26")][COLS.index("adj_close")] == round(old_adj * 0.5, 1)
    with psycopg.connect(warehouse_url) as conn:
        rec = conn.execute("SELECT source, code, event_date::text, action, factor::float8, status, rows_changed,"
                           " requests, dag_id, run_id, error FROM restatements").fetchall()
        assert restatements.failed_restatements(conn, "jp_bars", "run_2") == []
    assert rec == [("jquants", fd.SPLIT_CODE, "2026-03-30", "split", 0.5, "done", len(stored_days), pages,
                    "jp_bars", "run_2", None)]

    # 4. again: nothing open, no request; a later load of the split day sees the event, but nothing
    # stored predates the source's restatement any more: recorded with 0 requests
    state.reset()
    assert restate.restate_run(pipe, dag_id="jp_bars", run_id="run_2", credentials=Credentials(secret=KEY,
                               host=base_url), url=warehouse_url)["codes"] == 0
    load(warehouse_url, pipe, base_url, Interval(tokyo(2026, 3, 27), tokyo(2026, 3, 30)), "run_3")
    n = len(state.requests)
    third = restate.restate_run(pipe, dag_id="jp_bars", run_id="run_3", credentials=Credentials(secret=KEY,
                                host=base_url), url=warehouse_url)
    assert (third["skipped"], third["requests"], len(state.requests)) == (1, 0, n)
    assert stored(warehouse_url) == now


def test_failed_restatement_is_recorded_scrubbed_and_retried(warehouse_url, fake):
    base_url, state = fake
    pipe = pipeline()
    load(warehouse_url, pipe, base_url, Interval(tokyo(2026, 3, 24), tokyo(2026, 3, 27)), "run_1")
    state.config.today = AFTER
    load(warehouse_url, pipe, base_url, Interval(tokyo(2026, 3, 27), tokyo(2026, 3, 30)), "run_2")
    sent_before = state.count()
    state.inject("429", 1)  # retried by the client, then the 400 fails the code for good
    state.inject("400", 1, message=f"bad request for key {KEY}")
    creds = Credentials(secret=KEY, host=base_url)
    with pytest.raises(restate.RestatementFailed) as ei:
        restate.restate_run(pipe, dag_id="jp_bars", run_id="run_2", credentials=creds, url=warehouse_url)
    assert ei.value.retryable is False and KEY not in str(ei.value)
    with psycopg.connect(warehouse_url) as conn:
        [line] = restatements.failed_restatements(conn, "jp_bars", "run_2")
    assert line.startswith(f"{fd.SPLIT_CODE} split 2026-03-30: ") and "bad request for key ***" in line
    # a retry of the task picks the failed code up again and succeeds
    summary = restate.restate_run(pipe, dag_id="jp_bars", run_id="run_2", credentials=creds, url=warehouse_url)
    assert summary["restated"] == 1
    with psycopg.connect(warehouse_url) as conn:
        assert restatements.failed_restatements(conn, "jp_bars", "run_2") == []
        # the failed attempt's requests (the 429 and the 400) count with the retry's, as the source saw them
        row = conn.execute("SELECT requests, http_429, http_5xx, wait_seconds > 0 FROM restatements"
                           " WHERE run_id = 'run_2' AND requests > 0").fetchall()
    assert row == [(state.count() - sent_before, 1, 0, True)] and summary["requests"] == state.count() - sent_before - 2
    now = stored(warehouse_url)
    assert now == served_now(set(now), AFTER)


def test_manual_restate_repairs_stale_rows(warehouse_url, fake):
    base_url, state = fake
    pipe = pipeline()
    load(warehouse_url, pipe, base_url, Interval(tokyo(2026, 3, 24), tokyo(2026, 3, 27)), "run_1")
    state.config.today = AFTER  # the source restated, but no run of ours saw the split day
    state.reset()
    summary = restate.restate_codes(pipe.source_row, "daily_quotes", [fd.SPLIT_CODE, "72030", "99990"],
                                    credentials=Credentials(secret=KEY, host=base_url), url=warehouse_url,
                                    start=date(2026, 3, 25))
    assert summary["missing"] == ["99990"] and summary["restated"] == 2
    assert len(state.requests) == 2  # one query per code (3 rows fit one page... of 4)
    assert {(p["code"], p["from"], p["to"]) for _, p in state.requests} == {
        (fd.SPLIT_CODE, "20260325", "20260327"), ("72030", "20260325", "20260327")}
    now = stored(warehouse_url)
    fresh = served_now(set(now), AFTER)
    for key, values in now.items():
        if key[1] >= "2026-03-25":
            assert values == fresh[key]
        elif key[0] == fd.SPLIT_CODE:
            assert values != fresh[key]  # outside the asked span: untouched
    with psycopg.connect(warehouse_url) as conn:
        recs = conn.execute("SELECT code, action, status, rows_changed, event_date FROM restatements ORDER BY code"
                            ).fetchall()
    assert recs == [("72030", "manual", "done", 0, None), (fd.SPLIT_CODE, "manual", "done", 3, None)]
