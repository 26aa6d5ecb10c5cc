"""Data sources: create, update, activate, remove, and their Airflow pools."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from moomarkets.airflow import pools
from moomarkets.config.models import DataSource
from moomarkets.errors import AirflowOpError, ConfigError, describe
from moomarkets.services import effects
from moomarkets.services.alert_connections import check_alert_connections
from moomarkets.services.db import committed
from moomarkets.services.effects import Outcome
from moomarkets.sources.registry import get_source_class
from moomarkets.warehouse import config_store as store

FIELDS = ("code", "name", "kind", "conn_id", "description", "is_active", "config", "alerts")


def default_conn_id(kind: Any) -> str:
    """The Airflow connection a source of ``kind`` uses unless told otherwise.

    Empty for an unknown kind, so that validation reports the kind rather than the connection.
    """
    if not isinstance(kind, str) or not kind:
        return ""
    try:
        return get_source_class(kind).default_conn_id
    except ConfigError:
        return ""


def create(conn: psycopg.Connection, data: Mapping[str, Any], *, airflow: bool = True) -> Outcome[DataSource]:
    """Add a source (``conn_id`` defaults to its kind's connection), then create its pool.

    The Connections its alerts name must exist in Airflow (not asked when ``airflow`` is False).
    """
    checked = check_alert_connections(data.get("alerts"), subject=f"data source {data.get('code')!r}",
                                      airflow=airflow)
    src = DataSource(
        code=data.get("code"),
        name=data.get("name"),
        kind=data.get("kind"),
        conn_id=data.get("conn_id") or default_conn_id(data.get("kind")),
        description=data.get("description") or "",
        is_active=data.get("is_active", True),
        config=data.get("config") if data.get("config") is not None else {},
        alerts=data.get("alerts"),
    )
    with committed(conn):
        src = store.add_source(conn, src)
    out = Outcome(src).add(checked)
    if airflow:
        out.add(effects.sync_pools([src]))
    return out


def _update(
    conn: psycopg.Connection, code: str, changes: Mapping[str, Any], *, airflow: bool = True
) -> Outcome[DataSource]:
    out: Outcome[DataSource] = Outcome()
    if "alerts" in changes:
        out.add(check_alert_connections(changes["alerts"], subject=f"data source {code!r}", airflow=airflow))
    with committed(conn):
        src = store.update_source(conn, code, **{k: v for k, v in changes.items() if k in FIELDS})
        users = [g.name for g in store.list_groups(conn) if g.data_source == code and g.is_enabled]
    out.value = src
    if "is_active" in changes and not src.is_active and users:
        out.notes.append(f"Runs of {', '.join(users)} are skipped while the source is inactive.")
    return out


def update(
    conn: psycopg.Connection, code: str, changes: Mapping[str, Any], *, airflow: bool = True
) -> Outcome[DataSource]:
    """Change a source (not its code), then bring its pool in line with the new config; new alerts
    are checked as in ``create``."""
    out = _update(conn, code, changes, airflow=airflow)
    if airflow:
        out.add(effects.sync_pools([out.value]))
    return out


def set_active(conn: psycopg.Connection, code: str, active: bool) -> Outcome[DataSource]:
    """Activate or deactivate a source; its groups' runs skip themselves while it is inactive."""
    # the pool is made from the name, kind and config, none of which changes here
    return _update(conn, code, {"is_active": active})


def remove(conn: psycopg.Connection, code: str) -> Outcome[None]:
    """Remove a source no job group uses (its Airflow pool is left alone)."""
    with committed(conn):
        store.remove_source(conn, code)
    return Outcome()


def sync_all_pools(conn: psycopg.Connection) -> list[tuple[str, int, str]]:
    """Create or resize every source's pool; (name, slots, action) each. AirflowOpError when Airflow fails."""
    sources = store.list_sources(conn)
    try:
        return pools.sync_pools(sources)
    except Exception as exc:  # noqa: BLE001 - Airflow's metadata DB unreachable or not migrated
        raise AirflowOpError(f"could not sync pools in Airflow ({describe(exc)})") from None


def check_pools(conn: psycopg.Connection) -> tuple[list[str], int]:
    """Pool problems (missing, wrong size), one line each, and how many sources were checked."""
    sources = store.list_sources(conn)
    return pools.check_pools(sources), len(sources)
