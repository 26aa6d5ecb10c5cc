"""Idempotent upserts and run records on the real warehouse (dlt's 'load twice' test)."""

from __future__ import annotations


import psycopg
import pytest

from moomarkets.warehouse import loads, runs
from moomarkets.warehouse.datasets import DAILY_QUOTES

pytestmark = pytest.mark.integration


def bar(code: str, day: str, close: float) -> dict:
    return {"source": "jquants", "code": code, "date": day, "open": close, "high": close, "low": close,
            "close": close, "volume": 100.0, "adjustment_factor": 1.0, "adj_close": close}


def test_load_twice_same_rows(warehouse_url):
    rows = [bar(f"{1000 + i}0", "2026-11-20", 100 + i) for i in range(500)]
    with psycopg.connect(warehouse_url) as conn:
        with conn.transaction():
            assert loads.upsert_rows(conn, DAILY_QUOTES, rows) == 500
        first = conn.execute("SELECT code, date, close, loaded_at FROM daily_quotes ORDER BY code").fetchall()
        with conn.transaction():
            assert loads.upsert_rows(conn, DAILY_QUOTES, rows) == 0  # nothing changed, nothing rewritten
        second = conn.execute("SELECT code, date, close, loaded_at FROM daily_quotes ORDER BY code").fetchall()
        assert first == second
        count, distinct = conn.execute("SELECT count(*), count(DISTINCT (source, code, date)) FROM daily_quotes").fetchone()
        assert count == distinct == 500


def test_changed_values_update_in_place_and_duplicates_in_batch_keep_last(warehouse_url):
    with psycopg.connect(warehouse_url) as conn:
        with conn.transaction():
            loads.upsert_rows(conn, DAILY_QUOTES, [bar("72030", "2026-11-20", 10)])
        with conn.transaction():
            n = loads.upsert_rows(
                conn, DAILY_QUOTES, [bar("72030", "2026-11-20", 11), bar("72030", "2026-11-20", 12)]
            )
        assert n == 1
        assert conn.execute("SELECT close FROM daily_quotes").fetchall() == [(12,)]


def test_failed_unit_leaves_nothing(warehouse_url):
    rows = [bar("72030", "2026-11-19", 10), {**bar("67580", "2026-11-20", 5), "date": "not-a-date"}]
    with psycopg.connect(warehouse_url) as conn:
        with pytest.raises(psycopg.errors.InvalidDatetimeFormat):
            with conn.transaction():
                loads.upsert_rows(conn, DAILY_QUOTES, rows)
        assert conn.execute("SELECT count(*) FROM daily_quotes").fetchone() == (0,)


def test_run_records_and_status(warehouse_url):
    units = [{"key": "date:2026-11-19", "kind": "dates", "params": {}}, {"key": "date:2026-11-20", "kind": "dates", "params": {}}]
    with psycopg.connect(warehouse_url, row_factory=psycopg.rows.dict_row) as conn:
        pk = runs.start_run(conn, group_name="g", dag_id="g", run_id="r1", interval_start=None, interval_end=None,
                               units=units, plan={})
        runs.mark_unit_running(conn, pk, units[0])
        runs.mark_unit_done(conn, pk, units[0]["key"], rows=10, requests=1)
        runs.mark_unit_running(conn, pk, units[1])
        runs.mark_unit_done(conn, pk, units[1]["key"], rows=0, requests=3, error="RetryableSourceError: 500")
        summary = runs.finish_run(conn, pk)
        assert summary == {"status": "partial", "units_total": 2, "units_failed": 1, "rows_loaded": 10,
                           "failed_units": ["date:2026-11-20"], "problems": []}
        # re-planning the same run keeps its id and resets the units' plan
        assert runs.start_run(conn, group_name="g", dag_id="g", run_id="r1", interval_start=None,
                                 interval_end=None, units=units[:1], plan={}) == pk
        assert [r["unit_key"] for r in conn.execute("SELECT unit_key FROM run_units WHERE run_pk = %s", (pk,))] == [
            "date:2026-11-19"
        ]
        status = conn.execute("SELECT last_run_status FROM job_group_status").fetchall()
        assert status == []  # no job_groups rows in this test: the view joins on groups


def test_a_failed_restatement_or_error_check_fails_a_fully_loaded_run(warehouse_url):
    unit = {"key": "date:2026-11-20", "kind": "dates", "params": {}}
    with psycopg.connect(warehouse_url, row_factory=psycopg.rows.dict_row) as conn:
        pk = runs.start_run(conn, group_name="g", dag_id="g", run_id="r2", interval_start=None, interval_end=None,
                            units=[unit], plan={})
        runs.mark_unit_running(conn, pk, unit)
        runs.mark_unit_done(conn, pk, unit["key"], rows=10, requests=1)
        assert runs.finish_run(conn, pk)["status"] == "success"
        problem = "check price_sanity: 1 of 10 rows fail (72030 2026-11-20)"
        summary = runs.finish_run(conn, pk, problems=[problem])
        assert summary["status"] == "failed" and summary["problems"] == [problem] and summary["rows_loaded"] == 10
        row = conn.execute("SELECT status, error FROM runs WHERE id = %s", (pk,)).fetchone()
        assert row["status"] == "failed" and row["error"].startswith(problem)


def test_unit_request_counters_add_up_over_attempts(warehouse_url):
    """A retried unit: re-marking it running keeps the counters, each attempt's close adds to them
    (the 429s that made Airflow retry stay counted); rows and error are the last attempt's."""
    unit = {"key": "date:2026-11-20", "kind": "dates", "params": {}}
    with psycopg.connect(warehouse_url, row_factory=psycopg.rows.dict_row) as conn:
        pk = runs.start_run(conn, group_name="g", dag_id="g", run_id="r3", interval_start=None, interval_end=None,
                            units=[unit], plan={})
        runs.mark_unit_running(conn, pk, unit)
        runs.mark_unit_done(conn, pk, unit["key"], rows=0, requests=6, http_429=3, http_5xx=3, wait_seconds=1.5,
                            error="RetryableSourceError: HTTP 500")
        runs.mark_unit_running(conn, pk, unit)
        row = conn.execute("SELECT status, requests, http_429 FROM run_units WHERE run_pk = %s", (pk,)).fetchone()
        assert (row["status"], row["requests"], row["http_429"]) == ("running", 6, 3)
        runs.mark_unit_done(conn, pk, unit["key"], rows=10, requests=2, wait_seconds=0.25)
        row = conn.execute("SELECT status, rows, requests, http_429, http_5xx, wait_seconds, attempts, error"
                           " FROM run_units WHERE run_pk = %s", (pk,)).fetchone()
        assert row == {"status": "success", "rows": 10, "requests": 8, "http_429": 3, "http_5xx": 3,
                       "wait_seconds": 1.75, "attempts": 2, "error": None}
