"""The as-of rule of ``upsert_rows``: a row's adjusted values are only overwritten by a fetch at
least as recent as the one they came from, so loading an old range with an older fetch (a slow unit
committing after a restatement, a replayed payload) cannot bring back the old basis."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from moomarkets.warehouse import loads
from moomarkets.warehouse import restatements
from moomarkets.warehouse.datasets import DAILY_QUOTES

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 27, 10, tzinfo=timezone.utc)  # before the source knew the split
T1 = T0 + timedelta(days=4)  # after


def bar(close: float, adj_close: float, turnover: float, day: str = "2026-03-26") -> dict:
    return {"source": "jquants", "code": "80350", "date": day, "open": close, "high": close, "low": close,
            "close": close, "upper_limit": False, "lower_limit": False, "volume": 100, "turnover": turnover,
            "adjustment_factor": 1.0, "adj_open": adj_close, "adj_high": adj_close, "adj_low": adj_close,
            "adj_close": adj_close, "adj_volume": 100 * close / adj_close}


def row(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT close::float8, adj_close::float8, adj_volume::float8, turnover::float8,"
                            " adjusted_as_of, loaded_at FROM daily_quotes").fetchone()


def upsert(url: str, rows: list[dict], as_of: datetime | None) -> int:
    with psycopg.connect(url) as conn, conn.transaction():
        return loads.upsert_rows(conn, DAILY_QUOTES, rows, as_of=as_of)


def test_an_older_fetch_never_overwrites_newer_adjusted_values(warehouse_url):
    assert upsert(warehouse_url, [bar(684, 684, 1000)], T0) == 1  # old basis
    assert upsert(warehouse_url, [bar(684, 342, 1000)], T1) == 1  # restated
    restated = row(warehouse_url)
    assert restated[:4] == (684, 342, 200, 1000) and restated[4] == T1
    # an old range loaded again by a fetch from before the restatement: nothing changes
    assert upsert(warehouse_url, [bar(684, 684, 1000)], T0) == 0
    assert row(warehouse_url) == restated
    # ... but columns that do not depend on the basis still update, the adjusted ones stay current
    assert upsert(warehouse_url, [bar(684, 684, 1001)], T0) == 1
    after = row(warehouse_url)
    assert after[:4] == (684, 342, 200, 1001) and after[4] == T1
    # a fetch at least as recent wins, and moves the as-of forward
    t2 = T1 + timedelta(hours=1)
    assert upsert(warehouse_url, [bar(684, 171, 1001)], t2) == 1
    assert row(warehouse_url)[1] == 171 and row(warehouse_url)[4] == t2
    # same values from a newer fetch: no rewrite (loaded_at stays), the as-of is not a change
    before = row(warehouse_url)
    assert upsert(warehouse_url, [bar(684, 171, 1001)], t2 + timedelta(hours=1)) == 0
    assert row(warehouse_url) == before


def test_rows_of_unknown_age_are_overwritten_and_default_as_of_is_now(warehouse_url):
    with psycopg.connect(warehouse_url) as conn, conn.transaction():
        loads.upsert_rows(conn, DAILY_QUOTES, [bar(684, 684, 1000)])
        conn.execute("UPDATE daily_quotes SET adjusted_as_of = NULL")  # loaded before the column existed
    assert upsert(warehouse_url, [bar(684, 342, 1000)], T0) == 1
    assert row(warehouse_url)[1] == 342 and row(warehouse_url)[4] == T0
    with psycopg.connect(warehouse_url) as conn, conn.transaction():
        loads.upsert_rows(conn, DAILY_QUOTES, [bar(684, 300, 1000)])  # no as_of: the transaction's now()
    assert row(warehouse_url)[1] == 300 and row(warehouse_url)[4] > T1


def test_restatements_table_and_failed_lines(warehouse_url):
    from datetime import date

    from moomarkets.sources.base import CorporateAction

    split = CorporateAction("80350", date(2026, 3, 30), "split", 0.5)
    with psycopg.connect(warehouse_url) as conn, conn.transaction():
        assert restatements.record_detected(conn, source="jquants", dataset="daily_quotes", actions=[split, split],
                                            dag_id="g", run_id="r", as_of=T1) == 1
        # a retried unit of the same run sees it again: still one record
        assert restatements.record_detected(conn, source="jquants", dataset="daily_quotes", actions=[split],
                                            dag_id="g", run_id="r", as_of=T1) == 0
        [rec] = restatements.open_for_run(conn, "g", "r")
        restatements.mark_failed(conn, [rec["id"]], error="PermanentSourceError: HTTP 400", requests=1)
        assert restatements.failed_restatements(conn, "g", "r") == ["80350 split 2026-03-30: PermanentSourceError: HTTP 400"]
        assert restatements.failed_restatements(conn, "g", "other") == []
        assert restatements.summarize_run(conn, "g", "r")["failed"] == 1
        assert [r["code"] for r in restatements.recent_for_group(conn, group_name="g", source="jquants",
                                                                  dataset="daily_quotes")] == ["80350"]


def test_migration_0004_downgrades_and_upgrades(warehouse_url):
    from alembic import command

    from moomarkets.warehouse import migrate

    def columns() -> set[str]:
        with psycopg.connect(warehouse_url) as conn:
            return {r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'daily_quotes'")}

    def has_table() -> bool:
        with psycopg.connect(warehouse_url) as conn:
            return conn.execute("SELECT to_regclass('restatements') IS NOT NULL").fetchone()[0]

    assert "adjusted_as_of" in columns() and has_table()
    cfg = migrate.alembic_config(warehouse_url)
    command.downgrade(cfg, "0003")
    assert "adjusted_as_of" not in columns() and not has_table()
    command.upgrade(cfg, "head")
    assert "adjusted_as_of" in columns() and has_table()
