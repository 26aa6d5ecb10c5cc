"""Alerts in the warehouse: what a message is built from, and ``alerts_sent``, the dedupe ledger.

An alert goes out once per (group, kind, key, target): the key is the run id for the run kinds and
the trading day for ``late``. The row is *claimed* before the notifier is called, with the rendered
message (no secrets) and its target, so a retried ``record_run`` or a second watchdog tick finds it
taken and sends nothing. A delivery that failed, or a claim whose sender died (still ``sending``
after ``STALE_CLAIM_MINUTES``), was never delivered: the watchdog takes it again (:func:`reclaim`)
and re-sends the stored message, up to ``MAX_ATTEMPTS`` attempts in all.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

STALE_CLAIM_MINUTES = 10
MAX_ATTEMPTS = 3
ERROR_MAX = 1000
FIRST_UNITS = 10

# a row that may be taken again: not delivered, attempts left, and not being sent right now
_RETRYABLE = f"""
    alerts_sent.attempts < {MAX_ATTEMPTS}
    AND (alerts_sent.status = 'failed'
         OR (alerts_sent.status = 'sending'
             AND alerts_sent.claimed_at < now() - interval '{STALE_CLAIM_MINUTES} minutes'))
"""


def claim(
    conn: psycopg.Connection, *, group: str, kind: str, key: str, target: str, dag_id: str | None,
    run_id: str | None, message: dict[str, Any] | None = None,
) -> int | None:
    """Take the right to send one alert, storing its rendered ``message``; returns the row id, or
    None when it is sent, being sent, or out of attempts."""
    row = conn.execute(
        f"""
        INSERT INTO alerts_sent (group_name, kind, key, target, dag_id, run_id, message)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (group_name, kind, key, target) DO UPDATE
           SET status = 'sending', error = NULL, claimed_at = now(), sent_at = NULL,
               attempts = alerts_sent.attempts + 1, message = EXCLUDED.message,
               dag_id = EXCLUDED.dag_id, run_id = EXCLUDED.run_id
         WHERE {_RETRYABLE}
        RETURNING id
        """,
        (group, kind, key, target, dag_id, run_id, Jsonb(message or {})),
    ).fetchone()
    return None if row is None else row["id"]


def mark(conn: psycopg.Connection, alert_id: int, status: str, error: str | None = None) -> None:
    """Close a claim: ``sent`` or ``failed`` (with the scrubbed reason)."""
    conn.execute(
        "UPDATE alerts_sent SET status = %s, error = %s,"
        " sent_at = CASE WHEN %s = 'sent' THEN now() END WHERE id = %s",
        (status, (error or None) and error[:ERROR_MAX], status, alert_id),
    )


def give_up(conn: psycopg.Connection, alert_id: int, reason: str) -> None:
    """Close a row for good without sending (e.g. a late day loaded since): ``failed`` with the
    reason and no attempts left, so the watchdog does not take it again."""
    conn.execute(
        f"UPDATE alerts_sent SET status = 'failed', error = %s, sent_at = NULL,"
        f" attempts = GREATEST(attempts, {MAX_ATTEMPTS}) WHERE id = %s",
        (reason[:ERROR_MAX], alert_id),
    )


def pending(conn: psycopg.Connection, limit: int = 200) -> list[int]:
    """Rows the watchdog should re-send (failed, or abandoned while ``sending``), oldest first."""
    return [r["id"] for r in conn.execute(
        f"SELECT id FROM alerts_sent WHERE {_RETRYABLE} ORDER BY claimed_at, id LIMIT %s", (limit,))]


def reclaim(conn: psycopg.Connection, alert_id: int) -> dict[str, Any] | None:
    """Take one pending row again (one more attempt); None when someone else took it meanwhile."""
    return conn.execute(
        f"""
        UPDATE alerts_sent SET status = 'sending', error = NULL, claimed_at = now(), sent_at = NULL,
                               attempts = alerts_sent.attempts + 1
         WHERE id = %s AND {_RETRYABLE}
        RETURNING id, group_name, kind, key, target, dag_id, run_id, message, attempts
        """,
        (alert_id,),
    ).fetchone()


def give_up_abandoned(conn: psycopg.Connection) -> int:
    """Close the claims abandoned on their last attempt (still ``sending``, out of attempts) as failed."""
    return conn.execute(
        f"""
        UPDATE alerts_sent SET status = 'failed',
               error = 'the sender stopped before it finished its last attempt ({MAX_ATTEMPTS} of {MAX_ATTEMPTS})'
         WHERE status = 'sending' AND attempts >= {MAX_ATTEMPTS}
           AND claimed_at < now() - interval '{STALE_CLAIM_MINUTES} minutes'
        """
    ).rowcount


def recent(conn: psycopg.Connection, group: str, limit: int = 20) -> list[dict[str, Any]]:
    """The group's latest alerts, newest first (for the group page, the API and ``groups show``).

    Only the ledger's own columns: ``target`` is the ``type:conn_id`` label and ``error`` was
    scrubbed before it was stored; the rendered ``message`` is left out."""
    return [dict(r) for r in conn.execute(
        "SELECT kind, key, target, dag_id, run_id, status, error, attempts, created_at, sent_at FROM alerts_sent"
        " WHERE group_name = %s ORDER BY created_at DESC, id DESC LIMIT %s",
        (group, limit),
    ).fetchall()]


def alert_config(conn: psycopg.Connection, group: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(source alerts, group alerts) as stored now, or None when the group no longer exists.
    Read live at send time: an edit applies to the next alert, not the next DAG parse."""
    row = conn.execute(
        "SELECT s.alerts AS source_alerts, g.alerts AS group_alerts FROM job_groups g"
        " JOIN data_sources s ON s.id = g.data_source_id WHERE g.name = %s",
        (group,),
    ).fetchone()
    return None if row is None else (row["source_alerts"] or {}, row["group_alerts"] or {})


def run_facts(conn: psycopg.Connection, dag_id: str, run_id: str) -> dict[str, Any] | None:
    """What a run alert says about the run: its record and its first failed units (earliest
    failure first, so ``failed_units[0]`` carries the first error)."""
    run = conn.execute(
        "SELECT id, group_name, status, error, data_interval_start, data_interval_end, covers_from, covers_to,"
        " units_total, units_failed, rows_loaded FROM runs WHERE dag_id = %s AND run_id = %s",
        (dag_id, run_id),
    ).fetchone()
    if run is None:
        return None
    units = conn.execute(
        "SELECT unit_key, error FROM run_units WHERE run_pk = %s AND status <> 'success'"
        " ORDER BY finished_at NULLS LAST, unit_key LIMIT %s",
        (run["id"], FIRST_UNITS),
    ).fetchall()
    return {**{k: v for k, v in run.items() if k != "id"}, "failed_units": [dict(u) for u in units]}
