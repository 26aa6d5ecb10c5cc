"""Group dependencies in the warehouse: what an upstream group completely loaded, and who waits.

"Upstream U completely loaded day D" means: a ``runs`` row of group U with status ``success``
(not ``partial``, not ``failed``) whose ``covers_from`` .. ``covers_to`` contains D. Any run counts:
scheduled, manual, backfill or history, because upstream and downstream schedules differ (the
calendar at 07:00 every day, bars at 19:00 on weekdays) and a day loaded by a backfill is loaded.

``dependency_waits`` holds one row per downstream run and upstream: ``waiting`` while the run's
sensor (or its trigger) waits, then ``satisfied`` or ``timed_out``, or ``abandoned`` when the run
ended otherwise (its ``record_run`` closes what is still waiting: skipped, failed elsewhere). The
group page and ``moomarkets groups show`` read the current waits, leaving out any whose run already
finished or whose limit (plus a margin) has long passed: a run marked by hand, stopped by
``dagrun_timeout`` or deleted never closes its wait.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import psycopg

from moomarkets.config.durations import parse_duration
from moomarkets.config.models import DEFAULT_UPSTREAM_TIMEOUT
from moomarkets.errors import ConfigError
from moomarkets.warehouse import runs

WAITING, SATISFIED, TIMED_OUT, ABANDONED = "waiting", "satisfied", "timed_out", "abandoned"
STALE_MARGIN = timedelta(hours=1)  # a wait older than its limit plus this is no longer current
REASON_MAX = 200  # characters of an upstream run's error quoted in a wait's reason


def uncovered_days(conn: psycopg.Connection, upstream: str, days: list[date]) -> list[date]:
    """The ``days`` no successful run of ``upstream`` covers, in order (one query)."""
    if not days:
        return []
    return [row["day"] for row in conn.execute(
        """
        SELECT d::date AS day FROM unnest(%s::date[]) AS d
         WHERE NOT EXISTS (SELECT 1 FROM runs r
                            WHERE r.group_name = %s AND r.status = 'success'
                              AND r.covers_from <= d AND d <= r.covers_to)
         ORDER BY d
        """,
        (list(days), upstream),
    )]


def first_uncovered_day(conn: psycopg.Connection, upstream: str, days: list[date]) -> date | None:
    """The first of ``days`` no successful run of ``upstream`` covers, None when all are covered."""
    return next(iter(uncovered_days(conn, upstream, days)), None)


def upstream_problem(conn: psycopg.Connection, upstream: str, day: date | None = None) -> str | None:
    """Why ``upstream`` has not loaded ``day``: it is missing, disabled or its source inactive;
    else its latest run covering ``day`` (or, with none, its latest run) failed, was partial or
    skipped, or is running. None when nothing says why (e.g. its run for the day is not due yet)."""
    row = conn.execute(
        "SELECT g.is_enabled, s.is_active, s.code FROM job_groups g"
        " LEFT JOIN data_sources s ON s.id = g.data_source_id WHERE g.name = %s",
        (upstream,),
    ).fetchone()
    if row is None:
        return f"upstream job group {upstream!r} does not exist"
    if not row["is_enabled"]:
        return f"upstream job group {upstream!r} is disabled"
    if not row["is_active"]:
        return f"the source {row['code']!r} of upstream job group {upstream!r} is inactive"
    return _latest_run_problem(conn, upstream, day)


def _latest_run_problem(conn: psycopg.Connection, upstream: str, day: date | None) -> str | None:
    run = conn.execute(
        """
        SELECT run_id, status, error, units_total, units_failed FROM runs
         WHERE group_name = %s AND (%s::date IS NULL OR (covers_from <= %s::date AND %s::date <= covers_to))
         ORDER BY started_at DESC NULLS LAST, id DESC LIMIT 1
        """,
        (upstream, day, day, day),
    ).fetchone()
    if run is None and day is not None:
        return _latest_run_problem(conn, upstream, None)
    if run is None:
        return None
    name = f"its run {run['run_id']}"
    if run["status"] == "running":
        return f"{name} is running"
    if run["status"] == "partial":
        return f"{name} is partial: {run['units_failed']} of {run['units_total']} units failed"
    if run["status"] in ("failed", "skipped"):
        # the first line of its error (stored scrubbed: run errors never hold a secret)
        why = next((line.strip() for line in (run["error"] or "").splitlines() if line.strip()), "")[:REASON_MAX]
        return f"{name} {run['status']}: {why}" if why else f"{name} {run['status']}"
    return None


def start_wait(
    conn: psycopg.Connection, *, dag_id: str, run_id: str, group_name: str, upstream: str, trading_day: date,
    message: str,
) -> datetime:
    """Open (or refresh) the run's wait for ``upstream``; returns since when it waits. A wait that
    was already ``waiting`` keeps its start (a retried sensor does not extend the limit); a
    satisfied or timed-out one (the run was cleared) starts again."""
    row = conn.execute(
        """
        INSERT INTO dependency_waits (dag_id, run_id, group_name, upstream, trading_day, status, message)
        VALUES (%s, %s, %s, %s, %s, 'waiting', %s)
        ON CONFLICT (dag_id, run_id, upstream) DO UPDATE
           SET trading_day = EXCLUDED.trading_day, message = EXCLUDED.message, status = 'waiting',
               since = CASE WHEN dependency_waits.status = 'waiting' THEN dependency_waits.since ELSE now() END,
               updated_at = now()
        RETURNING since
        """,
        (dag_id, run_id, group_name, upstream, trading_day, message),
    ).fetchone()
    return row["since"]


def update_wait(
    conn: psycopg.Connection, *, dag_id: str, run_id: str, upstream: str, trading_day: date, message: str
) -> None:
    """The day a waiting run still waits for moved on (a multi-day run as the upstream catches up)."""
    conn.execute(
        """
        UPDATE dependency_waits SET trading_day = %s, message = %s, updated_at = now()
         WHERE dag_id = %s AND run_id = %s AND upstream = %s AND status = 'waiting'
           AND (trading_day IS DISTINCT FROM %s OR message <> %s)
        """,
        (trading_day, message, dag_id, run_id, upstream, trading_day, message),
    )


def finish_wait(
    conn: psycopg.Connection, *, dag_id: str, run_id: str, upstream: str, status: str, message: str | None = None
) -> None:
    """Close the wait as satisfied, timed out or abandoned (no row: the upstream was covered at once)."""
    conn.execute(
        """
        UPDATE dependency_waits SET status = %s, message = coalesce(%s, message), updated_at = now()
         WHERE dag_id = %s AND run_id = %s AND upstream = %s
        """,
        (status, message, dag_id, run_id, upstream),
    )


def record_timed_out_run(
    conn: psycopg.Connection, *, group_name: str, dag_id: str, run_id: str, interval_start, interval_end,
    covers: tuple[date, date] | None, message: str,
) -> None:
    """The run failed before planning because an upstream did not load in time: a failed run
    record with the reason, so ``record_run``, the group's status and alerts see it like any failure."""
    runs.record_closed(conn, group_name=group_name, dag_id=dag_id, run_id=run_id, interval_start=interval_start,
                       interval_end=interval_end, status="failed", plan={"upstream_timeout": message},
                       reason=message, covers=covers)


def timed_out_messages(conn: psycopg.Connection, dag_id: str, run_id: str) -> list[str]:
    """Why the run never started loading: its timed-out waits' messages (none for a normal run)."""
    return [r["message"] for r in conn.execute(
        "SELECT message FROM dependency_waits WHERE dag_id = %s AND run_id = %s AND status = 'timed_out'"
        " ORDER BY upstream", (dag_id, run_id),
    )]


def abandon_waits(conn: psycopg.Connection, dag_id: str, run_id: str) -> int:
    """The run is over (its ``record_run`` ran): close what it still waits for as abandoned."""
    return conn.execute(
        "UPDATE dependency_waits SET status = 'abandoned', updated_at = now()"
        " WHERE dag_id = %s AND run_id = %s AND status = 'waiting'", (dag_id, run_id),
    ).rowcount


def _limit(text: str | None) -> timedelta:
    try:
        return parse_duration(text or DEFAULT_UPSTREAM_TIMEOUT, field="upstream_timeout")
    except ConfigError:
        return parse_duration(DEFAULT_UPSTREAM_TIMEOUT, field="upstream_timeout")


def current_waits(conn: psycopg.Connection, group_name: str | None = None) -> list[dict[str, Any]]:
    """Waits still open, oldest first (one group's, or all), with the group's upstream timeout.
    Leaves out stale rows a run could not close: its run record finished after the wait began,
    or the wait began longer ago than the group's ``upstream_timeout`` plus ``STALE_MARGIN``."""
    rows = conn.execute(
        f"""
        SELECT w.dag_id, w.run_id, w.group_name, w.upstream, w.trading_day, w.message, w.since, w.updated_at,
               g.upstream_timeout
          FROM dependency_waits w LEFT JOIN job_groups g ON g.name = w.group_name
         WHERE w.status = 'waiting' {"AND w.group_name = %s" if group_name else ""}
           AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.dag_id = w.dag_id AND r.run_id = w.run_id
                              AND r.status <> 'running' AND r.finished_at >= w.since)
         ORDER BY w.since, w.upstream
        """,
        (group_name,) if group_name else (),
    ).fetchall()
    now = datetime.now(timezone.utc)
    return [w for w in rows if w["since"] + _limit(w["upstream_timeout"]) + STALE_MARGIN > now]


def covers_of(conn: psycopg.Connection, run_pk: int) -> dict[str, str | None]:
    """The run's ``covers_from`` / ``covers_to`` as ISO dates (None when unknown), XCom-safe."""
    row = conn.execute("SELECT covers_from, covers_to FROM runs WHERE id = %s", (run_pk,)).fetchone()
    return {key: (row[key].isoformat() if row and row[key] else None) for key in ("covers_from", "covers_to")}


def neighbours(conn: psycopg.Connection, group_name: str) -> dict[str, list[dict[str, Any]]]:
    """The group's upstream groups (its ``depends_on``) and downstream groups (those that depend
    on it), each with its last run's status and the last day a successful run covered."""
    row = conn.execute("SELECT depends_on FROM job_groups WHERE name = %s", (group_name,)).fetchone()
    upstream = list(row["depends_on"]) if row else []
    downstream = [r["name"] for r in conn.execute(
        "SELECT name FROM job_groups WHERE %s = ANY(depends_on) ORDER BY name", (group_name,))]
    names = upstream + downstream
    found = {r["name"]: r for r in conn.execute(
        """
        SELECT g.name, g.is_enabled,
               (SELECT r.status FROM runs r WHERE r.group_name = g.name ORDER BY r.started_at DESC NULLS LAST, r.id DESC
                 LIMIT 1) AS last_status,
               (SELECT max(r.covers_to) FROM runs r WHERE r.group_name = g.name AND r.status = 'success')
                 AS loaded_through
          FROM job_groups g WHERE g.name = ANY(%s)
        """,
        (names,),
    )}

    def describe(name: str) -> dict[str, Any]:
        r = found.get(name)
        return {"name": name, "exists": r is not None, "is_enabled": bool(r and r["is_enabled"]),
                "last_status": r["last_status"] if r else None, "loaded_through": r["loaded_through"] if r else None}

    return {"upstream": [describe(n) for n in upstream], "downstream": [describe(n) for n in downstream]}
