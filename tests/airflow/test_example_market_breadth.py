"""The example user DAG: scheduled on the daily_quotes asset, it turns the bars a group loaded into
daily returns and market breadth; checked against a reference computed here from the stored rows."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest

from dagtest import get_dag

pytestmark = [pytest.mark.integration, pytest.mark.airflow]

TOKYO = ZoneInfo("Asia/Tokyo")
THURSDAY, FRIDAY = date(2026, 11, 19), date(2026, 11, 20)


def reference(url: str, day: date) -> tuple[dict[str, float], dict]:
    """Per-code returns on ``day`` (adj_close over the code's previous stored adj_close) and breadth."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT code, date, adj_close FROM daily_quotes WHERE source = 'jquants'"
                            " AND adj_close IS NOT NULL ORDER BY code, date").fetchall()
    by_code: dict[str, list[tuple[date, Decimal]]] = defaultdict(list)
    for code, d, close in rows:
        by_code[code].append((d, close))
    returns = {}
    for code, bars in by_code.items():
        for (prev_d, prev), (d, close) in zip(bars, bars[1:]):
            if d == day and prev > 0:
                returns[code] = float(close / prev - 1)
    values = list(returns.values())
    up, down = sum(v > 0 for v in values), sum(v < 0 for v in values)
    return returns, {"issues": len(values), "advancers": up, "decliners": down, "unchanged": len(values) - up - down,
                     "ratio": up / down if down else None, "mean": statistics.fmean(values),
                     "median": statistics.median(values)}


def stored(url: str, day: date) -> tuple[dict[str, float], dict | None]:
    with psycopg.connect(url) as conn:
        returns = dict(conn.execute("SELECT code, daily_return FROM analysis_daily_returns WHERE date = %s",
                                    (day,)).fetchall())
        row = conn.execute(
            "SELECT issues, advancers, decliners, unchanged, advance_decline_ratio, mean_return, median_return"
            " FROM analysis_market_breadth WHERE source = 'jquants' AND date = %s", (day,)).fetchone()
    keys = ("issues", "advancers", "decliners", "unchanged", "ratio", "mean", "median")
    return returns, dict(zip(keys, row)) if row else None


def unpause(dag_id: str) -> None:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == dag_id).values(is_paused=False))


def queued_for(dag_id: str) -> int:
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(select(func.count()).select_from(AssetDagRunQueue)
                              .where(AssetDagRunQueue.target_dag_id == dag_id))


def asset_extras(run_ids: list[str]) -> list[dict]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return [dict(e) for e in session.scalars(select(AssetEvent.extra).where(AssetEvent.source_run_id.in_(run_ids)))]


def test_example_dag_computes_returns_and_breadth_of_the_loaded_days(group_env):
    from moomarkets.examples import market_breadth

    example = get_dag("example_market_breadth")
    assert [a.uri for a in example.timetable.asset_condition.objects] == [market_breadth.ASSET_URI]
    first = example.test()  # nothing loaded yet: nothing to compute (and the DAG is now known to Airflow)
    assert first.state == "success"
    unpause("example_market_breadth")  # Airflow queues asset-triggered runs of unpaused DAGs only

    quotes = get_dag("jp_daily_quotes")
    loads = [quotes.test(logical_date=datetime(2026, 11, d, 20, 0, tzinfo=TOKYO)) for d in (19, 20)]
    assert [r.state for r in loads] == ["success", "success"]
    assert queued_for("example_market_breadth") == 1  # the scheduler would start the example now

    run = example.test()
    assert run.state == "success"
    want_returns, want_breadth = reference(group_env, FRIDAY)
    got_returns, got_breadth = stored(group_env, FRIDAY)
    assert want_breadth["issues"] > 20 and want_breadth["advancers"] and want_breadth["decliners"]
    assert got_returns.keys() == want_returns.keys()
    assert all(abs(got_returns[c] - want_returns[c]) < 1e-12 for c in want_returns)
    assert {k: got_breadth[k] for k in ("issues", "advancers", "decliners", "unchanged")} == \
        {k: want_breadth[k] for k in ("issues", "advancers", "decliners", "unchanged")}
    for key in ("ratio", "mean", "median"):
        assert got_breadth[key] == pytest.approx(want_breadth[key], rel=1e-12)

    # the asset-triggered path: each event's extra names the trading days it loaded; a coalesced
    # run computes every window (Thursday has no earlier close stored, so no breadth row)
    extras = asset_extras([r.run_id for r in loads])
    assert sorted((e["covers_from"], e["covers_to"]) for e in extras) == [
        (THURSDAY.isoformat(), THURSDAY.isoformat()), (FRIDAY.isoformat(), FRIDAY.isoformat())]
    windows = [market_breadth.window_of(e) for e in extras]
    assert sorted(windows) == [(THURSDAY, THURSDAY), (FRIDAY, FRIDAY)]
    again = market_breadth.compute(group_env, windows=windows)
    assert again == {"days": [THURSDAY.isoformat(), FRIDAY.isoformat()], "returns": len(want_returns),
                     "breadth_rows": 1}
    assert stored(group_env, FRIDAY) == (got_returns, got_breadth) and stored(group_env, THURSDAY) == ({}, None)


def test_window_of_a_history_load_is_its_range():
    from moomarkets.examples.market_breadth import window_of

    assert window_of({"history": {"from": "2026-01-05", "to": "2026-03-31"}, "data_interval_start": None}) == (
        date(2026, 1, 5), date(2026, 3, 31))
    assert window_of({"group": "x"}) is None


def test_window_of_prefers_the_days_the_load_covered():
    from moomarkets.examples.market_breadth import window_of

    extra = {"data_interval_start": "2026-11-19T10:00:00+00:00", "data_interval_end": "2026-11-20T10:00:00+00:00"}
    assert window_of(extra) == (date(2026, 11, 19), FRIDAY)  # an older event: the interval's UTC dates
    assert window_of({**extra, "covers_from": "2026-11-20", "covers_to": "2026-11-20"}) == (FRIDAY, FRIDAY)
    assert window_of({**extra, "covers_from": None, "covers_to": None}) == (date(2026, 11, 19), FRIDAY)
