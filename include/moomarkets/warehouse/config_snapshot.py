"""Parse-time config read with a last-known-good snapshot on local disk (no Airflow).

Airflow re-parses DAG files constantly and marks every DAG of a file that fails to import as
stale, so a config DB that blinks would make every job group vanish from the UI. The factory
therefore reads the tables with short connect and statement timeouts and, when that fails, builds
from the snapshot written by the last successful read.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from moomarkets import settings
from moomarkets.config.models import GroupSpec
from moomarkets.errors import ConfigStoreUnavailable, describe

log = logging.getLogger(__name__)
SNAPSHOT_VERSION = 1


@dataclass
class LoadedConfig:
    specs: list[GroupSpec]
    origin: str  # "database" or "snapshot"
    error: str | None = None  # why the database could not be read, when origin == "snapshot"


def read_database(url: str, timeout: float, only: str | None = None) -> list[GroupSpec]:
    from moomarkets.warehouse.config_store import read_specs
    from moomarkets.warehouse.db import connect

    with connect(
        url, connect_timeout=timeout, statement_timeout_ms=int(timeout * 1000), application_name="moomarkets-dag-parse"
    ) as conn:
        conn.read_only = True
        return read_specs(conn, only=only)


def write_snapshot(path: Path, specs: list[GroupSpec]) -> bool:
    """Atomically replace the snapshot when its content changed; returns True when written."""
    payload = json.dumps(
        {"version": SNAPSHOT_VERSION, "groups": [s.to_dict() for s in specs]}, sort_keys=True, indent=1
    )
    try:
        if path.exists() and path.read_text() == payload:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".snapshot-")
        with os.fdopen(fd, "w") as fh:
            fh.write(payload)
        os.replace(tmp, path)
        return True
    except OSError as exc:  # a read-only disk must not break parsing
        log.warning("moomarkets: could not write config snapshot %s: %s", path, exc)
        return False


def read_snapshot(path: Path) -> list[GroupSpec]:
    data = json.loads(path.read_text())
    if data.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"snapshot {path} has version {data.get('version')!r}, expected {SNAPSHOT_VERSION}")
    return [GroupSpec.from_dict(g) for g in data["groups"]]


def load_specs(
    only: str | None = None, *, url: str | None = None, timeout: float | None = None, snapshot: Path | None = None
) -> LoadedConfig:
    """Group specs from the database, else from the snapshot; ``only`` limits to one group.

    Raises ConfigStoreUnavailable when neither can be read.
    """
    timeout = settings.config_timeout() if timeout is None else timeout
    snapshot = snapshot or settings.snapshot_path()
    try:
        # the URL too is bounded: resolving the warehouse Connection may wait on a secrets backend
        specs = read_database(url or settings.database_url(timeout=timeout), timeout, only=only)
    except Exception as exc:  # any DB trouble: fall back, never take the DAGs down
        reason = describe(exc)
        try:
            specs = read_snapshot(snapshot)
        except (OSError, ValueError, KeyError, TypeError) as snap_exc:
            raise ConfigStoreUnavailable(
                f"config database unreadable ({reason}) and no usable snapshot at {snapshot} ({snap_exc})"
            ) from exc
        log.warning(
            "moomarkets: config database unreadable (%s); building DAGs from last-known-good snapshot %s",
            reason,
            snapshot,
        )
        if only:
            specs = [s for s in specs if s.group.name == only]
        return LoadedConfig(specs=specs, origin="snapshot", error=reason)
    if only is None:
        write_snapshot(snapshot, specs)
    return LoadedConfig(specs=specs, origin="database")
