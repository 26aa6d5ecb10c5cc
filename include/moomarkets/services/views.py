"""Rows for the CLI's listings and the UI: warehouse reads plus what only Airflow knows.

Airflow state (DAGs, pool usage) is best effort where a page lists many rows: without it the
page still shows the config.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import timezone
from typing import Any

import psycopg

from moomarkets.airflow import ops, pools
from moomarkets.airflow.ops import CredentialCheck, DagState, PoolUsage
from moomarkets.config.models import DataSource
from moomarkets.warehouse import queries

log = logging.getLogger(__name__)


def _with_pool(row: dict[str, Any]) -> dict[str, Any]:
    row["pool"] = pools.pool_name(row["code"])
    return row


def _with_schedule_words(row: dict[str, Any]) -> dict[str, Any]:
    row["schedule_words"] = ops.describe_schedule(row["schedule"], row["timezone"])
    return row


def list_sources(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every source with its pool's name (see ``queries.source_row``)."""
    return [_with_pool(r) for r in queries.list_sources(conn)]


def get_source(conn: psycopg.Connection, code: str) -> dict[str, Any]:
    """One source with its pool's name; NotFoundError when there is none."""
    return _with_pool(queries.get_source(conn, code))


def list_groups(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every group with its schedule in Airflow's words (see ``queries.group_row``)."""
    return [_with_schedule_words(r) for r in queries.list_groups(conn)]


def get_group(conn: psycopg.Connection, name: str) -> dict[str, Any]:
    """One group with its schedule in Airflow's words; NotFoundError when there is none."""
    return _with_schedule_words(queries.get_group(conn, name))


def dag_states(names: Iterable[str]) -> dict[str, DagState]:
    """Airflow's state of the groups' DAGs; empty when Airflow cannot be asked."""
    try:
        return ops.dag_states(names)
    except Exception as exc:  # noqa: BLE001 - the page still shows the config
        log.warning("DAG states not available: %s", exc)
        return {}


def pool_usage(names: Iterable[str], *, best_effort: bool = True) -> dict[str, PoolUsage]:
    """Slots and use of the named pools; with ``best_effort``, empty when Airflow cannot be asked."""
    try:
        return ops.pool_usage(names)
    except Exception as exc:  # noqa: BLE001 - re-raised unless the caller can do without
        if not best_effort:
            raise
        log.warning("pool usage not available: %s", exc)
        return {}


def check_credentials(src: DataSource, *, force: bool = False) -> CredentialCheck:
    """The source's credential check (one cheap API call, cached a few minutes; never shows the secret)."""
    return ops.check_credentials(src, force=force)


def wait_line(wait: dict[str, Any]) -> str:
    """One current wait as ``groups show`` and the group page say it."""
    return (f"run {wait['run_id']} {wait['message']} since {wait['since'].astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"
            f" (fails after {wait['upstream_timeout'] or '?'})")


def group_dependencies(conn: psycopg.Connection, name: str, can_read: Callable[[str], bool] | None = None,
                       ) -> dict[str, Any]:
    """The group's upstream and downstream groups (last run status, last day a successful run
    covered) and what its runs wait for right now, one line each.

    ``can_read(group)``: may the caller read that group (None: every group). A neighbour it may not
    read is listed by name only (``hidden``: no link, no status, no day loaded, not whether it
    exists or is enabled): its name is in the group's own config, its state is not the caller's."""
    from moomarkets.warehouse import dependencies

    out: dict[str, Any] = dependencies.neighbours(conn, name)
    for side in ("upstream", "downstream"):
        out[side] = [g if can_read is None or can_read(g["name"]) else
                     {"name": g["name"], "hidden": True, "exists": None, "is_enabled": None, "last_status": None,
                      "loaded_through": None} for g in out[side]]
    out["waiting"] = waiting_lines(conn, name)
    return out


def waiting_lines(conn: psycopg.Connection, name: str) -> list[str]:
    """What the group's runs wait for right now, one line each (``wait_line``)."""
    from moomarkets.warehouse import dependencies

    return [wait_line(w) for w in dependencies.current_waits(conn, name)]


RECENT_ALERTS = 10


def _utc(value: Any) -> Any:
    return value.astimezone(timezone.utc) if value is not None else None


def recent_alerts(conn: psycopg.Connection, name: str, limit: int = RECENT_ALERTS) -> list[dict[str, Any]]:
    """The group's last alerts from ``alerts_sent``, newest first, times in UTC: kind, key (the run id,
    or the late trading day), target (``type:conn_id``), dag_id, run_id, status (sent, failed,
    sending), error (scrubbed before it was stored), attempts, created_at, sent_at.

    Only the ledger's stored columns: nothing is read from the target's Connection, and the
    rendered message is not included."""
    from moomarkets.warehouse import alerts as ledger

    return [{**r, "created_at": _utc(r["created_at"]), "sent_at": _utc(r["sent_at"])}
            for r in ledger.recent(conn, name, limit)]


def alert_line(alert: dict[str, Any]) -> str:
    """One recent alert as ``groups show`` says it."""
    status = alert["status"]
    if status == "sent" and alert["sent_at"] is not None:
        status = f"sent {alert['sent_at']:%Y-%m-%d %H:%M} UTC"
    elif status == "failed":
        status = f"failed: {alert['error'] or 'no reason recorded'}"
    attempts = alert["attempts"]
    return (f"{alert['created_at']:%Y-%m-%d %H:%M} UTC {alert['kind']} {alert['key']} to {alert['target']}:"
            f" {status} ({attempts} attempt{'' if attempts == 1 else 's'})")
