"""Reads behind history mode (long ranges in few runs): which trading days of a group already
loaded, and how far the latest history load has got. Writes stay in ``warehouse.runs``.

A day counts as loaded when a unit of the group whose params list it under ``dates`` succeeded in
any run (scheduled, backfill or history) with the same ``codes`` as the group has now (a changed
ticker list loads again). Units planned by code (``codes`` + ``from``/``to``) do not count.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import psycopg

DATE_KINDS = ("dates", "code_dates")


def loaded_days(
    conn: psycopg.Connection, group_name: str, start: date, end: date, *, codes: list[str] | None = None
) -> set[date]:
    """Trading days in ``[start, end]`` that a successful by-date unit of the group loaded."""
    rows = conn.execute(
        """
        SELECT DISTINCT d::date AS day
          FROM runs r
          JOIN run_units u ON u.run_pk = r.id
         CROSS JOIN LATERAL jsonb_array_elements_text(u.unit->'params'->'dates') AS d
         WHERE r.group_name = %s AND u.status = 'success'
           AND u.unit->>'kind' = ANY(%s)
           AND coalesce(u.unit->'params'->'codes', 'null'::jsonb) = %s::jsonb
           AND d::date BETWEEN %s AND %s
        """,
        (group_name, list(DATE_KINDS), json.dumps(codes), start, end),
    ).fetchall()
    return {r["day"] if isinstance(r, dict) else r[0] for r in rows}


def latest_history(conn: psycopg.Connection, group_name: str) -> dict[str, Any] | None:
    """The history request of the group's latest history run: its whole range (``batch``), and
    units, rows and requests over every run of that request."""
    row = conn.execute(
        """
        SELECT plan->'history' AS history FROM runs
         WHERE group_name = %s AND plan ? 'history'
         ORDER BY started_at DESC, id DESC LIMIT 1
        """,
        (group_name,),
    ).fetchone()
    if row is None:
        return None
    history = row["history"] if isinstance(row, dict) else row[0]
    batch = history.get("batch") or {}
    batch_id = batch.get("id")
    totals = conn.execute(
        """
        SELECT count(DISTINCT r.id) AS runs,
               count(u.*) AS units_total,
               count(u.*) FILTER (WHERE u.status = 'success') AS units_done,
               count(u.*) FILTER (WHERE u.status = 'failed') AS units_failed,
               coalesce(sum(u.rows), 0) AS rows_loaded,
               coalesce(sum(u.requests), 0) AS requests,
               coalesce(sum(u.requests) FILTER (WHERE u.status = 'success'), 0) AS done_requests,
               coalesce(sum(jsonb_array_length(u.unit->'params'->'dates'))
                        FILTER (WHERE u.status = 'success' AND u.unit->'params' ? 'dates'), 0) AS done_unit_days,
               min(r.started_at) AS started_at,
               max(coalesce(u.finished_at, r.finished_at)) AS last_change
          FROM runs r LEFT JOIN run_units u ON u.run_pk = r.id
         WHERE r.group_name = %s AND r.plan->'history'->'batch'->>'id' = %s
        """,
        (group_name, batch_id),
    ).fetchone()
    return {"history": history, **dict(totals)}
