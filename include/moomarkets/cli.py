"""The ``moomarkets`` command line: schema, data sources, job groups, pools, backup/restore.

Every command that writes goes through ``moomarkets.services`` (the same rules as the management
UI): it validates first and writes in one transaction, so a bad input prints one specific line on
stderr, exits non-zero and writes nothing. Airflow is then kept in step (pools, pause state) on a
best-effort basis: what was done is printed, what failed is a ``warning:`` on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import psycopg

    from moomarkets.services.effects import Outcome

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

# The package's modules are imported inside the commands: ``moomarkets --help`` and usage errors
# stay instant, without loading psycopg, YAML or the source classes.


def _json_option(text: str | None, field: str, option: str) -> dict[str, Any] | None:
    """A JSON-object option; None when the option was not given."""
    from moomarkets.services.inputs import parse_json_object

    return None if text is None else parse_json_object(text, field, label=option)


def _bool_arg(text: str) -> bool:
    from moomarkets.services.inputs import parse_bool

    try:
        return parse_bool(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    line = "  ".join(c.upper().ljust(widths[c]) for c in cols)
    body = ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join([line, *body])


def _connect(args: argparse.Namespace) -> psycopg.Connection:
    from moomarkets.errors import ConfigStoreUnavailable, first_line
    from moomarkets.warehouse.db import connect

    try:
        # autocommit: each service write commits its own transaction, reads hold none open
        return connect(args.database_url, connect_timeout=10, autocommit=True)
    except Exception as exc:  # noqa: BLE001 - any driver error is one line for the user
        raise ConfigStoreUnavailable(f"cannot connect to the warehouse database: {first_line(exc)}") from None


def _report(headline: str, out: Outcome[Any]) -> None:
    """The command's own line, what Airflow did, notes; warnings go to stderr."""
    print(headline)
    for line in out.done:
        print(line)
    for line in out.notes:
        print(f"note: {line}")
    for line in out.warnings:
        print(f"warning: {line}", file=sys.stderr)


def _changes(args: argparse.Namespace, options: dict[str, str], **parsed: Any) -> dict[str, Any]:
    """The options given (attribute -> field), plus ``parsed`` values that are not None, as field
    changes; UsageError when there are none."""
    from moomarkets.errors import UsageError

    changes = {field: getattr(args, attr) for attr, field in options.items() if getattr(args, attr) is not None}
    changes.update({field: value for field, value in parsed.items() if value is not None})
    if not changes:
        raise UsageError("nothing to update: give at least one option")
    return changes


# -- commands -----------------------------------------------------------------------------
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
                    "config": _json_option(args.config, "config", "--config")}
            out = sources.create(conn, data, airflow=airflow)
            _report(f"added data source {out.value.code}", out)
        elif args.action == "update":
            changes = _changes(args, {"name": "name", "kind": "kind", "conn_id": "conn_id",
                                      "description": "description", "active": "is_active"},
                               config=_json_option(args.config, "config", "--config"))
            out = sources.update(conn, args.code, changes, airflow=airflow)
            _report(f"updated data source {out.value.code}", out)
        elif args.action == "remove":
            _report(f"removed data source {args.code}", sources.remove(conn, args.code))
    return EXIT_OK


def cmd_groups(args: argparse.Namespace) -> int:
    from moomarkets.services import groups
    from moomarkets.warehouse import config_store as store
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
            print(json.dumps(store.get_group(conn, args.name).to_dict(), indent=2, ensure_ascii=False))
        elif args.action == "validate":
            return _validate_groups(conn, args.names)
        elif args.action == "add":
            data = {"name": args.name, "data_source": args.source, "dataset": args.dataset, "schedule": args.schedule,
                    "timezone": args.timezone, "description": args.description, "is_enabled": not args.disabled,
                    "parameters": _json_option(args.parameters, "parameters", "--parameters")}
            out = groups.create(conn, data)
            _report(f"added job group {out.value.name}", out)
        elif args.action == "update":
            changes = _changes(args, {"source": "data_source", "dataset": "dataset", "schedule": "schedule",
                                      "timezone": "timezone", "description": "description"},
                               parameters=_json_option(args.parameters, "parameters", "--parameters"))
            out = groups.update(conn, args.name, changes, airflow=airflow)
            _report(f"updated job group {args.name}", out)
        elif args.action in ("enable", "disable"):
            out = groups.set_enabled(conn, args.name, args.action == "enable", airflow=airflow)
            _report(f"{args.action}d job group {args.name}", out)
        elif args.action == "remove":
            _report(f"removed job group {args.name}", groups.remove(conn, args.name))
    return EXIT_OK


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


def read_config_file(path: str) -> Any:
    """The YAML in ``path`` (``-``: stdin) as data; UsageError for an unreadable file or bad YAML."""
    from moomarkets.errors import UsageError
    from moomarkets.services import config_io

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return config_io.parse_yaml(text, path)


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


class _Parser(argparse.ArgumentParser):
    """Usage errors are one ``error:`` line (like every other error of this CLI), exit code 2.
    Subcommand parsers inherit the class (argparse creates them with the parent's type)."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog}: {message} (see: {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="moomarkets", description="MooMarkets Ingest: data sources and job groups")
    p.add_argument("--database-url", default=None, help="warehouse URL (default: $MOOMARKETS_DATABASE_URL)")
    p.add_argument("--no-airflow", action="store_true", help="do not touch Airflow (pools, pause state)")
    sub = p.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="warehouse schema").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)

    sp = sub.add_parser("sources", help="data sources").add_subparsers(dest="action", required=True)
    sp.add_parser("list").set_defaults(func=cmd_sources)
    x = sp.add_parser("show"); x.add_argument("code"); x.set_defaults(func=cmd_sources)
    x = sp.add_parser("add")
    x.add_argument("--code", required=True); x.add_argument("--name", required=True)
    x.add_argument("--kind", required=True); x.add_argument("--conn-id", help="default: the kind's connection")
    x.add_argument("--description"); x.add_argument("--config", help="JSON, e.g. '{\"plan\": \"light\"}'")
    x.add_argument("--inactive", action="store_true"); x.set_defaults(func=cmd_sources)
    x = sp.add_parser("update"); x.add_argument("code")
    for opt in ("--name", "--kind", "--conn-id", "--description", "--config"):
        x.add_argument(opt)
    x.add_argument("--active", type=_bool_arg); x.set_defaults(func=cmd_sources)
    x = sp.add_parser("remove"); x.add_argument("code"); x.set_defaults(func=cmd_sources)

    gp = sub.add_parser("groups", help="job groups").add_subparsers(dest="action", required=True)
    gp.add_parser("list").set_defaults(func=cmd_groups)
    for name in ("show", "enable", "disable", "remove"):
        x = gp.add_parser(name); x.add_argument("name"); x.set_defaults(func=cmd_groups)
    x = gp.add_parser("add")
    x.add_argument("--name", required=True); x.add_argument("--source", required=True)
    x.add_argument("--dataset", required=True); x.add_argument("--schedule", required=True)
    x.add_argument("--timezone"); x.add_argument("--description")
    x.add_argument("--parameters", help="JSON, e.g. '{\"universe\": \"all_listed\"}'")
    x.add_argument("--disabled", action="store_true"); x.set_defaults(func=cmd_groups)
    x = gp.add_parser("update"); x.add_argument("name")
    for opt in ("--source", "--dataset", "--schedule", "--timezone", "--description", "--parameters"):
        x.add_argument(opt)
    x.set_defaults(func=cmd_groups)
    x = gp.add_parser("validate", help="check groups; prints the next 3 run times")
    x.add_argument("names", nargs="*"); x.set_defaults(func=cmd_groups)

    x = sub.add_parser("export", help="write all sources and groups as YAML"); x.add_argument("file")
    x.set_defaults(func=cmd_export)
    x = sub.add_parser("import", help="create/update sources and groups from YAML (all-or-nothing)")
    x.add_argument("file"); x.add_argument("--replace", action="store_true", help="also remove rows not in the file")
    x.set_defaults(func=cmd_import)

    pp = sub.add_parser("pools", help="Airflow pools, one per data source").add_subparsers(dest="action", required=True)
    pp.add_parser("sync").set_defaults(func=cmd_pools)
    pp.add_parser("check").set_defaults(func=cmd_pools)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from moomarkets import settings
    from moomarkets.errors import MooMarketsError

    parser = build_parser()
    args = parser.parse_args(argv)
    args.database_url = args.database_url or settings.database_url()
    try:
        return args.func(args)
    except MooMarketsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
