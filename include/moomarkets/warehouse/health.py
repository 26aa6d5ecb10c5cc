"""Reads behind the Health page and the freshness answer: what each source's requests met per
day, the last trading day each group completely loaded, and the checks failing now."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import psycopg


def last_complete_day(conn: psycopg.Connection, group_name: str) -> date | None:
    """The latest trading day a successful run of the group covered (``runs.covers_to``)."""
    row = conn.execute(
        "SELECT max(covers_to) AS day FROM runs WHERE group_name = %s AND status = 'success'", (group_name,)
    ).fetchone()
    return row["day"]


def group_created_at(conn: psycopg.Connection, group_name: str) -> datetime | None:
    """When the group was created (None when it is not stored): no run of it is due before then."""
    row = conn.execute("SELECT created_at FROM job_groups WHERE name = %s", (group_name,)).fetchone()
    return row["created_at"] if row else None


def source_days(conn: psycopg.Connection, start: date, end: date) -> list[dict[str, Any]]:
    """Per source and UTC day in [start, end]: requests, 429s, 5xx and seconds waited for the rate
    limit, summed over every group's units (by when each unit last finished; a unit's counters add
    up over its attempts) and the source's restatements (each code's history re-fetch, by when it
    finished; the ``restate_history`` step and ``moomarkets restate``). Days without either are absent."""
    rows = conn.execute(
        """
        WITH met AS (
            SELECT s.code AS source, u.finished_at, u.requests, u.http_429, u.http_5xx, u.wait_seconds
              FROM run_units u
              JOIN runs r ON r.id = u.run_pk
              JOIN job_groups g ON g.name = r.group_name
              JOIN data_sources s ON s.id = g.data_source_id
             WHERE u.finished_at IS NOT NULL
            UNION ALL
            SELECT source, finished_at, requests, http_429, http_5xx, wait_seconds
              FROM restatements
             WHERE finished_at IS NOT NULL AND requests > 0)
        SELECT source, (finished_at AT TIME ZONE 'UTC')::date AS day,
               sum(requests)::bigint AS requests, sum(http_429)::bigint AS http_429,
               sum(http_5xx)::bigint AS http_5xx, sum(wait_seconds)::float AS wait_seconds
          FROM met
         WHERE (finished_at AT TIME ZONE 'UTC')::date BETWEEN %s AND %s
         GROUP BY 1, 2
         ORDER BY 1, 2
        """,
        (start, end),
    ).fetchall()
    return [dict(r) for r in rows]


def failing_checks(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The checks that did not pass in each group's most recently checked run, errors first."""
    rows = conn.execute(
        """
        WITH latest AS (
            SELECT DISTINCT ON (group_name) group_name, run_id
              FROM check_results ORDER BY group_name, checked_at DESC, id DESC)
        SELECT c.group_name, c.run_id, c.dataset, c.check_name, c.severity, c.failed, c.checked, c.message,
               c.checked_at
          FROM check_results c JOIN latest USING (group_name, run_id)
         WHERE NOT c.passed
         ORDER BY c.severity <> 'error', c.group_name, c.check_name
        """
    ).fetchall()
    return [dict(r) for r in rows]
