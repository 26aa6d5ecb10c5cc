"""The ``restatements`` table: corporate actions a load saw and the history re-fetches they caused
(psycopg 3, no Airflow).

A load that sees a corporate action records it ``pending`` for its run (in the load's own
transaction); the run's ``restate_history`` step re-fetches each affected code's stored history
and marks the events ``done`` (rows changed, requests) or ``failed`` (error). ``moomarkets restate``
records ``manual`` restatements. Reads for the CLI and the UI are here too.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row

from moomarkets.sources.base import CorporateAction
from moomarkets.warehouse.datasets import Dataset

ERROR_TEXT_MAX = 2000
MANUAL = "manual"


def _tuples(conn: psycopg.Connection) -> psycopg.Cursor:
    """A cursor with tuple rows, whatever the connection's row factory."""
    return conn.cursor(row_factory=tuple_row)


def record_detected(
    conn: psycopg.Connection,
    *,
    source: str,
    dataset: str,
    actions: Iterable[CorporateAction],
    dag_id: str,
    run_id: str,
    as_of: datetime,
) -> int:
    """Record the run's corporate actions as ``pending`` (once per run and event); returns how
    many are new. Runs in the caller's transaction (the load's), so a failed load records none."""
    seen: set[tuple] = set()
    new = 0
    for a in actions:
        key = (a.code, a.date, a.action)
        if key in seen:
            continue
        seen.add(key)
        cur = conn.execute(
            """
            INSERT INTO restatements (source, dataset, code, event_date, action, factor, dag_id, run_id,
                                      detected_as_of)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (source, dataset, code, event_date, action, dag_id, run_id) DO NOTHING
            """,
            (source, dataset, a.code, a.date, a.action, a.factor, dag_id, run_id, as_of),
        )
        new += cur.rowcount
    return new


def open_for_run(conn: psycopg.Connection, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The run's restatements still to do (``pending``, or ``failed`` on an earlier try), oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            SELECT id, source, dataset, code, event_date, action, factor, detected_as_of
              FROM restatements
             WHERE dag_id = %s AND run_id = %s AND status IN ('pending', 'failed')
             ORDER BY code, event_date, id
            """,
            (dag_id, run_id),
        ).fetchall()


def stale_span(
    conn: psycopg.Connection, dataset: Dataset, source: str, code: str, *, before: date, older_than: datetime | None
) -> tuple[date, date] | None:
    """min..max date of the code's stored rows dated before ``before`` whose values may predate the
    event: fetched before ``older_than`` (the fetch that first showed it) or of unknown age. None:
    nothing stored needs the source's current answer."""
    cond = sql.SQL("")
    params: list[Any] = [source, code, before]
    if dataset.as_of_column and older_than is not None:
        cond = sql.SQL(" AND ({a} IS NULL OR {a} < %s)").format(a=sql.Identifier(dataset.as_of_column))
        params.append(older_than)
    row = _tuples(conn).execute(
        sql.SQL("SELECT min(date), max(date) FROM {t} WHERE source = %s AND code = %s AND date < %s{cond}").format(
            t=sql.Identifier(dataset.table), cond=cond
        ),
        params,
    ).fetchone()
    return None if row is None or row[0] is None else (row[0], row[1])


def first_seen(
    conn: psycopg.Connection, *, source: str, dataset: str, code: str, event_date: date, action: str
) -> datetime | None:
    """When a load first showed this event (any run): the source knew it then, so rows fetched since
    already carry its adjustment."""
    row = _tuples(conn).execute(
        "SELECT min(detected_as_of) FROM restatements WHERE source = %s AND dataset = %s AND code = %s"
        " AND event_date = %s AND action = %s",
        (source, dataset, code, event_date, action),
    ).fetchone()
    return row[0] if row else None


def confirm_as_of(
    conn: psycopg.Connection, dataset: Dataset, source: str, code: str, dates: Iterable[Any], as_of: datetime
) -> None:
    """Rows the source just served unchanged are current as of ``as_of`` too (values, and so
    ``loaded_at``, untouched): a later event check need not fetch them again."""
    if not dataset.as_of_column:
        return
    days = sorted({date.fromisoformat(str(d)[:10]) for d in dates})
    conn.execute(
        sql.SQL("UPDATE {t} SET {a} = %s WHERE source = %s AND code = %s AND date = ANY(%s)"
                " AND ({a} IS NULL OR {a} < %s)").format(t=sql.Identifier(dataset.table),
                                                           a=sql.Identifier(dataset.as_of_column)),
        (as_of, source, code, days, as_of),
    )


def stored_span(conn: psycopg.Connection, dataset: Dataset, source: str, code: str) -> tuple[date, date] | None:
    """min..max date of everything stored for the code."""
    row = _tuples(conn).execute(
        sql.SQL("SELECT min(date), max(date) FROM {t} WHERE source = %s AND code = %s").format(
            t=sql.Identifier(dataset.table)
        ),
        (source, code),
    ).fetchone()
    return None if row is None or row[0] is None else (row[0], row[1])


def _key(dataset: Dataset, values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(str(v)[:10] if k == "date" else str(v) for k, v in zip(dataset.key, values))


def stored_keys(
    conn: psycopg.Connection, dataset: Dataset, source: str, code: str, start: date, end: date
) -> set[tuple[str, ...]]:
    """Primary keys (as text) of the code's stored rows in ``[start, end]``."""
    cols = sql.SQL(", ").join(map(sql.Identifier, dataset.key))
    rows = _tuples(conn).execute(
        sql.SQL("SELECT {cols} FROM {t} WHERE source = %s AND code = %s AND date BETWEEN %s AND %s").format(
            cols=cols, t=sql.Identifier(dataset.table)
        ),
        (source, code, start, end),
    ).fetchall()
    return {_key(dataset, r) for r in rows}


def only_stored(dataset: Dataset, rows: Iterable[dict[str, Any]], keys: set[tuple[str, ...]]) -> list[dict[str, Any]]:
    """The rows whose key is already stored: a restatement corrects history, it does not fill gaps."""
    return [r for r in rows if _key(dataset, (r.get(k) for k in dataset.key)) in keys]


def insert_manual(
    conn: psycopg.Connection, *, source: str, dataset: str, code: str, start: date | None, end: date | None
) -> int:
    """A ``manual`` restatement (``moomarkets restate``), pending; returns its id."""
    return _tuples(conn).execute(
        """
        INSERT INTO restatements (source, dataset, code, action, span_start, span_end)
        VALUES (%s, %s, %s, %s, %s, %s) RETURNING id
        """,
        (source, dataset, code, MANUAL, start, end),
    ).fetchone()[0]


def _met(n: int, http_429: int, http_5xx: int, wait_seconds: float) -> tuple[int, int, float]:
    """What the code's requests met, on its first event only (no double count)."""
    return (http_429, http_5xx, wait_seconds) if n == 0 else (0, 0, 0.0)


def mark_done(
    conn: psycopg.Connection, ids: list[int], *, rows_changed: int, requests: int,
    span: tuple[date, date] | None, http_429: int = 0, http_5xx: int = 0, wait_seconds: float = 0.0,
) -> None:
    """Close the code's events: the totals go on the first id, the others get 0 (no double count).
    Requests and what they met (429s, 5xx, rate-limit wait) add up over the event's attempts."""
    for n, rid in enumerate(ids):
        conn.execute(
            """
            UPDATE restatements SET status = 'done', rows_changed = %s, requests = requests + %s, error = NULL,
                   http_429 = http_429 + %s, http_5xx = http_5xx + %s, wait_seconds = wait_seconds + %s,
                   span_start = %s, span_end = %s, finished_at = now()
             WHERE id = %s
            """,
            (rows_changed if n == 0 else 0, requests if n == 0 else 0, *_met(n, http_429, http_5xx, wait_seconds),
             span[0] if span else None, span[1] if span else None, rid),
        )


def mark_failed(
    conn: psycopg.Connection, ids: list[int], *, error: str, requests: int, http_429: int = 0, http_5xx: int = 0,
    wait_seconds: float = 0.0,
) -> None:
    for n, rid in enumerate(ids):
        conn.execute(
            """
            UPDATE restatements SET status = 'failed', error = %s, requests = requests + %s,
                   http_429 = http_429 + %s, http_5xx = http_5xx + %s, wait_seconds = wait_seconds + %s,
                   finished_at = now()
             WHERE id = %s
            """,
            (error[:ERROR_TEXT_MAX], requests if n == 0 else 0, *_met(n, http_429, http_5xx, wait_seconds), rid),
        )


def failed_restatements(conn: psycopg.Connection, dag_id: str, run_id: str) -> list[str]:
    """One line per restatement of the run that failed or never ran ("80350 split 2026-03-30: <error>"),
    for record_run: either leaves the warehouse on the old basis."""
    rows = _tuples(conn).execute(
        """
        SELECT code, action, event_date, error FROM restatements
         WHERE dag_id = %s AND run_id = %s AND status IN ('failed', 'pending')
         ORDER BY code, event_date, id
        """,
        (dag_id, run_id),
    ).fetchall()
    return [f"{code} {action} {d.isoformat() if d else '-'}: {err or 'not restated (restate_history did not finish)'}"
            for code, action, d, err in rows]


def summarize_run(conn: psycopg.Connection, dag_id: str, run_id: str) -> dict[str, Any]:
    """Counts and totals of the run's restatements."""
    row = _tuples(conn).execute(
        """
        SELECT count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status = 'failed'),
               count(*) FILTER (WHERE status = 'pending'), coalesce(sum(rows_changed), 0),
               coalesce(sum(requests), 0)
          FROM restatements WHERE dag_id = %s AND run_id = %s
        """,
        (dag_id, run_id),
    ).fetchone()
    return {"done": row[0], "failed": row[1], "pending": row[2], "rows_changed": int(row[3]), "requests": int(row[4])}


COLUMNS = ("id", "source", "dataset", "code", "event_date", "action", "factor", "status", "rows_changed", "requests",
           "error", "dag_id", "run_id", "span_start", "span_end", "detected_at", "finished_at")


def recent_for_group(
    conn: psycopg.Connection, *, group_name: str, source: str, dataset: str, limit: int = 20
) -> list[dict[str, Any]]:
    """The group's recent restatements: those of its runs and the manual ones of its source and dataset."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            sql.SQL(
                """
                SELECT {cols} FROM restatements
                 WHERE dag_id = %s OR (dag_id IS NULL AND source = %s AND dataset = %s)
                 ORDER BY detected_at DESC, id DESC LIMIT %s
                """
            ).format(cols=sql.SQL(", ").join(map(sql.Identifier, COLUMNS))),
            (group_name, source, dataset, limit),
        ).fetchall()


def get(conn: psycopg.Connection, ids: list[int]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            sql.SQL("SELECT {cols} FROM restatements WHERE id = ANY(%s) ORDER BY id").format(
                cols=sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
            ),
            (ids,),
        ).fetchall()
