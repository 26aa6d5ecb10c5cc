"""Process-level settings, read from the environment (no Airflow imports).

``MOOMARKETS_DATABASE_URL``  explicit warehouse URL (development, tests, one-off overrides); when
                             unset, the warehouse comes from the resolver the Airflow layer installs:
                             the Postgres Connection ``MOOMARKETS_WAREHOUSE_CONN_ID``.
``MOOMARKETS_WAREHOUSE_CONN_ID`` that Connection's id (default ``moomarkets_warehouse``).
``MOOMARKETS_SNAPSHOT_PATH`` where the DAG factory keeps its last-known-good config snapshot.
``MOOMARKETS_CONFIG_TIMEOUT`` seconds allowed to read the config at DAG parse time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

DATABASE_URL_ENV = "MOOMARKETS_DATABASE_URL"
WAREHOUSE_CONN_ID_ENV = "MOOMARKETS_WAREHOUSE_CONN_ID"
DEFAULT_WAREHOUSE_CONN_ID = "moomarkets_warehouse"

# ``resolver(timeout)`` -> the warehouse URL; ``timeout`` (seconds or None) bounds the lookup.
WarehouseResolver = Callable[[float | None], str]
_resolver: WarehouseResolver | None = None


class WarehouseNotConfigured(RuntimeError):
    """Neither ``MOOMARKETS_DATABASE_URL`` nor a warehouse resolver (the Airflow Connection) is there."""


def set_warehouse_resolver(resolver: WarehouseResolver | None) -> WarehouseResolver | None:
    """Install how the warehouse URL is found when the env override is unset; returns the previous one."""
    global _resolver
    previous, _resolver = _resolver, resolver
    return previous


def warehouse_conn_id() -> str:
    return os.environ.get(WAREHOUSE_CONN_ID_ENV) or DEFAULT_WAREHOUSE_CONN_ID


def database_url(*, timeout: float | None = None) -> str:
    """The warehouse URL, the one entry point of the domain code: ``$MOOMARKETS_DATABASE_URL`` when
    set, else the installed resolver's (the Airflow layer's: the ``moomarkets_warehouse`` Connection
    from any secrets backend), within ``timeout`` seconds when given. Never a silent default."""
    explicit = os.environ.get(DATABASE_URL_ENV)
    if explicit:
        return explicit
    if _resolver is None:
        raise WarehouseNotConfigured(
            f"no warehouse configured: set {DATABASE_URL_ENV}, or run with Airflow and its postgres "
            f"connection '{warehouse_conn_id()}'"
        )
    return _resolver(timeout)


def snapshot_path() -> Path:
    explicit = os.environ.get("MOOMARKETS_SNAPSHOT_PATH")
    if explicit:
        return Path(explicit)
    home = os.environ.get("AIRFLOW_HOME", str(Path.home() / "airflow"))
    return Path(home) / "moomarkets" / "config_snapshot.json"


def config_timeout() -> float:
    return float(os.environ.get("MOOMARKETS_CONFIG_TIMEOUT", "3"))
