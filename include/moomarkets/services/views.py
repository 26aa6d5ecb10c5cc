"""Rows for the CLI's listings and the UI: warehouse reads plus what only Airflow knows.

Airflow state (DAGs, pool usage) is best effort where a page lists many rows: without it the
page still shows the config.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
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
