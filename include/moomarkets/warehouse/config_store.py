"""Read and write the config tables. Every write validates first and is all-or-nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import psycopg

from moomarkets.config.dependencies import check_dependencies, dependency_order, downstream_of
from moomarkets.config.models import DEFAULT_UPSTREAM_TIMEOUT, DataSource, GroupSpec, JobGroup
from moomarkets.config.validate import validate_depends_on, validate_group, validate_source
from moomarkets.errors import ConfigError, NotFoundError

_SOURCE_FIELDS = ("code", "name", "description", "kind", "conn_id", "is_active", "config", "alerts")
_SOURCE_COLS = ", ".join(_SOURCE_FIELDS)
_GROUP_FIELDS = ("name", "description", "data_source", "dataset", "schedule", "timezone", "parameters", "is_enabled",
                 "depends_on", "upstream_timeout", "alerts")
_GROUP_SELECT = """
    SELECT g.name, g.description, s.code AS data_source, g.dataset, g.schedule, g.timezone,
           g.parameters, g.is_enabled, g.depends_on, g.upstream_timeout, g.alerts
      FROM job_groups g JOIN data_sources s ON s.id = g.data_source_id
"""


def _source(row: dict[str, Any]) -> DataSource:
    return DataSource(**{k: row[k] for k in _SOURCE_FIELDS})


def _group(row: dict[str, Any]) -> JobGroup:
    return JobGroup(**{k: row[k] for k in _GROUP_FIELDS})


# -- data sources ------------------------------------------------------------------------
def list_sources(conn: psycopg.Connection) -> list[DataSource]:
    return [_source(r) for r in conn.execute(f"SELECT {_SOURCE_COLS} FROM data_sources ORDER BY code")]


def get_source(conn: psycopg.Connection, code: str) -> DataSource:
    row = conn.execute(f"SELECT {_SOURCE_COLS} FROM data_sources WHERE code = %s", (code,)).fetchone()
    if row is None:
        raise NotFoundError(f"no data source {code!r}")
    return _source(row)


def find_source(conn: psycopg.Connection, code: str) -> DataSource | None:
    try:
        return get_source(conn, code)
    except NotFoundError:
        return None


def _check_conn_id_unshared(conn: psycopg.Connection, src: DataSource) -> None:
    """One API key, one limiter: the rate limit is kept per source, so two sources of the same kind on
    one connection would each get the key's whole allowance and together overrun it."""
    row = conn.execute(
        "SELECT code FROM data_sources WHERE kind = %s AND conn_id = %s AND code <> %s ORDER BY code LIMIT 1",
        (src.kind, src.conn_id, src.code),
    ).fetchone()
    if row is not None:
        raise ConfigError(
            f"connection {src.conn_id!r} is already used by {src.kind} source {row['code']!r}; the rate limit is"
            " kept per source, so two sources on one key would overrun it (give each its own connection)",
            field="conn_id",
        )


def _check_groups_still_valid(conn: psycopg.Connection, new: DataSource, field: str) -> None:
    """A source change (kind, config) must not silently turn its job groups into config errors."""
    for g in conn.execute(_GROUP_SELECT + " WHERE s.code = %s ORDER BY g.name", (new.code,)):
        group = _group(g)
        try:
            validate_group(group, new)
        except ConfigError as exc:
            reason = exc.reason if exc.field is None else f"{exc.field}: {exc.reason}"
            raise ConfigError(
                f"job group {group.name!r} would become invalid ({reason}); change or remove it first",
                field=field,
            ) from None


def add_source(conn: psycopg.Connection, src: DataSource) -> DataSource:
    src = validate_source(src)
    if find_source(conn, src.code):
        raise ConfigError(f"data source {src.code!r} already exists", field="code")
    _check_conn_id_unshared(conn, src)
    conn.execute(
        "INSERT INTO data_sources (code, name, description, kind, conn_id, is_active, config, alerts)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (src.code, src.name, src.description, src.kind, src.conn_id, src.is_active, json.dumps(src.config),
         json.dumps(src.alerts)),
    )
    return src


def update_source(conn: psycopg.Connection, code: str, /, *, check_groups: bool = True, **changes: Any) -> DataSource:
    """Change a source. ``code`` is positional-only, so a ``code`` among the changes is an attempted
    rename, refused with its own message rather than a TypeError."""
    current = get_source(conn, code)
    if "code" in changes and changes["code"] != code:
        raise ConfigError("a data source's code cannot be changed (job groups refer to it)", field="code")
    new = validate_source(replace(current, **changes))
    _check_conn_id_unshared(conn, new)
    if check_groups:
        _check_groups_still_valid(conn, new, "kind" if new.kind != current.kind else "config")
    conn.execute(
        "UPDATE data_sources SET name=%s, description=%s, kind=%s, conn_id=%s, is_active=%s, config=%s, alerts=%s,"
        " updated_at=now() WHERE code=%s",
        (new.name, new.description, new.kind, new.conn_id, new.is_active, json.dumps(new.config),
         json.dumps(new.alerts), code),
    )
    return new


def remove_source(conn: psycopg.Connection, code: str) -> None:
    get_source(conn, code)
    users = [
        r["name"]
        for r in conn.execute(
            "SELECT g.name FROM job_groups g JOIN data_sources s ON s.id = g.data_source_id"
            " WHERE s.code = %s ORDER BY g.name",
            (code,),
        )
    ]
    if users:
        raise ConfigError(f"data source {code!r} is used by job groups: {', '.join(users)}")
    conn.execute("DELETE FROM data_sources WHERE code = %s", (code,))


# -- job groups --------------------------------------------------------------------------
def list_groups(conn: psycopg.Connection) -> list[JobGroup]:
    return [_group(r) for r in conn.execute(_GROUP_SELECT + " ORDER BY g.name")]


def get_group(conn: psycopg.Connection, name: str) -> JobGroup:
    row = conn.execute(_GROUP_SELECT + " WHERE g.name = %s", (name,)).fetchone()
    if row is None:
        raise NotFoundError(f"no job group {name!r}")
    return _group(row)


def dependency_graph(conn: psycopg.Connection, *, lock: bool = False) -> dict[str, list[str]]:
    """Every stored group's upstreams, by name. Writers ``lock`` the rows: a concurrent change of
    another group's ``depends_on`` then waits, so two writers cannot close a cycle between them."""
    query = "SELECT name, depends_on FROM job_groups ORDER BY name" + (" FOR UPDATE" if lock else "")
    return {r["name"]: list(r["depends_on"]) for r in conn.execute(query)}


def _check_dependencies(conn: psycopg.Connection, group: JobGroup) -> None:
    """The group's upstreams exist and, with every other stored group, form no cycle."""
    graph = dependency_graph(conn, lock=True)
    graph[group.name] = group.depends_on
    check_dependencies(graph, subject=group.name)


def _source_id(conn: psycopg.Connection, code: str) -> int:
    row = conn.execute("SELECT id FROM data_sources WHERE code = %s", (code,)).fetchone()
    if row is None:
        raise ConfigError(f"unknown data source {code!r}", field="data_source")
    return row["id"]


def add_group(conn: psycopg.Connection, group: JobGroup) -> JobGroup:
    group = validate_group(group, find_source(conn, str(group.data_source)))
    if conn.execute("SELECT 1 FROM job_groups WHERE name = %s", (group.name,)).fetchone():
        raise ConfigError(f"job group {group.name!r} already exists", field="name")
    _check_dependencies(conn, group)
    conn.execute(
        "INSERT INTO job_groups (name, description, data_source_id, dataset, schedule, timezone, parameters,"
        " is_enabled, depends_on, upstream_timeout, alerts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            group.name, group.description, _source_id(conn, group.data_source), group.dataset, group.schedule,
            group.timezone, json.dumps(group.parameters), group.is_enabled, group.depends_on, group.upstream_timeout,
            json.dumps(group.alerts),
        ),
    )
    return group


def update_group(conn: psycopg.Connection, name: str, /, **changes: Any) -> JobGroup:
    """Change a group; its upstreams are checked against every stored group. ``name`` is
    positional-only, so a ``name`` among the changes is an attempted rename, refused with its own
    message rather than a TypeError."""
    current = get_group(conn, name)
    if "name" in changes and changes["name"] != name:
        raise ConfigError("a job group's name cannot be changed (it is the DAG id and keeps its history)", field="name")
    candidate = replace(current, **changes)
    new = validate_group(candidate, find_source(conn, str(candidate.data_source)))
    _check_dependencies(conn, new)
    conn.execute(
        "UPDATE job_groups SET description=%s, data_source_id=%s, dataset=%s, schedule=%s, timezone=%s,"
        " parameters=%s, is_enabled=%s, depends_on=%s, upstream_timeout=%s, alerts=%s, updated_at=now()"
        " WHERE name=%s",
        (
            new.description, _source_id(conn, new.data_source), new.dataset, new.schedule, new.timezone,
            json.dumps(new.parameters), new.is_enabled, new.depends_on, new.upstream_timeout,
            json.dumps(new.alerts), name,
        ),
    )
    return new


def remove_group(conn: psycopg.Connection, name: str) -> None:
    """Remove a group no other group depends on (their runs would wait for it forever)."""
    get_group(conn, name)
    users = downstream_of(dependency_graph(conn, lock=True), name)
    if users:
        raise ConfigError(
            f"job group {name!r} is needed by {', '.join(users)} (depends_on); remove it from their depends_on first"
        )
    conn.execute("DELETE FROM job_groups WHERE name = %s", (name,))


# -- for the DAG factory -------------------------------------------------------------------
def read_specs(conn: psycopg.Connection, only: str | None = None) -> list[GroupSpec]:
    """Every group with its source, ordered by name (deterministic DAG building).

    Groups whose source row is gone still come back (``source=None``) so the factory can show
    the problem instead of silently dropping the DAG.
    """
    query = f"""
        SELECT g.name, g.description, g.dataset, g.schedule, g.timezone, g.parameters, g.is_enabled,
               g.depends_on, g.upstream_timeout, g.alerts,
               s.code AS s_code, s.name AS s_name, s.description AS s_description, s.kind AS s_kind,
               s.conn_id AS s_conn_id, s.is_active AS s_is_active, s.config AS s_config, s.alerts AS s_alerts
          FROM job_groups g LEFT JOIN data_sources s ON s.id = g.data_source_id
          {"WHERE g.name = %s" if only else ""}
         ORDER BY g.name
    """
    specs = []
    for r in conn.execute(query, (only,) if only else ()):
        source = None
        if r["s_code"] is not None:
            source = DataSource(
                code=r["s_code"], name=r["s_name"], description=r["s_description"], kind=r["s_kind"],
                conn_id=r["s_conn_id"], is_active=r["s_is_active"], config=r["s_config"], alerts=r["s_alerts"],
            )
        group = JobGroup(
            name=r["name"], description=r["description"], data_source=r["s_code"] or "?", dataset=r["dataset"],
            schedule=r["schedule"], timezone=r["timezone"], parameters=r["parameters"], is_enabled=r["is_enabled"],
            depends_on=list(r["depends_on"]), upstream_timeout=r["upstream_timeout"], alerts=r["alerts"],
        )
        specs.append(GroupSpec(group=group, source=source))
    return specs


# -- backup / restore ---------------------------------------------------------------------
# Fields left out of an export while at their default: files stay short and read back to the same rows.
_DEFAULTS = {"depends_on": [], "upstream_timeout": DEFAULT_UPSTREAM_TIMEOUT, "alerts": {}}


def _without_defaults(record: DataSource | JobGroup) -> dict[str, Any]:
    return {k: v for k, v in record.to_dict().items() if not (k in _DEFAULTS and v == _DEFAULTS[k])}


def export_config(conn: psycopg.Connection) -> dict[str, Any]:
    return {
        "data_sources": [_without_defaults(s) for s in list_sources(conn)],
        "job_groups": [_without_defaults(g) for g in list_groups(conn)],
    }


def _parse_items(data: Any, key: str, cls: type) -> list:
    items = data.get(key) or []
    if not isinstance(items, list):
        raise ConfigError(f"{key!r} must be a list")
    fields = set(cls.__dataclass_fields__)
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"{key}[{i}] must be a mapping")
        unknown = set(item) - fields
        if unknown:
            raise ConfigError(f"{key}[{i}]: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        try:
            out.append(cls(**item))
        except TypeError as exc:
            raise ConfigError(f"{key}[{i}]: {exc}") from None
    return out


def parse_config(data: Any) -> tuple[list[DataSource], list[JobGroup]]:
    """The sources and groups of a parsed config file, unvalidated; ConfigError for a wrong shape
    (not a mapping, unknown keys or fields, duplicates)."""
    if not isinstance(data, dict):
        raise ConfigError("the file must be a mapping with data_sources and/or job_groups")
    unknown = set(data) - {"data_sources", "job_groups"}
    if unknown:
        raise ConfigError(f"unknown top-level key(s): {', '.join(sorted(map(str, unknown)))}")
    sources = _parse_items(data, "data_sources", DataSource)
    groups = _parse_items(data, "job_groups", JobGroup)
    for label, names in (("data source", [s.code for s in sources]), ("job group", [g.name for g in groups])):
        dupes = sorted({n for n in names if names.count(n) > 1}, key=str)
        if dupes:
            raise ConfigError(f"duplicate {label} in file: {', '.join(map(str, dupes))}")
    return sources, groups


def _file_dependencies(conn: psycopg.Connection, groups: list[JobGroup], replace_all: bool) -> list[JobGroup]:
    """The file's groups in an order that writes every upstream before its dependants, once the
    graph after the import (stored groups, then the file's over them) has no unknown upstream and no
    cycle; a group may depend on one further down the same file."""
    for g in groups:
        if not isinstance(g.name, str):  # the graph is keyed by name
            raise ConfigError(f"must be text, got {type(g.name).__name__}", field="name", subject="job group")
    stored = dependency_graph(conn, lock=True)
    in_file = {
        g.name: validate_depends_on(g.depends_on, name=g.name, subject=f"job group {g.name!r}") for g in groups
    }
    if replace_all:
        for name, upstreams in in_file.items():
            gone = next((u for u in upstreams if u in stored and u not in in_file), None)
            if gone:
                raise ConfigError(
                    f"job group {gone!r} is not in the file, so replacing would remove it; keep it in the file or"
                    " remove it from depends_on", field="depends_on", subject=f"job group {name!r}",
                )
    check_dependencies(in_file if replace_all else {**stored, **in_file})
    by_name = {g.name: g for g in groups}
    return [by_name[n] for n in dependency_order(in_file)]


def import_config(conn: psycopg.Connection, data: Any, *, replace_all: bool = False) -> dict[str, int]:
    """Create or update every source and group in ``data``; all-or-nothing (one transaction).

    With ``replace_all`` rows absent from ``data`` are removed, making the tables equal the file;
    a group still needed by one of the file's is never removed that way.
    """
    sources, groups = parse_config(data)
    counts = {"sources_created": 0, "sources_updated": 0, "groups_created": 0, "groups_updated": 0, "removed": 0}
    with conn.transaction():
        groups = _file_dependencies(conn, groups, replace_all)
        updated: list[DataSource] = []
        for src in sources:
            if find_source(conn, str(src.code)):
                # its groups are checked once the file's own groups are in (they may change with it)
                updated.append(
                    update_source(conn, src.code, check_groups=False, **{k: v for k, v in src.to_dict().items() if k != "code"})
                )
                counts["sources_updated"] += 1
            else:
                add_source(conn, src)
                counts["sources_created"] += 1
        existing = {g.name for g in list_groups(conn)}
        for group in groups:
            if group.name in existing:
                update_group(conn, group.name, **{k: v for k, v in group.to_dict().items() if k != "name"})
                counts["groups_updated"] += 1
            else:
                add_group(conn, group)
                counts["groups_created"] += 1
        for src in updated:
            _check_groups_still_valid(conn, src, "config")
        if replace_all:
            keep_groups = [g.name for g in groups]
            cur = conn.execute("DELETE FROM job_groups WHERE NOT (name = ANY(%s))", (keep_groups,))
            counts["removed"] += cur.rowcount
            for src in list_sources(conn):
                if src.code not in {s.code for s in sources}:
                    remove_source(conn, src.code)
                    counts["removed"] += 1
    return counts
