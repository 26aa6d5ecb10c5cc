"""Check results in the warehouse: every write to and read of ``check_results``."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import psycopg


def save_results(
    conn: psycopg.Connection, *, group_name: str, dag_id: str, run_id: str, dataset: str,
    results: list[dict[str, Any]],
) -> None:
    """Replace the run's check results (a rerun of the checks replaces them, never adds)."""
    conn.execute("DELETE FROM check_results WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO check_results (group_name, dag_id, run_id, dataset, check_name, severity, passed, failed,
                                       checked, sample, days, failed_days, thresholds, message, elapsed_ms)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (group_name, dag_id, run_id, dataset, r["check_name"], r["severity"], r["passed"], r["failed"],
                 r["checked"], json.dumps(r["sample"], default=str), r["days"], r["failed_days"],
                 json.dumps(r["thresholds"]), r["message"], r.get("elapsed_ms"))
                for r in results
            ],
        )


def error_checks(conn: psycopg.Connection, dag_id: str, run_id: str) -> list[str]:
    """Messages of the run's failed checks of severity error (each names the check and examples);
    empty when none failed. ``record_run`` fails the run when this is not empty."""
    rows = conn.execute(
        "SELECT message FROM check_results WHERE dag_id = %s AND run_id = %s AND severity = 'error'"
        " AND NOT passed ORDER BY check_name",
        (dag_id, run_id),
    ).fetchall()
    return [r["message"] for r in rows]


_RESULT_COLUMNS = ("run_id, dataset, check_name, severity, passed, failed, checked, sample, days, failed_days,"
                   " thresholds, message, elapsed_ms, checked_at")


def run_results(conn: psycopg.Connection, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(
        f"SELECT {_RESULT_COLUMNS} FROM check_results WHERE dag_id = %s AND run_id = %s ORDER BY check_name",
        (dag_id, run_id),
    ).fetchall()]


def latest_results(conn: psycopg.Connection, group_name: str) -> list[dict[str, Any]]:
    """The check results of the group's most recently checked run (empty when none was checked)."""
    return [dict(r) for r in conn.execute(
        f"""
        SELECT {_RESULT_COLUMNS} FROM check_results
         WHERE group_name = %(g)s AND run_id = (
               SELECT run_id FROM check_results WHERE group_name = %(g)s
                ORDER BY checked_at DESC, id DESC LIMIT 1)
         ORDER BY check_name
        """,
        {"g": group_name},
    ).fetchall()]


def recent_results(conn: psycopg.Connection, group_name: str, runs: int = 10) -> list[dict[str, Any]]:
    """Check results of the group's last ``runs`` checked runs, newest run first."""
    return [dict(r) for r in conn.execute(
        f"""
        WITH last AS (
            SELECT run_id, max(checked_at) AS at FROM check_results WHERE group_name = %(g)s
             GROUP BY run_id ORDER BY at DESC LIMIT %(n)s)
        SELECT {_RESULT_COLUMNS} FROM check_results c JOIN last USING (run_id)
         WHERE c.group_name = %(g)s
         ORDER BY last.at DESC, c.run_id, c.check_name
        """,
        {"g": group_name, "n": runs},
    ).fetchall()]


def failed_days(conn: psycopg.Connection, source: str, dataset: str, start: date, end: date) -> dict[date, list[str]]:
    """Days in [start, end] whose latest check (per group and check) failed: {day: ["group: check", ...]}."""
    rows = conn.execute(
        """
        WITH per_day AS (
            SELECT DISTINCT ON (c.group_name, c.check_name, d.day)
                   d.day, c.group_name, c.check_name, c.severity, d.day = ANY(c.failed_days) AS failed
              FROM check_results c
              JOIN job_groups g ON g.name = c.group_name
              JOIN data_sources s ON s.id = g.data_source_id
              CROSS JOIN LATERAL unnest(c.days) AS d(day)
             WHERE s.code = %s AND c.dataset = %s AND d.day BETWEEN %s AND %s
             ORDER BY c.group_name, c.check_name, d.day, c.checked_at DESC, c.id DESC)
        SELECT day, group_name, check_name, severity FROM per_day WHERE failed ORDER BY day, group_name, check_name
        """,
        (source, dataset, start, end),
    ).fetchall()
    out: dict[date, list[str]] = {}
    for r in rows:
        out.setdefault(r["day"], []).append(f"{r['group_name']}: {r['check_name']} ({r['severity']})")
    return out
