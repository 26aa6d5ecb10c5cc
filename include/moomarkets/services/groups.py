"""Job groups: create, update, enable, disable, remove, check; their DAGs follow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from moomarkets.config.models import JobGroup
from moomarkets.config.validate import next_runs, validate_group
from moomarkets.errors import ConfigError
from moomarkets.services import effects
from moomarkets.services.db import committed
from moomarkets.services.effects import Outcome
from moomarkets.warehouse import config_store as store

FIELDS = ("name", "data_source", "dataset", "schedule", "timezone", "description", "parameters", "is_enabled")


def create(conn: psycopg.Connection, data: Mapping[str, Any]) -> Outcome[JobGroup]:
    """Add a group; its DAG appears at the next parse, paused if the group is disabled."""
    group = JobGroup(
        name=data.get("name"),
        data_source=data.get("data_source"),
        dataset=data.get("dataset"),
        schedule=data.get("schedule"),
        timezone=data.get("timezone") or "UTC",
        description=data.get("description") or "",
        parameters=data.get("parameters") if data.get("parameters") is not None else {},
        is_enabled=data.get("is_enabled", True),
    )
    with committed(conn):
        group = store.add_group(conn, group)
    return Outcome(group, notes=[f"DAG {group.name} appears in Airflow at the next DAG parse (usually within a minute)."])


def update(
    conn: psycopg.Connection, name: str, changes: Mapping[str, Any], *, airflow: bool = True
) -> Outcome[JobGroup]:
    """Change a group (not its name); its DAG is paused or unpaused when ``is_enabled`` changes."""
    with committed(conn):
        before = store.get_group(conn, name)
        group = store.update_group(conn, name, **{k: v for k, v in changes.items() if k in FIELDS})
    out = Outcome(group)
    if airflow and before.is_enabled != group.is_enabled:
        out.add(effects.set_paused(name, not group.is_enabled))
    return out


def set_enabled(conn: psycopg.Connection, name: str, enabled: bool, *, airflow: bool = True) -> Outcome[JobGroup]:
    """Enable or disable a group and unpause or pause its DAG (also when the flag did not change,
    which brings a DAG paused by hand in Airflow back in line)."""
    with committed(conn):
        group = store.update_group(conn, name, is_enabled=enabled)
    out = Outcome(group)
    if airflow:
        out.add(effects.set_paused(name, not enabled))
    return out


def remove(conn: psycopg.Connection, name: str) -> Outcome[None]:
    """Remove a group; its DAG disappears at the next parse, the rows it loaded stay."""
    with committed(conn):
        store.remove_group(conn, name)
    return Outcome(notes=[f"DAG {name} disappears from Airflow at the next parse; the rows it loaded stay."])


@dataclass
class GroupCheck:
    """A stored group checked as the DAG factory would: ``error`` or its next run times."""

    name: str
    error: str | None = None
    next_runs: list[datetime] = field(default_factory=list)


def check(conn: psycopg.Connection, names: list[str] | None = None) -> list[GroupCheck]:
    """Validate the named groups (all when none), with their source, which must be active.

    Rows edited behind the service's back (by hand in SQL) are reported, not raised.
    """
    groups = [store.get_group(conn, n) for n in names] if names else store.list_groups(conn)
    out = []
    for g in groups:
        try:
            ok = validate_group(g, store.find_source(conn, g.data_source), require_active=True)
        except ConfigError as exc:
            out.append(GroupCheck(g.name, error=exc.reason if exc.field is None else f"{exc.field}: {exc.reason}"))
            continue
        out.append(GroupCheck(g.name, next_runs=next_runs(ok.schedule, ok.timezone)))
    return out
