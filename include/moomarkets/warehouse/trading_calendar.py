"""Business days from the ``trading_calendar`` table (loaded by the calendar job group)."""

from __future__ import annotations

from datetime import date

import psycopg

# J-Quants HolDiv: 1 business day and 2 half day trade cash equities; 0 (holiday) and 3 do not.
TRADING_HOL_DIVS = (1, 2)


def business_days(conn: psycopg.Connection, source_code: str, start: date, end: date) -> list[date] | None:
    """Trading days in [start, end], or None when the table does not cover every day of the range
    (a partial calendar is not trusted; the source then falls back to its own rule)."""
    rows = conn.execute(
        "SELECT date, hol_div FROM trading_calendar WHERE source = %s AND date BETWEEN %s AND %s",
        (source_code, start, end),
    ).fetchall()
    if len(rows) < (end - start).days + 1:
        return None
    return sorted(r["date"] for r in rows if r["hol_div"] in TRADING_HOL_DIVS)
