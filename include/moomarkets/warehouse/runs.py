"""Run records in the warehouse: every write to ``runs`` and ``run_units``.

A run row is opened by the plan task with one pending row per unit, each unit marks itself
running and done (rows, requests, error, timings), and the record task closes the run with a
status derived from its units. ``job_group_status`` (a view) shows each group's latest run.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg


def start_run(
    conn: psycopg.Connection,
    *,
    group_name: str,
    dag_id: str,
    run_id: str,
    interval_start,
    interval_end,
    units: list[dict[str, Any]],
    plan: dict[str, Any],
    status: str = "running",
    covers: tuple[Any, Any] | None = None,
) -> int:
    """Create (or reset, when the plan task is re-run) the run record and its pending units.
    ``covers`` is (first, last) trading day the run loads (``Source.covered_days``): once the run
    succeeds, what a downstream group's runs may count on."""
    covers_from, covers_to = covers or (None, None)
    row = conn.execute(
        """
        INSERT INTO runs (group_name, dag_id, run_id, data_interval_start, data_interval_end, status,
                          units_total, plan, started_at, finished_at, error, covers_from, covers_to)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now(), NULL, NULL, %s, %s)
        ON CONFLICT (dag_id, run_id) DO UPDATE
           SET status = EXCLUDED.status, units_total = EXCLUDED.units_total, plan = EXCLUDED.plan,
               data_interval_start = EXCLUDED.data_interval_start,
               data_interval_end = EXCLUDED.data_interval_end,
               covers_from = EXCLUDED.covers_from, covers_to = EXCLUDED.covers_to,
               finished_at = NULL, error = NULL
        RETURNING id
        """,
        (group_name, dag_id, run_id, interval_start, interval_end, status, len(units), json.dumps(plan),
         covers_from, covers_to),
    ).fetchone()
    run_pk = row["id"] if isinstance(row, dict) else row[0]
    keys = [u["key"] for u in units]
    conn.execute("DELETE FROM run_units WHERE run_pk = %s AND NOT (unit_key = ANY(%s))", (run_pk, keys))
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO run_units (run_pk, unit_key, unit, status) VALUES (%s, %s, %s, 'pending')
            ON CONFLICT (run_pk, unit_key) DO UPDATE SET unit = EXCLUDED.unit
            """,
            [(run_pk, u["key"], json.dumps(u)) for u in units],
        )
    return run_pk


def find_run(conn: psycopg.Connection, dag_id: str, run_id: str) -> int | None:
    """The run record's primary key, or None when the plan task never opened it."""
    found = run_status(conn, dag_id, run_id)
    return None if found is None else found[0]


def mark_unit_running(conn: psycopg.Connection, run_pk: int, unit: dict[str, Any]) -> None:
    conn.execute(
        """
        INSERT INTO run_units (run_pk, unit_key, unit, status, attempts, started_at)
        VALUES (%s, %s, %s, 'running', 1, now())
        ON CONFLICT (run_pk, unit_key) DO UPDATE
           SET status = 'running', attempts = run_units.attempts + 1, started_at = now(),
               finished_at = NULL, error = NULL
        """,
        (run_pk, unit["key"], json.dumps(unit)),
    )


def mark_unit_done(
    conn: psycopg.Connection, run_pk: int, unit_key: str, *, rows: int, requests: int, error: str | None = None,
    http_429: int = 0, http_5xx: int = 0, wait_seconds: float = 0.0,
) -> None:
    """Close a unit's attempt: its rows and error, and what its requests met (429s, 5xx, rate-limit
    wait). ``rows`` is this attempt's; the request counters ADD UP over the unit's attempts (a retry
    re-marks the unit running without resetting them), so the 429s that made Airflow retry a unit
    stay counted next to the requests of the attempt that loaded it: what the source saw."""
    conn.execute(
        """
        UPDATE run_units SET status = %s, rows = %s, requests = run_units.requests + %s,
                             http_429 = run_units.http_429 + %s, http_5xx = run_units.http_5xx + %s,
                             wait_seconds = run_units.wait_seconds + %s, error = %s, finished_at = now()
         WHERE run_pk = %s AND unit_key = %s
        """,
        ("failed" if error else "success", rows, requests, http_429, http_5xx, wait_seconds, error, run_pk, unit_key),
    )


def refresh_run_progress(conn: psycopg.Connection, run_pk: int) -> None:
    """Recompute the run's counters from its units (the UI's n/N progress)."""
    conn.execute(
        """
        UPDATE runs r SET
            units_done   = s.done,
            units_failed = s.failed,
            rows_loaded  = s.rows
        FROM (SELECT count(*) FILTER (WHERE status = 'success') AS done,
                     count(*) FILTER (WHERE status = 'failed')  AS failed,
                     coalesce(sum(rows), 0)                     AS rows
                FROM run_units WHERE run_pk = %s) s
        WHERE r.id = %s
        """,
        (run_pk, run_pk),
    )


def finish_run(conn: psycopg.Connection, run_pk: int, *, problems: list[str] | None = None) -> dict[str, Any]:
    """Close the run: status from its units; returns a small summary (safe for XCom).

    ``problems`` (failed restatements, data checks of severity error) fail a run whose units all
    loaded: its rows are in, but the warehouse is not what the source serves or fails a check.
    """
    problems = list(problems or [])
    refresh_run_progress(conn, run_pk)
    units = conn.execute(
        "SELECT unit_key, status, rows, error FROM run_units WHERE run_pk = %s ORDER BY unit_key", (run_pk,)
    ).fetchall()
    failed = [u for u in units if u["status"] != "success"]
    total = len(units)
    if total and not failed:
        status = "success"
    elif failed and len(failed) < total:
        status = "partial"
    elif failed:
        status = "failed"
    else:
        status = "success"  # nothing to load in this interval (e.g. a holiday)
    if problems and status == "success":
        status = "failed"
    error = "; ".join([*problems, *(f"{u['unit_key']}: {u['error'] or u['status']}" for u in failed)])[:4000] or None
    conn.execute(
        "UPDATE runs SET status = %s, error = %s, finished_at = now() WHERE id = %s", (status, error, run_pk)
    )
    return {
        "status": status,
        "units_total": total,
        "units_failed": len(failed),
        "rows_loaded": int(sum(u["rows"] for u in units)),
        "failed_units": [u["unit_key"] for u in failed][:50],
        "problems": [p[:500] for p in problems[:20]],
    }


def run_status(conn: psycopg.Connection, dag_id: str, run_id: str) -> tuple[int, str] | None:
    """(run pk, status) of a run record, or None when the plan task never opened it."""
    row = conn.execute("SELECT id, status FROM runs WHERE dag_id = %s AND run_id = %s", (dag_id, run_id)).fetchone()
    return None if row is None else (row["id"], row["status"])


def record_skipped(
    conn: psycopg.Connection, *, group_name: str, dag_id: str, run_id: str, interval_start, interval_end, reason: str
) -> None:
    """A run that did not load anything on purpose (group disabled, source inactive), with why."""
    record_closed(conn, group_name=group_name, dag_id=dag_id, run_id=run_id, interval_start=interval_start,
                  interval_end=interval_end, status="skipped", plan={"skipped": reason}, reason=reason)


def record_closed(
    conn: psycopg.Connection, *, group_name: str, dag_id: str, run_id: str, interval_start, interval_end,
    status: str, plan: dict[str, Any], reason: str, covers: tuple[Any, Any] | None = None,
) -> None:
    """A run closed before it planned any unit (skipped, or failed waiting), with the reason as its error."""
    run_pk = start_run(
        conn, group_name=group_name, dag_id=dag_id, run_id=run_id, interval_start=interval_start,
        interval_end=interval_end, units=[], plan=plan, status=status, covers=covers,
    )
    conn.execute("UPDATE runs SET error = %s, finished_at = now() WHERE id = %s", (reason, run_pk))


def group_runnable(conn: psycopg.Connection, group_name: str) -> tuple[bool, str]:
    """Live check (not the parse-time copy): is the group enabled and its source active?"""
    row = conn.execute(
        "SELECT g.is_enabled, s.is_active, s.code FROM job_groups g"
        " JOIN data_sources s ON s.id = g.data_source_id WHERE g.name = %s",
        (group_name,),
    ).fetchone()
    if row is None:
        return False, f"job group {group_name!r} no longer exists"
    if not row["is_enabled"]:
        return False, f"job group {group_name!r} is disabled"
    if not row["is_active"]:
        return False, f"data source {row['code']!r} is inactive"
    return True, ""
