"""What the Health page shows: per source, what its requests met over the last days; per group,
freshness with lateness; the checks failing now. One place, so a JSON view could reuse it.

Per-DAG read rights are the caller's (the UI asks Airflow's auth manager); this module only
applies them: ``can_read(group)`` filters groups and their failing checks, and a source's chart is
shown when the caller may read every group or at least one of the source's groups.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import psycopg

from moomarkets.config.alerts import effective_alerts
from moomarkets.config.models import GroupSpec
from moomarkets.errors import first_line
from moomarkets.pipeline.freshness import group_freshness
from moomarkets.warehouse import config_store, health

log = logging.getLogger(__name__)

DAYS = 7
# Lateness grace of a group without alerts.late_after: its run must have had time to finish.
DEFAULT_GRACE = timedelta(hours=1)


def grace_of(spec: GroupSpec) -> timedelta:
    """The group's ``alerts.late_after`` (its own, else its source's), else :data:`DEFAULT_GRACE`."""
    try:
        late_after = effective_alerts(spec.source.alerts if spec.source else None, spec.group.alerts).late_after
    except Exception:  # noqa: BLE001 - stored settings edited by hand: the default still shows lateness
        late_after = None
    return late_after or DEFAULT_GRACE


def source_activity(conn: psycopg.Connection, today: date, days: int = DAYS,
                    visible: Callable[[str], bool] | None = None) -> list[dict[str, Any]]:
    """Every source (or those ``visible(code)`` allows) with one entry per UTC day of the last
    ``days`` (zeros where nothing ran)."""
    start = today - timedelta(days=days - 1)
    found = {(r["source"], r["day"]): r for r in health.source_days(conn, start, today)}
    out = []
    for src in config_store.list_sources(conn):
        if visible is not None and not visible(src.code):
            continue
        series = []
        for i in range(days):
            day = start + timedelta(days=i)
            r = found.get((src.code, day), {})
            series.append({"day": day, "requests": int(r.get("requests", 0)), "http_429": int(r.get("http_429", 0)),
                           "http_5xx": int(r.get("http_5xx", 0)), "wait_seconds": float(r.get("wait_seconds", 0.0))})
        out.append({"code": src.code, "name": src.name, "is_active": src.is_active, "days": series,
                    "requests": sum(d["requests"] for d in series), "http_429": sum(d["http_429"] for d in series),
                    "wait_seconds": sum(d["wait_seconds"] for d in series)})
    return out


def group_freshness_rows(conn: psycopg.Connection, now: datetime, specs: list[GroupSpec] | None = None,
                         ) -> list[dict[str, Any]]:
    """Every group's (or ``specs``') freshness. Only an enabled group of an active source can be late;
    a group whose freshness cannot be worked out (stored config edited by hand) shows why instead."""
    rows = []
    for spec in config_store.read_specs(conn) if specs is None else specs:
        g = spec.group
        enabled = g.is_enabled and bool(spec.source and spec.source.is_active)
        row: dict[str, Any] = {"name": g.name, "source": g.data_source, "dataset": g.dataset, "enabled": enabled,
                               "grace": grace_of(spec), "error": None}
        try:
            f = group_freshness(conn, spec, now=now, grace=row["grace"])
        except Exception as exc:  # noqa: BLE001 - one broken group must not hide the others
            log.warning("freshness of %s: %s", g.name, exc)
            row.update(last_complete=None, expected=None, due_at=None, late=False, error=first_line(exc))
        else:
            row.update(last_complete=f.last_complete, expected=f.expected, due_at=f.due_at,
                       late=f.late and row["enabled"])
        rows.append(row)
    return rows


def health_view(conn: psycopg.Connection, *, now: datetime | None = None, can_read: Callable[[str], bool] | None = None,
                can_read_all: bool = True) -> dict[str, Any]:
    """Everything the Health page shows, at ``now`` (default: the current time).

    ``can_read(group)``: may the caller read that group's DAG (None: every group). Groups and
    failing checks are filtered with it; a source's chart sums all its groups' requests (the rate
    limit is per source), so it is shown when ``can_read_all`` (the caller may read every group; then
    sources without groups show too) or the caller may read at least one of the source's groups."""
    now = now or datetime.now(timezone.utc)
    specs = config_store.read_specs(conn)
    if can_read is not None:
        specs = [s for s in specs if can_read(s.group.name)]
    readable = {s.group.name for s in specs}
    sources_seen = {s.group.data_source for s in specs}
    visible = None if can_read is None or can_read_all else sources_seen.__contains__
    return {
        "now": now,
        "sources": source_activity(conn, now.astimezone(timezone.utc).date(), visible=visible),
        "groups": group_freshness_rows(conn, now, specs),
        "failing_checks": [c for c in health.failing_checks(conn) if can_read is None or c["group_name"] in readable],
    }
