"""Changes made from the UI: validate and write the config (one transaction), then tell Airflow.

Shared by the HTML forms and the JSON API so both apply exactly the CLI's validation
(``moomarkets.warehouse.config_store``). Airflow side effects are best effort, as in the CLI: the config
tables are the source of truth, and a failed side effect becomes a note shown to the user.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg

from moomarkets.airflow import ops as airflow_ops
from moomarkets.warehouse import config_store as store
from moomarkets.config.models import DataSource, JobGroup
from moomarkets.errors import ConfigError

log = logging.getLogger(__name__)

SOURCE_FIELDS = ("code", "name", "kind", "conn_id", "description", "is_active", "config")
GROUP_FIELDS = ("name", "data_source", "dataset", "schedule", "timezone", "description", "parameters", "is_enabled")


@dataclass
class Outcome:
    """What a change did, plus notes for the user (e.g. "DAG not parsed yet")."""

    value: Any = None
    notes: list[str] = field(default_factory=list)


def form_field(error: ConfigError, fields: tuple[str, ...]) -> str:
    """The form field a ConfigError belongs to (``config.rate_limit`` -> ``config``); ``__all__`` if none."""
    f = (error.field or "").split(".", 1)[0]
    return f if f in fields else "__all__"


def parse_json_object(text: str, field_name: str) -> dict[str, Any]:
    """A JSON object from a textarea; empty means {}. Errors name the field (same words as the CLI)."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})", field=field_name) from None
    if not isinstance(value, dict):
        raise ConfigError("must be a JSON object, e.g. {\"key\": \"value\"}", field=field_name)
    return value


# -- Airflow side effects (best effort) --------------------------------------------------------
def _sync_pool(src: DataSource, notes: list[str]) -> None:
    try:
        from moomarkets.airflow.pools import sync_pools

        sync_pools([src])
    except Exception as exc:  # noqa: BLE001
        log.warning("moomarkets ui: pool for %s not synced: %s", src.code, exc)
        notes.append(f"Airflow pool not synced ({type(exc).__name__}); run `moomarkets pools sync`.")


def _set_paused(name: str, paused: bool, notes: list[str]) -> None:
    try:
        if not airflow_ops.set_paused(name, paused):
            notes.append(f"DAG {name} is not parsed yet; it will start {'paused' if paused else 'active'}.")
    except Exception as exc:  # noqa: BLE001
        log.warning("moomarkets ui: could not set DAG %s paused=%s: %s", name, paused, exc)
        notes.append(f"Could not {'pause' if paused else 'unpause'} DAG {name} in Airflow ({type(exc).__name__}).")


# -- data sources ---------------------------------------------------------------------------
def create_source(conn: psycopg.Connection, data: dict[str, Any]) -> Outcome:
    kind = data.get("kind")
    conn_id = data.get("conn_id") or (f"{kind}_default" if isinstance(kind, str) and kind else "")
    src = DataSource(
        code=data.get("code"), name=data.get("name"), kind=kind, conn_id=conn_id,
        description=data.get("description") or "", is_active=data.get("is_active", True),
        config=data.get("config") if data.get("config") is not None else {},
    )
    with conn.transaction():
        src = store.add_source(conn, src)
    out = Outcome(src)
    _sync_pool(src, out.notes)
    return out


def update_source(conn: psycopg.Connection, code: str, changes: dict[str, Any]) -> Outcome:
    changes = {k: v for k, v in changes.items() if k in SOURCE_FIELDS}
    with conn.transaction():
        src = store.update_source(conn, code, **changes)
    out = Outcome(src)
    _sync_pool(src, out.notes)
    return out


def set_source_active(conn: psycopg.Connection, code: str, active: bool) -> Outcome:
    with conn.transaction():
        src = store.update_source(conn, code, is_active=active)
    out = Outcome(src)
    if not active:
        users = [g.name for g in store.list_groups(conn) if g.data_source == code and g.is_enabled]
        if users:
            out.notes.append(f"Runs of {', '.join(users)} are skipped while the source is inactive.")
    return out


# -- job groups -----------------------------------------------------------------------------
def create_group(conn: psycopg.Connection, data: dict[str, Any]) -> Outcome:
    group = JobGroup(
        name=data.get("name"), data_source=data.get("data_source"), dataset=data.get("dataset"),
        schedule=data.get("schedule"), timezone=data.get("timezone") or "UTC",
        description=data.get("description") or "",
        parameters=data.get("parameters") if data.get("parameters") is not None else {},
        is_enabled=data.get("is_enabled", True),
    )
    with conn.transaction():
        group = store.add_group(conn, group)
    return Outcome(group, [f"DAG {group.name} appears in Airflow at the next DAG parse (usually within a minute)."])


def update_group(conn: psycopg.Connection, name: str, changes: dict[str, Any]) -> Outcome:
    changes = {k: v for k, v in changes.items() if k in GROUP_FIELDS}
    with conn.transaction():
        before = store.get_group(conn, name)
        group = store.update_group(conn, name, **changes)
    out = Outcome(group)
    if before.is_enabled != group.is_enabled:
        _set_paused(name, not group.is_enabled, out.notes)
    return out


def set_group_enabled(conn: psycopg.Connection, name: str, enabled: bool) -> Outcome:
    with conn.transaction():
        group = store.update_group(conn, name, is_enabled=enabled)
    out = Outcome(group)
    _set_paused(name, not enabled, out.notes)
    return out


def trigger(conn: psycopg.Connection, name: str, user_name: str) -> Outcome:
    group = store.get_group(conn, name)
    run_id = airflow_ops.trigger_run(name, user_name=user_name, note="triggered from the MooMarkets page")
    out = Outcome(run_id)
    if not group.is_enabled:
        out.notes.append("The group is disabled: its DAG is paused, so the run waits until you enable it.")
    return out


def backfill(conn: psycopg.Connection, name: str, *, from_date, to_date, reprocess_behavior: str,
             max_active_runs: int, user_name: str, dry_run: bool = False) -> Outcome:
    group = store.get_group(conn, name)
    plan = airflow_ops.create_backfill(
        name, from_date, to_date, timezone=group.timezone, reprocess_behavior=reprocess_behavior,
        max_active_runs=max_active_runs, user_name=user_name, dry_run=dry_run,
    )
    out = Outcome(plan)
    if not group.is_enabled and not dry_run:
        out.notes.append("The group is disabled: its DAG is paused, so the backfill runs wait until you enable it.")
    return out


def group_from_form(current: JobGroup | None, form: dict[str, str]) -> dict[str, Any]:
    """Form strings -> store values (JSON parsed; checkbox to bool). Raises ConfigError per field."""
    data: dict[str, Any] = {k: form.get(k, "") for k in ("name", "data_source", "dataset", "schedule", "timezone", "description")}
    data["parameters"] = parse_json_object(form.get("parameters", ""), "parameters")
    data["is_enabled"] = form.get("is_enabled") in ("on", "true", "1")
    if current is not None:
        data.pop("name")
    return data


def source_from_form(current: DataSource | None, form: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {k: form.get(k, "") for k in ("code", "name", "kind", "conn_id", "description")}
    data["config"] = parse_json_object(form.get("config", ""), "config")
    data["is_active"] = form.get("is_active") in ("on", "true", "1")
    if current is not None:
        data.pop("code")
    return data


def merged(current: Any, changes: dict[str, Any]) -> Any:
    return replace(current, **changes)
