"""Commands on the configuration: schema, data sources, job groups, pools, YAML backup/restore."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from moomarkets.config.models import JobGroup


from moomarkets.cli.common import EXIT_ERROR, EXIT_OK, _changes, _connect, _json_option, _report, _table


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from moomarkets.warehouse import migrate

    migrate.upgrade(args.database_url)
    print(f"warehouse schema at revision {migrate.current(args.database_url)}")
    return EXIT_OK


def cmd_sources(args: argparse.Namespace) -> int:
    from moomarkets.services import sources, views
    from moomarkets.warehouse import config_store as store

    airflow = not args.no_airflow
    with _connect(args) as conn:
        if args.action == "list":
            rows = [
                {"code": s["code"], "name": s["name"], "kind": s["kind"], "active": s["is_active"],
                 "conn_id": s["conn_id"], "rate_limit": ",".join(s["rate_limit"]), "pool": s["pool"],
                 "slots": s["pool_slots"]}
                for s in views.list_sources(conn)
            ]
            print(_table(rows, ["code", "name", "kind", "active", "conn_id", "rate_limit", "pool", "slots"]))
        elif args.action == "show":
            print(json.dumps(store.get_source(conn, args.code).to_dict(), indent=2, ensure_ascii=False))
        elif args.action == "add":
            data = {"code": args.code, "name": args.name, "kind": args.kind, "conn_id": args.conn_id,
                    "description": args.description, "is_active": not args.inactive,
                    "config": _json_option(args.config, "config", "--config"), "alerts": _alerts_option(args.alerts)}
            out = sources.create(conn, data, airflow=airflow)
            _report(f"added data source {out.value.code}", out)
        elif args.action == "update":
            changes = _changes(args, {"name": "name", "kind": "kind", "conn_id": "conn_id",
                                      "description": "description", "active": "is_active"},
                               config=_json_option(args.config, "config", "--config"),
                               alerts=_alerts_option(args.alerts))
            out = sources.update(conn, args.code, changes, airflow=airflow)
            _report(f"updated data source {out.value.code}", out)
        elif args.action == "remove":
            _report(f"removed data source {args.code}", sources.remove(conn, args.code))
    return EXIT_OK


def _alerts_option(text: str | None) -> dict[str, Any] | None:
    """``--alerts``: YAML or JSON text, or ``@FILE``; ``''`` means none. None when not given."""
    from moomarkets.services import config_io

    if text is None or not text.startswith("@"):
        return config_io.parse_alerts(text, label="--alerts")
    return config_io.parse_alerts(_read_text(text[1:]), label=text[1:])


def _latest_checks(conn: psycopg.Connection, group_name: str) -> dict[str, Any] | None:
    """The check results of the group's most recently checked run (None when never checked)."""
    from moomarkets.warehouse import check_results

    results = check_results.latest_results(conn, group_name)
    if not results:
        return None
    return {
        "run_id": results[0]["run_id"],
        "checked_at": max(r["checked_at"] for r in results),
        "results": [
            {"check": r["check_name"], "severity": r["severity"], "passed": r["passed"], "failed": r["failed"],
             "checked": r["checked"], "message": r["message"], "sample": r["sample"][:5]}
            for r in results
        ],
    }


def cmd_groups(args: argparse.Namespace) -> int:
    from moomarkets.services import groups
    from moomarkets.warehouse import queries

    airflow = not args.no_airflow
    with _connect(args) as conn:
        if args.action == "list":
            rows = []
            for g in queries.list_groups(conn):  # no Airflow needed: the schedule is shown as cron
                ran = bool(g["last_run_status"])
                rows.append(
                    {"name": g["name"], "source": g["data_source"], "dataset": g["dataset"], "schedule": g["schedule"],
                     "timezone": g["timezone"], "enabled": g["is_enabled"], "last_run": g["last_run_status"] or "-",
                     "progress": f"{g['units_done'] or 0}/{g['units_total'] or 0}" if ran else "-",
                     "rows": g["rows_loaded"] if ran else "-"}
                )
            print(_table(rows, ["name", "source", "dataset", "schedule", "timezone", "enabled", "last_run", "progress", "rows"]))
        elif args.action == "show":
            print(json.dumps(_group_shown(conn, args.name), indent=2, ensure_ascii=False, default=str))
        elif args.action == "validate":
            return _validate_groups(conn, args.names)
        elif args.action == "add":
            data = {"name": args.name, "data_source": args.source, "dataset": args.dataset, "schedule": args.schedule,
                    "timezone": args.timezone, "description": args.description, "is_enabled": not args.disabled,
                    "parameters": _json_option(args.parameters, "parameters", "--parameters"),
                    "depends_on": args.depends_on, "upstream_timeout": args.upstream_timeout,
                    "alerts": _alerts_option(args.alerts)}
            out = groups.create(conn, data, airflow=airflow)
            _report(f"added job group {out.value.name}", out)
        elif args.action == "update":
            changes = _changes(args, {"source": "data_source", "dataset": "dataset", "schedule": "schedule",
                                      "timezone": "timezone", "description": "description", "depends_on": "depends_on",
                                      "upstream_timeout": "upstream_timeout"},
                               parameters=_json_option(args.parameters, "parameters", "--parameters"),
                               alerts=_alerts_option(args.alerts))
            out = groups.update(conn, args.name, changes, airflow=airflow)
            _report(f"updated job group {args.name}", out)
        elif args.action in ("enable", "disable"):
            out = groups.set_enabled(conn, args.name, args.action == "enable", airflow=airflow)
            _report(f"{args.action}d job group {args.name}", out)
        elif args.action == "remove":
            _report(f"removed job group {args.name}", groups.remove(conn, args.name))
    return EXIT_OK


def _group_shown(conn: psycopg.Connection, name: str) -> dict[str, Any]:
    """What ``groups show`` prints: the stored group, then how it runs with others, what alerts it
    sends and recently sent, its recent restatements and its latest data checks."""
    from moomarkets.services import groups, restate, views
    from moomarkets.warehouse import config_store as store

    group = store.get_group(conn, name)
    shown = group.to_dict()
    shown["dependencies"] = _dependencies_shown(conn, group)
    shown["alerts_in_effect"] = groups.alerts_in_effect(conn, group)  # the source's defaults under the group's keys
    # the last alerts from alerts_sent, newest first, one line each (status, scrubbed error, attempts)
    shown["recent_alerts"] = [views.alert_line(a) for a in views.recent_alerts(conn, name)]
    shown["recent_restatements"] = [  # corporate actions seen and the history re-fetches they caused
        {k: r[k] for k in ("code", "event_date", "action", "factor", "status", "rows_changed", "requests",
                           "run_id", "error", "detected_at")}
        for r in restate.recent_for_group(conn, name)
    ]
    shown["latest_checks"] = _latest_checks(conn, name)  # data checks of the last checked run
    return shown


def _dependencies_shown(conn: psycopg.Connection, group: JobGroup) -> dict[str, Any]:
    """The group's place among the others: what its runs wait for, for how long, and who waits for it
    (the one place to add what a run is waiting for right now)."""
    from moomarkets.services import groups, views

    return {
        "depends_on": group.depends_on,
        "upstream_timeout": group.upstream_timeout,
        "downstream": groups.downstream(conn, group.name),
        "waiting": views.waiting_lines(conn, group.name),  # one line per run waiting now
    }


def _validate_groups(conn: psycopg.Connection, names: list[str]) -> int:
    from moomarkets.services import groups

    checks = groups.check(conn, names)
    for c in checks:
        if c.error:
            print(f"INVALID {c.name}: {c.error}")
        else:
            print(f"ok      {c.name}: next runs {', '.join(t.isoformat(timespec='minutes') for t in c.next_runs)}")
    if not checks:
        print("(no job groups)")
    return EXIT_ERROR if any(c.error for c in checks) else EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from moomarkets.services import config_io

    with _connect(args) as conn:
        text, data = config_io.export_yaml(conn)
    if args.file == "-":
        sys.stdout.write(text)
    else:
        Path(args.file).write_text(text)
        print(f"exported {len(data['data_sources'])} data source(s), {len(data['job_groups'])} job group(s) to {args.file}")
    return EXIT_OK


def _read_text(path: str) -> str:
    """The text of ``path`` (``-``: stdin); UsageError when it cannot be read."""
    from moomarkets.errors import UsageError

    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def read_config_file(path: str) -> Any:
    """The YAML in ``path`` (``-``: stdin) as data; UsageError for an unreadable file or bad YAML."""
    from moomarkets.services import config_io

    return config_io.parse_yaml(_read_text(path), path)


def cmd_import(args: argparse.Namespace) -> int:
    from moomarkets.services import config_io

    data = read_config_file(args.file)
    with _connect(args) as conn:
        out = config_io.import_config(conn, data, replace_all=args.replace, airflow=not args.no_airflow)
    _report(
        "imported: {sources_created} source(s) created, {sources_updated} updated; "
        "{groups_created} group(s) created, {groups_updated} updated; {removed} removed".format(**out.value),
        out,
    )
    return EXIT_OK


def cmd_pools(args: argparse.Namespace) -> int:
    from moomarkets.services import sources

    with _connect(args) as conn:
        if args.action == "sync":
            for name, slots, action in sources.sync_all_pools(conn):
                print(f"pool {name}: {slots} slot(s), {action}")
            return EXIT_OK
        problems, checked = sources.check_pools(conn)
    for p in problems:
        print(p)
    if not problems:
        print(f"all {checked} pool(s) match the data sources")
    return EXIT_ERROR if problems else EXIT_OK
