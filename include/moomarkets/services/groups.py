"""Job groups: create, update, enable, disable, remove, check; their DAGs follow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from moomarkets.config.alerts import KINDS, effective_alerts
from moomarkets.config.dependencies import check_dependencies, downstream_of
from moomarkets.config.durations import format_duration
from moomarkets.config.models import JobGroup
from moomarkets.config.validate import next_runs, validate_group
from moomarkets.errors import ConfigError
from moomarkets.services import effects
from moomarkets.services.alert_connections import check_alert_connections
from moomarkets.services.db import committed
from moomarkets.services.effects import Outcome
from moomarkets.warehouse import config_store as store

FIELDS = ("name", "data_source", "dataset", "schedule", "timezone", "description", "parameters", "is_enabled",
          "depends_on", "upstream_timeout", "alerts")


def create(conn: psycopg.Connection, data: Mapping[str, Any], *, airflow: bool = True) -> Outcome[JobGroup]:
    """Add a group; its DAG appears at the next parse, paused if the group is disabled.

    ``depends_on`` and ``upstream_timeout`` may be left out (no upstreams, 6h); the Connections its
    alerts name must exist in Airflow (not asked when ``airflow`` is False).
    """
    checked = check_alert_connections(data.get("alerts"), subject=f"job group {data.get('name')!r}", airflow=airflow)
    group = JobGroup(
        name=data.get("name"),
        data_source=data.get("data_source"),
        dataset=data.get("dataset"),
        schedule=data.get("schedule"),
        timezone=data.get("timezone") or "UTC",
        description=data.get("description") or "",
        parameters=data.get("parameters") if data.get("parameters") is not None else {},
        is_enabled=data.get("is_enabled", True),
        depends_on=data.get("depends_on"),
        upstream_timeout=data.get("upstream_timeout"),
        alerts=data.get("alerts"),
    )
    with committed(conn):
        group = store.add_group(conn, group)
    parsed = f"DAG {group.name} appears in Airflow at the next DAG parse (usually within a minute)."
    return Outcome(group, notes=[parsed]).add(checked)


def update(
    conn: psycopg.Connection, name: str, changes: Mapping[str, Any], *, airflow: bool = True
) -> Outcome[JobGroup]:
    """Change a group (not its name); its DAG is paused or unpaused when ``is_enabled`` changes.

    ``depends_on`` replaces the upstreams (``""`` or ``[]`` clears them); new alerts are checked as
    in ``create``.
    """
    out: Outcome[JobGroup] = Outcome()
    if "alerts" in changes:
        out.add(check_alert_connections(changes["alerts"], subject=f"job group {name!r}", airflow=airflow))
    with committed(conn):
        before = store.get_group(conn, name)
        group = store.update_group(conn, name, **{k: v for k, v in changes.items() if k in FIELDS})
    out.value = group
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
    """Remove a group no other group depends on; its DAG disappears at the next parse, the rows it loaded stay."""
    with committed(conn):
        store.remove_group(conn, name)
    return Outcome(notes=[f"DAG {name} disappears from Airflow at the next parse; the rows it loaded stay."])


def downstream(conn: psycopg.Connection, name: str) -> list[str]:
    """The groups that depend on ``name`` (their runs wait for its loads), by name."""
    return downstream_of(store.dependency_graph(conn), name)


def alerts_in_effect(conn: psycopg.Connection, group: JobGroup) -> dict[str, Any]:
    """The group's alert settings as they take effect: its source's defaults under its own keys.

    Targets are named ``type:conn_id`` only (what they are sent through, never an address list).
    Stored settings that no longer validate (edited
    by hand in SQL) come back as ``error``.
    """
    source = store.find_source(conn, group.data_source)
    try:
        settings = effective_alerts(source.alerts if source else None, group.alerts)
    except ConfigError as exc:
        return {"error": str(exc)}
    return {
        "on": [k for k in KINDS if settings.wants(k)],  # late only with late_after; nothing without targets
        "late_after": format_duration(settings.late_after) if settings.late_after else None,
        "targets": [t.label for t in settings.targets],
    }


def _upstream_closure(graph: dict[str, list[str]], name: str) -> dict[str, list[str]]:
    """The part of the graph a group's runs wait on: the group and every group upstream of it."""
    out: dict[str, list[str]] = {}
    todo = [name]
    while todo:
        node = todo.pop()
        if node in graph and node not in out:
            out[node] = graph[node]
            todo.extend(graph[node])
    return out


@dataclass
class GroupCheck:
    """A stored group checked as the DAG factory would: ``error`` or its next run times."""

    name: str
    error: str | None = None
    next_runs: list[datetime] = field(default_factory=list)


def check(conn: psycopg.Connection, names: list[str] | None = None) -> list[GroupCheck]:
    """Validate the named groups (all when none), with their source, which must be active, and
    their upstreams, which must exist and form no cycle.

    Rows edited behind the service's back (by hand in SQL) are reported, not raised.
    """
    groups = [store.get_group(conn, n) for n in names] if names else store.list_groups(conn)
    graph = store.dependency_graph(conn)
    out = []
    for g in groups:
        try:
            ok = validate_group(g, store.find_source(conn, g.data_source), require_active=True)
            check_dependencies(_upstream_closure(graph, g.name), subject=g.name)
        except ConfigError as exc:
            own = exc.subject in (None, f"job group {g.name!r}")  # else the problem is one of its upstreams'
            where = exc.reason if exc.field is None else f"{exc.field}: {exc.reason}"
            out.append(GroupCheck(g.name, error=where if own else str(exc)))
            continue
        out.append(GroupCheck(g.name, next_runs=next_runs(ok.schedule, ok.timezone)))
    return out
